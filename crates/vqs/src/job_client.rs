use std::sync::Arc;
use std::time::Duration;

use crate::store::{
    ExecutionFinishParams, ExecutionStartParams, ExecutionStatus, MessageSendParams, SendResult, StoreError,
};
use crate::{CancelSignal, JobContext, JobError, Jobbable, MessageMetadata, OnDuplicate, Queue, QueueError, SendOpts};

/// Options for [`JobClient::perform_later_with`].
#[derive(Debug, Clone, Default)]
pub struct PerformOpts {
    /// Overrides the job's own [`Jobbable::dedup_key`].
    pub idempotency_key: Option<String>,
    /// Run no sooner than this.
    pub delay: Duration,
    /// When the key is held by another message of the topic: skip (the default), or replace
    /// that message's params and due time if it has not started — with `delay`, a debounce
    /// ("run once, 30 s after the last change").
    pub on_duplicate: OnDuplicate,
    /// Overrides the job's own [`Jobbable::group`].
    pub group: Option<String>,
    /// Overrides the job's own [`Jobbable::priority`] (−100..=100, lower starts first).
    pub priority: Option<i16>,
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

    /// Publish one message per `params`, in one transaction: all of them, or none on an
    /// error — the bulk form of [`Self::perform_later`] (one round trip per few thousand
    /// messages instead of one each). Each message gets the job's dedup key for its params.
    ///
    /// ```no_run
    /// # async fn demo(queue: vqs::Queue) -> Result<(), vqs::QueueError> {
    /// # struct Probe;
    /// # impl vqs::Jobbable for Probe { type Params = u32; const TOPIC: &'static str = "probe";
    /// #   async fn perform(&self, _: u32, _: vqs::JobContext) -> Result<(), vqs::JobError> { Ok(()) } }
    /// let sent = queue.job(Probe).perform_later_many(0..1000).await?;
    /// assert_eq!(sent.len(), 1000);
    /// # Ok(()) }
    /// ```
    pub async fn perform_later_many(
        &self,
        params: impl IntoIterator<Item = J::Params>,
    ) -> Result<Vec<SendResult>, QueueError> {
        self.perform_later_many_with(params, PerformOpts::default()).await
    }

    /// [`Self::perform_later_many`] with a delay and an [`OnDuplicate`] for every message
    /// (each keeps the job's own dedup key for its params; an explicit key is refused: one
    /// key cannot name many messages).
    pub async fn perform_later_many_with(
        &self,
        params: impl IntoIterator<Item = J::Params>,
        opts: PerformOpts,
    ) -> Result<Vec<SendResult>, QueueError> {
        if opts.idempotency_key.is_some() {
            return Err(QueueError::Invalid(
                "perform_later_many_with takes no idempotency key: each message gets the job's dedup key for its params"
                    .into(),
            ));
        }
        let messages = params.into_iter().map(|p| self.encode(p, opts.clone())).collect::<Result<Vec<_>, _>>()?;
        self.queue.send_many(J::TOPIC, messages).await
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
        let group = opts.group.or_else(|| self.job.group(&params));
        let priority = Some(opts.priority.unwrap_or_else(|| self.job.priority(&params)));
        let payload = serde_json::to_vec(&params)
            .map_err(|e| QueueError::Invalid(format!("params of job {} do not serialize: {e}", J::TOPIC)))?;
        Ok((
            payload,
            SendOpts {
                idempotency_key,
                delay: opts.delay,
                on_duplicate: opts.on_duplicate,
                group,
                priority,
                ..SendOpts::default()
            },
        ))
    }

    /// Run the job now, recording the attempt in `job_executions` (`running`, then `success`
    /// or `failed` with the error text). The attempt number is `metadata.attempt`;
    /// an attempt that outlives [`Jobbable::timeout`] fails.
    pub async fn run_tracked(&self, params: J::Params, metadata: MessageMetadata) -> Result<(), JobError> {
        let attempt = self.run_attempt(params, metadata, CancelSignal::never()).await.map_err(JobError::retryable)?;
        self.queue.store().execution_finish(attempt.finish).await.map_err(JobError::retryable)?;
        attempt.result
    }

    /// Record the start of an attempt (`running`), run it, and return its result with the
    /// write that closes its execution row, for the caller to apply — the consumer applies
    /// it together with the acknowledgement (or retry, or dead letter) in one store call.
    /// Fails, without running the job, when the start cannot be recorded.
    pub(crate) async fn run_attempt(
        &self,
        params: J::Params,
        metadata: MessageMetadata,
        cancel: CancelSignal,
    ) -> Result<Attempt, StoreError> {
        let store = self.queue.store();
        let clock = self.queue.clock();
        let execution_id = store
            .execution_start(ExecutionStartParams {
                topic: J::TOPIC.to_owned(),
                message_id: metadata.message_id.clone(),
                consumer_group: metadata.consumer_group.clone(),
                attempt: metadata.attempt,
                now: clock.now(),
            })
            .await?;
        tracing::Span::current().record("job.id", execution_id);
        Ok(self.run_started(execution_id, params, metadata, cancel).await)
    }

    /// Run an attempt whose `running` execution row already exists (recorded with its lease
    /// by the local dispatcher), and return its result with the write that closes the row.
    pub(crate) async fn run_started(
        &self,
        execution_id: i64,
        params: J::Params,
        metadata: MessageMetadata,
        cancel: CancelSignal,
    ) -> Attempt {
        let clock = self.queue.clock();
        let ctx = JobContext::new(metadata, self.queue.clone()).with_cancel(cancel);
        let began_at = Some(clock.now());
        let timeout = self.job.timeout();
        let result = match tokio::time::timeout(timeout, self.job.perform(params, ctx)).await {
            Ok(r) => r,
            Err(_) => Err(JobError::retryable(format!("timed out after {}s", timeout.as_secs_f64()))),
        };
        let (status, error) = match &result {
            Ok(()) => (ExecutionStatus::Success, None),
            Err(e) if e.snoozed_for().is_some() => (ExecutionStatus::Snoozed, Some(e.message().to_owned())),
            Err(e) if e.is_cancel() => (ExecutionStatus::Cancelled, Some(e.message().to_owned())),
            Err(e) => (ExecutionStatus::Failed, Some(e.message().to_owned())),
        };
        Attempt {
            result,
            finish: ExecutionFinishParams { id: execution_id, status, error, began_at, now: clock.now() },
        }
    }
}

/// An attempt that ran, with the write that closes its execution row.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) result: Result<(), JobError>,
    pub(crate) finish: ExecutionFinishParams,
}
