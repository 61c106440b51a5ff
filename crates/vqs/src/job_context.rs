use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{CheckpointPutParams, QueueStore};
use crate::{Clock, JobError};

/// Facts about the message being processed (the SDK's `MessageMetadata`).
#[derive(Debug, Clone, Serialize)]
pub struct MessageMetadata {
    pub message_id: String,
    /// 1 on the first delivery; the attempt number.
    pub delivery_count: u32,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub topic_name: String,
    pub consumer_group: String,
    pub region: Option<String>,
}

/// What a running job can see and do besides its params.
#[derive(Clone)]
pub struct JobContext {
    metadata: MessageMetadata,
    store: Arc<dyn QueueStore>,
    clock: Clock,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").field("metadata", &self.metadata).finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new(metadata: MessageMetadata, store: Arc<dyn QueueStore>, clock: Clock) -> Self {
        JobContext { metadata, store, clock }
    }

    /// The message's metadata.
    pub fn metadata(&self) -> &MessageMetadata {
        &self.metadata
    }

    /// This attempt's number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.metadata.delivery_count
    }

    /// The current time, from the queue's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The checkpoint a previous attempt of this message saved, if any.
    pub async fn checkpoint<T: DeserializeOwned>(&self) -> Result<Option<T>, JobError> {
        let value = self
            .store
            .checkpoint_get(&self.metadata.message_id, &self.metadata.consumer_group)
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
        self.store
            .checkpoint_put(CheckpointPutParams {
                message_id: self.metadata.message_id.clone(),
                consumer_group: self.metadata.consumer_group.clone(),
                value,
                now: self.clock.now(),
            })
            .await
            .map_err(JobError::retryable)
    }
}
