//! Hostile and careless settings: every setting is range-checked at start-up with a message
//! naming the variable, the value and the range; the engine's date and count arithmetic at
//! the extremes neither panics nor wraps; a background task that panics is logged,
//! restarted, and health says so. Both backends (VQS_TEST_BACKEND).

mod common;

use std::time::Duration;

use common::TestApp;
use http::StatusCode;
use vqs::{RestartPolicy, RetentionConfig, TaskState};

fn web_command(dir: &tempfile::TempDir) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_web"));
    cmd.arg("migrate").env("DATABASE_URL", format!("sqlite://{}", dir.path().join("x.db").display()));
    cmd
}

#[test]
fn out_of_range_settings_stop_start_up_naming_variable_value_and_range() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, range) in [
        ("VQS_RETENTION_DEAD_LETTERS", "99999999d", "from 1s to 3650d"),
        ("VQS_RETENTION_DEAD_LETTERS", "18446744073709551615s", "from 1s to 3650d"),
        ("VQS_RETENTION_MESSAGES", "0s", "from 1s to 3650d"),
        ("VQS_RETENTION_EXECUTIONS", "-1d", "from 1s to 3650d"),
        ("VQS_RETENTION_CRON_RUNS", "3651d", "from 1s to 3650d"),
        ("VQS_RETENTION_EXECUTIONS_MAX", "18446744073709551615", "from 0 to 1000000000000"),
        ("VQS_RETENTION_MESSAGES_MAX", "-1", "from 0 to 1000000000000"),
        ("VQS_PRUNE_BATCH", "4294967296", "from 1 to 100000"),
        ("VQS_LEASE_SECONDS", "0", "from 1 to 3600"),
        ("VQS_RETRY_DELAY_SECONDS", "99999999999", "from 1 to 3600"),
        ("PORT", "65536", "from 0 to 65535"),
        ("VQS_HTTP_HEADER_TIMEOUT_SECONDS", "0", "from 1 to 3600"),
        ("VQS_HTTP_BODY_TIMEOUT_SECONDS", "18446744073709551615", "from 1 to 3600"),
        ("VQS_HTTP_IDLE_TIMEOUT_SECONDS", "1e3", "from 1 to 3600"),
        ("VQS_HTTP_MAX_CONNECTIONS", "0", "from 1 to 1000000"),
        ("VQS_HTTP_MAX_BODY_BYTES", "1", "from 1024 to 1073741824"),
        ("VQS_SHUTDOWN_GRACE_SECONDS", "86400", "from 1 to 3600"),
        ("VQS_WORKER_CONCURRENCY", "0", "from 1 to 10000"),
        ("VQS_WORKER_CONCURRENCY", "10001", "from 1 to 10000"),
    ] {
        let out = web_command(&dir).env(var, value).output().unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var) && stderr.contains(&format!("{value:?}")), "{var}={value}: {stderr}");
        assert!(stderr.contains(range), "{var}={value} does not state the range {range}: {stderr}");
    }
}

#[cfg(unix)]
#[test]
fn a_setting_that_is_not_utf8_is_refused_not_ignored() {
    use std::os::unix::ffi::OsStringExt;
    let dir = tempfile::tempdir().unwrap();
    for var in ["VQS_RETENTION_DEAD_LETTERS", "VQS_ADMIN_TOKEN", "VQS_HTTP_MAX_CONNECTIONS"] {
        let value = std::ffi::OsString::from_vec(vec![b'7', 0xff, b'd']);
        let out = web_command(&dir).env(var, value).output().unwrap();
        assert!(!out.status.success(), "{var} as non-UTF-8 was ignored");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{var} is not valid UTF-8")), "{stderr}");
    }
}

#[test]
fn setting_parsers_refuse_the_extremes_without_panicking() {
    use web::config::{MAX_RETENTION_SETTING, duration_setting, number_setting};
    let (min, max) = (Duration::from_secs(1), MAX_RETENTION_SETTING);
    for bad in ["99999999d", "18446744073709551615s", "18446744073709551616s", "0s", "-0s", "7d\0", "\0", "7 d", "7dd"]
    {
        let e = duration_setting("X", bad, min, max).unwrap_err().to_string();
        assert!(e.contains("X must be a duration from 1s to 3650d") && e.contains(&format!("{bad:?}")), "{e}");
    }
    assert_eq!(duration_setting("X", "3650d", min, max).unwrap(), max);
    for bad in ["18446744073709551616", "-1", "1\0", "0x10", ""] {
        assert!(number_setting("N", bad, 1, 10, "rows").unwrap_err().to_string().contains("from 1 to 10"));
    }
    assert_eq!(number_setting("N", u64::MAX.to_string().as_str(), 0, u64::MAX, "rows").unwrap(), u64::MAX);
}

/// Retention at the extremes the engine can be handed (a library user is not behind the
/// settings' range check): a pass neither panics nor wraps a cut-off into the future
/// (which deleted every dead letter), and the backend's writer keeps working afterwards.
#[tokio::test]
async fn maintenance_at_extreme_retentions_keeps_everything_and_keeps_working() {
    let app = TestApp::new().await;
    let job = app.queue().job(jobs::Probe);
    job.perform_later(jobs::ProbeParams { fatal: Some(true), ..Default::default() }).await.unwrap();
    job.perform_later(jobs::ProbeParams::default()).await.unwrap();
    assert_eq!(app.dispatch("probe").await, 2);
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 1);
    for seconds in [u64::MAX, i64::MAX as u64, 99_999_999 * 86_400, i64::MAX as u64 / 1000 + 1] {
        let r = RetentionConfig {
            executions: Duration::from_secs(seconds),
            max_executions: u64::MAX,
            messages: Duration::from_secs(seconds),
            max_messages: u64::MAX,
            cron_runs: Duration::from_secs(seconds),
            max_cron_runs: u64::MAX,
            dead_letters: Duration::from_secs(seconds),
            batch: u32::MAX,
        };
        let report = app.queue().maintenance(&r).await.unwrap_or_else(|e| panic!("{seconds} s: {e}"));
        assert_eq!(report.dead_letters_pruned, 0, "{seconds} s: {report:?}");
        assert_eq!(report.executions_pruned, 0, "{seconds} s: {report:?}");
        assert_eq!(report.finished_messages_pruned, 0, "{seconds} s: {report:?}");
    }
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 1, "the dead letter stays");
    // The writer still takes work.
    job.perform_later(jobs::ProbeParams::default()).await.unwrap();
    assert_eq!(app.dispatch("probe").await, 1);
    let (status, body) = app.call(get("/api/health")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")), "{body}");
}

fn get(path: &str) -> http::Request<axum::body::Body> {
    http::Request::get(path).body(axum::body::Body::empty()).unwrap()
}

async fn health_until(app: &TestApp, want: &str) -> (StatusCode, serde_json::Value) {
    for _ in 0..2000 {
        let (status, body) = app.call(get("/api/health")).await;
        if body["status"] == want {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("health never turned {want}");
}

/// A background task's panic (injected: the task the supervisor runs panics) is restarted
/// after its back-off; meanwhile readiness is `down` naming the task (not the panic's text,
/// which may quote data), the admin view shows the cause, and liveness stays 200.
#[tokio::test]
async fn a_panicking_background_task_is_restarted_and_health_reports_it() {
    let app = TestApp::new().await;
    let slow = RestartPolicy { max_restarts: 3, window: Duration::from_secs(3600), backoff: Duration::from_secs(3600) };
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let r = runs.clone();
    let task = app.state.tasks.with_restart_policy(slow).supervise("maintenance", move || {
        r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { panic!("injected: date overflow near patient 42") }
    });
    let (status, body) = health_until(&app, "down").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reasons"], serde_json::json!(["background task maintenance is restarting after a panic"]));
    assert!(body.get("tasks").is_none() && !body.to_string().contains("patient 42"), "public: {body}");
    let (_, admin) = app.admin_get("/api/health").await;
    assert_eq!(admin["tasks"][0]["name"], "maintenance");
    assert_eq!(admin["tasks"][0]["state"], "restarting");
    assert_eq!(admin["tasks"][0]["restarts"], 1);
    assert_eq!(admin["tasks"][0]["last_panic"], "injected: date overflow near patient 42");
    assert_eq!(app.call(get("/api/health/live")).await.0, StatusCode::OK);
    task.abort();
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A task that keeps panicking past its policy is failed for good: liveness answers 503 (a
/// restart of the process would help) and `Supervisor::failed` resolves (`serve` exits).
#[tokio::test]
async fn a_task_that_cannot_be_restarted_fails_liveness() {
    let app = TestApp::new().await;
    assert_eq!(app.call(get("/api/health/live")).await.0, StatusCode::OK);
    let never = RestartPolicy { max_restarts: 1, window: Duration::from_secs(3600), backoff: Duration::from_millis(1) };
    app.state.tasks.with_restart_policy(never).supervise("dispatcher", || async { panic!("always") });
    let failed = app.state.tasks.failed().await;
    assert_eq!((failed.name.as_str(), failed.state), ("dispatcher", TaskState::Failed));
    let (status, body) = app.call(get("/api/health/live")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = app.call(get("/api/health")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("down")), "{body}");
}

/// Readiness splits ok / degraded / down: a failing cron is `degraded` — 200, or 503 with
/// `?strict=1` — and the public body carries status and reasons only.
#[tokio::test]
async fn a_failing_cron_degrades_readiness_and_strict_turns_it_503() {
    let app = TestApp::new().await;
    let (status, body) = app.call(get("/api/health")).await;
    assert_eq!((status, body.clone()), (StatusCode::OK, serde_json::json!({"status": "ok", "reasons": []})));
    let cron = app.state.vercel.crons.first().expect("vercel.json has a cron").clone();
    let store = app.queue().store();
    let now = app.queue().clock().now();
    let id = store
        .cron_run_start(vqs::store::CronRunStartParams {
            path: cron.path.clone(),
            schedule: cron.schedule.clone(),
            scheduled_at: now,
            now,
        })
        .await
        .unwrap()
        .expect("a new run");
    store
        .cron_run_finish(vqs::store::CronRunFinishParams {
            id,
            status_code: Some(500),
            success: false,
            error: Some("answered 500".into()),
            now,
        })
        .await
        .unwrap();
    let (status, body) = app.call(get("/api/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"status": "degraded", "reasons": ["1 cron(s) failing"]}));
    assert_eq!(app.call(get("/api/health?strict=1")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let (_, admin) = app.admin_get("/api/health").await;
    assert_eq!(admin["database"], "ok");
    assert!(admin["queues"].is_object() && admin["crons"][0]["state"] == "failing", "{admin}");
}
