//! `vercel.json`, edited by parsing and re-serialising (keys keep their order).

use std::path::Path;

use serde_json::{Map, Value};

/// The parsed file.
pub struct VercelJson {
    pub root: Map<String, Value>,
}

impl VercelJson {
    pub fn read(root: &Path) -> Result<VercelJson, String> {
        let path = root.join("vercel.json");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read vercel.json: {e}"))?;
        match serde_json::from_str(&text) {
            Ok(Value::Object(root)) => Ok(VercelJson { root }),
            Ok(_) => Err("vercel.json must be a JSON object: fix it, then retry (nothing was written)".into()),
            Err(e) => Err(format!("vercel.json is not valid JSON ({e}): fix it, then retry (nothing was written)")),
        }
    }

    fn object<'a>(&'a mut self, key: &str) -> Result<&'a mut Map<String, Value>, String> {
        self.root
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| format!("vercel.json: {key} must be an object"))
    }

    /// Every topic a `queue/*` trigger subscribes to, and every `functions` key.
    pub fn queue_topics(&self) -> Vec<String> {
        let functions = self.root.get("functions").and_then(Value::as_object);
        functions
            .into_iter()
            .flat_map(|f| f.values())
            .filter_map(|f| f.get("experimentalTriggers").and_then(Value::as_array))
            .flatten()
            .filter_map(|t| t.get("topic").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    pub fn has_function(&self, key: &str) -> bool {
        self.root.get("functions").and_then(Value::as_object).is_some_and(|f| f.contains_key(key))
    }

    pub fn cron_paths(&self) -> Vec<String> {
        self.root
            .get("crons")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("path").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    pub fn add_function(&mut self, key: &str, function: Value) -> Result<(), String> {
        self.object("functions")?.insert(key.to_owned(), function);
        Ok(())
    }

    pub fn add_cron(&mut self, path: &str, schedule: &str) -> Result<(), String> {
        let crons = self
            .root
            .entry("crons")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or("vercel.json: crons must be an array")?;
        let mut entry = Map::new();
        entry.insert("path".into(), Value::String(path.to_owned()));
        entry.insert("schedule".into(), Value::String(schedule.to_owned()));
        crons.push(Value::Object(entry));
        Ok(())
    }

    /// The file's new text: two-space indentation, a trailing newline.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(&self.root).unwrap_or_default() + "\n"
    }
}
