//! The admin API through the router, on real SQLite.

mod common;

use axum::body::Body;
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode};
use serde_json::{Value, json};

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn topic<'a>(queues: &'a Value, name: &str) -> &'a Value {
    queues.as_array().unwrap().iter().find(|t| t["topic"] == name).expect("topic listed")
}

#[tokio::test]
async fn refuses_without_the_token_and_fails_closed_when_unset() {
    let app = TestApp::new().await;
    for auth in
        [None, Some("Bearer nope".to_owned()), Some(ADMIN_TOKEN.to_owned()), Some(format!("bearer {ADMIN_TOKEN}"))]
    {
        let mut req = Request::get("/api/admin/queues");
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let (status, body) = app.call(req.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(body["error"].as_str().unwrap().contains("VQS_ADMIN_TOKEN"));
        assert!(!body.to_string().contains(ADMIN_TOKEN));
    }
    // Token unset: every request refused, even one that sends an empty bearer.
    let mut state = app.state.clone();
    state.admin_token = None;
    let router = web::app(state);
    let resp = tower::ServiceExt::oneshot(
        router,
        Request::get("/api/admin/queues").header("authorization", "Bearer ").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Unknown admin paths stay 404.
    let (status, _) = app.admin_get("/api/admin/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_probe_enqueued_through_the_admin_api_runs_once_and_shows_success() {
    let app = TestApp::new().await;
    let (status, sent) = app.call(post("/api/admin/messages", json!({"topic": "probe", "payload": {}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["duplicate"], false);
    let id = sent["messageId"].as_str().unwrap().to_owned();

    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(topic(&queues, "probe")["waiting"], 1);

    assert_eq!(app.dispatch("probe").await, 1);
    let (status, rows) = app.admin_get("/api/admin/executions?topic=probe").await;
    assert_eq!(status, StatusCode::OK);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    for field in ["id", "topic", "message_id", "attempt", "status", "started_at", "finished_at", "duration_ms", "error"]
    {
        assert!(rows[0].get(field).is_some(), "missing {field}");
    }
    assert_eq!(
        (rows[0]["message_id"].as_str().unwrap(), rows[0]["status"].as_str().unwrap()),
        (id.as_str(), "success")
    );

    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(
        (topic(&queues, "probe")["waiting"].as_i64(), topic(&queues, "probe")["succeeded"].as_i64()),
        (Some(0), Some(1))
    );

    let (status, m) = app.admin_get(&format!("/api/admin/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (m["id"].as_str(), m["topic"].as_str(), m["state"].as_str()),
        (Some(id.as_str()), Some("probe"), Some("acked"))
    );
    assert_eq!(m["delivery_count"], 1);
    for field in ["visible_at", "created_at", "expires_at"] {
        assert!(m[field].is_string(), "{field}");
    }
    let (status, _) = app.admin_get("/api/admin/messages/msg_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dead_letters_can_be_listed_replayed_and_discarded() {
    let app = TestApp::new().await;
    for _ in 0..2 {
        app.call(post("/api/admin/messages", json!({"topic": "probe", "payload": {"fatal": true}}))).await;
    }
    app.dispatch("probe").await;
    let (_, dead) = app.admin_get("/api/admin/dead-letters").await;
    let dead = dead.as_array().unwrap().clone();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["payload"], json!({"fatal": true}));
    assert!(dead[0]["error"].as_str().unwrap().contains("fatal"));

    let (status, replayed) =
        app.call(post(&format!("/api/admin/dead-letters/{}/replay", dead[0]["id"]), json!(null))).await;
    assert_eq!(status, StatusCode::CREATED, "{replayed}");
    assert_eq!(app.dispatch("probe").await, 1, "the replay runs again");
    assert_eq!(app.attempts(replayed["messageId"].as_str().unwrap()).await.len(), 1);

    let discard = |id: &Value| {
        Request::delete(format!("/api/admin/dead-letters/{id}"))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _) = app.call(discard(&dead[1]["id"])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Discarded already: 409, saying what was done; an id never used: 404.
    let (status, body) = app.call(discard(&dead[1]["id"])).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("already discarded"), "{body}");
    let (status, _) = app.call(post("/api/admin/dead-letters/999999/replay", json!(null))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_gets_a_clear_400_and_queues_nothing() {
    let app = TestApp::new().await;
    let bad = [
        (json!({"payload": {}}), "topic"),
        (json!({"topic": "no spaces", "payload": {}}), "invalid topic"),
        (json!({"topic": "probe", "payload": {}, "delay_seconds": 700000}), "invalid delay"),
        (json!({"topic": "probe", "payload": {}, "idempotency_key": ""}), "idempotency key"),
        (json!({"topic": "probe", "payload": {}, "priority": 1000}), "invalid priority 1000"),
        (json!({"topic": "probe", "payload": {}, "urgency": 1}), "urgency"),
    ];
    for (body, want) in bad {
        let (status, resp) = app.call(post("/api/admin/messages", body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(resp["error"].as_str().unwrap().contains(want), "{body}: {resp}");
    }
    let (status, resp) = app.admin_get("/api/admin/executions?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(resp["error"].as_str().unwrap().contains("running, success, failed, snoozed or cancelled"), "{resp}");
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(queues, json!([]), "nothing was queued");
}

#[tokio::test]
async fn crons_list_schedules_with_next_fire_times() {
    let app = TestApp::new().await;
    let (status, crons) = app.admin_get("/api/admin/crons?next=2").await;
    assert_eq!(status, StatusCode::OK);
    let c = &crons[0];
    assert_eq!((c["path"].as_str(), c["schedule"].as_str()), (Some("/api/cron/sync-patients"), Some("0 * * * *")));
    let next: Vec<chrono::DateTime<chrono::Utc>> =
        c["next"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(next.len(), 2);
    assert_eq!(next[1] - next[0], chrono::Duration::hours(1));
    assert!(next.iter().all(|t| t.timestamp() % 3600 == 0), "on the hour");
}

#[tokio::test]
async fn the_dead_letter_list_loads_payload_previews_and_one_dead_letter_its_whole_payload() {
    let app = TestApp::new().await;
    let big = 4 * 1024 * 1024;
    let mut ids = Vec::new();
    for i in 0..3 {
        let payload = format!("{{\"blob\":\"{}\"}}", "x".repeat(big)).into_bytes();
        let p = vqs::store::DeadLetterInsertParams {
            message_id: format!("msg_big_{i}"),
            topic: "probe".into(),
            consumer_group: "group".into(),
            content_type: "application/json".into(),
            payload,
            error: "too big to list".into(),
            attempts: 1,
            headers_json: None,
            now: app.clock.now(),
        };
        ids.push(app.queue().store().dead_letter_insert(p).await.unwrap());
    }
    let small = vqs::store::DeadLetterInsertParams {
        message_id: "msg_small".into(),
        topic: "probe".into(),
        consumer_group: "group".into(),
        content_type: "application/json".into(),
        payload: br#"{"sleep_ms":1}"#.to_vec(),
        error: "small".into(),
        attempts: 1,
        headers_json: None,
        now: app.clock.now(),
    };
    let small_id = app.queue().store().dead_letter_insert(small).await.unwrap();

    // The list (API, CLI and dashboard read the same call) carries previews: 12 MiB of
    // payloads come back as a few KiB, each saying its size and that it was cut.
    let (status, list) = app.admin_get("/api/admin/dead-letters").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.to_string().len() < 16 * 1024, "the list loaded whole payloads: {} bytes", list.to_string().len());
    for d in list.as_array().unwrap() {
        if d["id"] == json!(small_id) {
            assert_eq!(d["payload"], json!({"sleep_ms": 1}), "a small payload is shown whole, as JSON");
            assert_eq!(d["payload_truncated"], json!(false));
            assert_eq!(d["payload_bytes"], json!(14));
        } else {
            assert_eq!(d["payload_truncated"], json!(true));
            assert_eq!(d["payload_bytes"], json!(big + 11));
            let preview = d["payload"].as_str().unwrap();
            assert!(
                preview.len() <= vqs::store::PAYLOAD_PREVIEW_BYTES as usize && preview.starts_with("{\"blob\":\"xxx")
            );
        }
    }
    // One dead letter read by id has its whole payload.
    let (status, one) = app.admin_get(&format!("/api/admin/dead-letters/{}", ids[0])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["payload_truncated"], json!(false));
    assert_eq!(one["payload"]["blob"].as_str().unwrap().len(), big);
    assert_eq!(app.admin_get("/api/admin/dead-letters/999999").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn run_now_makes_a_delayed_message_due_once_and_says_why_it_cannot_otherwise() {
    let app = TestApp::new().await;
    let (status, sent) =
        app.call(post("/api/admin/messages", json!({"topic": "probe", "payload": {}, "delay_seconds": 3600}))).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let id = sent["messageId"].as_str().unwrap().to_owned();
    assert_eq!(app.dispatch("probe").await, 0, "delayed an hour");

    // The same action sixteen times at once: each answers 200; at least one made it due (on
    // PostgreSQL two calls whose clocks read a moment apart may both move it), and the job
    // still runs once.
    let path = format!("/api/admin/messages/{id}/run-now");
    let answers = futures::future::join_all((0..16).map(|_| app.call(post(&path, json!({}))))).await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK), "{answers:?}");
    let made: Vec<u64> = answers.iter().map(|(_, b)| b["madeDue"].as_u64().unwrap()).collect();
    assert!(made.contains(&1) && made.iter().all(|&n| n <= 1), "{made:?}");
    assert_eq!(answers[0].1["messageId"], id.as_str());

    assert_eq!(app.dispatch("probe").await, 1, "due now");
    assert_eq!(app.attempts(&id).await, vec![(1, "success".to_owned())]);
    let (status, body) = app.call(post(&path, json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("finished"), "{body}");
    let (status, body) = app.call(post("/api/admin/messages/msg_nope/run-now", json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.call(post("/api/admin/messages/a%00b/run-now", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Publish a probe (`delay_seconds` 0: due now) through the admin API; its id.
async fn send_probe(app: &TestApp, delay_seconds: u64) -> String {
    let (status, sent) = app
        .call(post("/api/admin/messages", json!({"topic": "probe", "payload": {}, "delay_seconds": delay_seconds})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    sent["messageId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_execution_status_is_a_filter_and_an_unknown_one_is_refused_naming_them() {
    let app = TestApp::new().await;
    for status in ["running", "success", "failed", "snoozed", "cancelled"] {
        let (code, rows) = app.admin_get(&format!("/api/admin/executions?status={status}")).await;
        assert_eq!(code, StatusCode::OK, "{status}: {rows}");
        assert_eq!(rows, json!([]));
    }
    let (code, body) = app.admin_get("/api/admin/executions?status=Cancelled").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"], "unknown status \"Cancelled\": use running, success, failed, snoozed or cancelled",
        "{body}"
    );
}

// Cancel and purge need the stores' message_cancel / topic_purge (issue 18).

#[tokio::test]
async fn cancel_stops_a_pending_message_and_says_why_it_cannot_otherwise() {
    let app = TestApp::new().await;
    let group = app.consumer("probe").consumer_group;
    // Due now: the next dispatch would run it, were it not cancelled.
    let id = send_probe(&app, 0).await;
    let path = format!("/api/admin/messages/{id}/cancel");
    let (status, body) = app.call(post(&path, json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"messageId": id, "state": "cancelled", "pending": [group], "running": [], "remote": false})
    );

    assert_eq!(app.dispatch("probe").await, 0, "a cancelled message never runs");
    assert_eq!(app.attempts(&id).await, vec![], "no attempt was made");
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{id}")).await;
    assert_eq!(m["state"], "cancelled", "{m}");
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(
        (topic(&queues, "probe")["waiting"].as_i64(), topic(&queues, "probe")["cancelled"].as_i64()),
        (Some(0), Some(1)),
        "{queues}"
    );

    // Cancelled already: 409 saying so; run now is refused as for any finished message.
    let (status, body) = app.call(post(&path, json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("already finished") && error.contains("cancelled"), "{body}");
    let (status, body) = app.call(post(&format!("/api/admin/messages/{id}/run-now"), json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A message that succeeded: 409 saying it succeeded, and it stays succeeded.
    let done = send_probe(&app, 0).await;
    assert_eq!(app.dispatch("probe").await, 1);
    let (status, body) = app.call(post(&format!("/api/admin/messages/{done}/cancel"), json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("succeeded"), "{body}");
    assert_eq!(app.attempts(&done).await, vec![(1, "success".to_owned())]);

    // Unknown: 404; an id no database can store: 400.
    let (status, body) = app.call(post("/api/admin/messages/msg_nope/cancel", json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("msg_nope"), "{body}");
    for bad in ["a%00b".to_owned(), "m".repeat(60_000)] {
        let (status, body) = app.call(post(&format!("/api/admin/messages/{bad}/cancel"), json!({}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.to_string().len() < 2000, "the refusal does not echo a huge id");
    }
    // Without the token: refused before anything is read.
    let req = Request::post(&path).body(Body::empty()).unwrap();
    assert_eq!(app.call(req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sixteen_cancels_of_one_message_at_once_cancel_it_once() {
    let app = TestApp::new().await;
    let id = send_probe(&app, 3600).await;
    let path = format!("/api/admin/messages/{id}/cancel");
    let answers = futures::future::join_all((0..16).map(|_| app.call(post(&path, json!({}))))).await;
    let ok: Vec<&Value> = answers.iter().filter(|(s, _)| *s == StatusCode::OK).map(|(_, b)| b).collect();
    assert_eq!(ok.len(), 1, "exactly one cancel did it: {answers:?}");
    assert_eq!(ok[0]["state"], "cancelled");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
        assert!(body["error"].as_str().unwrap().contains("cancelled"), "the others say it was cancelled: {body}");
    }
    let again = app.queue().run_now(&id).await.map_err(|e| e.to_string()).unwrap_err();
    assert!(again.contains("finished"), "{again}");
    assert_eq!(app.dispatch("probe").await, 0);
    assert_eq!(app.attempts(&id).await, vec![]);
}

fn purge(path: &str) -> Request<Body> {
    Request::post(path).header("authorization", format!("Bearer {ADMIN_TOKEN}")).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn purge_counts_first_with_a_dry_run_then_cancels_the_pending_messages_of_a_topic() {
    let app = TestApp::new().await;
    let ids = [send_probe(&app, 0).await, send_probe(&app, 0).await, send_probe(&app, 3600).await];
    let (status, other) =
        app.call(post("/api/admin/messages", json!({"topic": "sync-patient", "payload": {"patient_id": "p1"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");

    // A dry run counts and changes nothing.
    let (status, body) = app.call(purge("/api/admin/queues/probe/purge?dry_run=true")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"cancelled": 3, "dryRun": true}));
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(
        (topic(&queues, "probe")["waiting"].as_i64(), topic(&queues, "probe")["delayed"].as_i64()),
        (Some(2), Some(1))
    );

    let (status, body) = app.call(purge("/api/admin/queues/probe/purge?dry_run=false")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"cancelled": 3}));
    assert_eq!(app.dispatch("probe").await, 0, "purged messages never run");
    for id in &ids {
        let (_, m) = app.admin_get(&format!("/api/admin/messages/{id}")).await;
        assert_eq!(m["state"], "cancelled", "{m}");
    }
    // Another topic is untouched; a second purge finds nothing.
    let (_, queues) = app.admin_get("/api/admin/queues").await;
    assert_eq!(topic(&queues, "sync-patient")["waiting"], 1, "{queues}");
    assert_eq!(app.call(purge("/api/admin/queues/probe/purge")).await.1, json!({"cancelled": 0}));
}

#[tokio::test]
async fn purge_of_one_consumer_group_leaves_the_others() {
    let app = TestApp::new().await;
    let probe_group = app.consumer("probe").consumer_group;
    // A second consumer group on the topic (as a /_vqs receiver would be).
    app.queue()
        .store()
        .subscription_ensure(vqs::store::SubscriptionEnsureParams {
            grouped: false,
            topic_pattern: "probe".into(),
            consumer_group: "audit".into(),
            initial_delay_seconds: 0,
            now: app.clock.now(),
        })
        .await
        .unwrap();
    let id = send_probe(&app, 0).await;

    let (status, body) = app.call(purge("/api/admin/queues/probe/purge?group=audit&dry_run=true")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"cancelled": 1, "dryRun": true})));
    let (status, body) = app.call(purge("/api/admin/queues/probe/purge?group=audit")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"cancelled": 1})));
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{id}")).await;
    let states: std::collections::BTreeMap<String, String> = m["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["consumer_group"].as_str().unwrap().to_owned(), d["state"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(states.get("audit").map(String::as_str), Some("cancelled"), "{m}");
    assert_eq!(states.get(&probe_group).map(String::as_str), Some("pending"), "{m}");
    // The job's own consumer group still runs it.
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "success".to_owned())]);
}

#[tokio::test]
async fn purge_refuses_bad_parameters_saying_what_is_allowed() {
    let app = TestApp::new().await;
    let id = send_probe(&app, 0).await;
    let bad = [
        ("/api/admin/queues/no%20spaces/purge", "invalid topic"),
        ("/api/admin/queues/probe/purge?group=bad%20group!", "invalid consumer group"),
        ("/api/admin/queues/probe/purge?group=", "empty group"),
        ("/api/admin/queues/probe/purge?dry_run=yes", "dry_run=true"),
        ("/api/admin/queues/probe/purge?dry_run=1", "dry_run=true"),
        // A misspelt dry_run is refused, not taken for a real purge.
        ("/api/admin/queues/probe/purge?dryrun=true", "dry_run=true|false"),
        ("/api/admin/queues/probe/purge?group=a%00b", "consumer group"),
        ("/api/admin/queues/a%00b/purge", "invalid topic"),
    ];
    for (path, want) in bad {
        let (status, body) = app.call(purge(path)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(want), "{path}: {body}");
    }
    let huge = format!("/api/admin/queues/{}/purge", "t".repeat(60_000));
    assert_eq!(app.call(purge(&huge)).await.0, StatusCode::BAD_REQUEST);
    // A GET is not a purge; without the token nothing happens.
    assert_eq!(app.admin_get("/api/admin/queues/probe/purge").await.0, StatusCode::METHOD_NOT_ALLOWED);
    let req = Request::post("/api/admin/queues/probe/purge").body(Body::empty()).unwrap();
    assert_eq!(app.call(req).await.0, StatusCode::UNAUTHORIZED);
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{id}")).await;
    assert_eq!(m["state"], "pending", "nothing was purged: {m}");
}

#[tokio::test]
async fn search_finds_messages_by_id_or_by_the_key_they_hold_in_any_topic() {
    let app = TestApp::new().await;
    let send = |topic: &str, key: &str| {
        post("/api/admin/messages", json!({"topic": topic, "payload": {}, "idempotency_key": key, "delay_seconds": 60}))
    };
    let (_, a) = app.call(send("probe", "order-42")).await;
    let (_, b) = app.call(send("sync-patient", "order-42")).await;
    app.call(send("probe", "order-43")).await;
    let (a, b) = (a["messageId"].as_str().unwrap().to_owned(), b["messageId"].as_str().unwrap().to_owned());

    let (status, found) = app.admin_get("/api/admin/search?q=order-42").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let ids: Vec<&str> = found["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [b.as_str(), a.as_str()], "both topics, newest first");
    assert_eq!(found["messages"][0]["topic"], "sync-patient");
    assert_eq!(found["messages"][0]["idempotency_key"], "order-42");

    let (_, by_id) = app.admin_get(&format!("/api/admin/search?q=%20{a}%20")).await;
    assert_eq!(by_id["messages"].as_array().unwrap().len(), 1);
    assert_eq!(by_id["messages"][0]["id"], a.as_str());
    let (status, none) = app.admin_get("/api/admin/search?q=order-4").await;
    assert_eq!((status, none["messages"].as_array().unwrap().len()), (StatusCode::OK, 0), "exact keys only");

    let long = "x".repeat(257);
    for bad in ["", "%20", "a%00b", long.as_str()] {
        let (status, body) = app.admin_get(&format!("/api/admin/search?q={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("message id") || error.contains("NUL character"), "{body}");
    }
    let (status, _) = app.admin_get("/api/admin/search").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unauthenticated = Request::get("/api/admin/search?q=order-42").body(Body::empty()).unwrap();
    assert_eq!(app.call(unauthenticated).await.0, StatusCode::UNAUTHORIZED);
}
