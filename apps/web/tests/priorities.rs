//! Message priorities through the app (SPEC.md, "Flow control"): jobs sent with priorities
//! through the admin API, `perform_later` and the local queue service's `Vqs-Priority`
//! header run lowest first, in due order within a priority, on one worker; a bad priority
//! is refused with an answer naming the range, and nothing is stored. SQLite by default,
//! PostgreSQL with VQS_TEST_BACKEND=postgres.

mod common;

use axum::body::Body;
use common::{ADMIN_TOKEN, QUEUE_SECRET, TestApp};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use vqs::PerformOpts;
use vqs::store::{ExecutionListParams, MessageListParams};

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn publish(priority: &str) -> Request<Body> {
    Request::post("/_vqs/api/v3/topic/probe")
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .header("content-type", "application/json")
        .header("vqs-priority", priority)
        .body(Body::from("{}"))
        .unwrap()
}

async fn admin_send(app: &TestApp, priority: Option<i64>) -> String {
    let mut body = json!({"topic": "probe", "payload": {}});
    if let Some(p) = priority {
        body["priority"] = json!(p);
    }
    let (status, sent) = app.call(post("/api/admin/messages", body)).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    sent["message_id"].as_str().or(sent["messageId"].as_str()).expect("an id").to_owned()
}

#[tokio::test]
async fn jobs_run_lowest_priority_first_in_due_order_within_one() {
    let app = TestApp::new().await;
    let late = admin_send(&app, Some(5)).await;
    let plain_first = admin_send(&app, None).await;
    let job = app.queue().job(jobs::Probe);
    let urgent = job
        .perform_later_with(jobs::ProbeParams::default(), PerformOpts { priority: Some(-10), ..Default::default() })
        .await
        .unwrap()
        .message_id;
    let plain_second = job.perform_later(jobs::ProbeParams::default()).await.unwrap().message_id;
    let (status, sent) = app.call(publish("-5")).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let header = sent["messageId"].as_str().unwrap().to_owned();

    // The message views show the priority.
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{urgent}")).await;
    assert_eq!(m["priority"], -10, "{m}");
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{plain_first}")).await;
    assert_eq!(m["priority"], 0, "{m}");

    // One worker, one at a time, in the order claimed.
    assert_eq!(app.dispatch("probe").await, 5);
    let p = ExecutionListParams { topic: Some("probe".into()), limit: 100, ..Default::default() };
    let mut runs = app.queue().executions(p).await.unwrap();
    assert!(runs.iter().all(|e| e.status.as_str() == "success"), "{runs:?}");
    runs.sort_by_key(|e| e.finished_at);
    let order: Vec<&str> = runs.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(order, [&urgent, &header, &plain_first, &plain_second, &late], "lowest first, FIFO within");
}

#[tokio::test]
async fn a_bad_priority_is_refused_with_the_range_and_nothing_is_stored() {
    let app = TestApp::new().await;
    for bad in [json!(101), json!("x"), json!(-101), json!(1.5), json!(1e30)] {
        let (status, body) =
            app.call(post("/api/admin/messages", json!({"topic": "probe", "payload": {}, "priority": bad}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let text = body.to_string();
        assert!(text.contains("invalid priority") && text.contains("from -100 to 100"), "{bad}: {text}");
    }
    for bad in ["101", "x", "-101", ""] {
        let (status, body) = app.call(publish(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert!(body.to_string().contains("Vqs-Priority"), "{bad:?}: {body}");
    }
    let job = app.queue().job(jobs::Probe);
    let refused = job
        .perform_later_with(jobs::ProbeParams::default(), PerformOpts { priority: Some(101), ..Default::default() })
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("from -100 to 100"), "{refused}");
    let stored =
        app.queue().store().message_list(MessageListParams { topic: "probe".into(), limit: 10 }).await.unwrap();
    assert!(stored.is_empty(), "nothing stored: {stored:?}");
    // The edges are accepted.
    admin_send(&app, Some(-100)).await;
    admin_send(&app, Some(100)).await;
}
