//! The parts of `vercel.json` vqs reads: `crons` and the `queue/v2beta` triggers of `functions`.

use serde_json::Value;

/// A `crons` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronEntry {
    /// The route Vercel Cron calls (`/api/cron/<name>`).
    pub path: String,
    /// Its five-field schedule (UTC).
    pub schedule: String,
}

/// A `queue/v2beta` trigger: a route subscribed to a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueTrigger {
    /// The `functions` key, e.g. `api/queue/probe.rs`.
    pub function_key: String,
    /// The route the platform pushes to, e.g. `/api/queue/probe`.
    pub route_path: String,
    /// Derived from the key as Vercel derives it.
    pub consumer_group: String,
    /// A topic, or a `prefix*` pattern.
    pub topic: String,
    /// `retryAfterSeconds`: the delay before a failed push is retried.
    pub retry_after_seconds: Option<f64>,
    /// `maxDeliveries`: deliveries before the message is dead-lettered.
    pub max_deliveries: Option<u32>,
    /// `maxConcurrency`: jobs of this consumer group running at once, across every process.
    pub max_concurrency: Option<u32>,
    /// `initialDelaySeconds`: messages reach this consumer no sooner than this after they were sent.
    pub initial_delay_seconds: Option<f64>,
}

/// The queue- and cron-relevant content of a `vercel.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VercelConfig {
    /// Every entry of `crons`.
    pub crons: Vec<CronEntry>,
    /// Every `queue/v2beta` trigger of every function.
    pub queue_triggers: Vec<QueueTrigger>,
}

/// Why a `vercel.json` was refused: where, and what to change.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("vercel.json: {at}: {reason}")]
pub struct VercelConfigError {
    /// A JSON path like `functions["api/queue/probe.rs"].experimentalTriggers[0].topic`.
    pub at: String,
    /// What is wrong, and what to change.
    pub reason: String,
}

fn err(at: impl Into<String>, reason: impl Into<String>) -> VercelConfigError {
    VercelConfigError { at: at.into(), reason: reason.into() }
}

/// The consumer group Vercel derives from a `functions` key (`sanitizeConsumerName` in
/// `@vercel/build-utils`, `filePathToConsumerGroup` in `@vercel/queue`): `_`→`__`, `/`→`_S`,
/// `.`→`_D`, `[A-Za-z0-9-]` kept, any other character → `_` + the upper-case hex of its
/// first UTF-16 code unit, at least two digits (JavaScript's `charCodeAt(0)` on each code
/// point: `é` → `_E9`, `€` → `_20AC`, `😀` → `_D83D`, its low surrogate dropped).
///
/// ```
/// use vqs::consumer_group_name;
/// assert_eq!(consumer_group_name("app/api/queue/my-topic/route.ts"), "app_Sapi_Squeue_Smy-topic_Sroute_Dts");
/// assert_eq!(consumer_group_name("api/jobs/[name].rs"), "api_Sjobs_S_5Bname_5D_Drs");
/// assert_eq!(consumer_group_name("api/café.rs"), "api_Scaf_E9_Drs");
/// ```
pub fn consumer_group_name(function_key: &str) -> String {
    let mut out = String::with_capacity(function_key.len() * 2);
    for c in function_key.chars() {
        match c {
            '_' => out.push_str("__"),
            '/' => out.push_str("_S"),
            '.' => out.push_str("_D"),
            c if c.is_ascii_alphanumeric() || c == '-' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                let first = c.encode_utf16(&mut units)[0];
                out.push_str(&format!("_{first:02X}"));
            }
        }
    }
    out
}

/// The consumer group of a `functions` key inside a Vercel service (`serviceName` in the
/// builder's config): Vercel derives it from `"<serviceName>~<key>"`; an empty name counts
/// as none.
///
/// ```
/// use vqs::consumer_group_name_in_service;
/// assert_eq!(consumer_group_name_in_service(Some("billing"), "api/q.rs"), "billing_7Eapi_Sq_Drs");
/// assert_eq!(consumer_group_name_in_service(Some(""), "api/q.rs"), "api_Sq_Drs");
/// ```
pub fn consumer_group_name_in_service(service_name: Option<&str>, function_key: &str) -> String {
    match service_name.filter(|s| !s.is_empty()) {
        Some(service) => consumer_group_name(&format!("{service}~{function_key}")),
        None => consumer_group_name(function_key),
    }
}

/// The URL path Vercel serves a per-file function at: the key without its extension, with a
/// trailing `/index` dropped (`api/queue/probe.rs` → `/api/queue/probe`).
pub fn route_path_for(function_key: &str) -> String {
    let key = function_key.trim_start_matches('/');
    let stem = match key.rfind('.') {
        Some(dot) if !key[dot..].contains('/') => &key[..dot],
        _ => key,
    };
    let stem = stem.strip_suffix("/index").unwrap_or(stem);
    format!("/{stem}")
}

const TRIGGER_FIELDS: &[&str] =
    &["type", "topic", "consumer", "maxDeliveries", "retryAfterSeconds", "initialDelaySeconds", "maxConcurrency"];

impl VercelConfig {
    /// Parse and validate `vercel.json` text.
    pub fn parse(text: &str) -> Result<VercelConfig, VercelConfigError> {
        let root: Value = serde_json::from_str(text).map_err(|e| err("(file)", format!("not valid JSON: {e}")))?;
        let root = root.as_object().ok_or_else(|| err("(file)", "the top level must be a JSON object"))?;
        let mut config = VercelConfig::default();

        if let Some(crons) = root.get("crons") {
            let crons = crons.as_array().ok_or_else(|| err("crons", "must be an array"))?;
            for (i, c) in crons.iter().enumerate() {
                let at = format!("crons[{i}]");
                let obj = c.as_object().ok_or_else(|| err(&at, "must be an object with path and schedule"))?;
                if let Some(k) = obj.keys().find(|k| *k != "path" && *k != "schedule") {
                    return Err(err(&at, format!("unknown field {k:?}: a cron entry has only path and schedule")));
                }
                let path =
                    obj.get("path").and_then(Value::as_str).ok_or_else(|| err(&at, "path is required (a string)"))?;
                if !path.starts_with('/') || path.is_empty() || path.len() > 512 {
                    return Err(err(
                        format!("{at}.path"),
                        format!("{path:?} must start with / and be at most 512 characters"),
                    ));
                }
                let schedule = obj
                    .get("schedule")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(&at, "schedule is required (a string)"))?;
                if let Err(e) = crate::CronSchedule::parse(schedule) {
                    return Err(err(format!("{at}.schedule"), format!("{schedule:?}: {}", e.reason)));
                }
                config.crons.push(CronEntry { path: path.to_owned(), schedule: schedule.to_owned() });
            }
        }

        if let Some(functions) = root.get("functions") {
            let functions = functions.as_object().ok_or_else(|| err("functions", "must be an object"))?;
            for (key, f) in functions {
                let at = format!("functions[{key:?}]");
                if key.is_empty() || key.len() > 256 {
                    return Err(err(&at, "a functions key must be 1 to 256 characters"));
                }
                let Some(triggers) = f.get("experimentalTriggers") else { continue };
                let triggers =
                    triggers.as_array().ok_or_else(|| err(format!("{at}.experimentalTriggers"), "must be an array"))?;
                let v2: Vec<_> =
                    triggers.iter().filter(|t| t.get("type").and_then(Value::as_str) == Some("queue/v2beta")).collect();
                if v2.len() > 1 {
                    return Err(err(
                        format!("{at}.experimentalTriggers"),
                        "can only have one item for queue/v2beta: give each topic its own route file",
                    ));
                }
                for (i, t) in triggers.iter().enumerate() {
                    let tat = format!("{at}.experimentalTriggers[{i}]");
                    config.queue_triggers.push(parse_trigger(key, &tat, t)?);
                }
            }
        }
        Ok(config)
    }
}

fn parse_trigger(key: &str, at: &str, t: &Value) -> Result<QueueTrigger, VercelConfigError> {
    let obj = t.as_object().ok_or_else(|| err(at, "must be an object"))?;
    if let Some(k) = obj.keys().find(|k| !TRIGGER_FIELDS.contains(&k.as_str())) {
        return Err(err(at, format!("unknown field {k:?}: allowed are {}", TRIGGER_FIELDS.join(", "))));
    }
    match obj.get("type").and_then(Value::as_str) {
        Some("queue/v2beta") => {}
        Some("queue/v1beta") => {
            return Err(err(
                format!("{at}.type"),
                "unsupported trigger type \"queue/v1beta\": use \"queue/v2beta\" instead",
            ));
        }
        Some(other) => {
            return Err(err(format!("{at}.type"), format!("unsupported trigger type {other:?}: use \"queue/v2beta\"")));
        }
        None => return Err(err(at, "type is required: \"queue/v2beta\"")),
    }
    if obj.contains_key("consumer") {
        return Err(err(
            format!("{at}.consumer"),
            "not allowed with queue/v2beta: the consumer group is derived from the functions key",
        ));
    }
    let topic = obj.get("topic").and_then(Value::as_str).ok_or_else(|| err(at, "topic is required (a string)"))?;
    let name = topic.strip_suffix('*').unwrap_or(topic);
    if topic.is_empty() || (topic != "*" && !crate::is_valid_name(name)) {
        return Err(err(
            format!("{at}.topic"),
            format!("{topic:?} is not a topic: letters, digits, '-' and '_', optionally one '*' at the end"),
        ));
    }
    let number = |field: &str, min: f64, exclusive: bool, integer: bool| -> Result<Option<f64>, VercelConfigError> {
        let Some(v) = obj.get(field) else { return Ok(None) };
        let n = v.as_f64().ok_or_else(|| err(format!("{at}.{field}"), "must be a number"))?;
        let ok = if exclusive { n > min } else { n >= min };
        if !ok || (integer && n.fract() != 0.0) {
            let what = if integer { "an integer" } else { "a number" };
            let cmp = if exclusive { ">" } else { ">=" };
            return Err(err(format!("{at}.{field}"), format!("must be {what} {cmp} {min}, got {n}")));
        }
        // An integer field becomes a `u32`: a larger one would be clamped, silently.
        if integer && n > f64::from(u32::MAX) {
            return Err(err(format!("{at}.{field}"), format!("must be at most {}, got {n}", u32::MAX)));
        }
        Ok(Some(n))
    };
    Ok(QueueTrigger {
        function_key: key.to_owned(),
        route_path: route_path_for(key),
        consumer_group: consumer_group_name(key),
        topic: topic.to_owned(),
        retry_after_seconds: number("retryAfterSeconds", 0.0, true, false)?,
        max_deliveries: number("maxDeliveries", 1.0, false, true)?.map(|n| n as u32),
        max_concurrency: number("maxConcurrency", 1.0, false, true)?.map(|n| n as u32),
        initial_delay_seconds: number("initialDelaySeconds", 0.0, false, false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_groups_match_vercels_examples() {
        assert_eq!(consumer_group_name("app/api/queue/my-topic/route.ts"), "app_Sapi_Squeue_Smy-topic_Sroute_Dts");
        assert_eq!(consumer_group_name("api/jobs/[name].rs"), "api_Sjobs_S_5Bname_5D_Drs");
        assert_eq!(consumer_group_name("src/main.rs"), "src_Smain_Drs");
        assert_eq!(consumer_group_name("api/**/*.rs"), "api_S_2A_2A_S_2A_Drs");
        assert_eq!(consumer_group_name("a_b"), "a__b");
    }

    /// Outside ASCII, the SDK writes each code point's first UTF-16 unit in hex (values
    /// computed with `@vercel/build-utils` 14.21.1 `sanitizeConsumerName`).
    #[test]
    fn consumer_groups_of_non_ascii_keys_use_utf16_code_units() {
        assert_eq!(consumer_group_name("api/café.rs"), "api_Scaf_E9_Drs");
        assert_eq!(consumer_group_name("api/€.rs"), "api_S_20AC_Drs");
        assert_eq!(consumer_group_name("api/😀.rs"), "api_S_D83D_Drs");
        assert_eq!(consumer_group_name("a b~c"), "a_20b_7Ec");
        assert_eq!(consumer_group_name_in_service(Some("svc"), "api/q.rs"), "svc_7Eapi_Sq_Drs");
        assert_eq!(consumer_group_name_in_service(None, "api/q.rs"), "api_Sq_Drs");
    }

    #[test]
    fn route_paths() {
        assert_eq!(route_path_for("api/queue/probe.rs"), "/api/queue/probe");
        assert_eq!(route_path_for("api/queue/index.rs"), "/api/queue");
        assert_eq!(route_path_for("app/api/queue/x/route.ts"), "/app/api/queue/x/route");
    }

    #[test]
    fn reads_triggers_and_crons() {
        let c = VercelConfig::parse(
            r#"{"crons":[{"path":"/api/cron/a","schedule":"0 * * * *"}],
                "functions":{"api/queue/probe.rs":{"maxDuration":60,"experimentalTriggers":[
                  {"type":"queue/v2beta","topic":"probe","maxDeliveries":5,"retryAfterSeconds":1.5,"maxConcurrency":10,"initialDelaySeconds":0}]}}}"#,
        )
        .unwrap();
        assert_eq!(c.crons, vec![CronEntry { path: "/api/cron/a".into(), schedule: "0 * * * *".into() }]);
        let t = &c.queue_triggers[0];
        assert_eq!(t.consumer_group, "api_Squeue_Sprobe_Drs");
        assert_eq!(t.route_path, "/api/queue/probe");
        assert_eq!((t.max_deliveries, t.max_concurrency, t.retry_after_seconds), (Some(5), Some(10), Some(1.5)));
    }

    #[test]
    fn refuses_what_vercel_refuses() {
        let cases = [
            (
                r#"{"functions":{"a.rs":{"experimentalTriggers":[{"type":"queue/v1beta","topic":"t","consumer":"c"}]}}}"#,
                "use \"queue/v2beta\"",
            ),
            (
                r#"{"functions":{"a.rs":{"experimentalTriggers":[{"type":"queue/v2beta","topic":"t","consumer":"c"}]}}}"#,
                "derived",
            ),
            (
                r#"{"functions":{"a.rs":{"experimentalTriggers":[{"type":"queue/v2beta","topic":"t"},{"type":"queue/v2beta","topic":"u"}]}}}"#,
                "only have one item",
            ),
            (
                r#"{"functions":{"a.rs":{"experimentalTriggers":[{"type":"queue/v2beta","topic":"t","maxAttempts":3}]}}}"#,
                "unknown field \"maxAttempts\"",
            ),
            (
                r#"{"functions":{"a.rs":{"experimentalTriggers":[{"type":"queue/v2beta","topic":"t","retryAfterSeconds":0}]}}}"#,
                "must be a number > 0",
            ),
            (
                r#"{"functions":{"a.rs":{"experimentalTriggers":[{"type":"queue/v2beta","topic":"t","maxConcurrency":1.5}]}}}"#,
                "an integer",
            ),
            // Found by the `vercel_json` fuzz target: 1e10 was clamped to 4294967295 silently.
            (
                r#"{"functions":{"a.rs":{"experimentalTriggers":[{"type":"queue/v2beta","topic":"t","maxDeliveries":1e10}]}}}"#,
                "maxDeliveries: must be at most 4294967295, got 10000000000",
            ),
            (
                r#"{"functions":{"a.rs":{"experimentalTriggers":[{"type":"queue/v2beta","topic":"a*b"}]}}}"#,
                "is not a topic",
            ),
            (r#"{"crons":[{"path":"api/x","schedule":"0 * * * *"}]}"#, "must start with /"),
            (r#"{"crons":[{"path":"/x","schedule":"0 * * * *","tz":"UTC"}]}"#, "unknown field"),
            (
                r#"{"crons":[{"path":"/x","schedule":"0 0 * * MON"}]}"#,
                "crons[0].schedule: \"0 0 * * MON\": \"MON\" in the day of week field: names are not allowed",
            ),
            ("{", "not valid JSON"),
        ];
        for (text, want) in cases {
            let e = VercelConfig::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
