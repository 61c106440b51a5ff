//! Pausing one message group of a topic (SPEC.md, "Flow control": `.../pause?group=G`), on
//! the backend under test (SQLite by default, PostgreSQL with `VQS_TEST_BACKEND=postgres`):
//! the admin API, the CLI and their refusals. While a group is paused its messages wait
//! (held: paused, nothing spent) and the topic's other groups run; a resume runs its backlog.

mod common;

use axum::body::Body;
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use vqs::SendOpts;

fn post(path: &str) -> Request<Body> {
    Request::post(path).header("authorization", format!("Bearer {ADMIN_TOKEN}")).body(Body::empty()).unwrap()
}

fn paused_groups(queues: &Value, topic: &str) -> Value {
    queues
        .as_array()
        .and_then(|a| a.iter().find(|t| t["topic"] == topic))
        .map(|t| t["paused_groups"].clone())
        .unwrap_or_default()
}

async fn send(app: &TestApp, group: Option<&str>) -> String {
    let opts = SendOpts { group: group.map(str::to_owned), ..SendOpts::default() };
    app.queue().send("probe", b"{}".to_vec(), opts).await.unwrap().message_id
}

#[tokio::test]
async fn a_paused_group_waits_while_the_topics_other_groups_run() {
    let app = TestApp::new().await;
    let (status, body) = app.call(post("/api/admin/queues/probe/pause?group=tenant-a")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"topic": "probe", "group": "tenant-a", "paused": true})));
    let held = send(&app, Some("tenant-a")).await;
    let other = send(&app, Some("tenant-b")).await;
    let ungrouped = send(&app, None).await;
    assert_eq!(app.dispatch("probe").await, 2, "tenant-b and the ungrouped message run");
    assert_eq!(app.attempts(&other).await.len(), 1);
    assert_eq!(app.attempts(&ungrouped).await.len(), 1);
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{held}")).await;
    assert_eq!((m["state"].as_str(), m["held"].as_str()), (Some("pending"), Some("paused")), "{m}");
    assert_eq!((m["attempts"].as_u64(), m["delivery_count"].as_u64()), (Some(0), Some(0)), "waiting spends nothing");
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(paused_groups(&queues, "probe"), json!(["tenant-a"]), "{queues}");
    // The topic itself is not paused.
    let t = queues.as_array().unwrap().iter().find(|t| t["topic"] == "probe").unwrap();
    assert_eq!(t["paused"], json!(false));
    let metric = |n: u32| format!("vqs_paused_groups{{topic=\"probe\"}} {n}");
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(metrics.as_str().unwrap_or_default().lines().any(|l| l == metric(1)), "{metrics}");

    let (status, body) = app.call(post("/api/admin/queues/probe/resume?group=tenant-a")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"topic": "probe", "group": "tenant-a", "paused": false})));
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{held}")).await;
    assert!(m.get("held").is_none(), "{m}");
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&held).await, [(1, "success".to_owned())], "the wait spent no attempt");
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(paused_groups(&queues, "probe"), json!([]));
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(metrics.as_str().unwrap_or_default().lines().any(|l| l == metric(0)), "{metrics}");
}

#[tokio::test]
async fn a_group_pause_refuses_bad_groups_and_unknown_topics_and_writes_nothing() {
    let app = TestApp::new().await;
    for (path, status, says) in [
        ("/api/admin/queues/probe/pause?group=", StatusCode::BAD_REQUEST, "1 to 256 characters"),
        ("/api/admin/queues/probe/pause?group=a%00b", StatusCode::BAD_REQUEST, "control character"),
        ("/api/admin/queues/probe/pause?group=a%0Ab", StatusCode::BAD_REQUEST, "control character"),
        ("/api/admin/queues/no-such-job/pause?group=a", StatusCode::NOT_FOUND, "no-such-job"),
        ("/api/admin/queues/probe/resume?group=", StatusCode::BAD_REQUEST, "1 to 256 characters"),
    ] {
        let (got, body) = app.call(post(path)).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains(says), "{path}: {body}");
    }
    // A huge group is refused without echoing it.
    let long = "g".repeat(60 * 1024);
    let (status, body) = app.call(post(&format!("/api/admin/queues/probe/pause?group={long}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().len() < 2048, "the refusal does not echo 60 KB");
    let anonymous = Request::post("/api/admin/queues/probe/pause?group=a").body(Body::empty()).unwrap();
    assert_eq!(app.call(anonymous).await.0, StatusCode::UNAUTHORIZED);
    assert!(app.queue().paused_groups(None).await.unwrap().is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_group_pauses_leave_one() {
    let app = TestApp::new().await;
    let calls = (0..16).map(|_| app.call(post("/api/admin/queues/probe/pause?group=g1")));
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!((status, body), (StatusCode::OK, json!({"topic": "probe", "group": "g1", "paused": true})));
    }
    assert_eq!(app.queue().paused_groups(Some("probe")).await.unwrap().len(), 1);
    let calls = (0..16).map(|_| app.call(post("/api/admin/queues/probe/resume?group=g1")));
    for (status, _) in futures::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert!(app.queue().paused_groups(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_cli_pauses_and_resumes_a_group() {
    let app = TestApp::new().await;
    let run = |args: &[&str]| app.run_cli(args);
    let (ok, out, err) = run(&["pause", "probe", "--group", "acme"]);
    assert!(ok, "{err}");
    assert!(out.contains("group \"acme\" of probe paused"), "{out}");
    send(&app, Some("acme")).await;
    let (ok, out, _) = run(&["queues"]);
    assert!(ok);
    assert!(out.lines().any(|l| l.starts_with("probe ") && l.ends_with("groups: acme")), "{out}");
    let (ok, out, _) = run(&["queues", "--json"]);
    assert!(ok);
    assert_eq!(paused_groups(&serde_json::from_str(&out).unwrap(), "probe"), json!(["acme"]));
    let (ok, out, err) = run(&["resume", "probe", "--group", "acme", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"topic": "probe", "group": "acme", "paused": false})
    );
    let (ok, _, err) = run(&["pause", "probe", "--group", ""]);
    assert!(!ok);
    assert!(err.contains("1 to 256 characters"), "{err}");
    assert!(app.queue().paused_groups(None).await.unwrap().is_empty());
}

/// The queues list shows running per group for the busiest groups of a grouped topic (SPEC.md,
/// "Flow control"): most running first, each with what waits and why it is held; the CLI
/// prints them under the topic's row.
#[tokio::test]
async fn the_queues_list_shows_the_busiest_groups_running_first() {
    let app = TestApp::new().await;
    let put = Request::put("/api/admin/limits/probe")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"group_concurrency":1}"#))
        .unwrap();
    assert_eq!(app.call(put).await.0, StatusCode::OK);
    for g in ["a", "a", "a", "b", "c"] {
        send(&app, Some(g)).await;
    }
    send(&app, None).await;
    app.call(post("/api/admin/queues/probe/pause?group=c")).await;
    // One lease of a and one of b (c is paused), held by a "process" that has not settled yet.
    let consumer_group = app.consumer("probe").consumer_group;
    let claim = vqs::store::DeliveryClaimParams {
        consumer_group: consumer_group.clone(),
        topic: None,
        message_id: None,
        limit: 10,
        visibility_seconds: 300,
        start_executions: false,
        lease_holder: None,
        max_leased: None,
        leased_here: 0,
        rate_limit: None,
        group_concurrency: Some(1),
        group_rate_limit: None,
        now: app.queue().clock().now(),
    };
    assert_eq!(app.queue().store().delivery_claim(claim).await.unwrap().len(), 3, "a, b and the ungrouped one");

    let (_, queues) = app.admin_get("/api/admin/queues").await;
    let probe = queues.as_array().unwrap().iter().find(|t| t["topic"] == "probe").unwrap();
    let g = |group: &str, running: u32, waiting: u32, held: Value| {
        json!({"group": group, "consumer_group": consumer_group, "running": running, "waiting": waiting,
               "waiting_more": false, "held": held})
    };
    assert_eq!(
        probe["groups"],
        json!([g("a", 1, 2, json!("group_concurrency")), g("b", 1, 0, Value::Null), g("c", 0, 1, json!("paused"))]),
        "{probe}"
    );
    // A topic no consumer group claims grouped lists none.
    send_plain(&app).await;
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    let other = queues.as_array().unwrap().iter().find(|t| t["topic"] == "cleanup").unwrap();
    assert_eq!(other["groups"], json!([]), "{other}");

    let (ok, out, err) = app.run_cli(&["queues"]);
    assert!(ok, "{err}");
    let line = "  busiest groups: a 1 running 2 waiting (group_concurrency), b 1 running 0 waiting, c 0 running 1 waiting (paused)";
    assert!(out.lines().any(|l| l == line), "{out}");

    // The dashboard shows the same short list on the topic's row.
    let login = Request::post("/admin/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={ADMIN_TOKEN}")))
        .unwrap();
    let resp = app.router.clone().oneshot(login).await.unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = Request::get("/admin?fragment=1").header("cookie", cookie).body(Body::empty()).unwrap();
    let body = app.router.clone().oneshot(page).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8(body.to_vec()).unwrap();
    let shown = "groups: a: 1 running, 2 waiting (group_concurrency) · b: 1 running, 0 waiting · c: 0 running, 1 waiting (paused)";
    assert!(html.contains(shown), "{html}");
}

async fn send_plain(app: &TestApp) {
    app.queue().send("cleanup", b"{}".to_vec(), SendOpts::default()).await.unwrap();
}

#[tokio::test]
async fn a_paused_tenants_backlog_ahead_of_others_waits_while_they_run_and_drains_on_resume() {
    // No group limits on the topic. Tenant A's backlog is queued before B's; the operator
    // pauses A: B and the ungrouped messages run, A's backlog waits behind them untouched
    // (the topic is claimed by group from the pause on, so the queues list shows A held),
    // and the resume runs all of A, each once.
    let app = TestApp::new().await;
    let mut a = Vec::new();
    for _ in 0..40 {
        a.push(send(&app, Some("tenant-a")).await);
    }
    let b: Vec<String> = [send(&app, Some("tenant-b")).await, send(&app, Some("tenant-b")).await].into();
    let plain = send(&app, None).await;
    let (status, _) = app.call(post("/api/admin/queues/probe/pause?group=tenant-a")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.dispatch("probe").await, 3, "tenant-b's two and the ungrouped one run");
    for id in b.iter().chain([&plain]) {
        assert_eq!(app.attempts(id).await, [(1, "success".to_owned())]);
    }
    let late = send(&app, Some("tenant-a")).await;
    assert_eq!(app.dispatch("probe").await, 0, "A waits, the one published during the pause too");
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    let probe = queues.as_array().unwrap().iter().find(|t| t["topic"] == "probe").unwrap();
    let consumer_group = app.consumer("probe").consumer_group;
    assert_eq!(
        probe["groups"],
        json!([{"group": "tenant-a", "consumer_group": consumer_group, "running": 0, "waiting": 41,
                "waiting_more": false, "held": "paused"}]),
        "{probe}"
    );
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{}", a[0])).await;
    assert_eq!((m["held"].as_str(), m["attempts"].as_u64()), (Some("paused"), Some(0)), "{m}");

    app.call(post("/api/admin/queues/probe/resume?group=tenant-a")).await;
    assert_eq!(app.dispatch("probe").await, 41, "all of A, the late one included");
    for id in a.iter().chain([&late]) {
        assert_eq!(app.attempts(id).await, [(1, "success".to_owned())], "each of A once");
    }
}
