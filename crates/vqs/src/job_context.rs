use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{CheckpointPutParams, ProgressPutParams, SyncLogPutParams, SyncLogRecord, SyncOutcome};
use crate::{CancelSignal, JobError, Queue};

/// Facts about the message being processed (the SDK's `MessageMetadata`).
#[derive(Debug, Clone, Serialize)]
pub struct MessageMetadata {
    /// The message's id (`msg_…`).
    pub message_id: String,
    /// 1 on the first delivery; every delivery raises it, including those that did not run
    /// the job (a lease given back unused, a `/_vqs` receive).
    pub delivery_count: u32,
    /// This attempt's number, starting at 1: the real runs of the job, counted by vqs apart
    /// from the delivery count (SPEC.md, "Attempts vs deliveries"). `max_attempts` and the
    /// retry policy use it.
    pub attempt: u32,
    /// When the message was sent.
    pub created_at: DateTime<Utc>,
    /// When the message expires unprocessed.
    pub expires_at: DateTime<Utc>,
    /// The message's topic.
    pub topic_name: String,
    /// The consumer group this delivery is for.
    pub consumer_group: String,
    /// The region that delivered it (`ce-vqsregion`), when known.
    pub region: Option<String>,
}

/// What a running job can see and do besides its params.
#[derive(Clone)]
pub struct JobContext {
    metadata: MessageMetadata,
    queue: Queue,
    cancel: CancelSignal,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").field("metadata", &self.metadata).finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new(metadata: MessageMetadata, queue: Queue) -> Self {
        JobContext { metadata, queue, cancel: CancelSignal::never() }
    }

    pub(crate) fn with_cancel(mut self, cancel: CancelSignal) -> Self {
        self.cancel = cancel;
        self
    }

    /// Resolves when this message is cancelled while the job runs (an operator's cancel, on
    /// any process). The job's future is dropped shortly after (within a second) whatever it
    /// does, so use this to stop cleanly — finish a write, release an external lock — not to
    /// keep going. Never resolves for a job run outside a delivery.
    ///
    /// ```no_run
    /// # async fn work(ctx: vqs::JobContext) -> Result<(), vqs::JobError> {
    /// tokio::select! {
    ///     _ = ctx.cancelled() => Err(vqs::JobError::cancel("stopped on request")),
    ///     r = async { /* the long work */ Ok(()) } => r,
    /// }
    /// # }
    /// ```
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// True once this message has been cancelled while the job runs.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The queue the job runs on: enqueue follow-up jobs with `ctx.queue().job(J)` (they
    /// carry this job's trace context), or run maintenance.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The message's metadata.
    pub fn metadata(&self) -> &MessageMetadata {
        &self.metadata
    }

    /// This attempt's number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.metadata.attempt
    }

    /// How many times the message has been delivered to this consumer group, this delivery
    /// included; at least [`Self::attempt`].
    pub fn delivery_count(&self) -> u32 {
        self.metadata.delivery_count
    }

    /// The current time, from the queue's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.queue.clock().now()
    }

    /// The checkpoint a previous attempt of this message saved, if any.
    pub async fn checkpoint<T: DeserializeOwned>(&self) -> Result<Option<T>, JobError> {
        let value = self
            .queue
            .store()
            .checkpoint_get(crate::store::CheckpointGetParams {
                message_id: self.metadata.message_id.clone(),
                consumer_group: self.metadata.consumer_group.clone(),
            })
            .await
            .map_err(JobError::retryable)?;
        match value {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| JobError::fatal(format!("checkpoint does not deserialize: {e}"))),
        }
    }

    /// Save a checkpoint: the next attempt of this message reads it back with [`Self::checkpoint`].
    pub async fn save_checkpoint<T: Serialize>(&self, value: &T) -> Result<(), JobError> {
        let value = serde_json::to_value(value).map_err(JobError::fatal)?;
        self.queue
            .store()
            .checkpoint_put(CheckpointPutParams {
                message_id: self.metadata.message_id.clone(),
                consumer_group: self.metadata.consumer_group.clone(),
                value,
                now: self.now(),
            })
            .await
            .map_err(JobError::retryable)
    }

    /// Report progress (`done` of `total` units, and a short note) where operators see it:
    /// the admin API (`GET /api/admin/progress`, a message's `progress`) and the dashboard.
    /// Each report replaces the previous one of this delivery.
    pub async fn report_progress(&self, done: u64, total: Option<u64>, note: Option<&str>) -> Result<(), JobError> {
        self.queue
            .store()
            .progress_put(ProgressPutParams {
                message_id: self.metadata.message_id.clone(),
                consumer_group: self.metadata.consumer_group.clone(),
                topic: self.metadata.topic_name.clone(),
                done,
                total,
                note: note.map(|n| crate::escape_unstorable(n).into_owned()),
                now: self.now(),
            })
            .await
            .map_err(JobError::retryable)
    }

    /// This job's sync log entry for `key` (an account, a tenant…): its cursor and last success.
    pub async fn sync_log(&self, key: &str) -> Result<Option<SyncLogRecord>, JobError> {
        let p = crate::store::SyncLogGetParams { topic: self.metadata.topic_name.clone(), key: key.to_owned() };
        self.queue.store().sync_log_get(p).await.map_err(JobError::retryable)
    }

    /// Record a successful sync of `key`: the next run starts from `cursor`.
    pub async fn sync_log_success(&self, key: &str, cursor: Option<String>, items_synced: u64) -> Result<(), JobError> {
        self.sync_log_put(key, SyncOutcome::Success { cursor, items_synced }).await
    }

    /// Record a failed sync of `key`: its cursor and last success stay as they were.
    pub async fn sync_log_failure(&self, key: &str, error: &str) -> Result<(), JobError> {
        self.sync_log_put(key, SyncOutcome::Failure { error: crate::escape_unstorable(error).into_owned() }).await
    }

    async fn sync_log_put(&self, key: &str, outcome: SyncOutcome) -> Result<(), JobError> {
        self.queue
            .store()
            .sync_log_put(SyncLogPutParams {
                topic: self.metadata.topic_name.clone(),
                key: key.to_owned(),
                outcome,
                now: self.now(),
            })
            .await
            .map_err(JobError::retryable)
    }
}
