//! The local dispatcher on a real SQLite store, pushing through an in-process pusher:
//! `maxConcurrency` bounds the jobs running at once, a job's slot goes to the next message
//! as soon as its code is done (before its settlement is written), a failed push gives the
//! lease back for `retryAfterSeconds`, `maxDeliveries` dead-letters, an idle dispatcher
//! is woken by a publish, and a lease waiting in the buffer when its group is paused is
//! given back unrun.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use support::{HandlerPusher, consumer, eventually, sqlite_queue, t0};
use tokio::sync::{Notify, watch};
use vqs::store::{DeliveryState, ExecutionListParams, ExecutionStatus};
use vqs::{
    Clock, ConsumerConfig, Delivery, DispatcherConfig, ExecutionSlot, JobContext, JobError, Jobbable, Pusher, Queue,
    QueueHandler, QueueService, SendOpts,
};

#[derive(Serialize, Deserialize)]
struct Nothing {}

async fn succeeded(queue: &Queue, topic: &str) -> usize {
    let p = ExecutionListParams {
        topic: Some(topic.into()),
        status: Some(ExecutionStatus::Success),
        limit: 10_000,
        ..Default::default()
    };
    queue.executions(p).await.unwrap().len()
}

async fn send_n(queue: &Queue, topic: &str, n: usize) {
    queue.send_many(topic, (0..n).map(|_| (b"{}".to_vec(), SendOpts::default()))).await.unwrap();
}

fn start(queue: &Queue, consumer: ConsumerConfig, pusher: Arc<dyn Pusher>, config: DispatcherConfig) -> Running {
    let (stop, stopped) = watch::channel(false);
    let task = vqs::spawn_dispatcher(queue.clone(), vec![consumer], pusher, config, stopped);
    Running { stop, task }
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

/// Notes how many of its kind run at once, and the most there ever were.
#[derive(Default)]
struct Gauge {
    running: AtomicUsize,
    most: AtomicUsize,
}

struct Counted(Arc<Gauge>);

impl Jobbable for Counted {
    type Params = Nothing;
    const TOPIC: &'static str = "counted";

    async fn perform(&self, _: Nothing, _: JobContext) -> Result<(), JobError> {
        let now = self.0.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_concurrency_bounds_the_jobs_running_at_once() {
    let (queue, _dir) = sqlite_queue(Clock::system()).await;
    let gauge = Arc::new(Gauge::default());
    let c = ConsumerConfig { max_concurrency: 3, ..consumer(&queue, Counted::TOPIC).await };
    send_n(&queue, Counted::TOPIC, 90).await;
    let pusher = Arc::new(HandlerPusher::new(&queue, QueueHandler::new(Counted(gauge.clone()))));
    let running = start(&queue, c, pusher.clone(), DispatcherConfig::default());
    eventually("all 90 succeeded", async || succeeded(&queue, Counted::TOPIC).await == 90).await;
    running.stop().await;
    let most = gauge.most.load(Ordering::SeqCst);
    assert!((1..=3).contains(&most), "{most} jobs ran at once with maxConcurrency 3");
    let pushed = pusher.pushed();
    assert_eq!(pushed.len(), 90, "one push each");
    assert!(pushed.iter().all(|p| p.had_slot), "every push of the running dispatcher carries its slot");
}

/// Runs one at a time; says when each starts.
struct Started(Arc<Notify>, Arc<AtomicUsize>);

impl Jobbable for Started {
    type Params = Nothing;
    const TOPIC: &'static str = "started";

    async fn perform(&self, _: Nothing, _: JobContext) -> Result<(), JobError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.notify_one();
        Ok(())
    }
}

/// The queue's own service, except that the first acknowledgement waits until `open` and
/// notes whether the push's execution slot was already free when the settlement began.
struct GatedAck {
    inner: vqs::LocalQueueService,
    open: Arc<Notify>,
    gated: AtomicUsize,
    slots: Arc<Mutex<Vec<ExecutionSlot>>>,
    slot_free_at_settlement: Mutex<Vec<bool>>,
}

#[async_trait]
impl QueueService for GatedAck {
    async fn send(&self, p: vqs::store::MessageSendParams) -> Result<vqs::SendResult, vqs::ServiceError> {
        self.inner.send(p).await
    }
    async fn receive_by_id(&self, p: vqs::ReceiveByIdParams) -> Result<vqs::store::LeasedMessage, vqs::ServiceError> {
        self.inner.receive_by_id(p).await
    }
    async fn acknowledge(
        &self,
        lease: &vqs::ServiceLease,
        closing: Option<vqs::store::ExecutionFinishParams>,
    ) -> Result<(), vqs::ServiceError> {
        let free = self.slots.lock().unwrap().iter().all(ExecutionSlot::is_released);
        self.slot_free_at_settlement.lock().unwrap().push(free);
        if self.gated.fetch_add(1, Ordering::SeqCst) == 0 {
            self.open.notified().await;
        }
        self.inner.acknowledge(lease, closing).await
    }
    async fn extend(&self, lease: &vqs::ServiceLease, seconds: u32) -> Result<(), vqs::ServiceError> {
        self.inner.extend(lease, seconds).await
    }
    async fn retry_after(
        &self,
        lease: &vqs::ServiceLease,
        seconds: u32,
        closing: Option<vqs::store::ExecutionFinishParams>,
    ) -> Result<(), vqs::ServiceError> {
        self.inner.retry_after(lease, seconds, closing).await
    }
    async fn dead_letter(
        &self,
        lease: &vqs::ServiceLease,
        letter: vqs::DeadLetter,
        closing: Option<vqs::store::ExecutionFinishParams>,
    ) -> Result<(), vqs::ServiceError> {
        self.inner.dead_letter(lease, letter, closing).await
    }
}

/// A pusher that keeps the slot each push carries (for the service to look at), then hands
/// the push to the handler.
struct SlotKeeper(HandlerPusher, Arc<Mutex<Vec<ExecutionSlot>>>);

#[async_trait]
impl Pusher for SlotKeeper {
    async fn push(&self, route: &str, d: Delivery) -> Result<u16, String> {
        {
            let mut slots = self.1.lock().unwrap();
            slots.clear();
            slots.extend(d.execution_slot.clone());
        }
        self.0.push(route, d).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_goes_to_the_next_message_when_the_job_is_done_before_its_settlement_is_written() {
    let (queue, _dir) = sqlite_queue(Clock::system()).await;
    let c = ConsumerConfig { max_concurrency: 1, ..consumer(&queue, Started::TOPIC).await };
    let (started, count) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
    let slots = Arc::new(Mutex::new(Vec::new()));
    let service = Arc::new(GatedAck {
        inner: vqs::LocalQueueService::new(queue.clone()),
        open: Arc::new(Notify::new()),
        gated: AtomicUsize::new(0),
        slots: slots.clone(),
        slot_free_at_settlement: Mutex::new(Vec::new()),
    });
    let handler = QueueHandler::new(Started(started.clone(), count.clone()));
    let pusher = Arc::new(SlotKeeper(HandlerPusher::with_service(&queue, handler, service.clone()), slots));
    send_n(&queue, Started::TOPIC, 2).await;
    let running = start(&queue, c, pusher.clone(), DispatcherConfig::default());
    // The first job's acknowledgement is held back, yet the second job starts: its one slot
    // was given back when the first job's code was done.
    eventually("the second job started while the first one's ack waits", async || count.load(Ordering::SeqCst) == 2)
        .await;
    // The second one is even settled while the first one's settlement waits.
    eventually("the second job acknowledged", async || succeeded(&queue, Started::TOPIC).await == 1).await;
    let p = ExecutionListParams { status: Some(ExecutionStatus::Running), limit: 10, ..Default::default() };
    assert_eq!(queue.executions(p).await.unwrap().len(), 1, "the first attempt is not closed yet");
    service.open.notify_one();
    eventually("both acknowledged", async || succeeded(&queue, Started::TOPIC).await == 2).await;
    running.stop().await;
    assert_eq!(*service.slot_free_at_settlement.lock().unwrap(), vec![true, true], "freed before each settlement");
}

/// A consumer that answers every push with `answer`, counting them.
struct Answer(Result<u16, String>, AtomicUsize);

#[async_trait]
impl Pusher for Answer {
    async fn push(&self, _: &str, _: Delivery) -> Result<u16, String> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.clone()
    }
}

#[tokio::test]
async fn a_failed_push_gives_the_lease_back_for_retry_after_and_closes_its_attempt() {
    for (answer, why) in
        [(Err("connection refused".to_owned()), "push failed: connection refused"), (Ok(503), "consumer answered 503")]
    {
        let clock = Clock::manual(t0());
        let (queue, _dir) = sqlite_queue(clock.clone()).await;
        let c = ConsumerConfig { retry_after: Duration::from_secs(30), ..consumer(&queue, "flaky").await };
        let id = queue.send("flaky", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
        let pusher = Answer(answer, AtomicUsize::new(0));
        assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 1);
        let d = queue.message(&id).await.unwrap().unwrap().deliveries.remove(0);
        assert_eq!((d.state, d.delivery_count), (DeliveryState::Pending, 1), "{why}: the lease is given back");
        assert_eq!(d.visible_at, t0() + chrono::Duration::seconds(30), "{why}: due after retryAfterSeconds");
        let runs = queue
            .executions(ExecutionListParams { message_id: Some(id.clone()), limit: 10, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].status, runs[0].error.as_deref()), (ExecutionStatus::Failed, Some(why)));
        // Due again after the delay, not before.
        clock.advance(Duration::from_secs(29));
        assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 0, "{why}");
        clock.advance(Duration::from_secs(1));
        assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 1, "{why}");
        assert_eq!(pusher.1.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn after_max_deliveries_the_message_is_dead_lettered_without_a_push() {
    let clock = Clock::manual(t0());
    let (queue, _dir) = sqlite_queue(clock.clone()).await;
    let c =
        ConsumerConfig { max_deliveries: 2, retry_after: Duration::from_secs(5), ..consumer(&queue, "twice").await };
    let id = queue.send("twice", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    let pusher = Answer(Ok(500), AtomicUsize::new(0));
    for _ in 0..3 {
        assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 1).await.unwrap(), 1);
        clock.advance(Duration::from_secs(5));
    }
    assert_eq!(pusher.1.load(Ordering::SeqCst), 2, "two pushes, no third");
    let d = queue.message(&id).await.unwrap().unwrap().deliveries.remove(0);
    assert_eq!(d.state, DeliveryState::Dead);
    let letters = queue.dead_letters(10).await.unwrap();
    assert!(letters[0].error.contains("maxDeliveries is 2"), "{}", letters[0].error);
    let running = queue
        .executions(ExecutionListParams { status: Some(ExecutionStatus::Running), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert!(running.is_empty(), "the third lease's attempt is closed: {running:?}");
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 1).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_dispatcher_is_woken_by_a_publish() {
    // The poll interval is an hour: only the publish's wake-up can get these messages pushed.
    let (queue, _dir) = sqlite_queue(Clock::system()).await;
    let gauge = Arc::new(Gauge::default());
    let c = consumer(&queue, Counted::TOPIC).await;
    let pusher = Arc::new(HandlerPusher::new(&queue, QueueHandler::new(Counted(gauge))));
    let config = DispatcherConfig { poll_interval: Duration::from_secs(3600), ..DispatcherConfig::default() };
    let running = start(&queue, c, pusher.clone(), config);
    for sent in 1..=5 {
        // Let the dispatcher go idle (its claim came back empty), then publish one.
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.send(Counted::TOPIC, b"{}".to_vec(), SendOpts::default()).await.unwrap();
        eventually("the publish is pushed", async || succeeded(&queue, Counted::TOPIC).await == sent).await;
    }
    running.stop().await;
    assert_eq!(pusher.pushed().len(), 5, "one push each");
}

/// A job type's `group_rate_limit` through the dispatcher's claim: each tenant starts its
/// burst, then waits for its bucket, while another tenant runs.
#[tokio::test]
async fn a_group_rate_limit_spaces_one_groups_starts_and_not_anothers() {
    struct PerTenant;
    impl Jobbable for PerTenant {
        type Params = Nothing;
        const TOPIC: &'static str = "per-tenant";
        fn group_rate_limit(&self) -> Option<vqs::RateLimit> {
            Some(vqs::RateLimit { limit: 1, period_seconds: 60 })
        }
        async fn perform(&self, _: Nothing, _: JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }
    let clock = Clock::manual(t0());
    let (queue, _dir) = sqlite_queue(clock.clone()).await;
    let c =
        ConsumerConfig { group_rate_limit: PerTenant.group_rate_limit(), ..consumer(&queue, PerTenant::TOPIC).await };
    vqs::register_consumers(&queue, std::slice::from_ref(&c)).await.unwrap();
    let pusher = HandlerPusher::new(&queue, QueueHandler::new(PerTenant));
    for group in ["acme", "acme", "acme", "zeta"] {
        let opts = SendOpts { group: Some(group.into()), ..SendOpts::default() };
        queue.send(PerTenant::TOPIC, b"{}".to_vec(), opts).await.unwrap();
    }
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 2, "one of acme, one of zeta");
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 0, "acme waits for its bucket");
    clock.advance(Duration::from_secs(60));
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 1, "a minute later, one more");
    assert_eq!(succeeded(&queue, PerTenant::TOPIC).await, 3);
}

/// Holds while its params say so, until the gate opens.
struct Gated(Arc<Notify>);

#[derive(Serialize, Deserialize)]
struct Hold {
    hold: bool,
}

impl Jobbable for Gated {
    type Params = Hold;
    const TOPIC: &'static str = "gated";

    async fn perform(&self, p: Hold, _: JobContext) -> Result<(), JobError> {
        if p.hold {
            self.0.notified().await;
        }
        Ok(())
    }
}

async fn send_gated(queue: &Queue, hold: bool, group: Option<&str>) -> String {
    let body = serde_json::to_vec(&Hold { hold }).unwrap();
    let opts = SendOpts { group: group.map(str::to_owned), ..SendOpts::default() };
    queue.send(Gated::TOPIC, body, opts).await.unwrap().message_id
}

async fn delivery_state(queue: &Queue, id: &str) -> (DeliveryState, u32) {
    let m = queue.message(id).await.unwrap().expect("the message");
    (m.deliveries[0].state, m.deliveries[0].attempts)
}

/// A one-slot dispatcher of `Gated` that leases far ahead (`config`'s prefetch is made long),
/// given a rate by two quick jobs, its slot then held by a job that waits for the gate:
/// whatever is sent next is leased into its buffer. Returns it, its pusher and the gate.
async fn one_slot_held(queue: &Queue, config: DispatcherConfig) -> (Running, Arc<HandlerPusher>, Arc<Notify>) {
    let gate = Arc::new(Notify::new());
    let c = ConsumerConfig { max_concurrency: 1, ..consumer(queue, Gated::TOPIC).await };
    let pusher = Arc::new(HandlerPusher::new(queue, QueueHandler::new(Gated(gate.clone()))));
    let config = DispatcherConfig { prefetch: Duration::from_secs(60), ..config };
    let running = start(queue, c, pusher.clone(), config);
    // Two quick jobs over 150 ms give it a rate.
    send_gated(queue, false, None).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    send_gated(queue, false, None).await;
    eventually("the two quick jobs ran", async || succeeded(queue, Gated::TOPIC).await == 2).await;
    // One job takes the slot and holds it.
    let holder = send_gated(queue, true, None).await;
    eventually("the holder runs", async || delivery_state(queue, &holder).await.0 == DeliveryState::Leased).await;
    (running, pusher, gate)
}

/// A lease already waiting in the dispatcher's buffer when its message group is paused is
/// given back unrun — no push, no attempt spent — and runs after the resume, as a paused
/// topic's does: nothing new of a paused group starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_lease_of_a_group_paused_after_its_claim_is_given_back_unrun() {
    let (queue, _dir) = sqlite_queue(Clock::system()).await;
    let (running, pusher, gate) = one_slot_held(&queue, DispatcherConfig::default()).await;
    // Two of group A are leased behind the holder.
    let a = [send_gated(&queue, false, Some("A")).await, send_gated(&queue, false, Some("A")).await];
    for id in &a {
        eventually("A's message is leased into the buffer", async || {
            delivery_state(&queue, id).await.0 == DeliveryState::Leased
        })
        .await;
    }
    queue.pause_group(Gated::TOPIC, "A").await.unwrap();
    gate.notify_one();
    eventually("the holder finished", async || succeeded(&queue, Gated::TOPIC).await == 3).await;
    for id in &a {
        eventually("A's lease is given back", async || delivery_state(&queue, id).await.0 == DeliveryState::Pending)
            .await;
        assert_eq!(delivery_state(&queue, id).await.1, 0, "no attempt spent on a held message");
    }
    assert!(pusher.pushed().iter().all(|p| !a.contains(&p.message_id)), "nothing of the paused group was pushed");
    // Resumed: both run, once each.
    queue.resume_group(Gated::TOPIC, "A").await.unwrap();
    eventually("A ran after the resume", async || succeeded(&queue, Gated::TOPIC).await == 5).await;
    running.stop().await;
    for id in &a {
        assert_eq!(pusher.pushed().iter().filter(|p| &p.message_id == id).count(), 1, "{id} pushed once");
    }
}

/// A graceful stop gives back every lease still waiting in the buffer, unrun and with no
/// attempt spent, so another process can take them at once instead of after their leases
/// run out; the job still running is let finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_gives_back_every_buffered_lease_unrun() {
    let (queue, _dir) = sqlite_queue(Clock::system()).await;
    let config = DispatcherConfig { shutdown_grace: Duration::from_millis(100), ..DispatcherConfig::default() };
    let (running, pusher, gate) = one_slot_held(&queue, config).await;
    let mut waiting = Vec::new();
    for _ in 0..20 {
        waiting.push(send_gated(&queue, false, None).await);
    }
    for id in &waiting {
        eventually("leased into the buffer", async || delivery_state(&queue, id).await.0 == DeliveryState::Leased)
            .await;
    }
    running.stop().await;
    for id in &waiting {
        assert_eq!(delivery_state(&queue, id).await, (DeliveryState::Pending, 0), "{id} given back, no attempt spent");
    }
    assert!(pusher.pushed().iter().all(|p| !waiting.contains(&p.message_id)), "nothing buffered was pushed");
    gate.notify_one();
    eventually("the holder finished", async || succeeded(&queue, Gated::TOPIC).await == 3).await;
}
