//! Test helpers for the jobs of an app: run a job's `perform` with a working context, assert
//! what was enqueued, and drain a queue through the real consumer path on a manual clock —
//! Oban's `Oban.Testing` and `drain_queue(with_scheduled: true)`, River's `rivertest`.
//!
//! Every helper takes a [`Queue`] the test built over a real store (`vqs-testing`'s
//! `TestQueue` builds one on a temporary SQLite file, or a fresh PostgreSQL database, and
//! wraps these helpers as methods). Nothing here is a fake: checkpoints, progress and the
//! sync log are written to that store, and [`drain`] leases, runs, retries and dead-letters
//! exactly as the local dispatcher does.
//!
//! - [`perform_job`] / [`perform_job_with`]: the job's `perform` on params that went
//!   through JSON, with a [`JobContext`] for the given attempt; returns its result.
//! - [`all_enqueued`], [`assert_enqueued`], [`assert_enqueued_where`], [`refute_enqueued`],
//!   [`refute_enqueued_where`]: messages of a job's topic still to be worked, as typed params.
//! - [`subscribe`] + [`drain`]: work every due message through the jobs' [`QueueHandler`]s
//!   (tracked executions, retries, dead letters); with [`DrainOpts::with_scheduled`] the
//!   manual clock jumps to each next due time, so retries 100 s, 400 s… apart run at once.
//!
//! Subscribe before the test sends, or after: a new subscription receives the messages already
//! in its topics. The helpers use one consumer group, [`TEST_CONSUMER_GROUP`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::dispatcher::push_one;
use crate::store::{DeliveryClaimParams, DeliveryNextDueParams, MessageGetParams, MessageListParams, StoreError};
use crate::{
    ConsumerConfig, ConsumerOutcome, Delivery, JobContext, JobError, Jobbable, MessageMetadata, Pusher, Queue,
    QueueHandler,
};

/// The consumer group [`subscribe`] and [`drain`] use.
pub const TEST_CONSUMER_GROUP: &str = "vqs-testing";

/// How many messages of a topic the `*_enqueued` helpers read at most.
const ENQUEUED_LIMIT: u32 = 10_000;

/// What went wrong in a helper (not a job's failure: that is the helper's result or count).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestingError {
    /// The store failed.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// A message's payload is not the params of the job asked about.
    #[error("message {message_id} of topic {topic:?} does not deserialize as the job's params: {error}")]
    Params {
        /// The message's topic.
        topic: String,
        /// The message.
        message_id: String,
        /// Why it does not deserialize.
        error: String,
    },
    /// A due message's topic has no handler among those passed to [`drain`].
    #[error("no handler for topic {0:?}: pass its QueueHandler to drain")]
    NoHandler(String),
    /// The consumer could not settle a message (the store was unreachable).
    #[error("the consumer could not settle a message: {0}")]
    Unavailable(String),
    /// `with_scheduled` needs a clock that moves when told to.
    #[error("drain with_scheduled needs the queue built on Clock::manual (the system clock cannot be advanced)")]
    ManualClockNeeded,
    /// More rounds than [`DrainOpts::max_rounds`]: a job keeps enqueueing or failing forever.
    #[error(
        "drain stopped after {0} rounds with work still due: raise DrainOpts::max_rounds or look for a job that re-enqueues itself"
    )]
    TooManyRounds(u32),
}

/// The attempt a [`perform_job_with`] runs as.
#[derive(Debug, Clone)]
pub struct TestContext {
    /// The attempt number [`JobContext::attempt`] reports. Default 1.
    pub attempt: u32,
    /// The message id: checkpoints are kept per message, so two calls with the same id see
    /// each other's checkpoints (an attempt resuming the previous one). Default: a new id.
    pub message_id: String,
    /// The consumer group. Default [`TEST_CONSUMER_GROUP`].
    pub consumer_group: String,
}

impl Default for TestContext {
    fn default() -> Self {
        TestContext {
            attempt: 1,
            message_id: format!("test-{}", uuid::Uuid::new_v4()),
            consumer_group: TEST_CONSUMER_GROUP.to_owned(),
        }
    }
}

/// Run `job`'s `perform` once, as attempt 1 of a new message; returns its result.
///
/// The params go through JSON first, as a real delivery's would (params that do not
/// round-trip fail fatally, as the consumer would dead-letter them), and the job's
/// [`Jobbable::timeout`] applies. No message is sent and no execution is recorded.
pub async fn perform_job<J: Jobbable>(queue: &Queue, job: &J, params: J::Params) -> Result<(), JobError> {
    perform_job_with(queue, job, params, TestContext::default()).await
}

/// [`perform_job`] as the attempt `test` describes (its number, its message id).
pub async fn perform_job_with<J: Jobbable>(
    queue: &Queue,
    job: &J,
    params: J::Params,
    test: TestContext,
) -> Result<(), JobError> {
    let json = serde_json::to_vec(&params)
        .map_err(|e| JobError::fatal(format!("params of job {:?} do not serialize: {e}", J::TOPIC)))?;
    let params: J::Params = serde_json::from_slice(&json)
        .map_err(|e| JobError::fatal(format!("params of job {:?} do not round-trip through JSON: {e}", J::TOPIC)))?;
    let now = queue.clock().now();
    let metadata = MessageMetadata {
        message_id: test.message_id,
        delivery_count: test.attempt,
        attempt: test.attempt,
        created_at: now,
        expires_at: now + chrono::Duration::hours(24),
        topic_name: J::TOPIC.to_owned(),
        consumer_group: test.consumer_group,
        region: None,
    };
    let ctx = JobContext::new(metadata, queue.clone());
    let timeout = job.timeout();
    match tokio::time::timeout(timeout, job.perform(params, ctx)).await {
        Ok(r) => r,
        Err(_) => Err(JobError::retryable(format!("timed out after {}s", timeout.as_secs_f64()))),
    }
}

/// The params of every message of `J`'s topic still to be worked (pending, delayed, retrying
/// or running), oldest first.
pub async fn all_enqueued<J: Jobbable>(queue: &Queue) -> Result<Vec<J::Params>, TestingError> {
    Ok(enqueued::<J>(queue).await?.into_iter().map(|(_, p)| p).collect())
}

async fn enqueued<J: Jobbable>(queue: &Queue) -> Result<Vec<(serde_json::Value, J::Params)>, TestingError> {
    let ids =
        queue.store().message_list(MessageListParams { topic: J::TOPIC.to_owned(), limit: ENQUEUED_LIMIT }).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(m) = queue.store().message_get(MessageGetParams { id: id.clone() }).await? else { continue };
        let params = serde_json::from_value(m.payload.clone()).map_err(|e| TestingError::Params {
            topic: J::TOPIC.to_owned(),
            message_id: id.clone(),
            error: e.to_string(),
        })?;
        out.push((m.payload, params));
    }
    Ok(out)
}

/// Panics unless a message of `J` with exactly `params` is enqueued; the message lists what is.
pub async fn assert_enqueued<J: Jobbable>(queue: &Queue, params: &J::Params)
where
    J::Params: PartialEq,
{
    let want = serde_json::to_string(params).unwrap_or_default();
    assert_enqueued_where::<J>(queue, &format!("params {want}"), |p| p == params).await
}

/// Panics unless a message of `J` whose params satisfy `matches` is enqueued; `what` names
/// the condition in the failure message, which lists what is enqueued.
pub async fn assert_enqueued_where<J: Jobbable>(queue: &Queue, what: &str, matches: impl Fn(&J::Params) -> bool) {
    let found = enqueued_or_panic::<J>(queue).await;
    if !found.iter().any(|(_, p)| matches(p)) {
        panic!("expected a {:?} job with {what} to be enqueued; {}", J::TOPIC, listing(&found));
    }
}

/// Panics if a message of `J` with exactly `params` is enqueued.
pub async fn refute_enqueued<J: Jobbable>(queue: &Queue, params: &J::Params)
where
    J::Params: PartialEq,
{
    let want = serde_json::to_string(params).unwrap_or_default();
    refute_enqueued_where::<J>(queue, &format!("params {want}"), |p| p == params).await
}

/// Panics if a message of `J` whose params satisfy `matches` is enqueued.
pub async fn refute_enqueued_where<J: Jobbable>(queue: &Queue, what: &str, matches: impl Fn(&J::Params) -> bool) {
    let found = enqueued_or_panic::<J>(queue).await;
    if found.iter().any(|(_, p)| matches(p)) {
        panic!("expected no {:?} job with {what} to be enqueued; {}", J::TOPIC, listing(&found));
    }
}

async fn enqueued_or_panic<J: Jobbable>(queue: &Queue) -> Vec<(serde_json::Value, J::Params)> {
    match enqueued::<J>(queue).await {
        Ok(found) => found,
        Err(e) => panic!("could not read the enqueued {:?} jobs: {e}", J::TOPIC),
    }
}

fn listing<P>(found: &[(serde_json::Value, P)]) -> String {
    if found.is_empty() {
        return "none is.".to_owned();
    }
    let lines: Vec<String> = found.iter().map(|(v, _)| format!("  {v}")).collect();
    format!("enqueued ({}):\n{}", found.len(), lines.join("\n"))
}

/// Subscribe [`TEST_CONSUMER_GROUP`] to the topic of every handler (idempotent).
pub async fn subscribe(queue: &Queue, handlers: &[QueueHandler]) -> Result<(), StoreError> {
    let consumers: Vec<ConsumerConfig> = handlers.iter().map(|h| consumer(h.topic())).collect();
    crate::register_consumers(queue, &consumers).await
}

fn consumer(topic: &str) -> ConsumerConfig {
    ConsumerConfig {
        consumer_group: TEST_CONSUMER_GROUP.to_owned(),
        topic_pattern: topic.to_owned(),
        route_path: String::new(),
        retry_after: crate::DEFAULT_RETRY_AFTER,
        max_deliveries: crate::DEFAULT_MAX_DELIVERIES,
        max_concurrency: 1,
        global_max_concurrency: None,
        group_concurrency: None,
        group_rate_limit: None,
        initial_delay: Duration::ZERO,
        visibility: Duration::from_secs(60),
        starts_executions: true,
    }
}

/// What [`drain`] works.
#[derive(Debug, Clone)]
pub struct DrainOpts {
    /// Only this topic's messages. Default: every topic subscribed by [`subscribe`].
    pub topic: Option<String>,
    /// Also run what is not due yet (delays, retry backoffs): the manual clock is moved to
    /// each next due time in turn. Default false: only what is due now.
    pub with_scheduled: bool,
    /// Claims at most, so a job that re-enqueues itself forever fails the drain rather than
    /// hanging the test. Default 1000.
    pub max_rounds: u32,
}

impl Default for DrainOpts {
    fn default() -> Self {
        DrainOpts { topic: None, with_scheduled: false, max_rounds: 1000 }
    }
}

impl DrainOpts {
    /// Drain everything, moving the clock to each next due time.
    pub fn with_scheduled() -> Self {
        DrainOpts { with_scheduled: true, ..DrainOpts::default() }
    }
}

/// Deliveries a [`drain`] worked, by how each ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Attempts that succeeded (the message was acknowledged).
    pub succeeded: u32,
    /// Attempts that failed with a retry scheduled.
    pub failed: u32,
    /// Messages dead-lettered: a fatal error, the attempts spent, params that do not
    /// deserialize, or `maxDeliveries` reached.
    pub dead: u32,
    /// Deliveries whose lease was settled elsewhere first.
    pub skipped: u32,
    /// Attempts that snoozed (due again later, no attempt spent).
    pub snoozed: u32,
    /// Messages cancelled: by the job itself, or by a cancel before or while it ran.
    pub cancelled: u32,
}

/// Work every due message of the subscribed topics (or [`DrainOpts::topic`]) through
/// `handlers`, the way the local dispatcher does: lease (recording the attempt's execution),
/// run the job, then acknowledge, retry after the job's backoff, or dead-letter. Messages the
/// jobs enqueue while draining are worked too. With [`DrainOpts::with_scheduled`], when
/// nothing is due the queue's manual clock moves to the next due time, until nothing is left.
///
/// Call [`subscribe`] with the same handlers first.
pub async fn drain(queue: &Queue, handlers: &[QueueHandler], opts: DrainOpts) -> Result<DrainReport, TestingError> {
    let pusher = HandlerPusher {
        queue: queue.clone(),
        handlers: handlers.iter().map(|h| (h.topic().to_owned(), h.clone())).collect(),
        outcomes: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    };
    let mut report = DrainReport::default();
    let mut rounds = 0u32;
    loop {
        let now = queue.clock().now();
        let batch = queue
            .store()
            .delivery_claim(DeliveryClaimParams {
                group_concurrency: None,
                consumer_group: TEST_CONSUMER_GROUP.to_owned(),
                topic: opts.topic.clone(),
                message_id: None,
                limit: 100,
                visibility_seconds: 60,
                start_executions: true,
                lease_holder: None,
                max_leased: None,
                leased_here: 0,
                rate_limit: None,
                group_rate_limit: None,
                now,
            })
            .await?;
        if batch.is_empty() {
            if !opts.with_scheduled {
                break;
            }
            let next = queue
                .store()
                .delivery_next_due(DeliveryNextDueParams { consumer_group: TEST_CONSUMER_GROUP.to_owned() })
                .await?;
            match next {
                Some(due) if due > now => {
                    queue.clock().advance((due - now).to_std().unwrap_or_default());
                    // A manual clock is now exactly at `due`; the system clock did not move.
                    if queue.clock().now() < due {
                        return Err(TestingError::ManualClockNeeded);
                    }
                    continue;
                }
                // Due but not claimable (expired, or another topic than asked): done.
                _ => break,
            }
        }
        rounds += 1;
        if rounds > opts.max_rounds {
            return Err(TestingError::TooManyRounds(opts.max_rounds));
        }
        for m in batch {
            let topic = m.topic.clone();
            let consumer = consumer(&topic);
            let pushed_before = pusher.pushed();
            push_one(queue, &consumer, &pusher, "test", m, None).await;
            if pusher.pushed() == pushed_before {
                // Not pushed: dead-lettered for reaching maxDeliveries.
                report.dead += 1;
            }
        }
        if let Some(e) = pusher.errors.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Err(e);
        }
    }
    for outcome in pusher.outcomes.into_inner().unwrap_or_else(|e| e.into_inner()) {
        match outcome {
            ConsumerOutcome::Succeeded => report.succeeded += 1,
            ConsumerOutcome::RetryScheduled { .. } => report.failed += 1,
            ConsumerOutcome::DeadLettered { .. } | ConsumerOutcome::Rejected { .. } => report.dead += 1,
            ConsumerOutcome::Snoozed { .. } => report.snoozed += 1,
            ConsumerOutcome::Cancelled { .. } => report.cancelled += 1,
            _ => report.skipped += 1,
        }
    }
    Ok(report)
}

/// Hands each delivery straight to its topic's handler (no HTTP: the core has none).
struct HandlerPusher {
    queue: Queue,
    handlers: HashMap<String, QueueHandler>,
    outcomes: Mutex<Vec<ConsumerOutcome>>,
    errors: Mutex<Vec<TestingError>>,
}

impl HandlerPusher {
    fn pushed(&self) -> usize {
        self.outcomes.lock().unwrap_or_else(|e| e.into_inner()).len()
            + self.errors.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[async_trait]
impl Pusher for HandlerPusher {
    async fn push(&self, _route_path: &str, delivery: Delivery) -> Result<u16, String> {
        let Some(handler) = self.handlers.get(&delivery.topic) else {
            let e = TestingError::NoHandler(delivery.topic.clone());
            let text = e.to_string();
            self.errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
            return Err(text);
        };
        let outcome = handler.handle(&self.queue, Ok(delivery)).await;
        let status = outcome.status();
        if let ConsumerOutcome::Unavailable { error } = &outcome {
            self.errors.lock().unwrap_or_else(|e| e.into_inner()).push(TestingError::Unavailable(error.clone()));
        } else {
            self.outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
        }
        Ok(status)
    }
}
