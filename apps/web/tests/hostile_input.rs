//! Hostile input never fails anyone else's work: text a database cannot store is refused at
//! the edge (400 naming the field, nothing written) or stored escaped; a group commit that
//! holds a row the database refuses is written again row by row; an operator action on a
//! dead letter happens at most once however many callers race. On SQLite by default, on
//! PostgreSQL with `VQS_TEST_BACKEND=postgres`.

mod common;

use axum::body::Body;
use chrono::Utc;
use common::{ADMIN_TOKEN, QUEUE_SECRET, TestApp};
use futures::future::join_all;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use vqs::SendOpts;
use vqs::store::{
    DeliveryAckParams, DeliveryClaimParams, DeliveryDeadLetterParams, DeliveryReleaseParams, DeliveryRetryParams,
    DeliveryState, ExecutionFinishParams, ExecutionListParams, ExecutionStartParams, ExecutionStatus, LeaseParams,
    LeasedMessage, MessageSendParams, SubscriptionEnsureParams,
};

fn admin(method: &str, path: &str, body: Option<Value>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty))
        .unwrap()
}

fn vqs_call(method: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .header("accept", "application/x-ndjson")
        .body(Body::empty())
        .unwrap()
}

/// A dead letter of the `probe` topic, carrying `headers` (a fatal failure on the first attempt).
async fn dead_letter(app: &TestApp, headers: Option<String>) -> i64 {
    let opts = SendOpts { headers_json: headers, ..SendOpts::default() };
    app.queue().send("probe", br#"{"fatal": true}"#.to_vec(), opts).await.unwrap();
    assert_eq!(app.dispatch("probe").await, 1);
    let dead = app.queue().dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    dead[0].id
}

fn statuses(answers: &[(StatusCode, Value)]) -> (usize, usize) {
    let won = answers.iter().filter(|(s, _)| s.is_success()).count();
    let conflicts = answers.iter().filter(|(s, _)| *s == StatusCode::CONFLICT).count();
    (won, conflicts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_replays_of_one_dead_letter_publish_one_message() {
    let app = TestApp::new().await;
    let id = dead_letter(&app, None).await;
    let path = format!("/api/admin/dead-letters/{id}/replay");
    let answers = join_all((0..16).map(|_| app.call(admin("POST", &path, None)))).await;
    assert_eq!(statuses(&answers), (1, 15), "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s == StatusCode::CONFLICT) {
        let e = body["error"].as_str().unwrap();
        assert!(e.contains(&format!("dead letter {id} was already replayed")), "{status}: {e}");
    }
    assert_eq!(app.dispatch("probe").await, 1, "exactly one new message");
    // The dispatched replay failed fatally again: one new dead letter, the old one gone.
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_discards_and_replays_settle_a_dead_letter_once() {
    let app = TestApp::new().await;
    let id = dead_letter(&app, None).await;
    let discard = format!("/api/admin/dead-letters/{id}");
    let answers = join_all((0..16).map(|_| app.call(admin("DELETE", &discard, None)))).await;
    assert_eq!(statuses(&answers), (1, 15), "{answers:?}");
    assert!(answers.iter().any(|(_, b)| b["error"].as_str().is_some_and(|e| e.contains("already discarded"))));
    assert!(app.queue().dead_letters(10).await.unwrap().is_empty());

    // Replays and discards racing on one dead letter: one of them, once.
    let id = dead_letter(&app, None).await;
    let (replay, discard) = (format!("/api/admin/dead-letters/{id}/replay"), format!("/api/admin/dead-letters/{id}"));
    let answers =
        join_all((0..16).map(|i| {
            app.call(if i % 2 == 0 { admin("POST", &replay, None) } else { admin("DELETE", &discard, None) })
        }))
        .await;
    assert_eq!(statuses(&answers), (1, 15), "{answers:?}");
    let replayed = answers.iter().any(|(s, _)| *s == StatusCode::CREATED);
    assert_eq!(app.dispatch("probe").await, usize::from(replayed));
    // A dead letter never there: 404, not 409.
    let (status, _) = app.call(admin("DELETE", "/api/admin/dead-letters/987654", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unstorable_text_is_refused_with_a_400_naming_the_field_and_nothing_is_written() {
    let app = TestApp::new().await;
    let long = "a".repeat(vqs::MAX_KEY_BYTES + 1);
    let cases: Vec<(Request<Body>, &str)> = vec![
        (
            admin(
                "POST",
                "/api/admin/messages",
                Some(json!({"topic": "probe", "payload": {}, "idempotency_key": "a\u{0}b"})),
            ),
            "idempotency key",
        ),
        (admin("GET", "/api/admin/messages/msg%00x", None), "message id"),
        (admin("GET", &format!("/api/admin/messages/{long}"), None), "message id"),
        (admin("GET", "/api/admin/executions?message_id=m%00", None), "message id"),
        (admin("GET", "/api/admin/executions?topic=pro%00be", None), "topic"),
        (admin("GET", "/api/admin/progress?message_id=%00", None), "message id"),
        (admin("GET", "/api/admin/sync-log?topic=%00", None), "topic"),
        (vqs_call("POST", &format!("/_vqs/api/v3/topic/{long}")), "topic"),
        (vqs_call("POST", "/_vqs/api/v3/topic/pro%00be"), "topic"),
        (vqs_call("POST", "/_vqs/api/v3/topic/probe/consumer/g%00"), "consumer group"),
        (vqs_call("POST", &format!("/_vqs/api/v3/topic/probe/consumer/{long}")), "consumer group"),
        (vqs_call("POST", "/_vqs/api/v3/topic/probe/consumer/g/id/msg%00x"), "message id"),
        (vqs_call("DELETE", "/_vqs/api/v3/topic/probe/consumer/g/lease/msg_1.t%00"), "receipt handle"),
        (vqs_call("DELETE", "/_vqs/api/v3/topic/probe/consumer/g%00/lease/msg_1.t"), "consumer group"),
    ];
    for (req, field) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, body) = app.call(req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        let e = body["error"].as_str().unwrap_or_default();
        assert!(e.contains(field), "{what}: the error names {field:?}: {e}");
    }
    // Bytes that are not UTF-8 in a path: refused by the extractor (a query string's are
    // read lossily, as U+FFFD, which any database stores).
    for req in
        [admin("GET", "/api/admin/messages/%FF", None), vqs_call("POST", "/_vqs/api/v3/topic/probe/consumer/g/id/%C0")]
    {
        let what = format!("{} {}", req.method(), req.uri());
        assert_eq!(app.call(req).await.0, StatusCode::BAD_REQUEST, "{what}");
    }
    // The library's own doors: `Queue::send` and `perform_later`.
    let q = app.queue();
    let key = |k: &str| SendOpts { idempotency_key: Some(k.into()), ..SendOpts::default() };
    for (opts, field) in [
        (key("a\u{0}b"), "idempotency key"),
        (SendOpts { headers_json: Some("{\"traceparent\":\"\u{0}\"}".into()), ..SendOpts::default() }, "headers"),
    ] {
        let e = q.send("probe", b"{}".to_vec(), opts).await.unwrap_err();
        assert!(matches!(e, vqs::QueueError::Invalid(_)) && e.to_string().contains(field), "{e}");
    }
    let opts = vqs::PerformOpts { idempotency_key: Some("k\u{0}".into()), ..Default::default() };
    let e = q.job(jobs::Probe).perform_later_with(jobs::ProbeParams::default(), opts).await.unwrap_err();
    assert!(e.to_string().contains("idempotency key"), "{e}");
    assert!(q.cron_lock("lock\u{0}", std::time::Duration::from_secs(5)).await.is_err());
    // Nothing was written.
    assert!(q.depth().await.unwrap().iter().all(|d| d.waiting + d.delayed + d.running == 0));
    assert_eq!(app.dispatch("probe").await, 0);
}

#[tokio::test]
async fn a_nul_in_a_payload_key_fails_only_its_own_message() {
    let app = TestApp::new().await;
    let q = app.queue();
    let send = |body: &str| q.send("probe", body.as_bytes().to_vec(), SendOpts::default());
    let ok = send("{}").await.unwrap().message_id;
    let retried = send(r#"{"fail_attempts": 1}"#).await.unwrap().message_id;
    let fatal = send(r#"{"fatal": true}"#).await.unwrap().message_id;
    // `ProbeParams` denies unknown fields: the params error echoes the key, NUL and all.
    let poisoned = send("{\"bad\\u0000key\": 1}").await.unwrap().message_id;
    let fatal2 = send(r#"{"fatal": true}"#).await.unwrap().message_id;
    assert_eq!(app.dispatch("probe").await, 5);

    assert_eq!(app.attempts(&ok).await, [(1, "success".to_owned())]);
    for id in [&retried, &fatal, &fatal2, &poisoned] {
        assert_eq!(app.attempts(id).await, [(1, "failed".to_owned())], "{id}");
    }
    let m = q.message(&retried).await.unwrap().unwrap();
    assert_eq!((m.deliveries[0].state, m.deliveries[0].delivery_count), (DeliveryState::Pending, 1));
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for d in &dead {
        assert_eq!(d.attempts, 1, "{d:?}");
    }
    let letter = dead.iter().find(|d| d.message_id == poisoned).expect("the poisoned message is a dead letter");
    assert!(letter.error.contains("bad\\0key"), "NUL escaped visibly: {}", letter.error);
    let run = q.executions(ExecutionListParams { message_id: Some(poisoned), limit: 5, ..Default::default() });
    assert!(run.await.unwrap()[0].error.as_deref().unwrap().contains("bad\\0key"));
}

/// Triggers that make the database refuse chosen rows: a message of topic `poison`, an
/// execution of message `poison` or closed with error `poison`, any settlement of a
/// delivery of consumer group `poison`.
async fn install_poison(database_url: &str) {
    let sql = if database_url.starts_with("postgres") {
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'poisoned row'; END $$;
         CREATE TRIGGER poison_messages BEFORE INSERT ON messages FOR EACH ROW
             WHEN (NEW.topic = 'poison') EXECUTE FUNCTION poison();
         CREATE TRIGGER poison_starts BEFORE INSERT ON job_executions FOR EACH ROW
             WHEN (NEW.message_id = 'poison') EXECUTE FUNCTION poison();
         CREATE TRIGGER poison_finishes BEFORE UPDATE ON job_executions FOR EACH ROW
             WHEN (NEW.error = 'poison') EXECUTE FUNCTION poison();
         CREATE TRIGGER poison_settles BEFORE UPDATE ON deliveries FOR EACH ROW
             WHEN (NEW.consumer_group = 'poison' AND NEW.state <> 'leased') EXECUTE FUNCTION poison();"
    } else {
        "CREATE TRIGGER poison_messages BEFORE INSERT ON messages WHEN NEW.topic = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;
         CREATE TRIGGER poison_starts BEFORE INSERT ON job_executions WHEN NEW.message_id = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;
         CREATE TRIGGER poison_finishes BEFORE UPDATE ON job_executions WHEN NEW.error = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;
         CREATE TRIGGER poison_settles BEFORE UPDATE ON deliveries
             WHEN NEW.consumer_group = 'poison' AND NEW.state <> 'leased'
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;"
    };
    if database_url.starts_with("postgres") {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(database_url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(database_url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }
}

fn lease(m: &LeasedMessage) -> LeaseParams {
    LeaseParams { consumer_group: m.consumer_group.clone(), receipt_handle: m.receipt_handle.clone(), now: Utc::now() }
}

/// One poisoned row in each group-committed write (publishes, execution starts and
/// finishes, acknowledgements, retries, dead letters, releases), submitted together with
/// innocent ones so they share a batch (a current-thread runtime queues them all before the
/// writer runs): only the poisoned operation fails, and every other row's outcome and
/// delivery count are exact.
#[tokio::test]
async fn a_poisoned_row_fails_only_itself_in_every_batched_write() {
    let app = TestApp::new().await;
    install_poison(&app.database_url).await;
    let store = app.queue().store().clone();
    for group in ["good", "poison"] {
        let p = SubscriptionEnsureParams {
            grouped: false,
            topic_pattern: "t".into(),
            consumer_group: group.into(),
            initial_delay_seconds: 0,
            now: Utc::now(),
        };
        store.subscription_ensure(p).await.unwrap();
    }
    let send = |topic: &str| MessageSendParams {
        group_key: None,
        priority: 0,
        topic: topic.into(),
        payload: b"{}".to_vec(),
        content_type: "application/json".into(),
        idempotency_key: None,
        delay_seconds: 0,
        retention_seconds: 3600,
        headers_json: None,
        only_group: None,
        on_duplicate: Default::default(),
        now: Utc::now(),
    };

    // Publishes: 19 innocent, 1 refused.
    let topics: Vec<&str> = (0..20).map(|i| if i == 7 { "poison" } else { "t" }).collect();
    let sent = join_all(topics.iter().map(|t| store.message_send(send(t)))).await;
    for (i, r) in sent.iter().enumerate() {
        assert_eq!(r.is_ok(), i != 7, "publish {i}: {r:?}");
    }
    let claim = |group: &str| {
        store.delivery_claim(DeliveryClaimParams {
            group_concurrency: None,
            consumer_group: group.into(),
            topic: Some("t".into()),
            message_id: None,
            limit: 100,
            visibility_seconds: 600,
            start_executions: false,
            lease_holder: None,
            max_leased: None,
            leased_here: 0,
            rate_limit: None,
            group_rate_limit: None,
            now: Utc::now(),
        })
    };
    let good = claim("good").await.unwrap();
    let bad = claim("poison").await.unwrap();
    assert_eq!((good.len(), bad.len()), (19, 19));

    // Execution starts: one of message `poison`.
    let start = |m: &str| ExecutionStartParams {
        topic: "t".into(),
        message_id: m.into(),
        consumer_group: "good".into(),
        attempt: 1,
        now: Utc::now(),
    };
    let mut starts: Vec<_> = good.iter().map(|m| start(&m.message_id)).collect();
    starts.insert(3, start("poison"));
    let started = join_all(starts.into_iter().map(|p| store.execution_start(p))).await;
    assert!(started[3].is_err(), "the poisoned start fails");
    let ids: Vec<i64> =
        started.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, r)| *r.as_ref().unwrap()).collect();
    assert_eq!(ids.len(), 19);

    // Execution finishes: one closed with the error `poison`.
    let finish = |i: usize, id: i64| ExecutionFinishParams {
        id,
        status: if i == 5 { ExecutionStatus::Failed } else { ExecutionStatus::Success },
        error: (i == 5).then(|| "poison".to_owned()),
        began_at: None,
        now: Utc::now(),
    };
    let finished = join_all(ids.iter().enumerate().map(|(i, id)| store.execution_finish(finish(i, *id)))).await;
    for (i, r) in finished.iter().enumerate() {
        assert_eq!(r.is_ok(), i != 5, "finish {i}: {r:?}");
    }
    let rows = store.execution_list(ExecutionListParams { topic: Some("t".into()), limit: 100, ..Default::default() });
    let rows = rows.await.unwrap();
    assert_eq!(rows.len(), 19);
    for r in &rows {
        let expected = if r.id == ids[5] { ExecutionStatus::Running } else { ExecutionStatus::Success };
        assert_eq!(r.status, expected, "{r:?}");
    }

    // Settlements of the `good` deliveries, each kind beside one of a `poison` delivery.
    let (acks, rest) = good.split_at(5);
    let (retries, rest) = rest.split_at(5);
    let (deads, releases) = rest.split_at(5);
    let ack = |m: &LeasedMessage| store.delivery_ack(DeliveryAckParams { lease: lease(m), execution: None });
    let acked = join_all(acks.iter().chain([&bad[0]]).map(ack)).await;
    let retry = |m: &LeasedMessage| {
        store.delivery_retry(DeliveryRetryParams {
            lease: lease(m),
            delay: std::time::Duration::from_secs(300),
            execution: None,
        })
    };
    let retried = join_all(retries.iter().chain([&bad[1]]).map(retry)).await;
    let dead = |m: &LeasedMessage| {
        let p = DeliveryDeadLetterParams { lease: lease(m), reason: "gave up".into(), execution: None };
        store.delivery_dead_letter(p)
    };
    let lettered = join_all(deads.iter().chain([&bad[2]]).map(dead)).await;
    let release =
        |m: &LeasedMessage| store.delivery_release(DeliveryReleaseParams { lease: lease(m), execution_id: None });
    let released = join_all(releases.iter().chain([&bad[3]]).map(release)).await;
    for (kind, results) in [("ack", &acked), ("retry", &retried), ("dead letter", &lettered), ("release", &released)] {
        let (last, innocent) = results.split_last().unwrap();
        assert!(last.is_err(), "the poisoned {kind} fails");
        for r in innocent {
            assert!(r.is_ok(), "{kind}: {r:?}");
        }
    }
    let state = |id: &str| {
        let store = store.clone();
        let id = id.to_owned();
        async move {
            let m = store.message_get(vqs::store::MessageGetParams { id: id.to_string() }).await.unwrap().unwrap();
            let d = m.deliveries.iter().find(|d| d.consumer_group == "good").unwrap();
            (d.state, d.delivery_count)
        }
    };
    for m in acks {
        assert_eq!(state(&m.message_id).await, (DeliveryState::Acked, 1));
    }
    for m in retries {
        assert_eq!(state(&m.message_id).await, (DeliveryState::Pending, 1));
    }
    for m in deads {
        assert_eq!(state(&m.message_id).await, (DeliveryState::Dead, 1));
    }
    for m in releases {
        assert_eq!(state(&m.message_id).await, (DeliveryState::Pending, 0), "a release is not counted");
    }
    let letters = store.dead_letter_list(vqs::store::DeadLetterListParams { limit: 100 }).await.unwrap();
    assert_eq!(letters.len(), 5);
    assert!(letters.iter().all(|d| d.attempts == 1 && d.consumer_group == "good"));
    // The poisoned deliveries are still leased, untouched.
    let m =
        store.message_get(vqs::store::MessageGetParams { id: bad[0].message_id.to_string() }).await.unwrap().unwrap();
    let d = m.deliveries.iter().find(|d| d.consumer_group == "poison").unwrap();
    assert_eq!((d.state, d.delivery_count), (DeliveryState::Leased, 1));
}
