//! The consumer side of a push: parse → lease check → run tracked → ack, retry or dead-letter.
//! The Rust counterpart of `createQueueHandler(SyncPatientJobbable)`; the HTTP adapter that
//! feeds it lives in the web app.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use tracing::Instrument;

use crate::queue_metrics::{
    METRIC_CANCELLED, METRIC_DEAD_LETTERED, METRIC_FAILED, METRIC_RETRIED, METRIC_SNOOZED, METRIC_SUCCEEDED,
};
use crate::queue_service::{
    DeadLetter, LocalQueueService, QueueService, ReceiveByIdParams, ServiceError, ServiceLease,
};
use crate::storable_text::escape_unstorable;
use crate::store::{ExecutionFinishParams, ExecutionStartParams, ExecutionStatus};
use crate::{
    CancelSignal, Clock, Delivery, DeliveryError, GroupStart, JobClient, Jobbable, MessageMetadata, Queue, RetryPolicy,
    TraceContext,
};

/// The longest lease the API grants (1 hour).
pub const MAX_VISIBILITY_SECONDS: u32 = 3600;

/// Lease time kept beyond a job's timeout to record and settle the outcome.
const SETTLE_MARGIN_SECONDS: i64 = 5;

/// How long a job told it was cancelled ([`crate::JobContext::cancelled`]) may go on to stop
/// cleanly before its future is dropped.
pub const CANCEL_GRACE: Duration = Duration::from_millis(400);

use crate::queue::CANCELLED_BY_OPERATOR;
use crate::topic_pause::PAUSED_DEFER;

/// Run `fut` unless `signal` fires first; then give it [`CANCEL_GRACE`] to finish and drop
/// it. `None`: it was cancelled (finished in the grace or not, the message is cancelled).
async fn unless_cancelled<F: std::future::Future>(fut: F, signal: &CancelSignal) -> Option<F::Output> {
    tokio::pin!(fut);
    tokio::select! {
        biased;
        r = &mut fut => return Some(r),
        _ = signal.cancelled() => {}
    }
    let _ = tokio::time::timeout(CANCEL_GRACE, fut).await;
    None
}

/// What the consumer did with one delivery; maps to the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerOutcome {
    /// The job succeeded; the message was acknowledged.
    Succeeded,
    /// The attempt failed; the message comes back after `after_seconds`.
    RetryScheduled {
        /// Seconds until the message is due again (the job's backoff, or the trigger's
        /// `retryAfterSeconds`).
        after_seconds: u64,
        /// The attempt's error, as recorded on its execution.
        error: String,
    },
    /// No more attempts (fatal, or `max_attempts` spent): acknowledged and dead-lettered.
    DeadLettered {
        /// Why: the last attempt's error, kept as the dead letter's `error`.
        reason: String,
    },
    /// The job snoozed: the message comes back after `after_seconds`, no attempt spent.
    Snoozed {
        /// Seconds until the message is due again, as the job asked.
        after_seconds: u64,
    },
    /// The message was cancelled — by the job itself, or by an operator while it ran or
    /// before it started: it ends `cancelled`, with no retry and no dead letter.
    Cancelled {
        /// Who cancelled it and why, as recorded on the attempt.
        reason: String,
    },
    /// Held back without running (`held`: `"paused"`, the topic is paused; `"rate_limit"`,
    /// the topic's rate bucket allows no start yet): the message
    /// comes back after `after_seconds`, no attempt spent, no execution recorded.
    Held {
        /// What holds it: `"paused"` or `"rate_limit"` (the admin API's `held` values).
        held: String,
        /// Seconds until the message is due again.
        after_seconds: u64,
    },
    /// The lease was already settled elsewhere (acknowledged, or expired and taken again).
    Skipped {
        /// Why nothing was done, for the answer's body and the log.
        reason: String,
    },
    /// The delivery itself is unusable; dead-lettered when it could be identified.
    Rejected {
        /// The HTTP status to answer with (4xx).
        status: u16,
        /// What is wrong with the delivery, for the answer's body.
        error: String,
    },
    /// The queue service could not be reached to settle the message; the platform retries.
    Unavailable {
        /// The queue service's error, for the answer's body.
        error: String,
    },
}

impl ConsumerOutcome {
    /// The HTTP status to answer the push with.
    pub fn status(&self) -> u16 {
        match self {
            ConsumerOutcome::Rejected { status, .. } => *status,
            ConsumerOutcome::Unavailable { .. } => 500,
            _ => 200,
        }
    }

    /// The JSON body to answer the push with.
    pub fn body(&self) -> serde_json::Value {
        match self {
            ConsumerOutcome::Succeeded => json!({"status": "success"}),
            ConsumerOutcome::RetryScheduled { after_seconds, error } => {
                json!({"status": "retry", "afterSeconds": after_seconds, "error": error})
            }
            ConsumerOutcome::DeadLettered { reason } => json!({"status": "dead_lettered", "reason": reason}),
            ConsumerOutcome::Snoozed { after_seconds } => json!({"status": "snoozed", "afterSeconds": after_seconds}),
            ConsumerOutcome::Cancelled { reason } => json!({"status": "cancelled", "reason": reason}),
            ConsumerOutcome::Held { held, after_seconds } => {
                json!({"status": "held", "held": held, "afterSeconds": after_seconds})
            }
            ConsumerOutcome::Skipped { reason } => json!({"status": "skipped", "reason": reason}),
            ConsumerOutcome::Rejected { error, .. } => json!({"error": error}),
            ConsumerOutcome::Unavailable { error } => json!({"error": error}),
        }
    }
}

trait ErasedJob: Send + Sync {
    fn topic(&self) -> &'static str;
    fn limits(&self) -> crate::TopicLimits;
    fn group_concurrency(&self) -> Option<u32>;
    fn handle<'a>(
        &'a self,
        queue: &'a Queue,
        service: &'a dyn QueueService,
        delivery: Delivery,
        retry_policy: Option<RetryPolicy>,
    ) -> BoxFuture<'a, ConsumerOutcome>;
}

struct Erased<J>(Arc<J>);

/// The consumer of one job's topic, built from the job type.
#[derive(Clone)]
pub struct QueueHandler {
    job: Arc<dyn ErasedJob>,
    retry_policy: Option<RetryPolicy>,
}

impl std::fmt::Debug for QueueHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueHandler").field("topic", &self.job.topic()).finish()
    }
}

impl QueueHandler {
    /// The consumer for job `J`.
    pub fn new<J: Jobbable>(job: J) -> Self {
        QueueHandler { job: Arc::new(Erased(Arc::new(job))), retry_policy: None }
    }

    /// The same consumer, retrying failed attempts after `policy` instead of the job's own
    /// [`Jobbable::retry_policy`] (e.g. a short fixed delay for fault and load drills).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = Some(policy);
        self
    }

    /// The topic it consumes.
    pub fn topic(&self) -> &'static str {
        self.job.topic()
    }

    /// The job type's default limits ([`Jobbable::concurrency`], [`Jobbable::rate_limit`]),
    /// for [`Queue::set_limit_defaults`].
    pub fn limits(&self) -> crate::TopicLimits {
        self.job.limits()
    }

    /// The job's [`Jobbable::group_concurrency`]: its consumer route's default.
    pub fn group_concurrency(&self) -> Option<u32> {
        self.job.group_concurrency()
    }

    /// Handle one push from this database's own queue (the local dispatcher, or a
    /// self-hosted push): `parsed` is what [`Delivery::parse`] made of it.
    pub async fn handle(&self, queue: &Queue, parsed: Result<Delivery, DeliveryError>) -> ConsumerOutcome {
        self.handle_with(queue, &LocalQueueService::new(queue.clone()), parsed).await
    }

    /// Handle one push delivered by `service` (e.g. Vercel's queue service): the message is
    /// leased, acknowledged, retried and dead-lettered there; the execution rows, checkpoints
    /// and dead letters are kept in `queue`'s database.
    pub async fn handle_with(
        &self,
        queue: &Queue,
        service: &dyn QueueService,
        parsed: Result<Delivery, DeliveryError>,
    ) -> ConsumerOutcome {
        let delivery = match parsed {
            Ok(d) => d,
            Err(e) => {
                let reason = format!("malformed delivery: {}", e.reason);
                if let (Some(topic), Some(group), Some(handle)) = (e.topic, e.consumer_group, e.receipt_handle) {
                    let lease = ServiceLease { topic, consumer_group: group, receipt_handle: handle };
                    let letter = DeadLetter {
                        message_id: e.message_id.unwrap_or_default(),
                        content_type: String::new(),
                        payload: Default::default(),
                        attempts: 0,
                        reason: escape_unstorable(&reason).into_owned(),
                        headers_json: None,
                    };
                    let _ = dead_letter(queue, service, &lease, letter, None).await;
                }
                return ConsumerOutcome::Rejected { status: 400, error: reason };
            }
        };
        if delivery.topic != self.topic() {
            let reason = format!(
                "delivery for topic {:?} reached the consumer of topic {:?}: check the trigger in vercel.json",
                delivery.topic,
                self.topic()
            );
            if let Some(handle) = &delivery.receipt_handle {
                let letter = dead_letter_of(&delivery, &reason);
                let closing = closing_started(&delivery, queue, &reason);
                let _ = dead_letter(queue, service, &lease_of(&delivery, handle), letter, closing).await;
            }
            return ConsumerOutcome::Rejected { status: 400, error: reason };
        }
        // The producer's trace continues in this job: same trace id, a span of its own, which
        // messages the job publishes carry on. Without one, the job starts a trace.
        let producer = delivery.traceparent.as_deref().and_then(TraceContext::parse);
        let trace = producer.as_ref().map(TraceContext::child).unwrap_or_else(TraceContext::new_root);
        let span = tracing::info_span!(
            "job",
            job.topic = self.topic(),
            // The attempt's execution id: known here when the dispatcher recorded it with the
            // lease, else recorded when the attempt starts (`JobClient::run_attempt`).
            job.id = delivery.execution_id,
            job.attempt = delivery.attempt(),
            message.id = %delivery.message_id,
            queue.consumer_group = %delivery.consumer_group,
            trace.id = %trace.trace_id,
            trace.span_id = %trace.parent_id,
            trace.parent_id = producer.as_ref().map(|p| p.parent_id.as_str()),
        );
        trace.scope(self.job.handle(queue, service, delivery, self.retry_policy).instrument(span)).await
    }
}

fn lease_of(delivery: &Delivery, handle: &str) -> ServiceLease {
    ServiceLease {
        topic: delivery.topic.clone(),
        consumer_group: delivery.consumer_group.clone(),
        receipt_handle: handle.to_owned(),
    }
}

/// The write that closes the attempt the local dispatcher recorded with the lease, when the
/// consumer stops before running the job.
fn closing_started(delivery: &Delivery, queue: &Queue, reason: &str) -> Option<ExecutionFinishParams> {
    delivery.execution_id.map(|id| ExecutionFinishParams {
        id,
        began_at: None,
        status: ExecutionStatus::Failed,
        error: Some(escape_unstorable(reason).into_owned()),
        now: queue.clock().now(),
    })
}

/// The write that records an attempt of this delivery as started (`running`).
fn attempt_start(delivery: &Delivery, now: chrono::DateTime<chrono::Utc>) -> ExecutionStartParams {
    ExecutionStartParams {
        topic: delivery.topic.clone(),
        message_id: delivery.message_id.clone(),
        consumer_group: delivery.consumer_group.clone(),
        attempt: delivery.attempt(),
        now,
    }
}

fn dead_letter_of(delivery: &Delivery, reason: &str) -> DeadLetter {
    DeadLetter {
        message_id: delivery.message_id.clone(),
        content_type: delivery.content_type.clone().unwrap_or_else(|| "application/json".to_owned()),
        payload: delivery.body.clone(),
        attempts: delivery.attempt(),
        reason: escape_unstorable(reason).into_owned(),
        headers_json: delivery.traceparent.as_ref().map(|t| json!({ "traceparent": t }).to_string()),
    }
}

async fn dead_letter(
    queue: &Queue,
    service: &dyn QueueService,
    lease: &ServiceLease,
    letter: DeadLetter,
    closing: Option<ExecutionFinishParams>,
) -> Result<(), ServiceError> {
    let reason = letter.reason.clone();
    let r = service.dead_letter(lease, letter, closing).await;
    match &r {
        Ok(()) => {
            queue.count(METRIC_DEAD_LETTERED, &lease.topic);
            tracing::warn!(reason, "dead-lettered")
        }
        Err(e) => tracing::warn!(error = %e, "could not dead-letter"),
    }
    r
}

fn settle(result: Result<(), ServiceError>, done: ConsumerOutcome) -> ConsumerOutcome {
    match result {
        Ok(()) => done,
        Err(ServiceError::LeaseLost(r)) | Err(ServiceError::NotFound(r)) => ConsumerOutcome::Skipped { reason: r },
        Err(e) => ConsumerOutcome::Unavailable { error: format!("could not settle the message: {e}") },
    }
}

/// How often the SDK renews a lease of `seconds`: `min(60, max(10, seconds / 5))`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(vqs::renewal_interval(300.0), Duration::from_secs(60));
/// assert_eq!(vqs::renewal_interval(100.0), Duration::from_secs(20));
/// assert_eq!(vqs::renewal_interval(12.0), Duration::from_secs(10));
/// ```
pub fn renewal_interval(seconds: f64) -> Duration {
    // NaN (or a negative) renews at the shortest interval rather than panicking.
    Duration::try_from_secs_f64((seconds / 5.0).clamp(10.0, 60.0)).unwrap_or(Duration::from_secs(10))
}

/// Renew `lease` for `seconds` at a time until dropped, as the SDK does: the first renewal
/// is due by the current deadline (at once when it has passed), later ones every
/// [`renewal_interval`]. A refusal (the lease is gone) stops renewing; an unavailable
/// service is asked again in 3 s.
async fn renew_lease(
    service: &dyn QueueService,
    lease: &ServiceLease,
    seconds: u32,
    deadline: Option<chrono::DateTime<chrono::Utc>>,
    clock: &Clock,
) {
    let left = deadline.map(|d| (d - clock.now()).num_milliseconds() as f64 / 1000.0).unwrap_or(0.0);
    let mut wait = if left > 0.0 { renewal_interval(left) } else { Duration::ZERO };
    loop {
        tokio::time::sleep(wait).await;
        match service.extend(lease, seconds).await {
            Ok(()) => wait = renewal_interval(f64::from(seconds)),
            Err(ServiceError::Unavailable(e)) => {
                tracing::warn!(error = %e, "lease renewal failed; retrying in 3s");
                wait = Duration::from_secs(3);
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal refused; no more renewals");
                return std::future::pending().await;
            }
        }
    }
}

impl<J: Jobbable> ErasedJob for Erased<J> {
    fn topic(&self) -> &'static str {
        J::TOPIC
    }

    fn limits(&self) -> crate::TopicLimits {
        crate::TopicLimits {
            concurrency: self.0.concurrency(),
            rate_limit: self.0.rate_limit(),
            group_rate_limit: self.0.group_rate_limit(),
            ..Default::default()
        }
    }

    fn group_concurrency(&self) -> Option<u32> {
        self.0.group_concurrency()
    }

    fn handle<'a>(
        &'a self,
        queue: &'a Queue,
        service: &'a dyn QueueService,
        mut delivery: Delivery,
        retry_policy: Option<RetryPolicy>,
    ) -> BoxFuture<'a, ConsumerOutcome> {
        Box::pin(async move {
            let clock = queue.clock();
            let timeout = self.0.timeout();
            // Registered while this delivery is worked here, so a cancel reaches it; one that
            // came while its lease waited in a dispatcher's buffer has fired already.
            let (_registered, cancel) = queue.cancellations().register(&delivery.message_id, &delivery.consumer_group);
            let needed = (timeout + Duration::from_secs(30)).as_secs().min(u64::from(MAX_VISIBILITY_SECONDS)) as u32;

            // Routing-only mode: lease the message by id first.
            let handle = match delivery.receipt_handle.clone() {
                Some(h) => h,
                None => {
                    let claimed = service
                        .receive_by_id(ReceiveByIdParams {
                            topic: delivery.topic.clone(),
                            consumer_group: delivery.consumer_group.clone(),
                            message_id: delivery.message_id.clone(),
                            visibility_seconds: needed,
                        })
                        .await;
                    match claimed {
                        Ok(m) => {
                            delivery.delivery_count = m.delivery_count;
                            delivery.body = m.payload.into();
                            delivery.content_type = Some(m.content_type);
                            delivery.created_at = Some(m.created_at);
                            delivery.expires_at = Some(m.expires_at);
                            delivery.visibility_deadline = Some(m.lease_until);
                            m.receipt_handle
                        }
                        Err(ServiceError::Unavailable(e)) => return ConsumerOutcome::Unavailable { error: e },
                        Err(ServiceError::AlreadyAcknowledged(_)) => {
                            return ConsumerOutcome::Skipped { reason: "already_processed".into() };
                        }
                        Err(_) => return ConsumerOutcome::Skipped { reason: "not_available".into() },
                    }
                }
            };
            let lease = lease_of(&delivery, &handle);
            // A push whose lease stored no attempt (Vercel's, which counts deliveries only,
            // or one the dispatcher did not record): the attempt is one more than the runs
            // this database recorded of the delivery, so a lease renewed or run out before
            // the job started spends none (SPEC.md, "Attempts vs deliveries").
            let pushed_unleased = delivery.attempt.is_none();
            if pushed_unleased {
                match queue.next_attempt(&delivery.message_id, &delivery.consumer_group).await {
                    Ok(a) => {
                        delivery.attempt = Some(a);
                        tracing::Span::current().record("job.attempt", a);
                    }
                    Err(e) => {
                        return ConsumerOutcome::Unavailable { error: format!("could not read the attempts: {e}") };
                    }
                }
                // A message of another queue service (Vercel's) an operator cancelled here:
                // acknowledged without running, the attempt recorded `cancelled`.
                match queue.remote_cancel(&delivery.message_id).await {
                    Ok(None) => {}
                    Ok(Some(reason)) => {
                        let closing =
                            queue.store().execution_start(attempt_start(&delivery, clock.now())).await.ok().map(|id| {
                                ExecutionFinishParams {
                                    id,
                                    began_at: None,
                                    status: ExecutionStatus::Cancelled,
                                    error: Some(reason.clone()),
                                    now: clock.now(),
                                }
                            });
                        let r = service.acknowledge(&lease, closing).await;
                        if r.is_ok() {
                            queue.count(METRIC_CANCELLED, J::TOPIC);
                        }
                        return settle(r, ConsumerOutcome::Cancelled { reason });
                    }
                    Err(e) => {
                        return ConsumerOutcome::Unavailable { error: format!("could not read the cancels: {e}") };
                    }
                }
                // A paused topic's delivery that this process did not lease (Vercel pushes
                // whatever is due): deferred, not run — no attempt, no execution row. (The
                // local dispatcher never pushes one: it does not claim a paused topic.)
                match queue.paused_topics().await {
                    Ok(paused) if paused.contains(&delivery.topic) => {
                        let seconds = PAUSED_DEFER.as_secs();
                        tracing::info!(defer_s = seconds, "held: the topic is paused");
                        let r = service.retry_after(&lease, seconds as u32, None).await;
                        return settle(r, ConsumerOutcome::Held { held: "paused".into(), after_seconds: seconds });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return ConsumerOutcome::Unavailable {
                            error: format!("could not read the paused topics: {e}"),
                        };
                    }
                }
                // Over the topic's rate limit: deferred until the bucket allows a start (no
                // attempt, no execution row); a start allowed is taken from the bucket.
                match queue.rate_limit_take(&delivery.topic, &delivery.consumer_group).await {
                    Ok(None) => {}
                    Ok(Some(seconds)) => {
                        tracing::info!(defer_s = seconds, "held: the topic's rate limit");
                        let r = service.retry_after(&lease, seconds, None).await;
                        return settle(
                            r,
                            ConsumerOutcome::Held { held: "rate_limit".into(), after_seconds: u64::from(seconds) },
                        );
                    }
                    Err(e) => {
                        return ConsumerOutcome::Unavailable { error: format!("could not read the rate limit: {e}") };
                    }
                }
            }

            let mut de = serde_json::Deserializer::from_slice(&delivery.body);
            let params: J::Params = match serde_path_to_error::deserialize(&mut de) {
                Ok(p) => p,
                Err(e) => {
                    let at = e.path().to_string();
                    let at = if at == "." { String::new() } else { format!(" at {at}") };
                    let reason = format!("payload does not match the params of job {:?}{at}: {}", J::TOPIC, e.inner());
                    // The attempt is recorded as failed with the reason, like any other failure
                    // an operator must see (recorded now when the lease did not record it).
                    if delivery.execution_id.is_none() {
                        delivery.execution_id =
                            queue.store().execution_start(attempt_start(&delivery, clock.now())).await.ok();
                    }
                    let closing = closing_started(&delivery, queue, &reason);
                    let _ = dead_letter(queue, service, &lease, dead_letter_of(&delivery, &reason), closing).await;
                    return ConsumerOutcome::Rejected { status: 422, error: reason };
                }
            };

            // A paused message group's delivery that this process did not lease (Vercel's):
            // deferred like a paused topic's (no attempt, no execution row). The group is the
            // job type's for these params (`Jobbable::group`).
            let mut group_slot: Option<String> = None;
            // The message group a push this process did not lease took its group start for.
            let pushed_group = if pushed_unleased { self.0.group(&params) } else { None };
            if let Some(group) = pushed_group.clone() {
                match queue.group_paused(&delivery.topic, &group).await {
                    Ok(false) => {}
                    Ok(true) => {
                        let seconds = PAUSED_DEFER.as_secs();
                        tracing::info!(defer_s = seconds, queue.group = %group, "held: the message group is paused");
                        let r = service.retry_after(&lease, seconds as u32, None).await;
                        return settle(r, ConsumerOutcome::Held { held: "paused".into(), after_seconds: seconds });
                    }
                    Err(e) => {
                        return ConsumerOutcome::Unavailable {
                            error: format!("could not read the paused groups: {e}"),
                        };
                    }
                }
                // The group's limits (the grouped claim's, which did not run for this push): a
                // start from its rate bucket, a slot under its group concurrency held until
                // the push settles (or its lease would have run out) — else deferred.
                let now = clock.now();
                let until =
                    delivery.visibility_deadline.unwrap_or(now).max(now + chrono::Duration::seconds(i64::from(needed)));
                let defaults = (self.0.group_concurrency(), self.0.group_rate_limit());
                match queue
                    .group_start(
                        &delivery.topic,
                        &delivery.consumer_group,
                        &group,
                        &delivery.message_id,
                        defaults,
                        until,
                    )
                    .await
                {
                    Ok(GroupStart::Started { slot }) => {
                        if slot {
                            group_slot = Some(group);
                        }
                    }
                    Ok(GroupStart::Held { held, after_seconds }) => {
                        tracing::info!(defer_s = after_seconds, queue.group = %group, "held: {held}");
                        // The topic's start taken above was not used: given back.
                        let taken = queue.rate_start_return(
                            &delivery.topic,
                            &delivery.consumer_group,
                            &delivery.message_id,
                            None,
                            None,
                        );
                        if let Err(e) = taken.await {
                            tracing::warn!(error = %e, "could not give the topic's rate-limit start back");
                        }
                        let r = service.retry_after(&lease, after_seconds, None).await;
                        return settle(
                            r,
                            ConsumerOutcome::Held { held: held.into(), after_seconds: u64::from(after_seconds) },
                        );
                    }
                    Err(e) => {
                        return ConsumerOutcome::Unavailable {
                            error: format!("could not read the message group's limits: {e}"),
                        };
                    }
                }
            }

            // Whatever the outcome from here on, a group slot taken above is released after it.
            let outcome = async {
                // Make sure the lease outlives the job's timeout (plus a little to settle it); the
                // common case — a 60 s lease for a short job — needs no extra round trip. A
                // service that wants its leases renewed (Vercel's) is renewed while the job runs.
                let now = clock.now();
                let deadline = delivery.visibility_deadline.unwrap_or(now);
                let must_cover = chrono::Duration::from_std(timeout)
                    .ok()
                    .and_then(|t| t.checked_add(&chrono::Duration::seconds(SETTLE_MARGIN_SECONDS)))
                    .unwrap_or(chrono::Duration::MAX);
                if !service.renews_leases()
                    && now.checked_add_signed(must_cover).is_none_or(|end| deadline < end)
                    && let Err(e) = service.extend(&lease, needed).await
                {
                    // The lease is gone (another consumer has it) or the store is down: don't run.
                    if let Some(closing) = closing_started(&delivery, queue, &format!("not run: {e}")) {
                        let _ = queue.store().execution_finish(closing).await;
                    }
                    return settle(Err(e), ConsumerOutcome::Succeeded);
                }

                let metadata = MessageMetadata {
                    message_id: delivery.message_id.clone(),
                    delivery_count: delivery.delivery_count,
                    attempt: delivery.attempt(),
                    created_at: delivery.created_at.unwrap_or(now),
                    expires_at: delivery.expires_at.unwrap_or(now + chrono::Duration::hours(24)),
                    topic_name: delivery.topic.clone(),
                    consumer_group: delivery.consumer_group.clone(),
                    region: delivery.region.clone(),
                };
                let attempt = delivery.attempt();
                if cancel.is_cancelled() {
                    // Cancelled while its lease waited to be pushed: never run. The cancel closed
                    // the attempt recorded with the lease and ended the delivery.
                    if let Some(slot) = &delivery.execution_slot {
                        slot.release();
                    }
                    queue.count(METRIC_CANCELLED, J::TOPIC);
                    return ConsumerOutcome::Cancelled { reason: CANCELLED_BY_OPERATOR.into() };
                }
                let client = JobClient::new(queue.clone(), self.0.clone());
                // The local dispatcher recorded this attempt with its lease; anyone else's push
                // is recorded now, before the job runs.
                let started = std::time::Instant::now();
                let run = async {
                    match delivery.execution_id {
                        Some(id) => Ok(client.run_started(id, params, metadata, cancel.clone()).await),
                        None => client.run_attempt(params, metadata, cancel.clone()).await,
                    }
                };
                let ran = if service.renews_leases() {
                    let renew = renew_lease(service, &lease, needed, delivery.visibility_deadline, clock);
                    tokio::select! {
                        r = run => Some(r),
                        _ = renew => unreachable!("renewal never ends by itself"),
                    }
                } else {
                    unless_cancelled(run, &cancel).await
                };
                // The job's code is done: its execution slot goes to the next message now.
                if let Some(slot) = &delivery.execution_slot {
                    slot.release();
                }
                let ran = match ran {
                    Some(Ok(ran)) => ran,
                    Some(Err(e)) => {
                        // Not even the start could be recorded: don't run; the platform retries.
                        return ConsumerOutcome::Unavailable { error: format!("could not record the attempt: {e}") };
                    }
                    None => {
                        // An operator cancelled it while it ran: the cancel ended the delivery and
                        // closed the attempt (`cancelled`); the job's future is gone.
                        tracing::info!("cancelled while running; the job was stopped");
                        queue.count(METRIC_CANCELLED, J::TOPIC);
                        return ConsumerOutcome::Cancelled { reason: CANCELLED_BY_OPERATOR.into() };
                    }
                };
                // The attempt's execution row is closed by the same call that settles the
                // delivery: locally one write, and never `success` beside a message still leased.
                let closing = Some(ran.finish);
                let e = match ran.result {
                    Ok(()) => {
                        queue.job_duration(J::TOPIC, true, started.elapsed());
                        queue.count(METRIC_SUCCEEDED, J::TOPIC);
                        return settle(service.acknowledge(&lease, closing).await, ConsumerOutcome::Succeeded);
                    }
                    Err(e) => e,
                };
                if let Some(after) = e.snoozed_for() {
                    // Not a failure: due again later, and the attempt is given back.
                    let seconds = after.as_secs().min(u64::from(u32::MAX)) as u32;
                    tracing::info!(snooze_s = seconds, "snoozed");
                    let r = service.retry_after(&lease, seconds, closing).await;
                    if r.is_ok() {
                        queue.count(METRIC_SNOOZED, J::TOPIC);
                        // Nor does a snooze count as a start (SPEC.md, "Flow control"): the
                        // starts it took from the rate buckets are given back — the group's
                        // by the key the push took it for, or the lease's own.
                        let group = if pushed_unleased { pushed_group.as_deref().map(Some) } else { Some(None) };
                        let returned = queue.rate_start_return(
                            &delivery.topic,
                            &delivery.consumer_group,
                            &delivery.message_id,
                            group,
                            self.0.group_rate_limit(),
                        );
                        if let Err(e) = returned.await {
                            tracing::warn!(error = %e, "could not give the snoozed start back to the rate buckets");
                        }
                    }
                    return settle(r, ConsumerOutcome::Snoozed { after_seconds: u64::from(seconds) });
                }
                if e.is_cancel() {
                    tracing::info!(reason = e.message(), "the job cancelled itself");
                    let r = service.acknowledge(&lease, closing).await;
                    if r.is_ok() {
                        queue.count(METRIC_CANCELLED, J::TOPIC);
                    }
                    return settle(r, ConsumerOutcome::Cancelled { reason: e.message().to_owned() });
                }
                queue.job_duration(J::TOPIC, false, started.elapsed());
                queue.count(METRIC_FAILED, J::TOPIC);
                let max = self.0.max_attempts();
                if e.is_fatal() || attempt >= max {
                    let reason = if e.is_fatal() {
                        format!("fatal: {}", e.message())
                    } else {
                        format!("gave up after {attempt} of {max} attempts: {}", e.message())
                    };
                    let r = dead_letter(queue, service, &lease, dead_letter_of(&delivery, &reason), closing).await;
                    settle(r, ConsumerOutcome::DeadLettered { reason })
                } else {
                    let delay = retry_policy.unwrap_or_else(|| self.0.retry_policy()).next_delay(attempt).as_secs();
                    tracing::info!(error = e.message(), retry_in_s = delay, "attempt failed");
                    let r = service.retry_after(&lease, delay.min(u64::from(u32::MAX)) as u32, closing).await;
                    if r.is_ok() {
                        queue.count(METRIC_RETRIED, J::TOPIC);
                    }
                    settle(r, ConsumerOutcome::RetryScheduled { after_seconds: delay, error: e.message().to_owned() })
                }
            }
            .await;
            if let Some(group) = group_slot
                && let Err(e) = queue.group_slot_release(&delivery.consumer_group, &group, &delivery.message_id).await
            {
                // Not lost: the slot frees itself when the push's lease would have run out.
                tracing::warn!(error = %e, queue.group = %group, "could not release the message group's slot");
            }
            outcome
        })
    }
}
