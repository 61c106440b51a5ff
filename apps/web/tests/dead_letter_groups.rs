//! Dead letters grouped by error, and the bulk retry / discard of a group through the admin
//! API (the dashboard's buttons: tests/dashboard.rs; the CLI: tests/cli.rs).

mod common;

use axum::body::Body;
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode};
use serde_json::{Value, json};

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// `fatal` probes and probes with params of the wrong type: two groups of one topic.
async fn two_groups(app: &TestApp, fatal: usize, bad: usize) -> Vec<Value> {
    let job = app.queue().job(jobs::Probe);
    for _ in 0..fatal {
        job.perform_later(jobs::ProbeParams { fatal: Some(true), ..Default::default() }).await.unwrap();
    }
    for _ in 0..bad {
        let payload = br#"{"sleep_ms": "soon"}"#.to_vec();
        app.queue().send("probe", payload, vqs::SendOpts::default()).await.unwrap();
    }
    app.dispatch("probe").await;
    let (status, groups) = app.admin_get("/api/admin/dead-letters/groups").await;
    assert_eq!(status, StatusCode::OK, "{groups}");
    groups.as_array().unwrap().clone()
}

#[tokio::test]
async fn dead_letters_are_grouped_by_topic_and_error_largest_first() {
    let app = TestApp::new().await;
    let groups = two_groups(&app, 5, 2).await;
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!((groups[0]["topic"].as_str(), groups[0]["count"].as_u64()), (Some("probe"), Some(5)));
    assert!(groups[0]["error"].as_str().unwrap().contains("fatal"), "{}", groups[0]);
    assert_eq!(groups[1]["count"], 2);
    assert!(!groups[1]["error"].as_str().unwrap().contains('\n'), "one line");
    for field in ["oldest_at", "newest_at"] {
        assert!(groups[0][field].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().is_ok(), "{field}");
    }
    let (_, one) = app.admin_get("/api/admin/dead-letters/groups?limit=1").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn sixteen_bulk_retries_at_once_replay_each_dead_letter_once() {
    let app = TestApp::new().await;
    let groups = two_groups(&app, 120, 3).await;
    let group = json!({ "topic": "probe", "error": groups[0]["error"] }).to_string();
    let calls = (0..16).map(|_| app.call(post("/api/admin/dead-letters/groups/retry", &group)));
    let answers = futures::future::join_all(calls).await;
    let mut replayed = 0;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        replayed += body["replayed"].as_u64().expect("a count");
    }
    assert_eq!(replayed, 120, "every dead letter of the group replayed, and once: {answers:?}");
    let left = app.queue().dead_letters(1000).await.unwrap();
    assert_eq!(left.len(), 3, "the other group is untouched");
    assert_eq!(app.dispatch("probe").await, 120, "each replay is one new message");

    // They died again: a new group of 120; discard the other one, then nothing is left of it.
    let discard = json!({ "topic": "probe", "error": groups[1]["error"] }).to_string();
    let (status, body) = app.call(post("/api/admin/dead-letters/groups/discard", &discard)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "discarded": 3 })));
    let (_, body) = app.call(post("/api/admin/dead-letters/groups/discard", &discard)).await;
    assert_eq!(body, json!({ "discarded": 0 }));
    assert_eq!(app.queue().dead_letters(1000).await.unwrap().len(), 120);
}

#[tokio::test]
async fn a_bad_group_gets_a_400_that_says_what_to_send() {
    let app = TestApp::new().await;
    two_groups(&app, 1, 0).await;
    for body in [
        "not json".to_owned(),
        json!({ "topic": "probe" }).to_string(),
        json!({ "topic": "probe", "error": "x", "extra": 1 }).to_string(),
        json!({ "topic": "", "error": "x" }).to_string(),
        json!({ "topic": "probe", "error": "a\u{0}b" }).to_string(),
        json!({ "topic": "probe", "error": "two\nlines" }).to_string(),
        json!({ "topic": "probe", "error": "x".repeat(201) }).to_string(),
    ] {
        let (status, answer) = app.call(post("/api/admin/dead-letters/groups/retry", &body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let e = answer["error"].as_str().unwrap();
        assert!(e.contains("error") || e.contains("topic"), "{e}");
    }
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 1, "nothing was acted on");
    let (status, _) = app.call(post("/api/admin/dead-letters/groups/retry", "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
