//! `VercelQueueService`: the core's [`QueueService`] over Vercel's queue service. Leases,
//! acknowledgements and retries go to Vercel; dead letters are kept in the app's database.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use vqs::store::{
    DeadLetterInsertParams, ExecutionFinishParams, LeasedMessage, MessageSendParams, QueueStore, SendResult,
};
use vqs::{Clock, DeadLetter, MAX_VISIBILITY_SECONDS, QueueService, ReceiveByIdParams, ServiceError, ServiceLease};

use crate::{SendOptions, VqsClient, VqsError};

/// Vercel's queue service, as the consumer of one delivery (or a producer) sees it.
#[derive(Clone)]
pub struct VercelQueueService {
    client: VqsClient,
    store: Arc<dyn QueueStore>,
    clock: Clock,
}

impl std::fmt::Debug for VercelQueueService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VercelQueueService").field("client", &self.client).finish_non_exhaustive()
    }
}

impl VercelQueueService {
    /// Settle through `client` (already routed to the delivery's region); keep dead letters in `store`.
    pub fn new(client: VqsClient, store: Arc<dyn QueueStore>, clock: Clock) -> Self {
        VercelQueueService { client, store, clock }
    }

    /// [`VercelQueueService::new`] keeping executions and dead letters in `queue`'s database.
    pub fn for_queue(client: VqsClient, queue: &vqs::Queue) -> Self {
        VercelQueueService::new(client, queue.store().clone(), queue.clock().clone())
    }

    /// Close the attempt's execution row in this database before the message is settled on
    /// Vercel (two systems: no shared transaction). Not closing it must not keep the message
    /// from being settled — the job ran — so a failure is logged, and the row is closed as
    /// abandoned by maintenance later.
    async fn close(&self, closing: Option<ExecutionFinishParams>) {
        if let Some(p) = closing
            && let Err(e) = self.store.execution_finish(p).await
        {
            tracing::warn!(error = %e, "could not close the attempt's execution row");
        }
    }

    /// The client it talks through.
    pub fn client(&self) -> &VqsClient {
        &self.client
    }
}

/// A message's stored headers (a JSON object of strings) as header pairs.
fn stored_headers(json: Option<&str>) -> Vec<(String, String)> {
    match json.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()) {
        Some(serde_json::Value::Object(o)) => {
            o.into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned()))).collect()
        }
        _ => Vec::new(),
    }
}

/// How a failed call reads to the consumer: a lost lease is not a failure to retry.
pub fn service_error(e: VqsError, message_id: &str) -> ServiceError {
    match e {
        VqsError::Status { status: 404, message, .. } => ServiceError::NotFound(message),
        VqsError::Status { status: 409, original_message_id: Some(original), .. } => {
            ServiceError::Duplicate { message_id: message_id.to_owned(), original }
        }
        VqsError::Status { status: 409, message, .. } => ServiceError::LeaseLost(message),
        VqsError::Status { status: 410, .. } => ServiceError::AlreadyAcknowledged(message_id.to_owned()),
        e if e.is_transient() => ServiceError::Unavailable(e.to_string()),
        e => ServiceError::Refused(e.to_string()),
    }
}

#[async_trait]
impl QueueService for VercelQueueService {
    async fn send(&self, p: MessageSendParams) -> Result<SendResult, ServiceError> {
        if p.on_duplicate == vqs::OnDuplicate::Replace {
            return Err(ServiceError::Refused(
                "on_duplicate \"replace\" is not available through Vercel Queues, which only drops duplicates".into(),
            ));
        }
        let opts = SendOptions {
            content_type: Some(p.content_type),
            idempotency_key: p.idempotency_key,
            delay_seconds: (p.delay_seconds > 0).then_some(p.delay_seconds),
            retention_seconds: Some(p.retention_seconds),
            headers: stored_headers(p.headers_json.as_deref()),
        };
        match self.client.send(&p.topic, Bytes::from(p.payload), &opts).await {
            // Vercel drops a duplicate out of band and answers like any send: it is never
            // reported as one here.
            Ok(Some(id)) => Ok(SendResult { message_id: id, duplicate: false, replaced: false }),
            Ok(None) => Ok(SendResult { message_id: String::new(), duplicate: false, replaced: false }),
            Err(e) => Err(service_error(e, "")),
        }
    }

    async fn receive_by_id(&self, p: ReceiveByIdParams) -> Result<LeasedMessage, ServiceError> {
        let seconds = p.visibility_seconds.min(MAX_VISIBILITY_SECONDS);
        let now = self.clock.now();
        let m = self.client.receive_by_id(&p.topic, &p.consumer_group, &p.message_id, seconds).await.map_err(|e| {
            match service_error(e, &p.message_id) {
                ServiceError::LeaseLost(_) => ServiceError::Locked(p.message_id.clone()),
                other => other,
            }
        })?;
        Ok(LeasedMessage {
            message_id: m.message_id,
            topic: p.topic,
            consumer_group: p.consumer_group,
            payload: m.body.to_vec(),
            content_type: m.content_type,
            headers_json: None,
            delivery_count: m.delivery_count,
            // Vercel counts deliveries only: the consumer reads the attempt from the runs the
            // function's database recorded (`Queue::next_attempt`, docs/vercel-protocol.md).
            attempts: m.delivery_count,
            receipt_handle: m.receipt_handle,
            created_at: m.created_at,
            expires_at: m.expires_at.unwrap_or(m.created_at + chrono::Duration::hours(24)),
            lease_until: now + chrono::Duration::seconds(i64::from(seconds)),
            execution_id: None,
            group_key: None,
        })
    }

    async fn acknowledge(
        &self,
        lease: &ServiceLease,
        closing: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError> {
        self.close(closing).await;
        self.client
            .acknowledge(&lease.topic, &lease.consumer_group, &lease.receipt_handle)
            .await
            .map_err(|e| service_error(e, ""))
    }

    async fn extend(&self, lease: &ServiceLease, seconds: u32) -> Result<(), ServiceError> {
        let seconds = seconds.min(MAX_VISIBILITY_SECONDS);
        self.client
            .change_visibility(&lease.topic, &lease.consumer_group, &lease.receipt_handle, seconds)
            .await
            .map_err(|e| service_error(e, ""))
    }

    /// A PATCH of the lease's visibility to the delay, as the SDK's `{ afterSeconds }`
    /// retry directive does. The API caps a visibility at one hour, so a longer backoff
    /// (attempt 7 on and later of the default policy) waits one hour.
    async fn retry_after(
        &self,
        lease: &ServiceLease,
        seconds: u32,
        closing: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError> {
        self.close(closing).await;
        self.extend(lease, seconds).await
    }

    /// The dead letter is written first, then the message acknowledged: if the ack fails
    /// the message comes back and may be dead-lettered twice, never lost.
    async fn dead_letter(
        &self,
        lease: &ServiceLease,
        letter: DeadLetter,
        closing: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError> {
        self.close(closing).await;
        self.store
            .dead_letter_insert(DeadLetterInsertParams {
                message_id: letter.message_id,
                topic: lease.topic.clone(),
                consumer_group: lease.consumer_group.clone(),
                content_type: letter.content_type,
                payload: letter.payload.to_vec(),
                error: letter.reason,
                attempts: letter.attempts,
                headers_json: letter.headers_json,
                now: self.clock.now(),
            })
            .await
            .map_err(ServiceError::from)?;
        self.acknowledge(lease, None).await
    }

    fn renews_leases(&self) -> bool {
        true
    }
}
