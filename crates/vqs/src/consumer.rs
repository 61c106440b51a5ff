//! The consumer side of a push: parse → lease check → run tracked → ack, retry or dead-letter.
//! The Rust counterpart of `createQueueHandler(SyncPatientJobbable)`; the HTTP adapter that
//! feeds it lives in the web app.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use tracing::Instrument;

use crate::store::{
    DeliveryClaimParams, DeliveryDeadLetterParams, DeliveryRetryParams, LeaseParams, LeaseVisibilityParams, StoreError,
};
use crate::{Delivery, DeliveryError, JobClient, Jobbable, MessageMetadata, Queue};

/// The longest lease the API grants (1 hour).
pub const MAX_VISIBILITY_SECONDS: u32 = 3600;

/// Lease time kept beyond a job's timeout to record and settle the outcome.
const SETTLE_MARGIN_SECONDS: i64 = 5;

/// What the consumer did with one delivery; maps to the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerOutcome {
    /// The job succeeded; the message was acknowledged.
    Succeeded,
    /// The attempt failed; the message comes back after `after_seconds`.
    RetryScheduled { after_seconds: u64, error: String },
    /// No more attempts (fatal, or `max_attempts` spent): acknowledged and dead-lettered.
    DeadLettered { reason: String },
    /// The lease was already settled elsewhere (acknowledged, or expired and taken again).
    Skipped { reason: String },
    /// The delivery itself is unusable; dead-lettered when it could be identified.
    Rejected { status: u16, error: String },
    /// The queue service could not be reached to settle the message; the platform retries.
    Unavailable { error: String },
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
            ConsumerOutcome::Skipped { reason } => json!({"status": "skipped", "reason": reason}),
            ConsumerOutcome::Rejected { error, .. } => json!({"error": error}),
            ConsumerOutcome::Unavailable { error } => json!({"error": error}),
        }
    }
}

trait ErasedJob: Send + Sync {
    fn topic(&self) -> &'static str;
    fn handle<'a>(&'a self, queue: &'a Queue, delivery: Delivery) -> BoxFuture<'a, ConsumerOutcome>;
}

struct Erased<J>(Arc<J>);

/// The consumer of one job's topic, built from the job type.
#[derive(Clone)]
pub struct QueueHandler {
    job: Arc<dyn ErasedJob>,
}

impl std::fmt::Debug for QueueHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueHandler").field("topic", &self.job.topic()).finish()
    }
}

impl QueueHandler {
    /// The consumer for job `J`.
    pub fn new<J: Jobbable>(job: J) -> Self {
        QueueHandler { job: Arc::new(Erased(Arc::new(job))) }
    }

    /// The topic it consumes.
    pub fn topic(&self) -> &'static str {
        self.job.topic()
    }

    /// Handle one push: `parsed` is what [`Delivery::parse`] made of it.
    pub async fn handle(&self, queue: &Queue, parsed: Result<Delivery, DeliveryError>) -> ConsumerOutcome {
        let delivery = match parsed {
            Ok(d) => d,
            Err(e) => {
                let reason = format!("malformed delivery: {}", e.reason);
                if let (Some(group), Some(handle)) = (e.consumer_group, e.receipt_handle) {
                    let _ = dead_letter(queue, &group, &handle, &reason).await;
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
                let _ = dead_letter(queue, &delivery.consumer_group, handle, &reason).await;
            }
            return ConsumerOutcome::Rejected { status: 400, error: reason };
        }
        let span = tracing::info_span!(
            "job",
            job.topic = self.topic(),
            job.attempt = delivery.delivery_count,
            message.id = %delivery.message_id,
            queue.consumer_group = %delivery.consumer_group,
        );
        self.job.handle(queue, delivery).instrument(span).await
    }
}

async fn dead_letter(queue: &Queue, group: &str, handle: &str, reason: &str) -> Result<(), StoreError> {
    let r = queue
        .store()
        .delivery_dead_letter(DeliveryDeadLetterParams {
            lease: LeaseParams {
                consumer_group: group.to_owned(),
                receipt_handle: handle.to_owned(),
                now: queue.clock().now(),
            },
            reason: reason.to_owned(),
        })
        .await;
    match &r {
        Ok(()) => tracing::warn!(reason, "dead-lettered"),
        Err(e) => tracing::warn!(error = %e, "could not dead-letter"),
    }
    r
}

fn settle(result: Result<(), StoreError>, done: ConsumerOutcome) -> ConsumerOutcome {
    match result {
        Ok(()) => done,
        Err(StoreError::LeaseLost(r)) | Err(StoreError::NotFound(r)) => ConsumerOutcome::Skipped { reason: r },
        Err(e) => ConsumerOutcome::Unavailable { error: format!("could not settle the message: {e}") },
    }
}

impl<J: Jobbable> ErasedJob for Erased<J> {
    fn topic(&self) -> &'static str {
        J::TOPIC
    }

    fn handle<'a>(&'a self, queue: &'a Queue, mut delivery: Delivery) -> BoxFuture<'a, ConsumerOutcome> {
        Box::pin(async move {
            let store = queue.store();
            let clock = queue.clock();
            let timeout = self.0.timeout();
            let needed = (timeout + Duration::from_secs(30)).as_secs().min(u64::from(MAX_VISIBILITY_SECONDS)) as u32;

            // Routing-only mode: lease the message by id first.
            let handle = match delivery.receipt_handle.clone() {
                Some(h) => h,
                None => {
                    let claimed = store
                        .delivery_claim(DeliveryClaimParams {
                            consumer_group: delivery.consumer_group.clone(),
                            topic: Some(delivery.topic.clone()),
                            message_id: Some(delivery.message_id.clone()),
                            limit: 1,
                            visibility_seconds: needed,
                            now: clock.now(),
                        })
                        .await;
                    match claimed.map(|mut v| v.pop()) {
                        Ok(Some(m)) => {
                            delivery.delivery_count = m.delivery_count;
                            delivery.body = m.payload.into();
                            delivery.created_at = Some(m.created_at);
                            delivery.expires_at = Some(m.expires_at);
                            delivery.visibility_deadline = Some(m.lease_until);
                            m.receipt_handle
                        }
                        Ok(None) => return ConsumerOutcome::Skipped { reason: "not_available".into() },
                        Err(StoreError::Database(e)) => return ConsumerOutcome::Unavailable { error: e },
                        Err(e) => return ConsumerOutcome::Skipped { reason: e.to_string() },
                    }
                }
            };
            let lease = |now| LeaseParams {
                consumer_group: delivery.consumer_group.clone(),
                receipt_handle: handle.clone(),
                now,
            };

            let mut de = serde_json::Deserializer::from_slice(&delivery.body);
            let params: J::Params = match serde_path_to_error::deserialize(&mut de) {
                Ok(p) => p,
                Err(e) => {
                    let at = e.path().to_string();
                    let at = if at == "." { String::new() } else { format!(" at {at}") };
                    let reason = format!("payload does not match the params of job {:?}{at}: {}", J::TOPIC, e.inner());
                    let _ = dead_letter(queue, &delivery.consumer_group, &handle, &reason).await;
                    return ConsumerOutcome::Rejected { status: 422, error: reason };
                }
            };

            // Make sure the lease outlives the job's timeout (plus a little to settle it); the
            // common case — a 60 s lease for a short job — needs no extra round trip.
            let now = clock.now();
            let deadline = delivery.visibility_deadline.unwrap_or(now);
            let must_cover = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX)
                + chrono::Duration::seconds(SETTLE_MARGIN_SECONDS);
            if deadline < now + must_cover {
                let r = store
                    .delivery_set_visibility(LeaseVisibilityParams { lease: lease(now), visibility_seconds: needed })
                    .await
                    .map(|_| ());
                if let outcome @ (ConsumerOutcome::Skipped { .. } | ConsumerOutcome::Unavailable { .. }) =
                    settle(r, ConsumerOutcome::Succeeded)
                {
                    return outcome;
                }
            }

            let metadata = MessageMetadata {
                message_id: delivery.message_id.clone(),
                delivery_count: delivery.delivery_count,
                created_at: delivery.created_at.unwrap_or(now),
                expires_at: delivery.expires_at.unwrap_or(now + chrono::Duration::hours(24)),
                topic_name: delivery.topic.clone(),
                consumer_group: delivery.consumer_group.clone(),
                region: delivery.region.clone(),
            };
            let attempt = delivery.delivery_count;
            let client = JobClient::new(queue.clone(), self.0.clone());
            match client.run_tracked(params, metadata).await {
                Ok(()) => settle(store.delivery_ack(lease(clock.now())).await, ConsumerOutcome::Succeeded),
                Err(e) => {
                    let max = self.0.max_attempts();
                    if e.is_fatal() || attempt >= max {
                        let reason = if e.is_fatal() {
                            format!("fatal: {}", e.message())
                        } else {
                            format!("gave up after {attempt} of {max} attempts: {}", e.message())
                        };
                        let r = dead_letter(queue, &delivery.consumer_group, &handle, &reason).await;
                        settle(r, ConsumerOutcome::DeadLettered { reason })
                    } else {
                        let delay = self.0.retry_policy().next_delay(attempt).as_secs();
                        tracing::info!(error = e.message(), retry_in_s = delay, "attempt failed");
                        let r = store
                            .delivery_retry(DeliveryRetryParams {
                                lease: lease(clock.now()),
                                delay_seconds: delay as u32,
                            })
                            .await;
                        if r.is_ok() {
                            queue.wake();
                        }
                        settle(
                            r,
                            ConsumerOutcome::RetryScheduled { after_seconds: delay, error: e.message().to_owned() },
                        )
                    }
                }
            }
        })
    }
}
