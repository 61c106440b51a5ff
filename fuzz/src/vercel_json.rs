//! Target `vercel_json`: `vqs::VercelConfig::parse` on the input as text (the app reads the
//! file with `read_to_string`, so only UTF-8 gets this far).
//!
//! Invariants: parsing never panics; an accepted file's cron schedules are valid
//! `CronSchedule`s and its paths absolute; each queue trigger's consumer group and route are
//! the ones derived from its `functions` key; its numbers are the numbers in the file (not
//! clamped on the way into a `u32`).

use vqs::{CronSchedule, VercelConfig, consumer_group_name, route_path_for};

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = VercelConfig::parse(text) else { return };
    for c in &config.crons {
        assert!(c.path.starts_with('/'), "cron path {:?}", c.path);
        assert!(CronSchedule::parse(&c.schedule).is_ok(), "accepted schedule {:?}", c.schedule);
    }
    for t in &config.queue_triggers {
        assert_eq!(t.consumer_group, consumer_group_name(&t.function_key));
        assert_eq!(t.route_path, route_path_for(&t.function_key));
        assert!(t.route_path.starts_with('/'));
        assert!(!t.topic.is_empty(), "an accepted trigger has a topic");
        let root: serde_json::Value = serde_json::from_str(text).expect("accepted text is JSON");
        let written = root["functions"][&t.function_key]["experimentalTriggers"]
            .as_array()
            .and_then(|ts| ts.iter().find(|x| x["type"] == "queue/v2beta"))
            .expect("the trigger is in the file");
        for (field, got) in [("maxDeliveries", t.max_deliveries), ("maxConcurrency", t.max_concurrency)] {
            let want = written.get(field).and_then(serde_json::Value::as_f64);
            assert_eq!(got.map(f64::from), want, "{field} of {:?}", t.function_key);
        }
    }
}
