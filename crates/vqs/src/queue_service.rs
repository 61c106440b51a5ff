//! The queue service a message lives in, as a producer and a consumer see it: publish,
//! lease by id, acknowledge, extend a lease, retry after a delay, dead-letter.
//!
//! Two implementations: [`LocalQueueService`], this database (the store behind a [`Queue`]),
//! and `vqs_vercel::VercelQueueService`, Vercel's queue service over HTTP. The consumer
//! ([`crate::QueueHandler`]) decides *what* to do with a delivery — ack, retry after the
//! backoff, dead-letter — and asks the service that delivered it to do it. Executions,
//! checkpoints and dead letters always stay in this database.

use async_trait::async_trait;
use bytes::Bytes;

use crate::Queue;
use chrono::{DateTime, Utc};

use crate::store::{
    DeliveryAckParams, DeliveryClaimParams, DeliveryDeadLetterParams, DeliveryLeasedCountParams, DeliveryReleaseParams,
    DeliveryRetryParams, DeliveryTopicParams, ExecutionFinishParams, LeaseParams, LeaseVisibilityParams, LeasedMessage,
    MessageSendParams, SendResult, StoreError, SubscriptionEnsureParams,
};

/// One lease on one message, as the service that granted it names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLease {
    /// The message's topic.
    pub topic: String,
    /// The consumer group holding the lease.
    pub consumer_group: String,
    /// The lease's receipt handle.
    pub receipt_handle: String,
}

/// Lease one message by id (a push that carried no payload, or a poll by id).
#[derive(Debug, Clone)]
pub struct ReceiveByIdParams {
    /// The message's topic.
    pub topic: String,
    /// The consumer group to lease it for.
    pub consumer_group: String,
    /// The message to lease.
    pub message_id: String,
    /// How long the lease lasts.
    pub visibility_seconds: u32,
}

/// Lease due messages of one topic for a polling client ([`LocalQueueService::receive`]).
#[derive(Debug, Clone)]
pub struct ReceiveParams {
    /// The topic to receive from.
    pub topic: String,
    /// The consumer group to lease for.
    pub consumer_group: String,
    /// Only this message.
    pub message_id: Option<String>,
    /// Messages leased at most.
    pub limit: u32,
    /// How long each lease lasts.
    pub visibility_seconds: u32,
    /// Lease only while the consumer group holds fewer than this many leases, counted by the
    /// store under a lock (`Vqs-Max-Concurrency`): exact across concurrent receives.
    pub max_leased: Option<u32>,
}

/// What a dead letter keeps: the message as the consumer received it and why it died.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message's id.
    pub message_id: String,
    /// The payload's content type.
    pub content_type: String,
    /// The payload as received.
    pub payload: Bytes,
    /// Deliveries so far (the attempt that gave up).
    pub attempts: u32,
    /// Why it died (the last error).
    pub reason: String,
    /// The message's trace context as a JSON object (`{"traceparent": …}`), so a replay
    /// continues the trace.
    pub headers_json: Option<String>,
}

/// What can go wrong talking to a queue service.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// No such message or lease (expired, or already acknowledged).
    #[error("not found: {0}")]
    NotFound(String),
    /// The lease is no longer held by this receipt handle.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// Receive-by-id of a message leased by another consumer.
    #[error("message {0} is locked by another consumer")]
    Locked(String),
    /// Receive-by-id of a message already acknowledged.
    #[error("message {0} was already acknowledged")]
    AlreadyAcknowledged(String),
    /// Receive-by-id of a duplicate send: the message that counts is `original`.
    #[error("message {message_id} was a duplicate of {original}")]
    Duplicate {
        /// The id the duplicate send was answered with.
        message_id: String,
        /// The message that was queued.
        original: String,
    },
    /// The service refused the request as invalid or unauthorized; retrying will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// The service could not be reached, was rate limited or failed; try again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ServiceError::NotFound(m),
            StoreError::LeaseLost(m) => ServiceError::LeaseLost(m),
            StoreError::Locked(id) => ServiceError::Locked(id),
            StoreError::AlreadyAcknowledged(id) => ServiceError::AlreadyAcknowledged(id),
            e => ServiceError::Unavailable(e.to_string()),
        }
    }
}

/// A queue service (Vercel's v3 data plane, or this database).
#[async_trait]
pub trait QueueService: Send + Sync + 'static {
    /// Publish one message. `p.only_group` is honoured by the local service only.
    async fn send(&self, p: MessageSendParams) -> Result<SendResult, ServiceError>;
    /// Lease one message by id.
    async fn receive_by_id(&self, p: ReceiveByIdParams) -> Result<LeasedMessage, ServiceError>;
    /// Acknowledge: the message is done for this consumer group. `closing` is the attempt's
    /// execution row to close with it (in this database; in the same write when the service
    /// is this database) — closed even when the lease turns out to be lost.
    async fn acknowledge(
        &self,
        lease: &ServiceLease,
        closing: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError>;
    /// Keep the lease for `seconds` from now.
    async fn extend(&self, lease: &ServiceLease, seconds: u32) -> Result<(), ServiceError>;
    /// Give the message back: it is delivered again (delivery count + 1) in `seconds`.
    /// `closing`: as in [`Self::acknowledge`].
    async fn retry_after(
        &self,
        lease: &ServiceLease,
        seconds: u32,
        closing: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError>;
    /// Acknowledge, and keep the message in this database's dead-letter store.
    /// `closing`: as in [`Self::acknowledge`].
    async fn dead_letter(
        &self,
        lease: &ServiceLease,
        letter: DeadLetter,
        closing: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError>;
    /// True when a consumer must renew its lease while the job runs, as the SDK does
    /// (a remote service whose leases are short); false when one extension covering the
    /// job's timeout is enough.
    fn renews_leases(&self) -> bool {
        false
    }
}

/// The queue service of this database: every call is a store call.
#[derive(Debug, Clone)]
pub struct LocalQueueService {
    queue: Queue,
}

impl LocalQueueService {
    /// The local service over `queue`.
    pub fn new(queue: Queue) -> Self {
        LocalQueueService { queue }
    }

    /// Subscribe `consumer_group` to `topic_pattern` (idempotent): messages published from
    /// now on are delivered to it too.
    pub async fn subscribe(&self, topic_pattern: &str, consumer_group: &str) -> Result<(), StoreError> {
        self.queue
            .store()
            .subscription_ensure(SubscriptionEnsureParams {
                grouped: false,
                topic_pattern: topic_pattern.to_owned(),
                consumer_group: consumer_group.to_owned(),
                initial_delay_seconds: 0,
                now: self.queue.clock().now(),
            })
            .await
    }

    /// Leases `consumer_group` holds now.
    pub async fn leased_count(&self, consumer_group: &str) -> Result<i64, StoreError> {
        self.queue
            .store()
            .delivery_leased_count(DeliveryLeasedCountParams {
                consumer_group: consumer_group.to_owned(),
                now: self.queue.clock().now(),
            })
            .await
    }

    /// Lease up to `p.limit` due messages of `p.topic` (or the one `p.message_id`) for a
    /// client that polls (no execution rows, no lease holder: the lease's own timeout
    /// bounds it).
    pub async fn receive(&self, p: ReceiveParams) -> Result<Vec<LeasedMessage>, StoreError> {
        self.queue
            .store()
            .delivery_claim(DeliveryClaimParams {
                group_concurrency: None,
                consumer_group: p.consumer_group,
                topic: Some(p.topic),
                message_id: p.message_id,
                limit: p.limit,
                visibility_seconds: p.visibility_seconds,
                start_executions: false,
                lease_holder: None,
                max_leased: p.max_leased,
                leased_here: 0,
                rate_limit: None,
                group_rate_limit: None,
                now: self.queue.clock().now(),
            })
            .await
    }

    /// Give a lease back unused: the delivery is as it was (not counted), due now; the
    /// dispatchers are woken.
    pub async fn release(&self, lease: &ServiceLease) -> Result<(), StoreError> {
        let p = DeliveryReleaseParams { lease: self.lease(lease), execution_id: None };
        self.queue.store().delivery_release(p).await?;
        self.queue.wake();
        Ok(())
    }

    /// Acknowledge a lease ([`QueueService::acknowledge`] with the store's own error).
    pub async fn ack(&self, lease: &ServiceLease) -> Result<(), StoreError> {
        self.queue.store().delivery_ack(DeliveryAckParams { lease: self.lease(lease), execution: None }).await
    }

    /// Make a leased message visible again in `seconds` (0: now, and the dispatchers are
    /// woken); returns when.
    pub async fn set_visibility(&self, lease: &ServiceLease, seconds: u32) -> Result<DateTime<Utc>, StoreError> {
        let p = LeaseVisibilityParams { lease: self.lease(lease), visibility_seconds: seconds };
        let at = self.queue.store().delivery_set_visibility(p).await?;
        if seconds == 0 {
            self.queue.wake();
        }
        Ok(at)
    }

    /// The topic of message `message_id` as delivered to `consumer_group`, if it was.
    pub async fn delivery_topic(&self, message_id: &str, consumer_group: &str) -> Result<Option<String>, StoreError> {
        self.queue
            .store()
            .delivery_topic(DeliveryTopicParams {
                message_id: message_id.to_owned(),
                consumer_group: consumer_group.to_owned(),
            })
            .await
    }

    fn lease(&self, lease: &ServiceLease) -> LeaseParams {
        LeaseParams {
            consumer_group: lease.consumer_group.clone(),
            receipt_handle: lease.receipt_handle.clone(),
            now: self.queue.clock().now(),
        }
    }
}

#[async_trait]
impl QueueService for LocalQueueService {
    async fn send(&self, p: MessageSendParams) -> Result<SendResult, ServiceError> {
        Ok(self.queue.store().message_send(p).await?)
    }

    async fn receive_by_id(&self, p: ReceiveByIdParams) -> Result<LeasedMessage, ServiceError> {
        let mut leased = self
            .queue
            .store()
            .delivery_claim(DeliveryClaimParams {
                group_concurrency: None,
                consumer_group: p.consumer_group,
                topic: Some(p.topic),
                message_id: Some(p.message_id.clone()),
                limit: 1,
                visibility_seconds: p.visibility_seconds,
                start_executions: false,
                lease_holder: None,
                max_leased: None,
                leased_here: 0,
                rate_limit: None,
                group_rate_limit: None,
                now: self.queue.clock().now(),
            })
            .await?;
        leased.pop().ok_or(ServiceError::Locked(p.message_id))
    }

    async fn acknowledge(
        &self,
        lease: &ServiceLease,
        closing: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError> {
        let p = DeliveryAckParams { lease: self.lease(lease), execution: closing };
        Ok(self.queue.store().delivery_ack(p).await?)
    }

    async fn extend(&self, lease: &ServiceLease, seconds: u32) -> Result<(), ServiceError> {
        let p = LeaseVisibilityParams { lease: self.lease(lease), visibility_seconds: seconds };
        self.queue.store().delivery_set_visibility(p).await?;
        Ok(())
    }

    /// Locally a retry gives the lease back with a due time (`delivery_retry`), so the
    /// admin counts show it as `delayed`, not `running`.
    async fn retry_after(
        &self,
        lease: &ServiceLease,
        seconds: u32,
        closing: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError> {
        let p = DeliveryRetryParams {
            lease: self.lease(lease),
            delay: std::time::Duration::from_secs(u64::from(seconds)),
            execution: closing,
        };
        self.queue.store().delivery_retry(p).await?;
        self.queue.wake();
        Ok(())
    }

    /// One transaction: the delivery ends and its stored message is copied to the dead letters.
    async fn dead_letter(
        &self,
        lease: &ServiceLease,
        letter: DeadLetter,
        closing: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError> {
        let p = DeliveryDeadLetterParams { lease: self.lease(lease), reason: letter.reason, execution: closing };
        Ok(self.queue.store().delivery_dead_letter(p).await?)
    }
}
