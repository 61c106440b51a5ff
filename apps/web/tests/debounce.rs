//! Replace and debounce on a key (SPEC.md, "Job outcomes"): `on_duplicate: "replace"`
//! through the admin API, `/_vqs` (`Vqs-On-Duplicate`) and the CLI. Run on PostgreSQL with
//! `VQS_TEST_BACKEND=postgres`.

mod common;

use std::process::Command;
use std::time::Duration;

use axum::body::Body;
use chrono::{DateTime, Utc};
use common::{ADMIN_TOKEN, QUEUE_SECRET, TestApp};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use vqs::Clock;
use vqs::store::DeliveryState;

fn t0() -> DateTime<Utc> {
    "2026-01-05T10:00:00Z".parse().unwrap()
}

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn enqueue(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.call(post("/api/admin/messages", body)).await
}

/// Three sends of one key, each replacing the last and due 2 s after it: the job runs once,
/// 2 s after the last send, with the last payload (the first two would fail fatally).
#[tokio::test]
async fn a_debounce_runs_the_job_once_with_the_last_payload() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let send = |payload: Value| {
        json!({"topic": "probe", "payload": payload, "idempotency_key": "debounce", "delay_seconds": 2,
               "on_duplicate": "replace"})
    };
    let (status, first) = enqueue(&app, send(json!({"fatal": true}))).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!((&first["duplicate"], &first["replaced"]), (&json!(false), &json!(false)));
    let id = first["messageId"].as_str().unwrap().to_owned();

    clock.advance(Duration::from_secs(1));
    assert_eq!(app.dispatch("probe").await, 0, "not due: 2 s after the first send");
    let (status, second) = enqueue(&app, send(json!({"fatal": true, "sleep_ms": 1}))).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second, json!({"messageId": id, "duplicate": false, "replaced": true}));

    clock.advance(Duration::from_millis(1500));
    assert_eq!(app.dispatch("probe").await, 0, "2.5 s after the first send, but 1.5 s after the second");
    let (status, third) = enqueue(&app, send(json!({"sleep_ms": 2}))).await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
    assert_eq!(third, json!({"messageId": id, "duplicate": false, "replaced": true}));

    clock.advance(Duration::from_millis(1900));
    assert_eq!(app.dispatch("probe").await, 0, "1.9 s after the last send");
    clock.advance(Duration::from_millis(100));
    assert_eq!(app.dispatch("probe").await, 1, "due 2 s after the last send");
    clock.advance(Duration::from_secs(60));
    assert_eq!(app.dispatch("probe").await, 0, "once");

    assert_eq!(app.attempts(&id).await, vec![(1, "success".to_owned())], "ran once, with the last payload");
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{id}")).await;
    assert_eq!(m["payload"], json!({"sleep_ms": 2}));
    assert_eq!(m["state"], DeliveryState::Acked.as_str());
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 0, "no earlier payload ran");

    // Finished: the next replace of the key is a new message, which holds the key from then on.
    let (_, after) = enqueue(&app, send(json!({}))).await;
    assert_eq!((&after["duplicate"], &after["replaced"]), (&json!(false), &json!(false)));
    assert_ne!(after["messageId"], json!(id));
    let (_, skipped) = enqueue(&app, json!({"topic": "probe", "payload": {}, "idempotency_key": "debounce"})).await;
    assert_eq!(skipped, json!({"messageId": after["messageId"], "duplicate": true, "replaced": false}));
}

#[tokio::test]
async fn the_admin_api_refuses_an_unknown_on_duplicate_and_a_replace_without_a_key() {
    let app = TestApp::new().await;
    for bad in [json!("REPLACE"), json!("overwrite"), json!("replace\u{0}"), json!(1), json!("x".repeat(100_000))] {
        let (status, body) =
            enqueue(&app, json!({"topic": "probe", "payload": {}, "idempotency_key": "k", "on_duplicate": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let text = body.to_string();
        assert!(text.contains("skip") && text.contains("replace"), "names the allowed values: {text}");
    }
    let (status, body) = enqueue(&app, json!({"topic": "probe", "payload": {}, "on_duplicate": "replace"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("idempotency key"), "{body}");
    let (status, body) =
        enqueue(&app, json!({"topic": "probe", "payload": {}, "idempotency_key": "k", "on_duplicate": "skip"})).await;
    assert_eq!((status, &body["replaced"]), (StatusCode::CREATED, &json!(false)), "{body}");
}

fn vqs_publish(headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut r = Request::post("/_vqs/api/v3/topic/probe")
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

/// `/_vqs` publish: `Vqs-On-Duplicate: replace` (a vqs extension) replaces the key's waiting
/// message and says so in `Vqs-Replaced`; anything but skip or replace is a 400.
#[tokio::test]
async fn vqs_publish_replaces_with_the_on_duplicate_header() {
    use tower::ServiceExt;
    let app = TestApp::new().await;
    let key = ("vqs-idempotency-key", "k");
    let delay = ("vqs-delay-seconds", "3600");
    let first = app.router.clone().oneshot(vqs_publish(&[key, delay], r#"{"fatal":true}"#)).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let id = first.headers()["vqs-message-id"].to_str().unwrap().to_owned();
    let again = app
        .router
        .clone()
        .oneshot(vqs_publish(&[key, delay, ("vqs-on-duplicate", "replace")], r#"{"sleep_ms":3}"#))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["vqs-message-id"].to_str().unwrap(), id, "the same message");
    assert_eq!(again.headers().get("vqs-replaced").map(|v| v.to_str().unwrap()), Some("true"));
    assert!(again.headers().get("vqs-duplicate").is_none());
    let m = app.queue().message(&id).await.unwrap().unwrap();
    assert_eq!(m.payload, json!({"sleep_ms": 3}));
    assert_eq!(m.idempotency_key.as_deref(), Some("k"));

    let skipped = app.router.clone().oneshot(vqs_publish(&[key, ("vqs-on-duplicate", "skip")], "{}")).await.unwrap();
    assert_eq!(skipped.headers().get("vqs-duplicate").map(|v| v.to_str().unwrap()), Some("true"));
    let bad = app.router.clone().oneshot(vqs_publish(&[key, ("vqs-on-duplicate", "overwrite")], "{}")).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.queue().message(&id).await.unwrap().unwrap().payload, json!({"sleep_ms": 3}), "unchanged");
}

/// `web enqueue --on-duplicate replace`.
#[tokio::test]
async fn the_cli_replaces_with_on_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::fresh_database_url(&dir).await;
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_web"))
            .args(args)
            .env("DATABASE_URL", &database_url)
            .env("VQS_VERCEL_JSON", common::repo_root().join("vercel.json"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the web binary");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let json_of = |args: &[&str]| -> Value {
        let (ok, stdout, stderr) = run(args);
        assert!(ok, "{args:?} failed: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {stdout}"))
    };
    let send = ["enqueue", "probe", "--idempotency-key", "k", "--delay", "3600", "--json"];
    let first = json_of(&[&send[..2], &[r#"{"sleep_ms":1}"#], &send[2..]].concat());
    let second = json_of(&[&send[..2], &[r#"{"sleep_ms":2}"#], &send[2..], &["--on-duplicate", "replace"]].concat());
    assert_eq!(second, json!({"messageId": first["messageId"], "duplicate": false, "replaced": true}));
    let (ok, _, stderr) = run(&[&send[..2], &["{}"], &send[2..], &["--on-duplicate", "overwrite"]].concat());
    assert!(!ok && stderr.contains("skip") && stderr.contains("replace"), "{stderr}");
    let (ok, stdout, stderr) = run(&["message", first["messageId"].as_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let m: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(m["payload"], json!({"sleep_ms": 2}));
}
