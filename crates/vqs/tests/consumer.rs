//! The consumer (`QueueHandler`) on a real SQLite store, fed by the dispatcher's own push
//! path (`dispatch_due`) through an in-process pusher: what a job's outcome does to its
//! message — acknowledged, retried after `(10·n)²` s, dead-lettered on the last attempt or a
//! fatal error, a payload that does not fit the job's params dead-lettered at once.

mod support;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use support::{GROUP, HandlerPusher, consumer, sqlite_queue, t0};
use vqs::store::{DeliveryState, ExecutionListParams, ExecutionStatus};
use vqs::{Clock, ConsumerOutcome, JobContext, JobError, Jobbable, Queue, QueueHandler, SendOpts};

#[derive(Serialize, Deserialize)]
struct Params {
    n: u32,
}

/// Succeeds when `n` is even; fails retryably when odd; fails fatally at 13.
struct Parity;

impl Jobbable for Parity {
    type Params = Params;
    const TOPIC: &'static str = "parity";

    async fn perform(&self, p: Params, _: JobContext) -> Result<(), JobError> {
        match p.n {
            13 => Err(JobError::fatal("unlucky")),
            n if n % 2 == 1 => Err(JobError::retryable(format!("{n} is odd"))),
            _ => Ok(()),
        }
    }
}

struct Setup {
    queue: Queue,
    clock: Clock,
    consumer: vqs::ConsumerConfig,
    pusher: HandlerPusher,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let clock = Clock::manual(t0());
    let (queue, dir) = sqlite_queue(clock.clone()).await;
    let consumer = consumer(&queue, Parity::TOPIC).await;
    let pusher = HandlerPusher::new(&queue, QueueHandler::new(Parity));
    Setup { queue, clock, consumer, pusher, _dir: dir }
}

impl Setup {
    async fn send(&self, body: &str) -> String {
        self.queue.send(Parity::TOPIC, body.as_bytes().to_vec(), SendOpts::default()).await.unwrap().message_id
    }

    /// Push what is due; returns how many were pushed.
    async fn dispatch(&self) -> usize {
        vqs::dispatch_due(&self.queue, &self.consumer, &self.pusher, "dev1", 10).await.unwrap()
    }

    async fn delivery(&self, id: &str) -> vqs::store::DeliveryRecord {
        let mut m = self.queue.message(id).await.unwrap().expect("the message");
        m.deliveries.retain(|d| d.consumer_group == GROUP);
        m.deliveries.remove(0)
    }

    async fn attempts(&self, id: &str) -> Vec<(u32, ExecutionStatus, Option<String>)> {
        let p = ExecutionListParams { message_id: Some(id.to_owned()), limit: 100, ..Default::default() };
        let mut runs = self.queue.executions(p).await.unwrap();
        runs.sort_by_key(|r| r.attempt);
        runs.into_iter().map(|r| (r.attempt, r.status, r.error)).collect()
    }
}

#[tokio::test]
async fn a_job_that_succeeds_is_acknowledged_and_its_attempt_recorded() {
    let s = setup().await;
    let id = s.send(r#"{"n":2}"#).await;
    assert_eq!(s.dispatch().await, 1);
    assert_eq!(s.pusher.last().outcome, ConsumerOutcome::Succeeded);
    assert_eq!(s.delivery(&id).await.state, DeliveryState::Acked);
    assert_eq!(s.attempts(&id).await, vec![(1, ExecutionStatus::Success, None)]);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_10n_squared_seconds_and_the_last_is_dead_lettered() {
    let s = setup().await;
    let id = s.send(r#"{"n":1}"#).await;
    for (n, delay) in [(1u32, 100u64), (2, 400)] {
        assert_eq!(s.dispatch().await, 1, "attempt {n} is due");
        let pushed = s.pusher.last();
        assert_eq!(pushed.attempt, n);
        assert_eq!(pushed.outcome, ConsumerOutcome::RetryScheduled { after_seconds: delay, error: "1 is odd".into() });
        let d = s.delivery(&id).await;
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(d.visible_at, s.clock.now() + chrono::Duration::seconds(delay as i64), "due (10·{n})² s later");
        // Not a moment sooner.
        s.clock.advance(Duration::from_secs(delay - 1));
        assert_eq!(s.dispatch().await, 0, "attempt {} is not due yet", n + 1);
        s.clock.advance(Duration::from_secs(1));
    }
    // The third attempt is the last (max_attempts 3): dead-lettered, not retried.
    assert_eq!(s.dispatch().await, 1);
    let reason = "gave up after 3 of 3 attempts: 1 is odd".to_owned();
    assert_eq!(s.pusher.last().outcome, ConsumerOutcome::DeadLettered { reason: reason.clone() });
    assert_eq!(s.delivery(&id).await.state, DeliveryState::Dead);
    let letters = s.queue.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].message_id.as_str(), letters[0].attempts, letters[0].error.as_str()),
        (id.as_str(), 3, reason.as_str())
    );
    let failed = |n| (n, ExecutionStatus::Failed, Some("1 is odd".to_owned()));
    assert_eq!(s.attempts(&id).await, vec![failed(1), failed(2), failed(3)], "one execution per attempt, each closed");
    s.clock.advance(Duration::from_secs(3600));
    assert_eq!(s.dispatch().await, 0, "nothing comes back");
}

#[tokio::test]
async fn a_fatal_error_dead_letters_on_the_first_attempt() {
    let s = setup().await;
    let id = s.send(r#"{"n":13}"#).await;
    assert_eq!(s.dispatch().await, 1);
    assert_eq!(s.pusher.last().outcome, ConsumerOutcome::DeadLettered { reason: "fatal: unlucky".into() });
    assert_eq!(s.delivery(&id).await.state, DeliveryState::Dead);
    let letters = s.queue.dead_letters(10).await.unwrap();
    assert_eq!((letters[0].attempts, letters[0].error.as_str()), (1, "fatal: unlucky"));
    assert_eq!(s.attempts(&id).await, vec![(1, ExecutionStatus::Failed, Some("unlucky".into()))]);
}

#[tokio::test]
async fn a_payload_that_does_not_fit_the_params_is_dead_lettered_at_once() {
    let s = setup().await;
    let id = s.send(r#"{"n":"two"}"#).await;
    assert_eq!(s.dispatch().await, 1);
    let ConsumerOutcome::Rejected { status, error } = s.pusher.last().outcome else {
        panic!("rejected: {:?}", s.pusher.last().outcome)
    };
    assert_eq!(status, 422);
    assert!(error.starts_with(r#"payload does not match the params of job "parity" at n: "#), "{error}");
    assert_eq!(s.delivery(&id).await.state, DeliveryState::Dead, "no retry: the payload will not change");
    let letters = s.queue.dead_letters(10).await.unwrap();
    assert_eq!(letters[0].error, error);
    assert_eq!(letters[0].payload, serde_json::json!({"n": "two"}), "the payload is kept to replay");
    assert_eq!(s.attempts(&id).await, vec![(1, ExecutionStatus::Failed, Some(error))], "the attempt says why");
}

#[tokio::test]
async fn a_push_for_another_topic_is_refused_and_dead_lettered() {
    let s = setup().await;
    // The consumer of "parity" subscribed to every topic starting with "par": a push for
    // "parade" reaches it, as a misconfigured trigger would.
    let c = vqs::ConsumerConfig { topic_pattern: "par*".into(), ..s.consumer.clone() };
    vqs::register_consumers(&s.queue, std::slice::from_ref(&c)).await.unwrap();
    let id = s.queue.send("parade", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    assert_eq!(vqs::dispatch_due(&s.queue, &c, &s.pusher, "dev1", 10).await.unwrap(), 1);
    let outcome = s.pusher.last().outcome;
    assert_eq!(outcome.status(), 400, "{outcome:?}");
    assert_eq!(s.delivery(&id).await.state, DeliveryState::Dead);
    assert!(s.queue.dead_letters(10).await.unwrap()[0].error.contains("check the trigger in vercel.json"));
}

#[tokio::test]
async fn a_lease_settled_elsewhere_first_is_skipped_not_run_twice() {
    let s = setup().await;
    let id = s.send(r#"{"n":2}"#).await;
    // The lease the push carries is acknowledged by someone else before the consumer settles.
    struct AckFirst(HandlerPusher);
    #[async_trait::async_trait]
    impl vqs::Pusher for AckFirst {
        async fn push(&self, route: &str, d: vqs::Delivery) -> Result<u16, String> {
            let lease = vqs::ServiceLease {
                topic: d.topic.clone(),
                consumer_group: d.consumer_group.clone(),
                receipt_handle: d.receipt_handle.clone().unwrap(),
            };
            vqs::QueueService::acknowledge(self.0.service.as_ref(), &lease, None).await.unwrap();
            self.0.push(route, d).await
        }
    }
    let pusher = AckFirst(HandlerPusher::new(&s.queue, QueueHandler::new(Parity)));
    assert_eq!(vqs::dispatch_due(&s.queue, &s.consumer, &pusher, "dev1", 10).await.unwrap(), 1);
    assert!(matches!(pusher.0.last().outcome, ConsumerOutcome::Skipped { .. }), "{:?}", pusher.0.last().outcome);
    assert_eq!(s.delivery(&id).await.state, DeliveryState::Acked);
    let runs = s.attempts(&id).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_ne!(runs[0].1, ExecutionStatus::Running, "the attempt is closed");
}

#[derive(Serialize, Deserialize)]
struct TenantParams {
    tenant: String,
}

/// A job whose message group is its params' tenant (`Jobbable::group`).
struct PerTenant;

impl Jobbable for PerTenant {
    type Params = TenantParams;
    const TOPIC: &'static str = "per-tenant";

    fn group(&self, p: &TenantParams) -> Option<String> {
        Some(p.tenant.clone())
    }

    async fn perform(&self, _: TenantParams, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// On Vercel the platform pushes whatever is due and this database does not hold the
/// message: a push whose job's group (from its params) is paused is deferred by
/// `PAUSED_DEFER` — no attempt, no execution — and runs after the resume.
#[tokio::test]
async fn a_push_of_a_paused_group_that_this_process_did_not_lease_is_deferred() {
    let clock = Clock::manual(t0());
    let (queue, _dir) = sqlite_queue(clock.clone()).await;
    // A consumer whose leases record no attempt: the push arrives as Vercel's do.
    let c = vqs::ConsumerConfig { starts_executions: false, ..consumer(&queue, PerTenant::TOPIC).await };
    let pusher = HandlerPusher::new(&queue, QueueHandler::new(PerTenant));
    queue.pause_group(PerTenant::TOPIC, "acme").await.unwrap();
    // Sent without a group: only the job's params name it (as on Vercel).
    let held = queue.send(PerTenant::TOPIC, br#"{"tenant":"acme"}"#.to_vec(), SendOpts::default()).await.unwrap();
    let free = queue.send(PerTenant::TOPIC, br#"{"tenant":"zeta"}"#.to_vec(), SendOpts::default()).await.unwrap();
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 2);
    let outcomes: Vec<(String, ConsumerOutcome)> =
        pusher.pushed().into_iter().map(|p| (p.message_id, p.outcome)).collect();
    let of = |id: &str| outcomes.iter().find(|(m, _)| m == id).map(|(_, o)| o.clone()).unwrap();
    let defer = vqs::PAUSED_DEFER.as_secs();
    assert_eq!(of(&held.message_id), ConsumerOutcome::Held { held: "paused".into(), after_seconds: defer });
    assert_eq!(of(&free.message_id).status(), 200, "{:?}", of(&free.message_id));
    let runs = |id: String| {
        let queue = queue.clone();
        async move {
            let p = ExecutionListParams { message_id: Some(id), limit: 10, ..Default::default() };
            queue.executions(p).await.unwrap().into_iter().map(|r| (r.attempt, r.status)).collect::<Vec<_>>()
        }
    };
    assert!(runs(held.message_id.clone()).await.is_empty(), "held: nothing ran, nothing recorded");
    let d = queue.message(&held.message_id).await.unwrap().unwrap().deliveries.remove(0);
    assert_eq!((d.visible_at - t0()).num_seconds(), defer as i64, "deferred by PAUSED_DEFER");

    assert!(queue.resume_group(PerTenant::TOPIC, "acme").await.unwrap(), "it was paused");
    clock.advance(vqs::PAUSED_DEFER + Duration::from_secs(1));
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 1);
    assert_eq!(runs(held.message_id).await, vec![(1, ExecutionStatus::Success)], "the deferral spent no attempt");
}

/// A job whose tenant group runs one at a time and starts twice an hour at most.
struct LimitedTenant;

impl Jobbable for LimitedTenant {
    type Params = TenantParams;
    const TOPIC: &'static str = "limited-tenant";

    fn group(&self, p: &TenantParams) -> Option<String> {
        Some(p.tenant.clone())
    }

    fn group_concurrency(&self) -> Option<u32> {
        Some(1)
    }

    fn group_rate_limit(&self) -> Option<vqs::RateLimit> {
        Some(vqs::RateLimit { limit: 2, period_seconds: 3600 })
    }

    async fn perform(&self, _: TenantParams, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn slot(id: &str, now: chrono::DateTime<chrono::Utc>) -> vqs::store::FlowGroupStartParams {
    vqs::store::FlowGroupStartParams {
        consumer_group: GROUP.into(),
        group_key: "acme".into(),
        message_id: id.into(),
        concurrency: Some(1),
        rate: None,
        slot_until: now + chrono::Duration::seconds(60),
        now,
    }
}

/// On Vercel the grouped claim does not run: a push of a group whose slot another function
/// holds is deferred (`group_concurrency`), one over the group's rate is deferred until its
/// bucket allows a start (`rate_limit`) — no attempt, no execution — and a push that ran
/// releases its slot when it settles.
#[tokio::test]
async fn a_push_this_process_did_not_lease_keeps_to_its_groups_limits() {
    let clock = Clock::manual(t0());
    let (queue, _dir) = sqlite_queue(clock.clone()).await;
    // The push arrives as Vercel's do: no attempt recorded, no group limits in the claim.
    let c = vqs::ConsumerConfig { starts_executions: false, ..consumer(&queue, LimitedTenant::TOPIC).await };
    let pusher = HandlerPusher::new(&queue, QueueHandler::new(LimitedTenant));
    // Another function runs one of acme's messages.
    let taken = queue.store().flow_group_start(slot("elsewhere", t0())).await.unwrap();
    assert_eq!(taken, vqs::store::FlowGroupStart::Started);
    let send = |tenant: &str| {
        let body = format!(r#"{{"tenant":"{tenant}"}}"#).into_bytes();
        queue.send(LimitedTenant::TOPIC, body, SendOpts::default())
    };
    let held = send("acme").await.unwrap().message_id;
    let free = send("zeta").await.unwrap().message_id;
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 2);
    let outcome = |id: &str| pusher.pushed().into_iter().rev().find(|p| p.message_id == id).map(|p| p.outcome).unwrap();
    let defer = vqs::GROUP_FULL_DEFER.as_secs();
    assert_eq!(outcome(&held), ConsumerOutcome::Held { held: "group_concurrency".into(), after_seconds: defer });
    assert_eq!(outcome(&free), ConsumerOutcome::Succeeded, "another group runs");
    let runs = |id: String| {
        let queue = queue.clone();
        async move {
            let p = ExecutionListParams { message_id: Some(id), limit: 10, ..Default::default() };
            queue.executions(p).await.unwrap().into_iter().map(|r| (r.attempt, r.status)).collect::<Vec<_>>()
        }
    };
    assert!(runs(held.clone()).await.is_empty(), "held: nothing ran, nothing recorded");
    let d = queue.message(&held).await.unwrap().unwrap().deliveries.remove(0);
    assert_eq!((d.visible_at - t0()).num_seconds(), defer as i64, "deferred by GROUP_FULL_DEFER");

    // The other function settles: acme's push runs, and its own slot is released after it.
    queue.store().flow_group_slot_release(release_of("elsewhere")).await.unwrap();
    clock.advance(vqs::GROUP_FULL_DEFER + Duration::from_secs(1));
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 1);
    assert_eq!(runs(held).await, vec![(1, ExecutionStatus::Success)], "the deferral spent no attempt");
    let after = queue.store().flow_group_start(slot("probe", clock.now())).await.unwrap();
    assert_eq!(after, vqs::store::FlowGroupStart::Started, "the push released acme's slot when it settled");
    queue.store().flow_group_slot_release(release_of("probe")).await.unwrap();

    // Two starts an hour: acme has had one; the second runs, the third waits half an hour
    // (the bucket's next start), with nothing spent.
    let second = send("acme").await.unwrap().message_id;
    let third = send("acme").await.unwrap().message_id;
    // Pushed one after the other (each settles, and frees the slot, before the next).
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 2);
    let ran: Vec<bool> = [&second, &third].iter().map(|id| outcome(id) == ConsumerOutcome::Succeeded).collect();
    assert_eq!(ran.iter().filter(|r| **r).count(), 1, "one of the two ran: {ran:?}");
    let waiting = if ran[0] { &third } else { &second };
    match outcome(waiting) {
        ConsumerOutcome::Held { held, after_seconds } => {
            assert_eq!(held, "rate_limit");
            assert!((1..=1800).contains(&after_seconds), "{after_seconds}");
        }
        o => panic!("not held by the group's rate: {o:?}"),
    }
    assert!(runs(waiting.clone()).await.is_empty(), "held: nothing recorded");
}

fn release_of(id: &str) -> vqs::store::FlowGroupSlotReleaseParams {
    vqs::store::FlowGroupSlotReleaseParams {
        consumer_group: GROUP.into(),
        group_key: "acme".into(),
        message_id: id.into(),
        now: chrono::Utc::now(),
    }
}

/// A push deferred because its group is full starts nothing, so it does not use up the
/// topic's rate limit either (SPEC.md, "Flow control": waiting is free): with two starts an
/// hour for the topic, a push held by its group's concurrency leaves both to the next two
/// pushes of other groups.
#[tokio::test]
async fn a_push_held_by_its_group_gives_the_topics_rate_limit_start_back() {
    let clock = Clock::manual(t0());
    let (queue, _dir) = sqlite_queue(clock.clone()).await;
    // Pushed as Vercel pushes: the claim that hands the pushes over applies no topic limit
    // (a wildcard subscription's claim takes no per-topic start), so only the consumer's
    // own check takes the topic's starts, as on Vercel.
    let c = vqs::ConsumerConfig { starts_executions: false, ..consumer(&queue, "limited-*").await };
    let pusher = HandlerPusher::new(&queue, QueueHandler::new(LimitedTenant));
    let rate = vqs::RateLimit { limit: 2, period_seconds: 3600 };
    let patch = vqs::TopicLimitsPatch { rate_limit: Some(Some(rate)), ..Default::default() };
    queue.set_limits(LimitedTenant::TOPIC, patch).await.unwrap();
    let send = |tenant: &str| {
        let body = format!(r#"{{"tenant":"{tenant}"}}"#).into_bytes();
        queue.send(LimitedTenant::TOPIC, body, SendOpts::default())
    };
    let outcome = |id: &str| pusher.pushed().into_iter().rev().find(|p| p.message_id == id).map(|p| p.outcome).unwrap();

    // Another function runs one of acme's messages: acme's push is held by its group.
    let taken = queue.store().flow_group_start(slot("elsewhere", t0())).await.unwrap();
    assert_eq!(taken, vqs::store::FlowGroupStart::Started);
    let held = send("acme").await.unwrap().message_id;
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 1);
    let defer = vqs::GROUP_FULL_DEFER.as_secs();
    assert_eq!(outcome(&held), ConsumerOutcome::Held { held: "group_concurrency".into(), after_seconds: defer });

    // Both of the hour's starts are still there for two other groups.
    let zeta = send("zeta").await.unwrap().message_id;
    let yota = send("yota").await.unwrap().message_id;
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 2);
    assert_eq!(
        (outcome(&zeta), outcome(&yota)),
        (ConsumerOutcome::Succeeded, ConsumerOutcome::Succeeded),
        "the held push took none of the topic's starts"
    );
    // And the third start of the hour is refused: the limit itself still holds.
    let third = send("kilo").await.unwrap().message_id;
    assert_eq!(vqs::dispatch_due(&queue, &c, &pusher, "dev1", 10).await.unwrap(), 1);
    assert!(
        matches!(outcome(&third), ConsumerOutcome::Held { ref held, .. } if held == "rate_limit"),
        "{:?}",
        outcome(&third)
    );
}
