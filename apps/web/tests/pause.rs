//! Pausing a topic (SPEC.md, "Flow control"), on the backend under test (SQLite by default,
//! PostgreSQL with `VQS_TEST_BACKEND=postgres`): the admin API, the CLI and their refusals;
//! two real `web serve` processes on one database, paused through one of them — neither
//! starts new work, a job already running finishes, and a resume through the other drains
//! the backlog, each message run once on its first attempt.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use vqs::SendOpts;
use vqs::store::{DeliveryState, ExecutionListParams, ExecutionStatus};

fn post(path: &str) -> Request<Body> {
    Request::post(path).header("authorization", format!("Bearer {ADMIN_TOKEN}")).body(Body::empty()).unwrap()
}

fn paused_in(queues: &Value, topic: &str) -> Option<bool> {
    queues.as_array()?.iter().find(|t| t["topic"] == topic)?["paused"].as_bool()
}

async fn executions_of(app: &TestApp, topic: &str) -> Vec<vqs::store::ExecutionRecord> {
    let p = ExecutionListParams { topic: Some(topic.into()), limit: 1000, ..Default::default() };
    app.queue().executions(p).await.unwrap()
}

#[tokio::test]
async fn pause_and_resume_through_the_admin_api() {
    let app = TestApp::new().await;
    let (status, body) = app.call(post("/api/admin/queues/probe/pause")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"topic": "probe", "paused": true})));
    // Publishing still works; the message says why it does not run.
    let sent = app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap();
    assert_eq!(app.dispatch("probe").await, 0, "nothing starts while paused");
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{}", sent.message_id)).await;
    assert_eq!((m["state"].as_str(), m["held"].as_str()), (Some("pending"), Some("paused")), "{m}");
    assert_eq!((m["attempts"].as_u64(), m["delivery_count"].as_u64()), (Some(0), Some(0)));
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(paused_in(&queues, "probe"), Some(true), "{queues}");

    // /metrics has the gauge.
    let (_, metrics) = app.admin_get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.lines().any(|l| l == "vqs_topic_paused{topic=\"probe\"} 1"), "{text}");

    let (status, body) = app.call(post("/api/admin/queues/probe/resume")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"topic": "probe", "paused": false})));
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{}", sent.message_id)).await;
    assert!(m.get("held").is_none(), "{m}");
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&sent.message_id).await, [(1, "success".to_owned())], "the wait spent no attempt");
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(paused_in(&queues, "probe"), Some(false));
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(metrics.as_str().unwrap_or_default().lines().any(|l| l == "vqs_topic_paused{topic=\"probe\"} 0"));
}

#[tokio::test]
async fn a_paused_topic_holds_only_itself() {
    let app = TestApp::new().await;
    app.call(post("/api/admin/queues/probe/pause")).await;
    let held = app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap();
    let free = app.queue().send("cleanup", b"{}".to_vec(), SendOpts::default()).await.unwrap();
    assert_eq!(app.dispatch("probe").await, 0);
    assert_eq!(app.dispatch("cleanup").await, 1, "other topics run");
    assert!(app.attempts(&held.message_id).await.is_empty());
    assert_eq!(app.attempts(&free.message_id).await.len(), 1);
}

#[tokio::test]
async fn pause_refuses_unknown_and_hostile_topics_and_writes_nothing() {
    let app = TestApp::new().await;
    let (status, body) = app.call(post("/api/admin/queues/no-such-job/pause")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("no-such-job") && error.contains("probe"), "{error}");
    let (status, body) = app.call(post("/api/admin/queues/pro%00be/pause")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("NUL"), "{body}");
    // The longest path a URI holds (64 KB; the CLI test sends 100 KB).
    let long = "p".repeat(60 * 1024);
    let (status, body) = app.call(post(&format!("/api/admin/queues/{long}/resume"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().len() < 2048, "the refusal does not echo 100 KB");
    let (status, _) = app.call(post("/api/admin/queues/pro%20be/pause")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Without the token: 401, nothing paused.
    let anonymous = Request::post("/api/admin/queues/probe/pause").body(Body::empty()).unwrap();
    assert_eq!(app.call(anonymous).await.0, StatusCode::UNAUTHORIZED);
    assert!(app.queue().topic_controls().await.unwrap().is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_pauses_all_succeed_with_one_state() {
    let app = TestApp::new().await;
    let calls = (0..16).map(|_| app.call(post("/api/admin/queues/probe/pause")));
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!((status, body), (StatusCode::OK, json!({"topic": "probe", "paused": true})));
    }
    let controls = app.queue().topic_controls().await.unwrap();
    assert_eq!(controls.len(), 1);
    assert!(controls[0].paused);
    let calls = (0..16).map(|_| app.call(post("/api/admin/queues/probe/resume")));
    for (status, _) in futures::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert!(!app.queue().topic_controls().await.unwrap()[0].paused);
}

#[tokio::test]
async fn the_cli_pauses_resumes_and_shows_it() {
    let app = TestApp::new().await;
    let run = |args: &[&str]| app.run_cli(args);
    let (ok, out, err) = run(&["pause", "probe", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"topic": "probe", "paused": true}));
    let (ok, out, _) = run(&["queues"]);
    assert!(ok);
    assert!(out.lines().any(|l| l.starts_with("probe ") && l.ends_with("paused")), "{out}");
    let (ok, out, _) = run(&["queues", "--json"]);
    assert!(ok);
    assert_eq!(paused_in(&serde_json::from_str(&out).unwrap(), "probe"), Some(true));
    let (ok, out, err) = run(&["resume", "probe"]);
    assert!(ok, "{err}");
    assert!(out.contains("probe resumed"), "{out}");
    let (ok, _, err) = run(&["pause", "nope"]);
    assert!(!ok);
    assert!(err.contains("no job or consumer for topic \"nope\""), "{err}");
    let (ok, _, err) = run(&["pause", &"p".repeat(100 * 1024)]);
    assert!(!ok);
    assert!(err.contains("102400 bytes long") && err.len() < 4096, "{}", &err[..err.len().min(300)]);
    let (ok, _, err) = run(&["pause", "a b"]);
    assert!(!ok);
    assert!(err.contains("invalid topic"), "{err}");
    assert!(!app.queue().topic_controls().await.unwrap()[0].paused);
}

/// Two real processes: paused through one, neither starts anything new (a job already
/// running finishes); resumed through the other, the backlog drains, each message once,
/// on its first attempt. On PostgreSQL the news travels by NOTIFY, on SQLite by the poll;
/// either way the claim itself never leases a paused topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_through_one_process_holds_both_and_resumed_through_the_other_drains() {
    const BACKLOG: usize = 40;
    let app = TestApp::new().await;
    let env = [("VQS_ADMIN_TOKEN", ADMIN_TOKEN)];
    let mut procs = [common::serve(&app.database_url, &env), common::serve(&app.database_url, &env)];
    let mut urls = Vec::new();
    for p in procs.iter_mut() {
        urls.push(common::serving(p).await);
    }
    let client = reqwest::Client::new();
    let admin_post = |url: String| client.post(url).bearer_auth(ADMIN_TOKEN).send();

    // A job already running when the pause lands finishes.
    let long = app.queue().send("probe", br#"{"sleep_ms":1500}"#.to_vec(), SendOpts::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !executions_of(&app, "probe").await.iter().any(|e| e.status == ExecutionStatus::Running) {
        assert!(Instant::now() < deadline, "the long probe did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = admin_post(format!("{}/api/admin/queues/probe/pause", urls[0])).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"topic": "probe", "paused": true}));

    let mut sent = Vec::new();
    for i in 0..BACKLOG {
        let payload = format!(r#"{{"sleep_ms":{}}}"#, i % 3);
        sent.push(app.queue().send("probe", payload.into_bytes(), SendOpts::default()).await.unwrap().message_id);
    }
    // Wait for the running job to finish, then watch both processes a while: nothing new.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.attempts(&long.message_id).await != [(1, "success".to_owned())] {
        assert!(Instant::now() < deadline, "the running job did not finish while paused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(executions_of(&app, "probe").await.len(), 1, "no new execution while paused");
    for id in &sent {
        let m = app.queue().message(id).await.unwrap().unwrap();
        let d = &m.deliveries[0];
        assert_eq!((d.state, d.delivery_count, d.attempts), (DeliveryState::Pending, 0, 0), "{id}");
    }
    let r = client
        .get(format!("{}/api/admin/messages/{}", urls[1], sent[0]))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["held"], "paused", "the other process says why too");

    let r = admin_post(format!("{}/api/admin/queues/probe/resume", urls[1])).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"topic": "probe", "paused": false}));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = executions_of(&app, "probe").await.iter().filter(|e| e.status == ExecutionStatus::Success).count();
        if done == BACKLOG + 1 {
            break;
        }
        for p in procs.iter_mut() {
            assert!(p.try_wait().unwrap().is_none(), "a serving process exited on its own");
        }
        assert!(Instant::now() < deadline, "only {done} of {} ran after the resume", BACKLOG + 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &sent {
        assert_eq!(app.attempts(id).await, [(1, "success".to_owned())], "{id} ran once, on its first attempt");
    }
    for p in procs.iter_mut() {
        p.start_kill().unwrap();
    }
}

/// The claim never scans a paused topic's backlog over and over: a process whose only
/// consumer's topic is paused makes no claim at all while it stays paused (counted from its
/// own statement log, against its heartbeat — one a second — as the clock), whatever
/// waits; resumed, it claims and runs the backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_topics_dispatcher_does_not_claim_at_all() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncBufReadExt;

    const BACKLOG: usize = 200;
    let app = TestApp::new().await;
    // Only the probe's trigger: every claim in the log is the paused topic's.
    let mut vercel: Value =
        serde_json::from_str(&std::fs::read_to_string(common::repo_root().join("vercel.json")).unwrap()).unwrap();
    vercel["crons"] = json!([]);
    vercel["functions"].as_object_mut().unwrap().retain(|k, _| k.ends_with("/probe.rs"));
    let vercel_json = app.dir.path().join("vercel.json");
    std::fs::write(&vercel_json, vercel.to_string()).unwrap();
    app.queue().pause("probe").await.unwrap();
    let probes = (0..BACKLOG).map(|_| (b"{}".to_vec(), SendOpts::default()));
    app.queue().send_many("probe", probes).await.unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .arg("serve")
        .env("DATABASE_URL", &app.database_url)
        .env("VQS_VERCEL_JSON", &vercel_json)
        .env("PORT", "0")
        .env("VQS_HEARTBEAT_SECONDS", "1")
        .env("VQS_LOG_FORMAT", "json")
        .env("RUST_LOG", "error,sqlx::query=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (claims, beats) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (c, b) = (claims.clone(), beats.clone());
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            // The claim's statement is the only one that filters by the paused topics.
            if line.contains("SELECT topic FROM topic_controls") {
                c.fetch_add(1, Ordering::SeqCst);
            } else if line.contains("UPDATE processes SET heartbeat_at") {
                b.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let until_beats = |n: usize| {
        let beats = beats.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while beats.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "the process stopped beating");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until_beats(3).await;
    let settled = claims.load(Ordering::SeqCst);
    until_beats(6).await;
    assert_eq!(claims.load(Ordering::SeqCst), settled, "no claim in three seconds of pause");
    assert!(executions_of(&app, "probe").await.is_empty());

    app.queue().resume("probe").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = executions_of(&app, "probe").await.iter().filter(|e| e.status == ExecutionStatus::Success).count();
        if done == BACKLOG {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the serving process exited");
        assert!(Instant::now() < deadline, "only {done} of {BACKLOG} ran after the resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(claims.load(Ordering::SeqCst) > settled, "resumed, it claims");
    child.start_kill().unwrap();
}
