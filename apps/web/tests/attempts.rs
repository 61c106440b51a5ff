//! Attempts counted apart from deliveries (SPEC.md, "Jobs" → "Attempts vs deliveries"): the
//! attempt number counts real runs of the job, stored by vqs; a delivery that does not run
//! the job (a `/_vqs` receive, a peek, a lease given back unused) spends no attempt.
//! Run on PostgreSQL with `VQS_TEST_BACKEND=postgres`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use chrono::{DateTime, Utc};
use common::{QUEUE_SECRET, TestApp};
use http::{Request, StatusCode};
use vqs::store::{DeliveryClaimParams, DeliveryReleaseParams, DeliveryState, LeaseParams, LeasedMessage};
use vqs::{Clock, Delivery, JobContext, JobError, Jobbable, QueueHandler};

fn t0() -> DateTime<Utc> {
    "2026-01-05T10:00:00Z".parse().unwrap()
}

/// Lease the probe's next due message. `start_executions` as the local dispatcher does
/// (the lease is the start of an attempt), or not, as a `/_vqs` receive does.
async fn claim(app: &TestApp, start_executions: bool) -> LeasedMessage {
    let group = app.consumer("probe").consumer_group;
    let mut leased = app
        .queue()
        .store()
        .delivery_claim(DeliveryClaimParams {
            group_concurrency: None,
            consumer_group: group,
            topic: Some("probe".into()),
            message_id: None,
            limit: 1,
            visibility_seconds: 30,
            start_executions,
            lease_holder: None,
            max_leased: None,
            leased_here: 0,
            rate_limit: None,
            group_rate_limit: None,
            now: app.clock.now(),
        })
        .await
        .unwrap();
    assert_eq!(leased.len(), 1, "one probe due");
    leased.remove(0)
}

/// A `/_vqs` receive whose consumer never runs the job: the lease runs out.
async fn receive_and_let_expire(app: &TestApp, clock: &Clock) -> LeasedMessage {
    let m = claim(app, false).await;
    clock.advance(Duration::from_secs(30));
    m
}

/// `(delivery_count, attempts)` as the admin API shows them, top level and per delivery.
async fn counts(app: &TestApp, id: &str) -> (u64, u64) {
    let (status, body) = app.admin_get(&format!("/api/admin/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let d = &body["deliveries"][0];
    assert_eq!((&body["delivery_count"], &body["attempts"]), (&d["delivery_count"], &d["attempts"]));
    (d["delivery_count"].as_u64().expect("delivery_count"), d["attempts"].as_u64().expect("attempts"))
}

#[tokio::test]
async fn attempts_equal_deliveries_through_retries() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let params = jobs::ProbeParams { fail_attempts: Some(2), ..Default::default() };
    let id = app.queue().job(jobs::Probe).perform_later(params).await.unwrap().message_id;
    assert_eq!(counts(&app, &id).await, (0, 0));
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(counts(&app, &id).await, (1, 1));
    clock.advance(Duration::from_secs(100));
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(counts(&app, &id).await, (2, 2));
    clock.advance(Duration::from_secs(400));
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(counts(&app, &id).await, (3, 3));
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".into()), (2, "failed".into()), (3, "success".into())]);
}

#[tokio::test]
async fn max_attempts_counts_attempts_not_deliveries() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    // The probe's max_attempts is 3: it fails twice, then succeeds on its third attempt.
    let params = jobs::ProbeParams { fail_attempts: Some(2), ..Default::default() };
    let id = app.queue().job(jobs::Probe).perform_later(params).await.unwrap().message_id;
    for _ in 0..3 {
        receive_and_let_expire(&app, &clock).await;
    }
    assert_eq!(counts(&app, &id).await, (3, 0), "three deliveries, none of them ran the job");

    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(counts(&app, &id).await, (4, 1));
    let d = app.queue().message(&id).await.unwrap().unwrap().deliveries.remove(0);
    assert_eq!(d.state, DeliveryState::Pending, "attempt 1 of 3 failed: retried, not dead-lettered");
    assert_eq!(d.visible_at, clock.now() + chrono::Duration::seconds(100), "the backoff of attempt 1: (10·1)² s");
    clock.advance(Duration::from_secs(100));
    assert_eq!(app.dispatch("probe").await, 1);
    clock.advance(Duration::from_secs(400));
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".into()), (2, "failed".into()), (3, "success".into())]);
    assert_eq!(counts(&app, &id).await, (6, 3));
    let d = app.queue().message(&id).await.unwrap().unwrap().deliveries.remove(0);
    assert_eq!(d.state, DeliveryState::Acked);
}

#[tokio::test]
async fn a_lease_given_back_unused_raises_neither_count() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let id = app.queue().job(jobs::Probe).perform_later(Default::default()).await.unwrap().message_id;
    for _ in 0..3 {
        // Leased as the dispatcher leases (recording the attempt), then given back unpushed.
        let m = claim(&app, true).await;
        assert_eq!((m.delivery_count, m.attempts), (1, 1));
        let lease = LeaseParams {
            consumer_group: m.consumer_group.clone(),
            receipt_handle: m.receipt_handle.clone(),
            now: clock.now(),
        };
        app.queue()
            .store()
            .delivery_release(DeliveryReleaseParams { lease, execution_id: m.execution_id })
            .await
            .unwrap();
        assert_eq!(counts(&app, &id).await, (0, 0));
    }
    assert!(app.attempts(&id).await.is_empty(), "no attempt ran");
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "success".into())]);
    assert_eq!(counts(&app, &id).await, (1, 1));
}

#[tokio::test]
async fn a_peek_raises_neither_count() {
    let app = TestApp::new().await;
    let id = app.queue().job(jobs::Probe).perform_later(Default::default()).await.unwrap().message_id;
    let group = app.consumer("probe").consumer_group;
    for _ in 0..2 {
        let req = Request::post(format!("/_vqs/api/v3/topic/probe/consumer/{group}"))
            .header("authorization", format!("Bearer {QUEUE_SECRET}"))
            .header("accept", "application/x-ndjson")
            .header("vqs-visibility-timeout-seconds", "0")
            .body(Body::empty())
            .unwrap();
        let (status, _) = app.call(req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(counts(&app, &id).await, (0, 0));
    }
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "success".into())]);
    assert_eq!(counts(&app, &id).await, (1, 1));
}

/// Records what its context says, and fails its first attempt.
#[derive(Clone, Default)]
struct Witness(Arc<Mutex<Vec<(u32, u32)>>>);

impl Jobbable for Witness {
    type Params = jobs::ProbeParams;
    const TOPIC: &'static str = "probe";

    async fn perform(&self, _: jobs::ProbeParams, ctx: JobContext) -> Result<(), JobError> {
        assert_eq!(ctx.attempt(), ctx.metadata().attempt);
        assert_eq!(ctx.delivery_count(), ctx.metadata().delivery_count);
        self.0.lock().unwrap().push((ctx.attempt(), ctx.delivery_count()));
        if ctx.attempt() == 1 { Err(JobError::retryable("first attempt fails")) } else { Ok(()) }
    }
}

#[tokio::test]
async fn the_job_context_shows_the_attempt_and_the_delivery_count() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let id = app.queue().job(jobs::Probe).perform_later(Default::default()).await.unwrap().message_id;
    let witness = Witness::default();
    let handler = QueueHandler::new(witness.clone());
    receive_and_let_expire(&app, &clock).await;
    receive_and_let_expire(&app, &clock).await;
    for _ in 0..2 {
        // As the local dispatcher pushes: the lease records the attempt, the push carries it.
        let m = claim(&app, true).await;
        handler.handle(app.queue(), Ok(Delivery::from_leased(&m, "dev1"))).await;
        clock.advance(Duration::from_secs(100));
    }
    assert_eq!(*witness.0.lock().unwrap(), vec![(1, 3), (2, 4)]);
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".into()), (2, "success".into())]);
    assert_eq!(counts(&app, &id).await, (4, 2));
}
