//! The output: one JSON line per result on stdout, in the peers' format (`node/harness.js`:
//! the same field names, rounding and nearest-rank percentiles); progress on stderr.

use std::io::Write;

use serde_json::{Map, Value, json};

use crate::args::Backend;
use crate::bench_db::Target;
use crate::bulk;

/// Round to 1 decimal (rates), as the harness's `r1`.
pub fn r1(x: f64) -> Value {
    if x.is_finite() { json!((x * 10.0).round() / 10.0) } else { Value::Null }
}

/// Round to 3 decimals (seconds, milliseconds), as the harness's `r3`.
pub fn r3(x: f64) -> Value {
    if x.is_finite() { json!((x * 1000.0).round() / 1000.0) } else { Value::Null }
}

/// Nearest-rank percentile of sorted values, as the harness's `percentile`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

/// A progress line on stderr.
pub fn log(msg: &str) {
    eprintln!("[{}] {msg}", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
}

/// Writes result lines for one backend.
#[derive(Debug, Clone)]
pub struct Emitter {
    system: &'static str,
    backend: Backend,
    run: Option<String>,
}

impl Emitter {
    pub fn new(target: &Target, run: Option<String>) -> Emitter {
        Emitter { system: target.system(), backend: target.backend(), run }
    }

    pub fn system(&self) -> &'static str {
        self.system
    }

    /// The same lines under another system name (a variant of this backend).
    pub fn renamed(&self, system: &'static str) -> Emitter {
        Emitter { system, ..self.clone() }
    }

    /// What was run and how, echoed into every line as the peers echo their settings.
    fn settings(&self) -> Value {
        let store = match self.backend {
            Backend::Sqlite => "SQLite file, WAL, synchronous=NORMAL, one batching writer",
            Backend::Postgres => "PostgreSQL, server defaults (synchronous_commit=on, fsync=on)",
        };
        json!({
            "job": "probe {} (no-op)",
            "delivery": "dispatcher -> consumer route in process (router.oneshot) -> run_tracked -> ack",
            "tracking": "one job_executions row per attempt: running, then success",
            "concurrency": if crate::in_process_worker::global_limit() {
                "C = the probe trigger's maxConcurrency: one limit across processes, counted in the database"
            } else {
                "C = each worker process's own limit (VQS_WORKER_CONCURRENCY), as the peers' C"
            },
            "dispatcher_batch": vqs::DispatcherConfig::default().batch,
            "bulk_enqueue": bulk::API,
            "store": store,
        })
    }

    /// Print `fields` with the common fields (system first, settings, run, ts last). Every
    /// line carries the fields the peers' README asks for, `null` where they do not apply.
    pub fn emit(&self, workload: &str, fields: Value) {
        let mut line = Map::new();
        line.insert("system".into(), json!(self.system));
        line.insert("workload".into(), json!(workload));
        for key in [
            "enqueue_mode",
            "n",
            "concurrency",
            "enqueue_inflight",
            "enqueue_per_s",
            "process_per_s",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "timed_out",
        ] {
            line.insert(key.into(), Value::Null);
        }
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        line.insert("settings".into(), self.settings());
        line.insert("run".into(), json!(self.run));
        line.insert("ts".into(), json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", Value::Object(line));
        let _ = out.flush();
    }
}
