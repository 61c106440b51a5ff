//! The local dispatcher on both backends: `maxConcurrency` bounds jobs running at once while
//! it leases ahead, a graceful stop leaves no lease held and no attempt running, and an idle
//! dispatcher is woken by every publish.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use common::TestApp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use vqs::store::{DeliveryState, ExecutionListParams, ExecutionStatus};
use vqs::{ConsumerConfig, DispatcherConfig, JobContext, JobError, Jobbable, QueueHandler, SendOpts};
use vqs_axum::in_process::InProcessPusher;
use vqs_axum::queue_route;

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

#[derive(Serialize, Deserialize)]
struct Nothing {}

/// A job that notes how many of its kind run at once.
struct Counted;

impl Jobbable for Counted {
    type Params = Nothing;
    const TOPIC: &'static str = "counted";

    async fn perform(&self, _: Nothing, _: JobContext) -> Result<(), JobError> {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn wait_for_successes(app: &TestApp, topic: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done: i64 =
            app.queue().stats().await.unwrap().iter().filter(|t| t.topic == topic).map(|t| t.succeeded).sum();
        if done >= n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {done} of {n} succeeded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn max_concurrency_bounds_the_jobs_running_at_once() {
    let app = TestApp::new().await;
    let router = Router::new()
        .route("/api/queue/counted", queue_route(QueueHandler::new(Counted)))
        .with_state(app.state.clone());
    let consumer = ConsumerConfig {
        consumer_group: "counted-group".into(),
        topic_pattern: "counted".into(),
        route_path: "/api/queue/counted".into(),
        max_concurrency: 3,
        starts_executions: true,
        ..ConsumerConfig::from(&app.state.vercel.queue_triggers[0])
    };
    vqs::register_consumers(app.queue(), std::slice::from_ref(&consumer)).await.unwrap();
    let messages = (0..120).map(|_| (b"{}".to_vec(), SendOpts::default()));
    app.queue().send_many("counted", messages).await.unwrap();

    let (stop, stopped) = watch::channel(false);
    let pusher = Arc::new(InProcessPusher::new(router));
    let dispatcher =
        vqs::spawn_dispatcher(app.queue().clone(), vec![consumer], pusher, DispatcherConfig::default(), stopped);
    wait_for_successes(&app, "counted", 120).await;
    stop.send(true).unwrap();
    dispatcher.await.unwrap();

    let most = MOST.load(Ordering::SeqCst);
    assert!((1..=3).contains(&most), "{most} jobs ran at once with maxConcurrency 3");
    let runs = app
        .queue()
        .executions(ExecutionListParams { topic: Some("counted".into()), limit: 1000, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(runs.len(), 120, "one attempt each");
    assert!(runs.iter().all(|r| r.status == ExecutionStatus::Success));
}

#[tokio::test]
async fn a_graceful_stop_leaves_no_lease_held_and_no_attempt_running() {
    let app = TestApp::new().await;
    let messages = (0..600).map(|_| (br#"{"sleep_ms":1}"#.to_vec(), SendOpts::default()));
    let sent = app.queue().send_many("probe", messages).await.unwrap();

    let (stop, stopped) = watch::channel(false);
    let pusher = Arc::new(InProcessPusher::new(app.router.clone()));
    let consumers = vec![app.consumer("probe")];
    let dispatcher =
        vqs::spawn_dispatcher(app.queue().clone(), consumers, pusher, DispatcherConfig::default(), stopped);
    wait_for_successes(&app, "probe", 100).await;
    stop.send(true).unwrap(); // mid-stream: jobs running, settling, and leased ahead
    dispatcher.await.unwrap();

    let mut done = 0;
    for s in &sent {
        let m = app.queue().message(&s.message_id).await.unwrap().unwrap();
        match m.deliveries[0].state {
            DeliveryState::Acked => done += 1,
            DeliveryState::Pending => assert!(m.deliveries[0].visible_at <= app.clock.now(), "given back due at once"),
            other => panic!("{} is {other:?} after the stop", s.message_id),
        }
    }
    assert!(done >= 100, "{done} finished before the stop");
    let running = app
        .queue()
        .executions(ExecutionListParams { status: Some(ExecutionStatus::Running), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert!(running.is_empty(), "attempts left running: {running:?}");
}

#[tokio::test]
async fn an_idle_dispatcher_runs_every_publish_without_polling() {
    // Polling never comes to the rescue here: every message must be claimed because its
    // publish woke the dispatcher — including publishes that land while a claim is in flight
    // and the claims that come back short, after which the dispatcher goes idle.
    let app = TestApp::new().await;
    let (stop, stopped) = watch::channel(false);
    let pusher = Arc::new(InProcessPusher::new(app.router.clone()));
    let config = DispatcherConfig { poll_interval: Duration::from_secs(3600), ..DispatcherConfig::default() };
    let dispatcher = vqs::spawn_dispatcher(app.queue().clone(), vec![app.consumer("probe")], pusher, config, stopped);
    let mut sent = 0;
    for round in 0..40u64 {
        // Alone, in pairs and in small bursts, with and without a pause between them.
        for _ in 0..=(round % 3) {
            app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap();
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(round % 4)).await;
    }
    wait_for_successes(&app, "probe", sent).await;
    stop.send(true).unwrap();
    dispatcher.await.unwrap();
    let runs = app
        .queue()
        .executions(ExecutionListParams { topic: Some("probe".into()), limit: 1000, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(runs.len() as i64, sent, "one attempt each");
}

/// A push that always fails, as a consumer answering 500; counts the pushes it got.
#[derive(Default)]
struct Failing(AtomicUsize);

#[async_trait::async_trait]
impl vqs::Pusher for Failing {
    async fn push(&self, _: &str, _: vqs::Delivery) -> Result<u16, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(500)
    }
}

/// `retryAfterSeconds` is a number > 0 in vercel.json, not an integer: 1.5 s stays 1.5 s
/// (it was cut to whole seconds).
#[tokio::test]
async fn a_fractional_retry_after_seconds_is_kept() {
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-05T10:00:00Z".parse().unwrap();
    let app = TestApp::with_clock(vqs::Clock::manual(t0)).await;
    let config = vqs::VercelConfig::parse(
        r#"{"functions":{"api/queue/half.rs":{"experimentalTriggers":[
             {"type":"queue/v2beta","topic":"half","retryAfterSeconds":1.5}]}}}"#,
    )
    .unwrap();
    let consumer = ConsumerConfig::from(&config.queue_triggers[0]);
    assert_eq!(consumer.retry_after, Duration::from_millis(1500));
    vqs::register_consumers(app.queue(), std::slice::from_ref(&consumer)).await.unwrap();
    let id = app.queue().send("half", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    assert_eq!(vqs::dispatch_due(app.queue(), &consumer, &Failing::default(), "dev1", 1).await.unwrap(), 1);
    let d = app.queue().message(&id).await.unwrap().unwrap().deliveries.remove(0);
    assert_eq!((d.state, d.delivery_count), (DeliveryState::Pending, 1));
    assert_eq!(d.visible_at, t0 + chrono::Duration::milliseconds(1500), "due again 1.5 s after the failed push");
}

/// `maxDeliveries` as Vercel's broker applies it: that many pushes in all; when the next one
/// comes due the message leaves the group — locally into the dead letters (nothing vanishes),
/// where Vercel drops it. Pins today's behaviour (docs/vercel-protocol.md).
#[tokio::test]
async fn after_max_deliveries_pushes_the_message_leaves_the_group() {
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-05T10:00:00Z".parse().unwrap();
    let clock = vqs::Clock::manual(t0);
    let app = TestApp::with_clock(clock.clone()).await;
    let config = vqs::VercelConfig::parse(
        r#"{"functions":{"api/queue/twice.rs":{"experimentalTriggers":[
             {"type":"queue/v2beta","topic":"twice","maxDeliveries":2,"retryAfterSeconds":5}]}}}"#,
    )
    .unwrap();
    let consumer = ConsumerConfig::from(&config.queue_triggers[0]);
    vqs::register_consumers(app.queue(), std::slice::from_ref(&consumer)).await.unwrap();
    let id = app.queue().send("twice", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    let pusher = Failing::default();
    for _ in 0..3 {
        assert_eq!(vqs::dispatch_due(app.queue(), &consumer, &pusher, "dev1", 1).await.unwrap(), 1);
        clock.advance(Duration::from_secs(5));
    }
    assert_eq!(pusher.0.load(Ordering::SeqCst), 2, "two pushes, no third");
    let d = app.queue().message(&id).await.unwrap().unwrap().deliveries.remove(0);
    assert_eq!(d.state, DeliveryState::Dead);
    let letters = app.queue().dead_letters(10).await.unwrap();
    assert!(letters[0].error.contains("maxDeliveries is 2"), "{}", letters[0].error);
    assert_eq!(vqs::dispatch_due(app.queue(), &consumer, &pusher, "dev1", 1).await.unwrap(), 0);
}

/// Forwards to the app's in-process pusher and notes, when the push returns (before the
/// dispatcher gives the slot back itself), whether the consumer already released the slot.
struct SlotWatch(InProcessPusher, std::sync::Mutex<Vec<bool>>);

#[async_trait::async_trait]
impl vqs::Pusher for SlotWatch {
    async fn push(&self, route: &str, delivery: vqs::Delivery) -> Result<u16, String> {
        let slot = delivery.execution_slot.clone().expect("the running dispatcher lends a slot");
        let answer = self.0.push(route, delivery).await;
        self.1.lock().unwrap().push(slot.is_released());
        answer
    }
}

/// The execution slot crosses the router with the in-process push (a request extension) and
/// the consumer route gives it back when the job is done, before it answers.
#[tokio::test]
async fn the_consumer_route_releases_the_slot_of_an_in_process_push() {
    let app = TestApp::new().await;
    let messages = (0..5).map(|_| (b"{}".to_vec(), SendOpts::default()));
    app.queue().send_many("probe", messages).await.unwrap();
    let (stop, stopped) = watch::channel(false);
    let pusher = Arc::new(SlotWatch(InProcessPusher::new(app.router.clone()), Default::default()));
    let consumers = vec![app.consumer("probe")];
    let dispatcher =
        vqs::spawn_dispatcher(app.queue().clone(), consumers, pusher.clone(), DispatcherConfig::default(), stopped);
    wait_for_successes(&app, "probe", 5).await;
    stop.send(true).unwrap();
    dispatcher.await.unwrap();
    assert_eq!(*pusher.1.lock().unwrap(), vec![true; 5], "released by the consumer, not only by the dispatcher");
}

/// `VQS_WORKER_CONCURRENCY` reaches every consumer the dispatcher runs as this process's own
/// limit, in place of the default of 100, and adds no limit counted in the database (the
/// probe trigger has no `maxConcurrency`; the rule against one is `vqs`'s unit test
/// `worker_concurrency_caps_this_process_and_never_raises_the_global_limit`).
#[tokio::test]
async fn worker_concurrency_limits_each_consumer_of_this_process() {
    let unset = TestApp::new().await.consumer("probe");
    assert_eq!((unset.max_concurrency, unset.global_max_concurrency), (100, None), "the default");
    for n in [1, 2, 10_000] {
        let set = TestApp::with_config(|c| c.worker_concurrency = Some(n)).await.consumer("probe");
        assert_eq!(set.max_concurrency, n, "this process runs at most {n} at once");
        assert!(!set.limited_across_processes(), "and nothing is counted across processes");
    }
}
