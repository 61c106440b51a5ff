//! The core promises, end to end through the real consumer routes on real SQLite:
//! retries on the (10·n)² schedule, dead letters and replay, dedup, bad deliveries.

mod common;

use std::time::Duration;

use axum::body::Body;
use chrono::{DateTime, Utc};
use common::{QUEUE_SECRET, TestApp};
use http::{Request, StatusCode};
use serde_json::json;
use vqs::{Clock, PerformOpts, store::DeliveryState};

fn t0() -> DateTime<Utc> {
    "2026-01-05T10:00:00Z".parse().unwrap()
}

async fn delivery_of(app: &TestApp, id: &str) -> vqs::store::DeliveryRecord {
    app.queue().message(id).await.unwrap().expect("message exists").deliveries.into_iter().next().expect("one delivery")
}

#[tokio::test]
async fn a_probe_runs_once_and_succeeds() {
    let app = TestApp::new().await;
    let sent = app.queue().job(jobs::Probe).perform_later(jobs::ProbeParams::default()).await.unwrap();
    assert!(!sent.duplicate);
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&sent.message_id).await, vec![(1, "success".to_owned())]);
    assert_eq!(delivery_of(&app, &sent.message_id).await.state, DeliveryState::Acked);
    assert_eq!(app.dispatch("probe").await, 0, "an acknowledged message is not delivered again");
}

#[tokio::test]
async fn failed_attempts_are_retried_after_100s_then_400s() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let params = jobs::ProbeParams { fail_attempts: Some(2), ..Default::default() };
    let id = app.queue().job(jobs::Probe).perform_later(params).await.unwrap().message_id;

    assert_eq!(app.dispatch("probe").await, 1);
    let d = delivery_of(&app, &id).await;
    assert_eq!((d.state, d.delivery_count), (DeliveryState::Pending, 1));
    assert_eq!(d.visible_at, t0() + chrono::Duration::seconds(100), "attempt 1 failed: next try after (10·1)² s");

    clock.advance(Duration::from_secs(99));
    assert_eq!(app.dispatch("probe").await, 0, "not due before 100 s");
    clock.advance(Duration::from_secs(1));
    assert_eq!(app.dispatch("probe").await, 1);
    let d = delivery_of(&app, &id).await;
    assert_eq!(d.visible_at, t0() + chrono::Duration::seconds(100 + 400), "attempt 2 failed: next try after (10·2)² s");

    clock.advance(Duration::from_secs(400));
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".into()), (2, "failed".into()), (3, "success".into())]);
    assert_eq!(delivery_of(&app, &id).await.state, DeliveryState::Acked);
    let errors: Vec<_> = app
        .queue()
        .executions(vqs::store::ExecutionListParams { message_id: Some(id), limit: 10, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.error)
        .collect();
    assert!(errors.iter().all(|e| e.contains("probe asked to fail")), "{errors:?}");
}

#[tokio::test]
async fn a_fatal_failure_is_dead_lettered_at_once_and_replay_runs_it_again() {
    let app = TestApp::new().await;
    let params = jobs::ProbeParams { fatal: Some(true), ..Default::default() };
    let id = app.queue().job(jobs::Probe).perform_later(params).await.unwrap().message_id;
    app.dispatch("probe").await;

    assert_eq!(app.attempts(&id).await, vec![(1, "failed".into())]);
    assert_eq!(delivery_of(&app, &id).await.state, DeliveryState::Dead);
    assert_eq!(app.dispatch("probe").await, 0, "gone from the queue");
    let dead = app.queue().dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, id);
    assert_eq!(dead[0].payload, json!({"fatal": true}));
    assert!(dead[0].error.contains("probe asked to fail fatally"), "{}", dead[0].error);

    let replayed = app.queue().dead_letter_replay(dead[0].id).await.unwrap();
    assert!(app.queue().dead_letters(10).await.unwrap().is_empty());
    assert_eq!(app.dispatch("probe").await, 1, "the replay is delivered");
    assert_eq!(app.attempts(&replayed.message_id).await, vec![(1, "failed".into())]);
}

#[tokio::test]
async fn exhausting_max_attempts_dead_letters_and_a_replay_can_succeed() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    // Fails attempts 1..=3 of this message; max_attempts is 3.
    let params = jobs::ProbeParams { fail_attempts: Some(3), ..Default::default() };
    let id = app.queue().job(jobs::Probe).perform_later(params).await.unwrap().message_id;
    for wait in [0, 100, 400] {
        clock.advance(Duration::from_secs(wait));
        assert_eq!(app.dispatch("probe").await, 1);
    }
    assert_eq!(app.attempts(&id).await.len(), 3);
    assert_eq!(delivery_of(&app, &id).await.state, DeliveryState::Dead);
    clock.advance(Duration::from_secs(10_000));
    assert_eq!(app.dispatch("probe").await, 0, "no fourth attempt");

    let dead = app.queue().dead_letters(10).await.unwrap();
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].error.starts_with("gave up after 3 of 3 attempts"), "{}", dead[0].error);
    // A replay is a fresh message: attempt 1 again, which this probe fails; 2 and 3 fail; then
    // it is dead again. The replay really ran.
    let replayed = app.queue().dead_letter_replay(dead[0].id).await.unwrap();
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&replayed.message_id).await, vec![(1, "failed".into())]);
}

#[tokio::test]
async fn the_same_idempotency_key_within_the_retention_queues_one_message() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let job = app.queue().job(jobs::Probe);
    let opts = PerformOpts { idempotency_key: Some("order-42".into()), ..Default::default() };
    let first = job.perform_later_with(Default::default(), opts.clone()).await.unwrap();
    let second = job.perform_later_with(Default::default(), opts.clone()).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(app.dispatch("probe").await, 1, "one message");

    // SPEC "Dedup": the key dedups for the original's whole retention (24 h), after it ran,
    // and even after retention of finished messages (here 1 h) would have removed it.
    let after_ack = job.perform_later_with(Default::default(), opts.clone()).await.unwrap();
    assert_eq!((after_ack.duplicate, &after_ack.message_id), (true, &first.message_id), "acknowledged, not forgotten");
    clock.advance(Duration::from_secs(2 * 3600));
    let short = vqs::RetentionConfig { messages: Duration::from_secs(3600), ..Default::default() };
    app.queue().maintenance(&short).await.unwrap();
    assert!(app.queue().message(&first.message_id).await.unwrap().is_some(), "kept while its key dedups");
    let later = job.perform_later_with(Default::default(), opts.clone()).await.unwrap();
    assert_eq!((later.duplicate, &later.message_id), (true, &first.message_id));
    assert_eq!(app.dispatch("probe").await, 0, "nothing new queued");

    // Once the original's retention has ended, the key is free again.
    clock.advance(Duration::from_secs(22 * 3600 + 1));
    let third = job.perform_later_with(Default::default(), opts).await.unwrap();
    assert!(!third.duplicate);
    assert_ne!(third.message_id, first.message_id);
    app.queue().maintenance(&short).await.unwrap();
    assert!(app.queue().message(&first.message_id).await.unwrap().is_none(), "pruned once expired");
}

#[tokio::test]
async fn a_jobs_dedup_key_applies_to_perform_later() {
    let app = TestApp::new().await;
    let job = app.queue().job(jobs::SyncPatient);
    let params =
        jobs::SyncPatientParams { window_start: "2026-01-05T10:00:00Z".into(), patient_ids: vec!["p1".into()] };
    let a = job.perform_later(params.clone()).await.unwrap();
    let b = job.perform_later(params).await.unwrap();
    assert!(b.duplicate && a.message_id == b.message_id);
}

#[tokio::test]
async fn a_delay_holds_the_message_until_due() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let opts = PerformOpts { delay: Duration::from_secs(30), ..Default::default() };
    let id = app.queue().job(jobs::Probe).perform_later_with(Default::default(), opts).await.unwrap().message_id;
    assert_eq!(app.dispatch("probe").await, 0);
    clock.advance(Duration::from_secs(30));
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "success".into())]);
}

#[tokio::test]
async fn sync_patient_checkpoints_its_progress() {
    let app = TestApp::new().await;
    let params = jobs::SyncPatientParams {
        window_start: "2026-01-05T11:00:00Z".into(),
        patient_ids: vec!["p1".into(), "p2".into(), " ".into()],
    };
    let id = app.queue().job(jobs::SyncPatient).perform_later(params).await.unwrap().message_id;
    app.dispatch("sync-patient").await;
    // p1 and p2 were synced and checkpointed before the blank id failed the attempt fatally.
    let group = app.consumer("sync-patient").consumer_group;
    let saved = app
        .queue()
        .store()
        .checkpoint_get(vqs::store::CheckpointGetParams {
            message_id: id.to_string(),
            consumer_group: group.to_string(),
        })
        .await
        .unwrap();
    assert_eq!(saved, Some(json!({"done": 2})));
    let dead = app.queue().dead_letters(10).await.unwrap();
    assert!(dead[0].error.contains("patient #3 has an empty id"), "{}", dead[0].error);
}

/// A job that saves a cursor, fails, and on its next attempt must resume from the cursor.
struct Resumable;

impl vqs::Jobbable for Resumable {
    type Params = ();
    const TOPIC: &'static str = "resumable";
    async fn perform(&self, _: (), ctx: vqs::JobContext) -> Result<(), vqs::JobError> {
        let cursor: Option<u32> = ctx.checkpoint().await?;
        match (ctx.attempt(), cursor) {
            (1, None) => {
                ctx.save_checkpoint(&500u32).await?;
                Err(vqs::JobError::retryable("upstream timed out after item 500"))
            }
            (2, Some(500)) => Ok(()),
            other => Err(vqs::JobError::fatal(format!("unexpected attempt/cursor {other:?}"))),
        }
    }
}

#[tokio::test]
async fn a_retry_reads_back_the_checkpoint_of_the_previous_attempt() {
    let app = TestApp::new().await;
    let job = app.queue().job(Resumable);
    let meta = |attempt| vqs::MessageMetadata {
        message_id: "msg_resumable".into(),
        delivery_count: attempt,
        attempt,
        created_at: Utc::now(),
        expires_at: Utc::now(),
        topic_name: "resumable".into(),
        consumer_group: "g".into(),
        region: None,
    };
    let first = job.run_tracked((), meta(1)).await.unwrap_err();
    assert!(!first.is_fatal());
    job.run_tracked((), meta(2)).await.expect("attempt 2 resumes from the checkpoint");
    assert_eq!(app.attempts("msg_resumable").await, vec![(1, "failed".into()), (2, "success".into())]);
}

fn push(path: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut req = Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn the_consumer_route_refuses_a_push_without_the_queue_proof() {
    let app = TestApp::new().await;
    let id = app.queue().job(jobs::Probe).perform_later(Default::default()).await.unwrap().message_id;
    let headers = [
        ("ce-type", "com.vercel.queue.v2beta"),
        ("ce-vqsqueuename", "probe"),
        ("ce-vqsconsumergroup", "api_Squeue_Sprobe_Drs"),
        ("ce-vqsmessageid", id.as_str()),
        ("ce-vqsdeliverycount", "1"),
    ];
    for auth in [None, Some("Bearer wrong"), Some("Bearer"), Some(QUEUE_SECRET)] {
        let mut h = headers.to_vec();
        if let Some(a) = auth {
            h.push(("authorization", a));
        }
        let h: Vec<(&str, &str)> = h;
        // Spoofable headers never count as proof.
        let mut all = h.clone();
        all.extend([("user-agent", "vercel-queue/1.0"), ("x-forwarded-for", "127.0.0.1"), ("host", "localhost")]);
        let (status, body) = app.call(push("/api/queue/probe", &all, "{}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains("VQS_QUEUE_SECRET"));
        assert!(!body.to_string().contains(QUEUE_SECRET));
    }
    assert!(app.attempts(&id).await.is_empty(), "nothing ran");
}

#[tokio::test]
async fn an_unknown_topic_is_404() {
    let app = TestApp::new().await;
    let bearer = format!("Bearer {QUEUE_SECRET}");
    let (status, _) = app.call(push("/api/queue/no-such-job", &[("authorization", &bearer)], "{}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_malformed_delivery_gets_a_4xx_naming_the_problem() {
    let app = TestApp::new().await;
    let bearer = format!("Bearer {QUEUE_SECRET}");
    let (status, body) = app.call(push("/api/queue/probe", &[("authorization", &bearer)], "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("missing header ce-type"), "{body}");

    let (status, body) = app
        .call(push(
            "/api/queue/probe",
            &[("authorization", &bearer), ("ce-type", "com.vercel.queue.v2beta"), ("ce-vqsqueuename", "probe")],
            "{}",
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("missing header ce-vqsconsumergroup"), "{body}");
}

#[tokio::test]
async fn a_payload_that_does_not_fit_the_params_is_dead_lettered_with_the_reason() {
    let app = TestApp::new().await;
    let sent = app.queue().send("probe", br#"{"sleep_ms":"soon"}"#.to_vec(), Default::default()).await.unwrap();
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(delivery_of(&app, &sent.message_id).await.state, DeliveryState::Dead);
    let dead = app.queue().dead_letters(10).await.unwrap();
    assert!(dead[0].error.contains("payload does not match the params of job \"probe\""), "{}", dead[0].error);
    assert!(dead[0].error.contains("sleep_ms"), "{}", dead[0].error);
    assert_eq!(app.dispatch("probe").await, 0, "not redelivered forever");
    // The attempt is on record as failed, with the same reason, for operators to see.
    assert_eq!(app.attempts(&sent.message_id).await, vec![(1, "failed".to_owned())]);
    let run = app
        .queue()
        .executions(vqs::store::ExecutionListParams {
            message_id: Some(sent.message_id),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(run[0].error.as_deref(), Some(dead[0].error.as_str()));
}

#[tokio::test]
async fn a_push_over_http_with_the_proof_is_handled_and_acknowledged() {
    let app = TestApp::new().await;
    // Lease it the way the platform would, then push it ourselves with the secret.
    let consumer = app.consumer("probe");
    let id = app.queue().job(jobs::Probe).perform_later(Default::default()).await.unwrap().message_id;
    let leased = app
        .queue()
        .store()
        .delivery_claim(vqs::store::DeliveryClaimParams {
            group_concurrency: None,
            consumer_group: consumer.consumer_group.clone(),
            topic: None,
            message_id: None,
            limit: 1,
            visibility_seconds: 60,
            start_executions: false,
            lease_holder: None,
            max_leased: None,
            leased_here: 0,
            rate_limit: None,
            group_rate_limit: None,
            now: Utc::now(),
        })
        .await
        .unwrap();
    let d = vqs::Delivery::from_leased(&leased[0], "dev1");
    let mut req = Request::post("/api/queue/probe").header("authorization", format!("Bearer {QUEUE_SECRET}"));
    for (k, v) in d.headers() {
        req = req.header(k, v);
    }
    let (status, body) = app.call(req.body(Body::from(d.body.clone())).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(app.attempts(&id).await, vec![(1, "success".into())]);
    assert_eq!(delivery_of(&app, &id).await.state, DeliveryState::Acked);
}
