//! Bad input, as a matrix: each a clear 4xx (or a refusal at start-up) that says what is
//! wrong, and nothing lost or half-written — the message a malformed delivery named is still
//! there and runs once afterwards; a refused publish queues nothing.

mod common;

use axum::body::Body;
use common::{ADMIN_TOKEN, QUEUE_SECRET, TestApp};
use http::{Request, StatusCode};
use serde_json::Value;
use vqs::SendOpts;

fn bearer() -> String {
    format!("Bearer {QUEUE_SECRET}")
}

fn push(path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Request<Body> {
    let mut req = Request::post(path).header("authorization", bearer());
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    req.body(Body::from(body)).unwrap()
}

fn error_of(body: &Value) -> String {
    body["error"].as_str().map(str::to_owned).unwrap_or_else(|| body.to_string())
}

#[tokio::test]
async fn malformed_deliveries_are_refused_and_the_message_still_runs_once() {
    let app = TestApp::new().await;
    let id = app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    let group = app.consumer("probe").consumer_group.clone();
    let good: Vec<(&str, String)> = vec![
        ("ce-type", "com.vercel.queue.v2beta".into()),
        ("ce-vqsqueuename", "probe".into()),
        ("ce-vqsconsumergroup", group.clone()),
        ("ce-vqsmessageid", id.clone()),
        ("ce-vqsdeliverycount", "1".into()),
        ("content-type", "application/json".into()),
    ];
    // The good headers with `name` set to `value` (left out when `value` is empty).
    let with = |name: &'static str, value: &str| -> Vec<(&'static str, String)> {
        let mut h: Vec<(&'static str, String)> = good.iter().filter(|(k, _)| *k != name).cloned().collect();
        if !value.is_empty() {
            h.push((name, value.to_owned()));
        }
        h
    };
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (with("ce-type", ""), "missing header ce-type"),
        (with("ce-type", "com.vercel.queue.v1"), "unsupported ce-type"),
        (with("ce-vqsqueuename", ""), "missing header ce-vqsqueuename"),
        (with("ce-vqsconsumergroup", ""), "missing header ce-vqsconsumergroup"),
        (with("ce-vqsmessageid", ""), "missing header ce-vqsmessageid"),
        (with("ce-vqsdeliverycount", "zero"), "ce-vqsdeliverycount must be an integer >= 1"),
        (with("ce-vqsdeliverycount", "0"), "ce-vqsdeliverycount must be an integer >= 1"),
        (with("ce-vqsregion", "moon"), "is not a region"),
        (with("ce-vqscreatedat", "yesterday"), "ce-vqscreatedat"),
        (with("ce-vqsexpiresat", "2026-13-45T99:00:00Z"), "ce-vqsexpiresat"),
        (with("ce-vqsqueuename", "sync-patient"), "probe"),
    ];
    for (headers, want) in &cases {
        let (status, body) = app.call(push("/api/queue/probe", headers, b"{}".to_vec())).await;
        assert!(status.is_client_error(), "{headers:?}: {status} {body}");
        assert!(error_of(&body).contains(want), "{headers:?}: wanted {want:?} in {body}");
    }
    // A header that is not UTF-8 text.
    let mut req = push("/api/queue/probe", &good, b"{}".to_vec());
    req.headers_mut().insert("ce-vqsmessageid", http::HeaderValue::from_bytes(b"\xff\xfe").unwrap());
    let (status, body) = app.call(req).await;
    assert!(status.is_client_error(), "{status} {body}");
    // Nothing half-written: no attempt recorded, the message still waits and runs once.
    assert!(app.attempts(&id).await.is_empty(), "no attempt was recorded");
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "success".to_owned())]);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_queue_nothing() {
    let app = TestApp::new().await;
    let huge = vec![b'x'; vqs::MAX_PAYLOAD_BYTES + 1];
    let publish = Request::post("/_vqs/api/v3/topic/probe")
        .header("authorization", bearer())
        .header("content-type", "application/json")
        .body(Body::from(huge.clone()))
        .unwrap();
    let (status, body) = app.call(publish).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, body) = app.call(push("/api/queue/probe", &[], huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(error_of(&body).contains("bytes"), "{body}");
    assert_eq!(app.queue().stats().await.unwrap(), vec![], "nothing queued");
}

#[tokio::test]
async fn unknown_topics_are_refused_where_a_message_would_wait_forever() {
    let app = TestApp::new().await;
    let (status, body) = app.call(push("/api/queue/no-such-job", &[], b"{}".to_vec())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The admin API and the CLI enqueue for jobs: a typo would queue a message nobody takes.
    let req = Request::post("/api/admin/messages")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"topic":"prob","payload":{}}"#))
        .unwrap();
    let (status, body) = app.call(req).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error_of(&body).contains("no job or consumer for topic \"prob\""), "{body}");
    assert!(error_of(&body).contains("probe"), "it lists the topics there are: {body}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .args(["enqueue", "prob", "{}"])
        .env("DATABASE_URL", &app.database_url)
        .env("VQS_VERCEL_JSON", common::repo_root().join("vercel.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no job or consumer for topic \"prob\""), "{stderr}");
    assert_eq!(app.queue().stats().await.unwrap(), vec![], "nothing queued");
}

#[tokio::test]
async fn the_queue_api_refuses_bad_keys_delays_handles_and_timeouts() {
    let app = TestApp::new().await;
    let publish = |headers: &[(&str, &str)]| {
        let mut r = Request::post("/_vqs/api/v3/topic/probe").header("authorization", bearer());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(Body::from("{}")).unwrap()
    };
    let long_key = "k".repeat(vqs::MAX_IDEMPOTENCY_KEY_LEN + 1);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("vqs-idempotency-key", long_key.as_str())], "idempotency key"),
        (vec![("vqs-idempotency-key", "")], "idempotency key"),
        (vec![("vqs-delay-seconds", "1.5")], "vqs-delay-seconds"),
        (vec![("vqs-delay-seconds", "99999999999999999999")], "vqs-delay-seconds"),
        (vec![("vqs-delay-seconds", "-5")], "vqs-delay-seconds"),
        (vec![("vqs-retention-seconds", "abc")], "vqs-retention-seconds"),
        (vec![("vqs-retention-seconds", "99999999")], "vqs-retention-seconds"),
    ];
    for (headers, want) in &cases {
        let (status, body) = app.call(publish(headers)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?}: {body}");
        assert!(error_of(&body).contains(want), "{headers:?}: {body}");
    }
    assert_eq!(app.queue().stats().await.unwrap(), vec![], "nothing queued");
    // A lease handle that is not one, and visibility timeouts out of range.
    let lease = "/_vqs/api/v3/topic/probe/consumer/workers/lease";
    let call = |method: &str, path: String, body: &'static str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", bearer())
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, body) = app.call(call("DELETE", format!("{lease}/not-a-handle"), "")).await;
    assert!(status.is_client_error(), "{status} {body}");
    for timeout in [r#"{"visibilityTimeoutSeconds":-1}"#, r#"{"visibilityTimeoutSeconds":"soon"}"#, "not json"] {
        let (status, body) = app.call(call("PATCH", format!("{lease}/m.t"), timeout)).await;
        assert!(status.is_client_error(), "{timeout}: {status} {body}");
    }
}

/// `web serve` with `vercel.json` in `text` (no file at all for `None`): it must refuse to
/// start, naming the file and the problem (and, when the file is missing or does not parse,
/// before it touches the database).
fn serve_refuses(text: Option<&str>, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vercel.json");
    if let Some(text) = text {
        std::fs::write(&path, text).unwrap();
    }
    let db = dir.path().join("vqs.db");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .arg("serve")
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("VQS_VERCEL_JSON", &path)
        .env("PORT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must stop by itself; one that serves is killed (not hung on) and fails the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some_and(|c| c != 0), "started with {text:?}: {stderr}");
    assert!(stderr.contains("vercel.json"), "names the file: {stderr}");
    assert!(stderr.contains(want), "wanted {want:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    if stderr.contains("invalid ") || text.is_none() {
        assert!(!db.exists(), "a file that is missing or does not parse stops start-up before the database is opened");
    }
}

#[test]
fn an_invalid_vercel_json_stops_start_up_with_the_reason() {
    serve_refuses(Some("{ not json"), "line 1");
    serve_refuses(Some(r#"{"crons":[{"path":"/api/cron/cleanup","schedule":"every day"}]}"#), "every day");
    serve_refuses(Some(r#"{"crons":[{"path":"/api/cron/cleanup","schedule":"61 * * * *"}]}"#), "61 * * * *");
    serve_refuses(Some(r#"{"crons":[{"path":"/api/cron/nope","schedule":"0 * * * *"}]}"#), "/api/cron/nope");
    serve_refuses(Some(r#"{"crons":"yes"}"#), "crons");
}

#[test]
fn a_missing_vercel_json_stops_start_up_and_says_where_it_looked() {
    // Started from the wrong folder, the app would otherwise run with no queues and no crons.
    serve_refuses(None, "set VQS_VERCEL_JSON");
}
