//! Limits per topic (SPEC.md, "Flow control"), on the backend under test (SQLite by default,
//! PostgreSQL with `VQS_TEST_BACKEND=postgres`): the admin API and the CLI (set, clear, show,
//! refusals), a held message saying why and spending nothing, and three real `web serve`
//! processes sharing a rate limit set at runtime through one of them.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use vqs::SendOpts;
use vqs::store::{DeliveryState, ExecutionListParams, ExecutionStatus};

fn put(path: &str, body: &str) -> Request<Body> {
    Request::put(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn delete(path: &str) -> Request<Body> {
    Request::delete(path).header("authorization", format!("Bearer {ADMIN_TOKEN}")).body(Body::empty()).unwrap()
}

async fn executions_of(app: &TestApp, topic: &str) -> Vec<vqs::store::ExecutionRecord> {
    let p = ExecutionListParams { topic: Some(topic.into()), limit: 1000, ..Default::default() };
    app.queue().executions(p).await.unwrap()
}

#[tokio::test]
async fn a_rate_limit_set_through_the_admin_api_holds_and_a_clear_lets_the_rest_run() {
    let app = TestApp::new().await;
    let (status, body) =
        app.call(put("/api/admin/limits/probe", r#"{"rate_limit":{"limit":2,"period_seconds":3600}}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["topic"], "probe");
    assert_eq!(body["in_force"]["rate_limit"], json!({"limit": 2, "period_seconds": 3600, "source": "override"}));
    assert_eq!(body["overrides"]["rate_limit"], json!({"limit": 2, "period_seconds": 3600}));
    assert_eq!(body["defaults"]["rate_limit"], Value::Null);

    let mut sent = Vec::new();
    for _ in 0..5 {
        sent.push(app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id);
    }
    assert_eq!(app.dispatch("probe").await, 2, "a burst of 2");
    assert_eq!(app.dispatch("probe").await, 0, "then nothing until the bucket refills");
    let ran = executions_of(&app, "probe").await;
    assert_eq!(ran.len(), 2);
    // A held message says why, and the wait spent nothing.
    let waiting: Vec<&String> = sent.iter().filter(|id| !ran.iter().any(|e| &&e.message_id == id)).collect();
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{}", waiting[0])).await;
    assert_eq!((m["state"].as_str(), m["held"].as_str()), (Some("pending"), Some("rate_limit")), "{m}");
    assert_eq!((m["attempts"].as_u64(), m["delivery_count"].as_u64()), (Some(0), Some(0)));

    // The queues list and /metrics show the limits in force.
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    let probe = queues.as_array().unwrap().iter().find(|t| t["topic"] == "probe").unwrap();
    assert_eq!(probe["limits"]["rate_limit"]["limit"], 2, "{probe}");
    let (_, metrics) = app.admin_get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.lines().any(|l| l == r#"vqs_topic_limit{topic="probe",limit="rate_limit"} 2"#), "{text}");

    // A patch keeps what it does not name; null clears one.
    let (status, body) = app.call(put("/api/admin/limits/probe", r#"{"concurrency":3}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["in_force"]["concurrency"], json!({"value": 3, "source": "override"}));
    assert_eq!(body["in_force"]["rate_limit"]["limit"], 2);
    let (_, body) = app.call(put("/api/admin/limits/probe", r#"{"rate_limit":null}"#)).await;
    assert_eq!(body["in_force"]["rate_limit"], Value::Null);
    let (_, list) = app.admin_get("/api/admin/limits").await;
    let probe = list["limits"].as_array().unwrap().iter().find(|t| t["topic"] == "probe").unwrap();
    assert_eq!(probe["in_force"]["concurrency"]["value"], 3, "{list}");
    // DELETE clears every override: the rest runs, each message once, on its first attempt.
    let (status, body) = app.call(delete("/api/admin/limits/probe")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["overrides"],
        json!({"concurrency": null, "rate_limit": null, "group_concurrency": null, "group_rate_limit": null})
    );
    assert_eq!(app.dispatch("probe").await, 3);
    for id in &sent {
        assert_eq!(app.attempts(id).await, [(1, "success".to_owned())], "{id}");
    }
    let (_, metrics) = app.admin_get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.lines().any(|l| l == r#"vqs_topic_limit{topic="probe",limit="rate_limit"} 0"#), "{text}");
}

#[tokio::test]
async fn a_concurrency_override_replaces_the_triggers_limit_and_holds_the_rest() {
    let app = TestApp::new().await;
    let (status, _) = app.call(put("/api/admin/limits/probe", r#"{"concurrency":1}"#)).await;
    assert_eq!(status, StatusCode::OK);
    // Hold one lease the way a running job does (a remote receive with no holder).
    let mut sent = Vec::new();
    for _ in 0..3 {
        sent.push(app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id);
    }
    let held = hold_one(&app, &app.consumer("probe")).await;
    assert_eq!(app.dispatch("probe").await, 0, "the group is at the override's limit of 1");
    let waiting = sent.iter().find(|id| **id != held).unwrap();
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{waiting}")).await;
    assert_eq!(m["held"], "concurrency", "{m}");
    // Raised at runtime: the others start.
    app.call(put("/api/admin/limits/probe", r#"{"concurrency":3}"#)).await;
    assert_eq!(app.dispatch("probe").await, 2);
}

/// Lease one due message of `consumer` with no holder, as a running job holds it.
async fn hold_one(app: &TestApp, consumer: &vqs::ConsumerConfig) -> String {
    let held = app
        .queue()
        .store()
        .delivery_claim(vqs::store::DeliveryClaimParams {
            consumer_group: consumer.consumer_group.clone(),
            topic: None,
            message_id: None,
            limit: 1,
            visibility_seconds: 600,
            start_executions: false,
            lease_holder: None,
            max_leased: None,
            leased_here: 0,
            rate_limit: None,
            group_concurrency: None,
            group_rate_limit: None,
            now: app.queue().clock().now(),
        })
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    held[0].message_id.clone()
}

/// The trigger's own `maxConcurrency` (vercel.json, no override) holds a due message the
/// same way, and the message view says so; an override replaces it, as the claim does.
#[tokio::test]
async fn a_message_held_by_the_triggers_max_concurrency_says_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let vercel_json_path = common::vercel_json_with_max_concurrency(dir.path(), 1);
    let vercel_json = vercel_json_path.clone();
    let app = TestApp::with_config(|c| c.vercel_json = vercel_json).await;
    let mut sent = Vec::new();
    for _ in 0..2 {
        sent.push(app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id);
    }
    let consumer = app.consumer("probe");
    assert_eq!(consumer.global_max_concurrency, Some(1));
    let running = hold_one(&app, &consumer).await;
    assert_eq!(app.dispatch("probe").await, 0, "the trigger's maxConcurrency of 1 is taken");
    let waiting = sent.iter().find(|id| **id != running).unwrap();
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{waiting}")).await;
    assert_eq!((m["state"].as_str(), m["held"].as_str()), (Some("pending"), Some("concurrency")), "{m}");
    // The running one is not held.
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{running}")).await;
    assert_eq!(m["held"], Value::Null, "{m}");
    // `web message` reads the same vercel.json and says the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .args(["message", waiting.as_str(), "--json"])
        .env("DATABASE_URL", &app.database_url)
        .env("VQS_VERCEL_JSON", &vercel_json_path)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["held"], "concurrency", "{}", String::from_utf8_lossy(&out.stderr));
    // An override of 2 replaces the trigger's 1: nothing holds it, and it starts.
    app.call(put("/api/admin/limits/probe", r#"{"concurrency":2}"#)).await;
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{waiting}")).await;
    assert_eq!(m["held"], Value::Null, "{m}");
    assert_eq!(app.dispatch("probe").await, 1);
}

/// Group limits changed without a deploy: a group concurrency override groups the topic's
/// subscription and holds each tenant to one at a time while another runs; a group rate
/// override holds a tenant to its bucket; clearing them lets the rest run.
#[tokio::test]
async fn group_limit_overrides_hold_each_group_and_a_clear_lets_the_rest_run() {
    let app = TestApp::new().await;
    let send = |group: &'static str| {
        let opts = SendOpts { group: Some(group.into()), ..SendOpts::default() };
        app.queue().send("probe", b"{}".to_vec(), opts)
    };
    let (status, body) = app.call(put("/api/admin/limits/probe", r#"{"group_concurrency":1}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["in_force"]["group_concurrency"], json!({"value": 1, "source": "override"}));
    for g in ["a", "a", "a", "b"] {
        send(g).await.unwrap();
    }
    // One claim leases at most one of each group (each push runs to its end before the next claim).
    assert_eq!(app.dispatch("probe").await, 2, "one of a, one of b");
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.dispatch("probe").await, 1);

    let rate = r#"{"group_concurrency":null,"group_rate_limit":{"limit":1,"period_seconds":3600}}"#;
    let (status, body) = app.call(put("/api/admin/limits/probe", rate)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut a = Vec::new();
    for g in ["a", "a", "b"] {
        let id = send(g).await.unwrap().message_id;
        if g == "a" {
            a.push(id);
        }
    }
    // Each group's bucket is new: one start each now.
    assert_eq!(app.dispatch("probe").await, 2, "one start of a and one of b this hour");
    assert_eq!(app.dispatch("probe").await, 0, "a's second waits for its bucket");
    let mut waiting = Vec::new();
    for id in &a {
        if app.attempts(id).await.is_empty() {
            waiting.push(id.clone());
        }
    }
    assert_eq!(waiting.len(), 1);
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{}", waiting[0])).await;
    assert_eq!(m["held"], json!("rate_limit"), "{m}");
    let (status, _) = app
        .call(
            Request::delete("/api/admin/limits/probe")
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.dispatch("probe").await, 1, "cleared: the rest runs");
}

#[tokio::test]
async fn the_limits_api_refuses_bad_input_and_writes_nothing() {
    let app = TestApp::new().await;
    let bad: &[(&str, &str)] = &[
        ("{}", "name at least one"),
        ("[]", "JSON object"),
        ("not json", "JSON object"),
        (r#"{"concurrency":0}"#, "from 1 to 1000000"),
        (r#"{"concurrency":-1}"#, "whole number"),
        (r#"{"concurrency":1.5}"#, "whole number"),
        (r#"{"concurrency":"5"}"#, "whole number"),
        (r#"{"concurrency":9223372036854775808}"#, "whole number"),
        (r#"{"concurrency":1000001}"#, "from 1 to 1000000"),
        (r#"{"concurrency":5,"priority":1}"#, "unknown field"),
        (r#"{"rate_limit":5}"#, "period_seconds"),
        (r#"{"rate_limit":{"limit":5}}"#, "period_seconds"),
        (r#"{"rate_limit":{"limit":5,"period_seconds":0}}"#, "period_seconds"),
        (r#"{"rate_limit":{"limit":5,"period_seconds":86401}}"#, "one day"),
        (r#"{"rate_limit":{"limit":0,"period_seconds":10}}"#, "rate_limit.limit"),
        (r#"{"rate_limit":{"limit":1000001,"period_seconds":10}}"#, "rate_limit.limit"),
        (r#"{"rate_limit":{"limit":5,"period_seconds":10,"x":1}}"#, "object"),
        (r#"{"group_concurrency":0}"#, "group_concurrency must be"),
        (r#"{"group_rate_limit":{"limit":5,"period_seconds":0}}"#, "group_rate_limit.period_seconds"),
    ];
    for (body, says) in bad {
        let (status, answer) = app.call(put("/api/admin/limits/probe", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{body}: {error}");
    }
    let (status, _) = app.call(put("/api/admin/limits/no-such-job", r#"{"concurrency":1}"#)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.call(put("/api/admin/limits/pro%00be", r#"{"concurrency":1}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unauthenticated = Request::put("/api/admin/limits/probe").body(Body::from(r#"{"concurrency":1}"#)).unwrap();
    assert_eq!(app.call(unauthenticated).await.0, StatusCode::UNAUTHORIZED);
    assert!(app.queue().store().topic_limits_list().await.unwrap().is_empty(), "nothing written");
    // Sixteen identical PUTs at once: all answer the same, one row.
    let calls = (0..16).map(|_| app.call(put("/api/admin/limits/probe", r#"{"concurrency":4}"#)));
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["in_force"]["concurrency"]["value"], 4);
    }
    assert_eq!(app.queue().store().topic_limits_list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_cli_sets_shows_and_clears_limits() {
    let app = TestApp::new().await;
    let run = |args: &[&str]| app.run_cli(args);
    let (ok, out, err) = run(&["limits", "set", "probe", "--rate", "5/10", "--concurrency", "2", "--json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["in_force"]["rate_limit"], json!({"limit": 5, "period_seconds": 10, "source": "override"}));
    assert_eq!(v["in_force"]["concurrency"], json!({"value": 2, "source": "override"}));
    let (ok, out, _) = run(&["limits"]);
    assert!(ok);
    assert!(
        out.lines().any(|l| l.starts_with("probe ") && l.contains("2 (override)") && l.contains("5/10s (override)")),
        "{out}"
    );
    let (ok, out, _) = run(&["limits", "set", "probe", "--rate", "none", "--json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["in_force"]["rate_limit"], Value::Null);
    let (ok, out, _) = run(&["limits", "clear", "probe", "--json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["in_force"]["concurrency"], Value::Null);
    // Refusals say what to do.
    let (ok, _, err) = run(&["limits", "set", "probe", "--rate", "5"]);
    assert!(!ok);
    assert!(err.contains("N/S"), "{err}");
    let (ok, _, err) = run(&["limits", "set", "probe", "--concurrency", "0"]);
    assert!(!ok);
    assert!(err.contains("from 1 to 1000000"), "{err}");
    let (ok, _, err) = run(&["limits", "set", "probe", "--group-concurrency", "0"]);
    assert!(!ok);
    assert!(err.contains("from 1 to 1000000"), "{err}");
    let (ok, _, err) = run(&["limits", "set", "probe"]);
    assert!(!ok);
    assert!(err.contains("at least one"), "{err}");
    assert!(app.queue().store().topic_limits_list().await.unwrap().is_empty());
}

/// Three real processes: a rate limit set through one at runtime is in force on all three
/// within a second (PostgreSQL: NOTIFY; SQLite: the 1 s poll); between them they start
/// exactly the burst, the rest wait with no attempt spent; cleared through another, the
/// backlog drains, each message once, on its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_set_through_one_process_holds_across_three() {
    const BACKLOG: usize = 30;
    const BURST: usize = 3;
    let app = TestApp::new().await;
    let env = [("VQS_ADMIN_TOKEN", ADMIN_TOKEN)];
    let mut procs = [
        common::serve(&app.database_url, &env),
        common::serve(&app.database_url, &env),
        common::serve(&app.database_url, &env),
    ];
    let mut urls = Vec::new();
    for p in procs.iter_mut() {
        urls.push(common::serving(p).await);
    }
    let client = reqwest::Client::new();
    let r = client
        .put(format!("{}/api/admin/limits/probe", urls[0]))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(format!(r#"{{"rate_limit":{{"limit":{BURST},"period_seconds":3600}}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The promise: in force on every process within a second.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut sent = Vec::new();
    for _ in 0..BACKLOG {
        sent.push(app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while executions_of(&app, "probe").await.iter().filter(|e| e.status == ExecutionStatus::Success).count() < BURST {
        assert!(Instant::now() < deadline, "the burst did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Watch the three a while: nothing more starts (each polls or is woken meanwhile).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(executions_of(&app, "probe").await.len(), BURST, "only the burst ran across three processes");
    let mut waiting = Vec::new();
    for id in &sent {
        let m = app.queue().message(id).await.unwrap().unwrap();
        let d = &m.deliveries[0];
        if d.state == DeliveryState::Pending {
            assert_eq!((d.delivery_count, d.attempts), (0, 0), "{id}: the wait spent nothing");
            waiting.push(id.clone());
        }
    }
    assert_eq!(waiting.len(), BACKLOG - BURST);
    let r = client.get(format!("{}/api/admin/messages/{}", urls[2], waiting[0])).bearer_auth(ADMIN_TOKEN).send();
    assert_eq!(r.await.unwrap().json::<Value>().await.unwrap()["held"], "rate_limit", "another process says why");

    let r = client.delete(format!("{}/api/admin/limits/probe", urls[1])).bearer_auth(ADMIN_TOKEN).send().await;
    assert_eq!(r.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = executions_of(&app, "probe").await.iter().filter(|e| e.status == ExecutionStatus::Success).count();
        if done == BACKLOG {
            break;
        }
        for p in procs.iter_mut() {
            assert!(p.try_wait().unwrap().is_none(), "a serving process exited on its own");
        }
        assert!(Instant::now() < deadline, "only {done} of {BACKLOG} ran after the clear");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &sent {
        assert_eq!(app.attempts(id).await, [(1, "success".to_owned())], "{id}");
    }
}

/// SPEC.md, "Flow control": "a snooze does not count as a start". One start a minute: the
/// job snoozes once and gives its start back, so the next message starts at once; the
/// snoozed message then waits for the bucket like any other start.
#[tokio::test]
async fn a_snoozed_job_gives_its_rate_limit_start_back() {
    let clock = vqs::Clock::manual(chrono::Utc::now());
    let app = TestApp::with_clock(clock.clone()).await;
    let (status, body) =
        app.call(put("/api/admin/limits/probe", r#"{"rate_limit":{"limit":1,"period_seconds":60}}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let queue = app.queue().clone();
    let send = |payload: &'static str| {
        let queue = queue.clone();
        async move { queue.send("probe", payload.as_bytes().to_vec(), SendOpts::default()).await.unwrap().message_id }
    };
    let snoozer = send(r#"{"snooze_times":1}"#).await;
    assert_eq!(app.dispatch("probe").await, 1, "the bucket's one start");
    let ran = executions_of(&app, "probe").await;
    assert_eq!(ran.iter().map(|e| e.status).collect::<Vec<_>>(), [ExecutionStatus::Snoozed]);

    let next = send("{}").await;
    assert_eq!(app.dispatch("probe").await, 1, "the snooze gave its start back: the next message starts at once");
    let ran = executions_of(&app, "probe").await;
    assert!(ran.iter().any(|e| e.message_id == next && e.status == ExecutionStatus::Success), "{ran:?}");

    // The snoozed message is due again after its second, and waits for the bucket.
    clock.advance(Duration::from_secs(2));
    assert_eq!(app.dispatch("probe").await, 0, "that start was taken by the next message");
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{snoozer}")).await;
    assert_eq!(m["held"], json!("rate_limit"), "{m}");
    clock.advance(Duration::from_secs(60));
    assert_eq!(app.dispatch("probe").await, 1);
    let ran = executions_of(&app, "probe").await;
    assert!(ran.iter().any(|e| e.message_id == snoozer && e.status == ExecutionStatus::Success), "{ran:?}");
}
