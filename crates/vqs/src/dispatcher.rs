//! The local push dispatcher: what the platform does on Vercel, done in process.
//!
//! For every `queue/v2beta` trigger it leases due messages of that consumer group (lease
//! first, then push), pushes each to the trigger's route as a v2beta binary CloudEvent, and
//! on a failed push (non-2xx or transport error) gives the message back after
//! `retryAfterSeconds`. It holds at most `maxConcurrency` pushes in flight per group,
//! dead-letters a message delivered `maxDeliveries` times without acknowledgement, and wakes
//! at once when this process publishes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::store::{
    DeliveryClaimParams, DeliveryDeadLetterParams, DeliveryRetryParams, LeaseParams, LeasedMessage, StoreError,
    SubscriptionEnsureParams,
};
use crate::{Delivery, Queue, QueueTrigger};

/// Vercel's default `retryAfterSeconds`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The `vercel dev` broker's default `maxDeliveries`.
pub const DEFAULT_MAX_DELIVERIES: u32 = 32;

/// One push consumer: a consumer group, its topic and its route.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub consumer_group: String,
    /// A topic or a `prefix*` pattern.
    pub topic_pattern: String,
    pub route_path: String,
    /// Delay before a failed push is retried. Default 60 s.
    pub retry_after: Duration,
    /// Deliveries before the message is dead-lettered. Default 32.
    pub max_deliveries: u32,
    /// Pushes in flight at most. Default 100.
    pub max_concurrency: u32,
    /// Messages become visible to this group no sooner than this after they were sent.
    pub initial_delay: Duration,
    /// The lease taken before a push. Default 60 s; the consumer extends it to its job's timeout.
    pub visibility: Duration,
}

impl From<&QueueTrigger> for ConsumerConfig {
    fn from(t: &QueueTrigger) -> Self {
        ConsumerConfig {
            consumer_group: t.consumer_group.clone(),
            topic_pattern: t.topic.clone(),
            route_path: t.route_path.clone(),
            retry_after: t.retry_after_seconds.map(Duration::from_secs_f64).unwrap_or(DEFAULT_RETRY_AFTER),
            max_deliveries: t.max_deliveries.unwrap_or(DEFAULT_MAX_DELIVERIES),
            max_concurrency: t.max_concurrency.unwrap_or(100),
            initial_delay: t.initial_delay_seconds.map(Duration::from_secs_f64).unwrap_or_default(),
            visibility: Duration::from_secs(60),
        }
    }
}

/// Delivers a push to a consumer route and returns the HTTP status it answered with.
#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    async fn push(&self, route_path: &str, delivery: Delivery) -> Result<u16, String>;
}

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// The `ce-vqsregion` of pushes. Default `dev1`, as `vercel dev`.
    pub region: String,
    /// How often to look for work that another process published. Default 200 ms.
    pub poll_interval: Duration,
    /// Messages leased per round trip at most. Default 100.
    pub batch: u32,
    /// On shutdown, how long to let in-flight pushes finish. Default 25 s.
    pub shutdown_grace: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            region: "dev1".into(),
            poll_interval: Duration::from_millis(200),
            batch: 100,
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// Subscribe every consumer's group to its topic (idempotent; call once at start).
pub async fn register_consumers(queue: &Queue, consumers: &[ConsumerConfig]) -> Result<(), StoreError> {
    for c in consumers {
        queue
            .store()
            .subscription_ensure(SubscriptionEnsureParams {
                topic_pattern: c.topic_pattern.clone(),
                consumer_group: c.consumer_group.clone(),
                initial_delay_seconds: c.initial_delay.as_secs() as u32,
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
    tokio::spawn(async move {
        let loops: Vec<_> = consumers
            .into_iter()
            .map(|c| tokio::spawn(consumer_loop(queue.clone(), c, pusher.clone(), config.clone(), shutdown.clone())))
            .collect();
        for l in loops {
            let _ = l.await;
        }
    })
}

async fn consumer_loop(
    queue: Queue,
    consumer: ConsumerConfig,
    pusher: Arc<dyn Pusher>,
    config: DispatcherConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = consumer.max_concurrency.max(1);
    let permits = Arc::new(Semaphore::new(max as usize));
    let consumer = Arc::new(consumer);
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Under load, let a few slots free up before claiming again, so that a claim leases
        // a batch instead of one message per finished job (a round trip each).
        let low_water = (max / 2).clamp(1, config.batch.max(1));
        if (permits.available_permits() as u32) < low_water {
            tokio::select! {
                p = permits.clone().acquire_many_owned(low_water) => drop(p),
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                _ = shutdown.changed() => {}
            }
            if permits.available_permits() == 0 {
                continue;
            }
        }
        let free = permits.available_permits() as u32;
        let notified = queue.published();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let claimed = queue
            .store()
            .delivery_claim(DeliveryClaimParams {
                consumer_group: consumer.consumer_group.clone(),
                topic: None,
                message_id: None,
                limit: free.min(config.batch),
                visibility_seconds: consumer.visibility.as_secs() as u32,
                now: queue.clock().now(),
            })
            .await;
        match claimed {
            Err(e) => {
                tracing::warn!(error = %e, queue.consumer_group = %consumer.consumer_group, "claim failed; retrying in 1s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(batch) if batch.is_empty() => {
                let wait = match queue.store().delivery_next_due(&consumer.consumer_group).await {
                    Ok(Some(due)) => (due - queue.clock().now()).to_std().unwrap_or_default().min(config.poll_interval),
                    _ => config.poll_interval,
                };
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(batch) => {
                for m in batch {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        // Cannot happen: we claimed at most `free`. Give the lease back rather than hold it.
                        release(&queue, &m).await;
                        continue;
                    };
                    let (queue, consumer, pusher, region) =
                        (queue.clone(), consumer.clone(), pusher.clone(), config.region.clone());
                    tokio::spawn(async move {
                        push_one(&queue, &consumer, pusher.as_ref(), &region, m).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    // Graceful stop: let in-flight pushes finish, up to the grace period.
    let _ = tokio::time::timeout(config.shutdown_grace, permits.acquire_many(max)).await;
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
    let batch = queue
        .store()
        .delivery_claim(DeliveryClaimParams {
            consumer_group: consumer.consumer_group.clone(),
            topic: None,
            message_id: None,
            limit,
            visibility_seconds: consumer.visibility.as_secs() as u32,
            now: queue.clock().now(),
        })
        .await?;
    let n = batch.len();
    for m in batch {
        push_one(queue, consumer, pusher, region, m).await;
    }
    Ok(n)
}

async fn release(queue: &Queue, m: &LeasedMessage) {
    let _ = queue.store().delivery_retry(DeliveryRetryParams { lease: lease_of(queue, m), delay_seconds: 0 }).await;
}

fn lease_of(queue: &Queue, m: &LeasedMessage) -> LeaseParams {
    LeaseParams {
        consumer_group: m.consumer_group.clone(),
        receipt_handle: m.receipt_handle.clone(),
        now: queue.clock().now(),
    }
}

async fn push_one(queue: &Queue, consumer: &ConsumerConfig, pusher: &dyn Pusher, region: &str, m: LeasedMessage) {
    if m.delivery_count > consumer.max_deliveries {
        let reason = format!(
            "delivered {} times without acknowledgement (maxDeliveries is {})",
            consumer.max_deliveries, consumer.max_deliveries
        );
        let _ =
            queue.store().delivery_dead_letter(DeliveryDeadLetterParams { lease: lease_of(queue, &m), reason }).await;
        return;
    }
    let delivery = Delivery::from_leased(&m, region);
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
            delay_seconds: consumer.retry_after.as_secs().max(1) as u32,
        })
        .await;
    match r {
        Ok(()) | Err(StoreError::LeaseLost(_)) | Err(StoreError::NotFound(_)) => {}
        Err(e) => tracing::warn!(error = %e, "could not schedule the retry; the lease will expire instead"),
    }
}
