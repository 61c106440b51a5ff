//! The local push dispatcher: what the platform does on Vercel, done in process.
//!
//! For every `queue/v2beta` trigger it leases due messages of that consumer group (lease
//! first, then push), pushes each to the trigger's route as a v2beta binary CloudEvent, and
//! on a failed push (non-2xx or transport error) gives the message back after
//! `retryAfterSeconds`. It holds at most `maxConcurrency` pushes in flight per group,
//! dead-letters a message delivered `maxDeliveries` times without acknowledgement, and wakes
//! at once when this process publishes. A consumer of a paused topic claims nothing until
//! the topic is resumed (see `topic_pause.rs`); a lease of a topic paused while it waited
//! in the buffer is given back unrun.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::queue_metrics::{METRIC_DEAD_LETTERED, METRIC_DELIVERED};
use crate::store::{
    DeliveryClaimParams, DeliveryDeadLetterParams, DeliveryNextDueParams, DeliveryReleaseParams, DeliveryRetryParams,
    ExecutionFinishParams, ExecutionStatus, LeaseParams, LeasedMessage, StoreError, SubscriptionEnsureParams,
};
use crate::{Delivery, ExecutionSlot, Queue, QueueTrigger};

/// Vercel's default `retryAfterSeconds`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The `vercel dev` broker's default `maxDeliveries`.
pub const DEFAULT_MAX_DELIVERIES: u32 = 32;

/// One push consumer: a consumer group, its topic and its route.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer group the dispatcher claims for (a trigger's `consumer`).
    pub consumer_group: String,
    /// A topic or a `prefix*` pattern.
    pub topic_pattern: String,
    /// The route each delivery is pushed to: the trigger's function path (`/api/queue/probe`).
    pub route_path: String,
    /// Delay before a failed push is retried. Default 60 s.
    pub retry_after: Duration,
    /// Deliveries before the message is dead-lettered. Default 32.
    pub max_deliveries: u32,
    /// Pushes in flight at most in this process. Default 100.
    pub max_concurrency: u32,
    /// The trigger's `maxConcurrency` when set: one limit for the consumer group across
    /// every process, as on Vercel (each claim leases at most the limit minus the group's
    /// live leases, counted by the store under a lock). `None`: only the per-process cap.
    pub global_max_concurrency: Option<u32>,
    /// The job type's [`crate::Jobbable::group_concurrency`]: leased at once per group key
    /// at most, across every process. Needs the subscription registered with it (see
    /// [`register_consumers`]). `None`: groups are not limited.
    pub group_concurrency: Option<u32>,
    /// The job type's [`crate::Jobbable::group_rate_limit`]: starts per group key's bucket,
    /// across every process. Needs the subscription registered with it, like
    /// `group_concurrency`. `None`: groups' starts are not limited.
    pub group_rate_limit: Option<crate::RateLimit>,
    /// Messages become visible to this group no sooner than this after they were sent.
    pub initial_delay: Duration,
    /// The lease taken before a push. Default 60 s; the consumer extends it to its job's timeout.
    pub visibility: Duration,
    /// The route is a job's consumer route served by this process (the queue handler runs
    /// there): each lease records the attempt's `running` execution in the same write, and
    /// the push hands it to the consumer. Default false (a route elsewhere records its own).
    pub starts_executions: bool,
}

impl ConsumerConfig {
    /// With `worker_concurrency` (an app's per-process setting, `VQS_WORKER_CONCURRENCY`):
    /// at most that many pushes in flight in this process — and no more than the trigger's
    /// `maxConcurrency`, which stays the limit across processes. `None`: unchanged (the
    /// trigger's `maxConcurrency`, else 100). Like the `concurrency` of BullMQ's or
    /// graphile-worker's workers, it limits one process only: without a `maxConcurrency`
    /// nothing is counted in the database, and leases are prefetched.
    pub fn with_worker_concurrency(self, worker_concurrency: Option<u32>) -> Self {
        let Some(n) = worker_concurrency else { return self };
        let n = n.max(1);
        ConsumerConfig { max_concurrency: self.global_max_concurrency.map_or(n, |m| n.min(m.max(1))), ..self }
    }

    /// Whether the consumer takes messages of `topic`: its own topic, or any topic starting
    /// with the prefix of a wildcard pattern (`prefix*`).
    pub fn consumes(&self, topic: &str) -> bool {
        crate::store_support::TopicPattern::parse(&self.topic_pattern).matches(topic)
    }

    /// A limit counted in the database across processes (`maxConcurrency` or a group
    /// concurrency): such a consumer prefetches nothing (a lease waiting in one process's
    /// buffer would hold a slot another process could use), and after a short claim looks
    /// again after the poll interval (other processes' acknowledgements wake no one here).
    pub fn limited_across_processes(&self) -> bool {
        self.global_max_concurrency.is_some() || self.group_concurrency.is_some() || self.group_rate_limit.is_some()
    }
}

impl From<&QueueTrigger> for ConsumerConfig {
    fn from(t: &QueueTrigger) -> Self {
        ConsumerConfig {
            consumer_group: t.consumer_group.clone(),
            topic_pattern: t.topic.clone(),
            route_path: t.route_path.clone(),
            retry_after: t.retry_after_seconds.map(saturating_secs).unwrap_or(DEFAULT_RETRY_AFTER),
            max_deliveries: t.max_deliveries.unwrap_or(DEFAULT_MAX_DELIVERIES),
            max_concurrency: t.max_concurrency.unwrap_or(100),
            global_max_concurrency: t.max_concurrency,
            group_concurrency: None,
            group_rate_limit: None,
            initial_delay: t.initial_delay_seconds.map(saturating_secs).unwrap_or_default(),
            visibility: Duration::from_secs(60),
            starts_executions: false,
        }
    }
}

/// Seconds from `vercel.json` as a duration: a value too large for one (or not a number) is
/// `u32::MAX` seconds, never a panic.
fn saturating_secs(s: f64) -> Duration {
    let max = Duration::from_secs(u64::from(u32::MAX));
    Duration::try_from_secs_f64(s).map_or(max, |d| d.min(max))
}

/// Delivers a push to a consumer route and returns the HTTP status it answered with.
#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    /// Push `delivery` to the consumer route at `route_path`; `Ok` with the status the route
    /// answered (any status, success or not), `Err` with a description when no answer came
    /// (the route could not be reached).
    async fn push(&self, route_path: &str, delivery: Delivery) -> Result<u16, String>;
}

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// The `ce-vqsregion` of pushes. Default `dev1`, as `vercel dev`.
    pub region: String,
    /// How often to look for work that another process published. Default 200 ms.
    pub poll_interval: Duration,
    /// Messages leased per round trip at most. Default 500.
    pub batch: u32,
    /// How much work to lease ahead of free execution slots: as many messages as this
    /// consumer group started in this long, recently (none when it is idle or slow). Leasing
    /// ahead lets a claim carry hundreds of messages instead of the few slots that just
    /// freed, and hides the claim's round trip. Default 50 ms. Zero turns it off.
    pub prefetch: Duration,
    /// On shutdown, how long to let in-flight pushes finish. Default 25 s.
    pub shutdown_grace: Duration,
    /// Pushes of a consumer group whose job has finished but whose settlement (execution row
    /// and acknowledgement) is still being written, at most, beyond `maxConcurrency`.
    /// Default 1024. See [`ExecutionSlot`].
    pub settling: u32,
    /// This process's id when it beats ([`crate::Lifeline::process_id`]): the leases taken for
    /// jobs this process runs itself (`ConsumerConfig::starts_executions`) name it, so they are
    /// made due at once if it stops beating. `None` (default): leases end only when they run
    /// out. A push to a route served elsewhere never names this process.
    pub lease_holder: Option<String>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            region: "dev1".into(),
            poll_interval: Duration::from_millis(200),
            batch: 500,
            prefetch: Duration::from_millis(50),
            shutdown_grace: Duration::from_secs(25),
            settling: 1024,
            lease_holder: None,
        }
    }
}

/// Subscribe every consumer's group to its topic (idempotent; call once at start). A
/// subscription is `grouped` when its consumer has a group limit, from its config or from an
/// operator's override stored for its topic (read from the store here, without touching
/// this process's view of the limits, which keeps its own refresh), or when a message group
/// of its topic is paused (its claims then go through the ready groups, which skip it).
pub async fn register_consumers(queue: &Queue, consumers: &[ConsumerConfig]) -> Result<(), StoreError> {
    let stored = queue.store().topic_limits_list().await?;
    let overridden = |topic: &str| {
        stored
            .iter()
            .find(|r| r.topic == topic)
            .is_some_and(|r| r.overrides.group_concurrency.is_some() || r.overrides.group_rate_limit.is_some())
    };
    for c in consumers {
        let exact = !c.topic_pattern.ends_with('*');
        let group_paused = exact
            && !queue
                .store()
                .group_pause_list(crate::store::GroupPauseListParams {
                    topic: Some(c.topic_pattern.clone()),
                    group_key: None,
                    limit: 1,
                })
                .await?
                .is_empty();
        queue
            .store()
            .subscription_ensure(SubscriptionEnsureParams {
                topic_pattern: c.topic_pattern.clone(),
                consumer_group: c.consumer_group.clone(),
                initial_delay_seconds: u32::try_from(c.initial_delay.as_secs()).unwrap_or(u32::MAX),
                // A group rate limit is claimed through the ready groups too.
                grouped: c.group_concurrency.is_some()
                    || c.group_rate_limit.is_some()
                    || (exact && overridden(&c.topic_pattern))
                    || group_paused,
                now: queue.clock().now(),
            })
            .await?;
    }
    Ok(())
}

/// Start one push loop per consumer. They stop when `shutdown` turns true, after letting
/// in-flight pushes finish (up to the grace period). Await the handle to know they are done.
pub fn spawn_dispatcher(
    queue: Queue,
    consumers: Vec<ConsumerConfig>,
    pusher: Arc<dyn Pusher>,
    config: DispatcherConfig,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run_dispatcher(queue, consumers, pusher, config, shutdown))
}

/// [`spawn_dispatcher`]'s loops, as a future to run under a [`crate::Supervisor`]: when one
/// consumer's loop panics, the others are stopped and the panic goes on to the caller (the
/// supervisor logs it and starts the dispatcher again), so no consumer group stops silently.
pub async fn run_dispatcher(
    queue: Queue,
    consumers: Vec<ConsumerConfig>,
    pusher: Arc<dyn Pusher>,
    config: DispatcherConfig,
    shutdown: watch::Receiver<bool>,
) {
    let mut loops = tokio::task::JoinSet::new();
    for c in consumers {
        loops.spawn(consumer_loop(queue.clone(), c, pusher.clone(), config.clone(), shutdown.clone()));
    }
    while let Some(done) = loops.join_next().await {
        if let Err(e) = done
            && e.is_panic()
        {
            loops.abort_all();
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// A claim under way: how many messages it asked for, and what it leased.
type Claim = futures::future::BoxFuture<'static, (u32, Result<Vec<LeasedMessage>, StoreError>)>;

/// Pushes started per second by one consumer group, smoothed over about a second.
struct PushRate {
    per_s: f64,
    counted: u32,
    since: std::time::Instant,
}

impl PushRate {
    fn new() -> Self {
        PushRate { per_s: 0.0, counted: 0, since: std::time::Instant::now() }
    }

    fn count(&mut self) {
        self.counted += 1;
        let elapsed = self.since.elapsed();
        if elapsed >= Duration::from_millis(100) {
            let now = f64::from(self.counted) / elapsed.as_secs_f64();
            self.per_s = 0.7 * self.per_s + 0.3 * now;
            self.counted = 0;
            self.since = std::time::Instant::now();
        }
    }

    /// Messages this group would start within `horizon` at the recent rate.
    fn ahead(&self, horizon: Duration) -> u32 {
        (self.per_s * horizon.as_secs_f64()) as u32
    }
}

async fn consumer_loop(
    queue: Queue,
    consumer: ConsumerConfig,
    pusher: Arc<dyn Pusher>,
    config: DispatcherConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = consumer.max_concurrency.max(1);
    // Jobs running (maxConcurrency), and pushes in flight (running or settling).
    let permits = Arc::new(Semaphore::new(max as usize));
    let in_flight_max = max.saturating_add(config.settling);
    let in_flight = Arc::new(Semaphore::new(in_flight_max as usize));
    let freed = Arc::new(Notify::new());
    let consumer = Arc::new(consumer);
    let free = || (permits.available_permits().min(in_flight.available_permits())) as u32;
    // Leased messages waiting for a slot (see `DispatcherConfig::prefetch`).
    let mut buffer: std::collections::VecDeque<LeasedMessage> = Default::default();
    let mut rate = PushRate::new();
    // The claim under way; it answers with how many it asked for.
    let mut claiming: Option<Claim> = None;
    // A publish in this process (or a NOTIFY from another) since the last claim started. Kept
    // across iterations, so a wake-up that lands while a claim is in flight — a claim that may
    // have run before the message was committed — is not lost: the group claims once more
    // instead of going idle.
    let mut published = Box::pin(queue.published());
    published.as_mut().enable();
    // Idle: the last claim came back short — nothing more is due — so the next waits for a
    // publish or this: the next due time (a retry, a delay) or the poll interval, whichever is
    // sooner, looked up once per idle spell. (Claiming again at once only to find nothing cost
    // a statement per message at low rates.)
    let mut idle: Option<futures::future::BoxFuture<'static, ()>> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Hand out what is leased while slots are free. Leases not to be pushed are given back
        // together after the loop (one write, not one per lease: a paused topic's full buffer).
        let mut give_back: Vec<(LeasedMessage, &str)> = Vec::new();
        while !buffer.is_empty() {
            let (Ok(permit), Ok(place)) = (permits.clone().try_acquire_owned(), in_flight.clone().try_acquire_owned())
            else {
                break;
            };
            let Some(m) = buffer.pop_front() else { break };
            // Its topic was paused after the claim: given back unrun (no attempt spent, its
            // execution row removed), so nothing new starts.
            if queue.paused_topics_known().contains(&m.topic) {
                drop((permit, place));
                give_back.push((m, "its topic is paused"));
                continue;
            }
            // Likewise its message group.
            if m.group_key.as_deref().is_some_and(|g| queue.group_paused_known(&m.topic, g)) {
                drop((permit, place));
                give_back.push((m, "its message group is paused"));
                continue;
            }
            // A lease that waited too long in the buffer is given back, not pushed late.
            if m.lease_until - queue.clock().now()
                < chrono::Duration::from_std(consumer.visibility / 2).unwrap_or_default()
            {
                give_back.push((m, "it waited for a free slot past half its lease"));
                continue;
            }
            rate.count();
            // The slot travels with the push; the consumer releases it when the job's code
            // is done, and this task when the push returns, whichever comes first. The place
            // among the in-flight pushes is held until the consumer answers (settled).
            let slot = ExecutionSlot::new(permit, freed.clone());
            let (queue, consumer, pusher, region, freed) =
                (queue.clone(), consumer.clone(), pusher.clone(), config.region.clone(), freed.clone());
            tokio::spawn(async move {
                push_one(&queue, &consumer, pusher.as_ref(), &region, m, Some(slot.clone())).await;
                slot.release();
                drop(place);
                freed.notify_one();
            });
        }
        release_all(&queue, give_back).await;
        // A consumer of one topic that is paused claims nothing (its backlog is not even
        // scanned): it waits for a wake-up — a resume wakes every dispatcher of the process —
        // or the poll interval.
        if claiming.is_none() && idle.is_none() && pauses_whole_group(&queue, &consumer) {
            idle = Some(Box::pin(tokio::time::sleep(config.poll_interval)));
        }
        // Lease more when the buffer runs low: the free slots, plus what the recent rate
        // will start before a claim could come back. Under load, wait until enough slots
        // are free for the claim to carry a batch, not one message per finished job.
        // The limits in force for the consumer's topic (a runtime change reaches this process
        // within a second), read before each claim.
        let limits = limits_for(&queue, &consumer);
        if claiming.is_none() && idle.is_none() {
            // A group limited across processes prefetches nothing: a lease waiting in this
            // buffer would hold one of the group's slots (or a start of its rate) while
            // another process sits idle. (Under group concurrency alone it does: a prefetched
            // lease holds one slot of one message group for the few milliseconds of prefetch,
            // and every other group is free to run elsewhere.)
            let ahead = if config.prefetch.is_zero() || limits.limited() { 0 } else { rate.ahead(config.prefetch) };
            let want = (free() + ahead).saturating_sub(buffer.len() as u32).min(config.batch.max(1));
            let low_water = (max / 2).clamp(1, config.batch.max(1));
            if want >= low_water || (buffer.is_empty() && want > 0) {
                // This claim sees every publish before this point.
                published.set(queue.published());
                published.as_mut().enable();
                let (queue, consumer, claim_limits) = (queue.clone(), consumer.clone(), limits.clone());
                let lease_holder = config.lease_holder.clone().filter(|_| consumer.starts_executions);
                // Busy here: jobs running (their slots taken) and leases waiting in the buffer.
                let leased_here =
                    (max - permits.available_permits().min(max as usize) as u32).saturating_add(buffer.len() as u32);
                claiming = Some(Box::pin(async move {
                    let claimed = queue
                        .store()
                        .delivery_claim(DeliveryClaimParams {
                            consumer_group: consumer.consumer_group.clone(),
                            topic: claim_limits.topic,
                            message_id: None,
                            limit: want,
                            visibility_seconds: u32::try_from(consumer.visibility.as_secs()).unwrap_or(u32::MAX),
                            start_executions: consumer.starts_executions,
                            lease_holder,
                            max_leased: claim_limits.max_leased,
                            group_concurrency: claim_limits.group_concurrency,
                            leased_here,
                            rate_limit: claim_limits.rate_limit,
                            group_rate_limit: claim_limits.group_rate_limit,
                            now: queue.clock().now(),
                        })
                        .await;
                    (want, claimed)
                }));
            }
        }
        let slot_freed = freed.notified();
        tokio::pin!(slot_freed);
        let is_idle = idle.is_some();
        let idle_over = async {
            match idle.as_mut() {
                Some(w) => w.await,
                None => std::future::pending().await,
            }
        };
        let claimed = async {
            match claiming.as_mut() {
                Some(c) => c.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            (asked, r) = claimed => {
                claiming = None;
                match r {
                    Ok(batch) => {
                        if (batch.len() as u32) < asked {
                            idle = Some(if limits.limited() || limits.grouped() {
                                // Short perhaps because other processes hold the group's
                                // slots, with due work waiting: their acks wake no one
                                // here, so look again after the poll interval (or on a
                                // publish or a slot freed here), not at a due time that
                                // may be in the past.
                                Box::pin(tokio::time::sleep(config.poll_interval))
                            } else {
                                until_due(&queue, &consumer, config.poll_interval)
                            });
                        }
                        buffer.extend(batch);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, queue.consumer_group = %consumer.consumer_group, "claim failed; retrying in 1s");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
            }
            _ = &mut published, if is_idle => idle = None,
            _ = idle_over => idle = None,
            _ = &mut slot_freed => {
                // A group limited across processes counts its leases in the database: a
                // push settled here may have freed one, so look again now rather than
                // after the poll interval.
                if limits.max_leased.is_some() || limits.grouped() {
                    idle = None;
                }
            }
            _ = shutdown.changed() => {}
        }
    }
    // Graceful stop: a claim under way is let finish; what waits in the buffer goes back at
    // once; in-flight pushes finish, up to the grace period.
    if let Some(c) = claiming.take()
        && let Ok((_, Ok(batch))) = tokio::time::timeout(config.shutdown_grace, c).await
    {
        buffer.extend(batch);
    }
    release_all(&queue, buffer.drain(..).map(|m| (m, "the process stopped before it was pushed")).collect()).await;
    let _ = tokio::time::timeout(config.shutdown_grace, in_flight.acquire_many(in_flight_max)).await;
}

/// True when `consumer` subscribes to one topic (not a `prefix*` pattern) and this process
/// knows it is paused: none of its deliveries can be claimed.
fn pauses_whole_group(queue: &Queue, consumer: &ConsumerConfig) -> bool {
    !consumer.topic_pattern.ends_with('*') && queue.paused_topics_known().contains(&consumer.topic_pattern)
}

/// True when `pattern` is a `prefix*` pattern and a topic this process knows is paused
/// matches it.
fn spans_paused_topic(queue: &Queue, pattern: &str) -> bool {
    pattern.strip_suffix('*').is_some_and(|prefix| queue.paused_topics_known().iter().any(|t| t.starts_with(prefix)))
}

/// Sleep until the next delivery of `consumer`'s group comes due or `poll` has passed,
/// whichever is sooner.
fn until_due(queue: &Queue, consumer: &ConsumerConfig, poll: Duration) -> futures::future::BoxFuture<'static, ()> {
    let (queue, group, pattern) = (queue.clone(), consumer.consumer_group.clone(), consumer.topic_pattern.clone());
    Box::pin(async move {
        let wait = match queue.store().delivery_next_due(DeliveryNextDueParams { consumer_group: group }).await {
            // A wildcard group spanning a paused topic: what is due may be that topic's
            // backlog. Claim again at the poll interval (or a publish), never in a loop.
            Ok(Some(due)) if due <= queue.clock().now() && spans_paused_topic(&queue, &pattern) => poll,
            Ok(Some(due)) if due <= queue.clock().now() => {
                // Due, yet the claim came back short: locked by another claim, or held back
                // by a pause this process has not heard of. Read the paused topics (at most
                // once a second) rather than claim again and again for a paused topic.
                if let Err(e) = queue.paused_topics().await {
                    tracing::debug!(error = %e, "could not read the paused topics");
                }
                // What is due may be a paused message group's backlog, which the claim
                // skips: claim again at the poll interval (or a publish), never in a loop.
                match queue.pattern_has_paused_group(&pattern).await {
                    Ok(false) => Duration::ZERO,
                    Ok(true) => poll,
                    Err(e) => {
                        tracing::debug!(error = %e, "could not read the paused groups");
                        poll
                    }
                }
            }
            Ok(Some(due)) => (due - queue.clock().now()).to_std().unwrap_or_default().min(poll),
            _ => poll,
        };
        tokio::time::sleep(wait).await;
    })
}

/// The group limits in force for `consumer` as this process knows them: an operator's
/// override for its topic, else its config (the job type's default, or the app's setting).
/// A wildcard consumer keeps its config's (limits are per topic).
fn group_limits(queue: &Queue, consumer: &ConsumerConfig) -> (Option<u32>, Option<crate::RateLimit>) {
    if consumer.topic_pattern.ends_with('*') {
        return (consumer.group_concurrency, consumer.group_rate_limit);
    }
    let o = queue.limit_overrides_known(&consumer.topic_pattern);
    (o.group_concurrency.or(consumer.group_concurrency), o.group_rate_limit.or(consumer.group_rate_limit))
}

/// What a claim of `consumer` passes for the limits in force.
#[derive(Clone)]
struct ClaimLimits {
    /// The topic's `concurrency` in force, else the trigger's `maxConcurrency`.
    max_leased: Option<u32>,
    rate_limit: Option<crate::RateLimit>,
    /// The consumer's topic when a rate limit is in force (it names the bucket).
    topic: Option<String>,
    /// The group limits in force ([`group_limits`]).
    group_concurrency: Option<u32>,
    group_rate_limit: Option<crate::RateLimit>,
}

impl ClaimLimits {
    /// Limited across processes: no prefetch, and a short claim polls.
    fn limited(&self) -> bool {
        self.max_leased.is_some() || self.rate_limit.is_some()
    }

    /// Claimed through the ready groups (a group limit is in force).
    fn grouped(&self) -> bool {
        self.group_concurrency.is_some() || self.group_rate_limit.is_some()
    }
}

/// The limits in force for `consumer`'s topic as this process knows them. A wildcard
/// consumer (`prefix*`) spans topics and keeps only its trigger's `maxConcurrency`: limits
/// are per topic.
fn limits_for(queue: &Queue, consumer: &ConsumerConfig) -> ClaimLimits {
    let (group_concurrency, group_rate_limit) = group_limits(queue, consumer);
    if consumer.topic_pattern.ends_with('*') {
        return ClaimLimits {
            max_leased: consumer.global_max_concurrency,
            rate_limit: None,
            topic: None,
            group_concurrency,
            group_rate_limit,
        };
    }
    let limits = queue.limits_in_force_known(&consumer.topic_pattern);
    ClaimLimits {
        max_leased: limits.concurrency.or(consumer.global_max_concurrency),
        rate_limit: limits.rate_limit,
        topic: limits.rate_limit.map(|_| consumer.topic_pattern.clone()),
        group_concurrency,
        group_rate_limit,
    }
}

/// Lease every due message of `consumer` (up to `limit`) and push them one by one, waiting
/// for each push to finish. Returns how many were pushed. The same path as the running
/// dispatcher, without its loop: for tests and one-shot tools.
pub async fn dispatch_due(
    queue: &Queue,
    consumer: &ConsumerConfig,
    pusher: &dyn Pusher,
    region: &str,
    limit: u32,
) -> Result<usize, StoreError> {
    let limits = limits_for(queue, consumer);
    let batch = queue
        .store()
        .delivery_claim(DeliveryClaimParams {
            consumer_group: consumer.consumer_group.clone(),
            topic: limits.topic,
            message_id: None,
            limit,
            visibility_seconds: u32::try_from(consumer.visibility.as_secs()).unwrap_or(u32::MAX),
            start_executions: consumer.starts_executions,
            lease_holder: None,
            max_leased: limits.max_leased,
            group_concurrency: limits.group_concurrency,
            leased_here: 0,
            rate_limit: limits.rate_limit,
            group_rate_limit: limits.group_rate_limit,
            now: queue.clock().now(),
        })
        .await?;
    let n = batch.len();
    for m in batch {
        push_one(queue, consumer, pusher, region, m, None).await;
    }
    Ok(n)
}

/// Give leases back, each for its reason, all at once: the store writes them together (one
/// statement on PostgreSQL, not one per lease), so a full buffer goes back in milliseconds.
async fn release_all(queue: &Queue, leases: Vec<(LeasedMessage, &str)>) {
    if leases.is_empty() {
        return;
    }
    futures::future::join_all(leases.iter().map(|(m, why)| release(queue, m, why))).await;
}

/// Give a lease that was never pushed back: due again at once, neither the delivery nor the
/// attempt recorded with it counted (the job did not run, so it spends none of its attempts).
async fn release(queue: &Queue, m: &LeasedMessage, why: &str) {
    let p = DeliveryReleaseParams { lease: lease_of(queue, m), execution_id: m.execution_id };
    match queue.store().delivery_release(p).await {
        Ok(()) => {
            tracing::debug!(message.id = %m.message_id, queue.consumer_group = %m.consumer_group, why, "lease released")
        }
        Err(e) => tracing::warn!(
            message.id = %m.message_id,
            queue.consumer_group = %m.consumer_group,
            why,
            error = %e,
            "could not release a lease; it will expire instead"
        ),
    }
}

/// The write that closes the attempt recorded with the lease, when the push did not reach a
/// consumer that closed it (the store leaves a row that is no longer `running` alone).
fn closing(queue: &Queue, m: &LeasedMessage, reason: &str) -> Option<ExecutionFinishParams> {
    m.execution_id.map(|id| ExecutionFinishParams {
        id,
        began_at: None,
        status: ExecutionStatus::Failed,
        error: Some(reason.to_owned()),
        now: queue.clock().now(),
    })
}

fn lease_of(queue: &Queue, m: &LeasedMessage) -> LeaseParams {
    LeaseParams {
        consumer_group: m.consumer_group.clone(),
        receipt_handle: m.receipt_handle.clone(),
        now: queue.clock().now(),
    }
}

/// Push one leased message (or dead-letter it when it reached `maxDeliveries`), and give it
/// back after `retryAfterSeconds` when the push fails. `slot`, when the push holds one of the
/// group's execution slots, travels with the push for the consumer to release (it is not
/// released here: the caller does when this returns).
pub(crate) async fn push_one(
    queue: &Queue,
    consumer: &ConsumerConfig,
    pusher: &dyn Pusher,
    region: &str,
    mut m: LeasedMessage,
    slot: Option<ExecutionSlot>,
) {
    if m.delivery_count > consumer.max_deliveries {
        let reason = format!(
            "delivered {} times without acknowledgement (maxDeliveries is {})",
            consumer.max_deliveries, consumer.max_deliveries
        );
        let execution = closing(queue, &m, &reason);
        let r = queue
            .store()
            .delivery_dead_letter(DeliveryDeadLetterParams { lease: lease_of(queue, &m), reason, execution })
            .await;
        if r.is_ok() {
            queue.count(METRIC_DEAD_LETTERED, &m.topic);
        }
        return;
    }
    queue.count(METRIC_DELIVERED, &m.topic);
    // The payload moves into the push (what is left of `m` settles a failed one): a large
    // body is not copied per push.
    let body = bytes::Bytes::from(std::mem::take(&mut m.payload));
    let delivery = Delivery { execution_slot: slot, body, ..Delivery::from_leased(&m, region) };
    let outcome = pusher.push(&consumer.route_path, delivery).await;
    let failure = match outcome {
        Ok(status) if (200..300).contains(&status) => return,
        Ok(status) => format!("consumer answered {status}"),
        Err(e) => format!("push failed: {e}"),
    };
    tracing::info!(
        message.id = %m.message_id,
        queue.consumer_group = %m.consumer_group,
        failure,
        retry_in_s = consumer.retry_after.as_secs_f64(),
        "delivery failed"
    );
    let r = queue
        .store()
        .delivery_retry(DeliveryRetryParams {
            lease: lease_of(queue, &m),
            delay: consumer.retry_after,
            execution: closing(queue, &m, &failure),
        })
        .await;
    match r {
        Ok(()) | Err(StoreError::LeaseLost(_)) | Err(StoreError::NotFound(_)) => {}
        Err(e) => tracing::warn!(error = %e, "could not schedule the retry; the lease will expire instead"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(max_concurrency: Option<u32>) -> ConsumerConfig {
        let t = QueueTrigger {
            function_key: "api/queue/t.rs".into(),
            route_path: "/api/queue/t".into(),
            consumer_group: "g".into(),
            topic: "t".into(),
            retry_after_seconds: None,
            max_deliveries: None,
            max_concurrency,
            initial_delay_seconds: None,
        };
        ConsumerConfig::from(&t)
    }

    #[test]
    fn worker_concurrency_caps_this_process_and_never_raises_the_global_limit() {
        let local = trigger(None).with_worker_concurrency(Some(8));
        assert_eq!((local.max_concurrency, local.global_max_concurrency), (8, None), "a local cap, nothing global");
        assert!(!local.limited_across_processes(), "so nothing is counted in the database");
        let lower = trigger(Some(50)).with_worker_concurrency(Some(8));
        assert_eq!((lower.max_concurrency, lower.global_max_concurrency), (8, Some(50)));
        let higher = trigger(Some(5)).with_worker_concurrency(Some(8));
        assert_eq!(higher.max_concurrency, 5, "never more in one process than the global limit");
        assert_eq!(trigger(Some(5)).with_worker_concurrency(None).max_concurrency, 5);
        assert_eq!(trigger(None).with_worker_concurrency(None).max_concurrency, 100, "the default");
        assert_eq!(trigger(None).with_worker_concurrency(Some(0)).max_concurrency, 1);
    }
}
