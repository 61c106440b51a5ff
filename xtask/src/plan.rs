//! A scaffolding plan: every file to create and every file to change, computed and checked
//! in full before anything is written.

use std::path::{Path, PathBuf};

/// What a command will do.
#[derive(Debug, Default)]
pub struct Plan {
    pub creates: Vec<(PathBuf, String)>,
    pub edits: Vec<(PathBuf, String)>,
}

/// The text of `rel` under `root`.
pub fn read(root: &Path, rel: &str) -> Result<String, String> {
    std::fs::read_to_string(root.join(rel)).map_err(|e| format!("cannot read {rel}: {e}"))
}

/// `text` (the content of `rel`) with `line` inserted just above its one line containing
/// `marker`, at that line's indentation.
pub fn with_inserted(rel: &str, text: &str, marker: &str, line: &str) -> Result<String, String> {
    match text.lines().filter(|l| l.contains(marker)).count() {
        1 => {}
        0 => return Err(format!("{rel} has no `{marker}` line to add to: restore it (see git) and retry")),
        n => return Err(format!("{rel} has {n} `{marker}` lines: keep exactly one")),
    }
    let mut out = String::with_capacity(text.len() + line.len() + 8);
    for l in text.split_inclusive('\n') {
        if l.contains(marker) {
            let indent: String = l.chars().take_while(|c| c.is_whitespace()).collect();
            out.push_str(&indent);
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(l);
    }
    Ok(out)
}

impl Plan {
    /// Refuse if any file to create exists already.
    pub fn check_new_files(&self, root: &Path) -> Result<(), String> {
        for (path, _) in &self.creates {
            if path.exists() {
                let rel = path.strip_prefix(root).unwrap_or(path);
                return Err(format!("{} exists already: this name is taken (nothing was written)", rel.display()));
            }
        }
        Ok(())
    }

    /// Print what would happen.
    pub fn print(&self, root: &Path) {
        for (path, text) in &self.creates {
            println!("create {}  ({} lines)", path.strip_prefix(root).unwrap_or(path).display(), text.lines().count());
        }
        for (path, text) in &self.edits {
            let rel = path.strip_prefix(root).unwrap_or(path);
            let before = std::fs::read_to_string(path).unwrap_or_default();
            let old: Vec<&str> = before.lines().collect();
            println!("change {}", rel.display());
            for l in text.lines().filter(|l| !old.contains(l)) {
                println!("    + {}", l.trim_end());
            }
        }
    }

    /// Write everything: new files with `create_new` (never overwrite), then the edits.
    pub fn apply(&self) -> Result<(), String> {
        use std::io::Write;
        for (path, text) in &self.creates {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            f.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        for (path, text) in &self.edits {
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Format the Rust files written (best effort: rustfmt ships with the toolchain).
    pub fn rustfmt(&self) {
        let files: Vec<&PathBuf> = self
            .creates
            .iter()
            .chain(&self.edits)
            .map(|(p, _)| p)
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        if files.is_empty() {
            return;
        }
        let status = std::process::Command::new("rustfmt").arg("--edition").arg("2024").args(&files).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("note: rustfmt did not run; run `cargo fmt` yourself");
        }
    }
}
