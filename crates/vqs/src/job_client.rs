use std::sync::Arc;
use std::time::Duration;

use crate::store::{ExecutionFinishParams, ExecutionStartParams, ExecutionStatus, MessageSendParams, SendResult};
use crate::{JobContext, JobError, Jobbable, MessageMetadata, Queue, QueueError, SendOpts};

/// Options for [`JobClient::perform_later_with`].
#[derive(Debug, Clone, Default)]
pub struct PerformOpts {
    /// Overrides the job's own [`Jobbable::dedup_key`].
    pub idempotency_key: Option<String>,
    /// Run no sooner than this.
    pub delay: Duration,
}

/// A job bound to a queue: `queue.job(SyncPatient).perform_later(params)`.
#[derive(Debug, Clone)]
pub struct JobClient<J> {
    queue: Queue,
    job: Arc<J>,
}

impl<J: Jobbable> JobClient<J> {
    pub(crate) fn new(queue: Queue, job: Arc<J>) -> Self {
        JobClient { queue, job }
    }

    /// The job.
    pub fn job(&self) -> &J {
        &self.job
    }

    /// Publish a message that will run this job with `params`. Returns the message id, or
    /// `duplicate: true` and the pending original's id when the dedup key matched.
    pub async fn perform_later(&self, params: J::Params) -> Result<SendResult, QueueError> {
        self.perform_later_with(params, PerformOpts::default()).await
    }

    /// [`Self::perform_later`] with a delay or an explicit idempotency key.
    pub async fn perform_later_with(&self, params: J::Params, opts: PerformOpts) -> Result<SendResult, QueueError> {
        let (payload, opts) = self.encode(params, opts)?;
        self.queue.send(J::TOPIC, payload, opts).await
    }

    /// The validated publish of `params`, not sent: hand it to a backend function that
    /// publishes inside your database transaction (`vqs_postgres::enqueue_in`), so the job
    /// commits or rolls back with the data it is about.
    pub fn prepare(&self, params: J::Params, opts: PerformOpts) -> Result<MessageSendParams, QueueError> {
        let (payload, opts) = self.encode(params, opts)?;
        self.queue.prepare_send(J::TOPIC, payload, opts)
    }

    fn encode(&self, params: J::Params, opts: PerformOpts) -> Result<(Vec<u8>, SendOpts), QueueError> {
        let idempotency_key = opts.idempotency_key.or_else(|| self.job.dedup_key(&params));
        let payload = serde_json::to_vec(&params)
            .map_err(|e| QueueError::Invalid(format!("params of job {} do not serialize: {e}", J::TOPIC)))?;
        Ok((payload, SendOpts { idempotency_key, delay: opts.delay, ..SendOpts::default() }))
    }

    /// Run the job now, recording the attempt in `job_executions` (`running`, then `success`
    /// or `failed` with the error text). The attempt number is `metadata.delivery_count`;
    /// an attempt that outlives [`Jobbable::timeout`] fails.
    pub async fn run_tracked(&self, params: J::Params, metadata: MessageMetadata) -> Result<(), JobError> {
        let store = self.queue.store();
        let clock = self.queue.clock();
        let execution_id = store
            .execution_start(ExecutionStartParams {
                topic: J::TOPIC.to_owned(),
                message_id: metadata.message_id.clone(),
                consumer_group: metadata.consumer_group.clone(),
                attempt: metadata.delivery_count,
                now: clock.now(),
            })
            .await
            .map_err(JobError::retryable)?;
        let ctx = JobContext::new(metadata, store.clone(), clock.clone());
        let timeout = self.job.timeout();
        let result = match tokio::time::timeout(timeout, self.job.perform(params, ctx)).await {
            Ok(r) => r,
            Err(_) => Err(JobError::retryable(format!("timed out after {}s", timeout.as_secs_f64()))),
        };
        let (status, error) = match &result {
            Ok(()) => (ExecutionStatus::Success, None),
            Err(e) => (ExecutionStatus::Failed, Some(e.message().to_owned())),
        };
        store
            .execution_finish(ExecutionFinishParams { id: execution_id, status, error, now: clock.now() })
            .await
            .map_err(JobError::retryable)?;
        result
    }
}
