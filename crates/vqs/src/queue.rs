use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::queue_metrics::{METRIC_CANCELLED, METRIC_PUBLISHED, SharedRecorder};
use crate::store::{
    DeadLetterAction, DeadLetterGetParams, DeadLetterListParams, DeadLetterRecord, DeadLetterReplayOpts,
    DeadLetterRestoreParams, DeadLetterSettleParams, DeadLetterSettled, DeliveryState, ExecutionCountParams,
    ExecutionCounts, ExecutionListParams, ExecutionRecord, ExecutionStatus, MaintenanceParams, MaintenanceReport,
    MessageCancelParams, MessageCancelled, MessageGetParams, MessageRecord, MessageRunNowParams, MessageSendManyParams,
    MessageSendParams, OnDuplicate, ProgressListParams, ProgressRecord, QueueDepthParams, QueueStatsParams, QueueStore,
    RemoteCancelGetParams, RemoteCancelParams, SendResult, SessionRevokedParams, StoreError, SyncLogListParams,
    SyncLogRecord, TopicDepth, TopicPurgeParams, TopicStats,
};
use crate::{
    Clock, JobClient, Jobbable, QueueService, ServiceError, TraceContext, check_storable, check_storable_long,
};

/// Retention when none is given: 24 hours, as on Vercel.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Shortest retention Vercel accepts.
pub const MIN_RETENTION: Duration = Duration::from_secs(60);
/// Longest retention (and delay) Vercel accepts: 7 days.
pub const MAX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest message payload Vercel accepts: 100 MB.
pub const MAX_PAYLOAD_BYTES: usize = 100 * 1024 * 1024;
/// Longest idempotency key Vercel accepts.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// Options for one publish.
#[derive(Debug, Clone, Default)]
pub struct SendOpts {
    /// While a message with this key is pending or running, publishing again queues nothing.
    pub idempotency_key: Option<String>,
    /// Make the message visible only after this delay.
    pub delay: Duration,
    /// Keep the message this long at most (default 24 h, 60 s – 7 d).
    pub retention: Option<Duration>,
    /// The payload's content type (default `application/json`).
    pub content_type: Option<String>,
    /// Producer trace context (`traceparent`, `tracestate`, `baggage`) as a JSON object.
    pub headers_json: Option<String>,
    /// What a send whose key is held by another message does: skip (the default) or
    /// replace the message if it has not started (a debounce, with `delay`).
    pub on_duplicate: OnDuplicate,
    /// The message's group key (1–256 characters, no control characters): under the
    /// topic's group concurrency, at most that many of one group run at once.
    pub group: Option<String>,
    /// The message's priority (−100..=100, lower starts first; `None`: 0).
    pub priority: Option<i16>,
}

/// Why a publish or an admin call was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The request is invalid; the text says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The action conflicts with one already done (a dead letter replayed or discarded by
    /// another call); the text says what happened.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    /// The store failed; the text says how.
    Store(#[from] StoreError),
    /// The remote queue service (see [`Queue::with_publisher`]) failed or refused.
    #[error("queue service: {0}")]
    Service(#[from] ServiceError),
}

/// The facade over a storage backend: publishing, leasing, tracking and the admin reads.
/// Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn QueueStore>,
    clock: Clock,
    published: Notify,
    /// Where messages are published when not to `store` (Vercel's queue service).
    publisher: Option<Arc<dyn QueueService>>,
    recorder: OnceLock<SharedRecorder>,
    /// The recorder's handles by topic (`queue_metrics.rs`).
    metric_handles: crate::queue_metrics::MetricHandles,
    cancellations: crate::cancellation::Cancellations,
    paused: crate::topic_pause::PausedSet,
    /// The paused message groups, as `topic/group` (topic names have no `/`).
    paused_groups: crate::topic_pause::PausedSet,
    limits: crate::topic_limits::LimitsState,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("clock", &self.inner.clock).finish_non_exhaustive()
    }
}

/// True for names Vercel accepts as topics and consumer groups: `^[A-Za-z0-9_-]+$`, and at
/// most [`crate::MAX_KEY_BYTES`] long (names are indexed).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= crate::MAX_KEY_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True for content types a message can carry: what an HTTP header value holds (visible
/// ASCII, inner spaces and tabs), not empty, no whitespace at either end. A content type
/// travels as a header — `Content-Type` of a push, a part header of a multipart receive — so
/// a CR or LF in it would forge the headers after it.
///
/// ```
/// assert!(vqs::is_valid_content_type("application/json; charset=utf-8"));
/// assert!(!vqs::is_valid_content_type("text/plain\r\nVqs-Message-Id: forged"));
/// ```
pub fn is_valid_content_type(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|&c| c == b'\t' || (b' '..=b'~').contains(&c))
        && !b[0].is_ascii_whitespace()
        && !b[b.len() - 1].is_ascii_whitespace()
}

impl Queue {
    /// A queue over `store`, reading time from `clock`.
    pub fn new(store: Arc<dyn QueueStore>, clock: Clock) -> Self {
        Queue {
            inner: Arc::new(Inner {
                store,
                clock,
                published: Notify::new(),
                publisher: None,
                recorder: OnceLock::new(),
                metric_handles: Default::default(),
                cancellations: Default::default(),
                paused: Default::default(),
                paused_groups: Default::default(),
                limits: Default::default(),
            }),
        }
    }

    /// A queue that publishes to `publisher` (e.g. Vercel's queue service, which pushes to
    /// the deployment's consumer functions) while executions, checkpoints and dead letters
    /// stay in `store`.
    pub fn with_publisher(store: Arc<dyn QueueStore>, clock: Clock, publisher: Arc<dyn QueueService>) -> Self {
        Queue {
            inner: Arc::new(Inner {
                store,
                clock,
                published: Notify::new(),
                publisher: Some(publisher),
                recorder: OnceLock::new(),
                metric_handles: Default::default(),
                cancellations: Default::default(),
                paused: Default::default(),
                paused_groups: Default::default(),
                limits: Default::default(),
            }),
        }
    }

    /// True when messages are published to another queue service ([`Queue::with_publisher`]):
    /// they wait there, so this store's counts of waiting and delayed messages say nothing.
    pub fn publishes_elsewhere(&self) -> bool {
        self.inner.publisher.is_some()
    }

    /// The backend. Not part of the facade: an app reaches storage through the `Queue`'s
    /// methods and [`crate::LocalQueueService`]. Still public for the backends' companions
    /// (`vqs-vercel`'s dead letters, `vqs-testing`) and for store-level tests that read rows
    /// the facade does not show; hidden from the docs.
    #[doc(hidden)]
    pub fn store(&self) -> &Arc<dyn QueueStore> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub(crate) fn cancellations(&self) -> &crate::cancellation::Cancellations {
        &self.inner.cancellations
    }

    pub(crate) fn paused_topics_view(&self) -> &crate::topic_pause::PausedSet {
        &self.inner.paused
    }

    pub(crate) fn paused_groups_view(&self) -> &crate::topic_pause::PausedSet {
        &self.inner.paused_groups
    }

    pub(crate) fn limits_state(&self) -> &crate::topic_limits::LimitsState {
        &self.inner.limits
    }

    pub(crate) fn recorder_cell(&self) -> &OnceLock<SharedRecorder> {
        &self.inner.recorder
    }

    pub(crate) fn metric_handles(&self) -> &crate::queue_metrics::MetricHandles {
        &self.inner.metric_handles
    }

    /// A handle to enqueue and run job `J`.
    pub fn job<J: Jobbable>(&self, job: J) -> JobClient<J> {
        JobClient::new(self.clone(), Arc::new(job))
    }

    /// Resolves at the next publish from this process (used by dispatchers to wake at once).
    pub fn published(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.published.notified()
    }

    /// Wake every dispatcher of this process (after a publish, a retry or a replay).
    pub fn wake(&self) {
        self.inner.published.notify_waiters();
    }

    /// Publish `payload` to `topic`.
    pub async fn send(&self, topic: &str, payload: Vec<u8>, opts: SendOpts) -> Result<SendResult, QueueError> {
        self.send_to(topic, payload, opts, None).await
    }

    pub(crate) async fn send_to(
        &self,
        topic: &str,
        payload: Vec<u8>,
        opts: SendOpts,
        only_group: Option<String>,
    ) -> Result<SendResult, QueueError> {
        let mut params = self.prepare_send(topic, payload, opts)?;
        params.only_group = only_group;
        let result = match &self.inner.publisher {
            Some(remote) => remote.send(params).await?,
            None => self.inner.store.message_send(params).await?,
        };
        if result.replaced {
            // Not a new message (not counted as published), but its due time changed: the
            // dispatchers look again.
            tracing::debug!(queue.name = topic, message.id = %result.message_id, "replaced");
            self.wake();
        } else if !result.duplicate {
            tracing::debug!(queue.name = topic, message.id = %result.message_id, "published");
            self.count(METRIC_PUBLISHED, topic);
            self.wake();
        }
        Ok(result)
    }

    /// Publish many messages to `topic` in one transaction: all of them, or on an error none
    /// (an invalid message refuses the whole batch before anything is written). A message
    /// whose idempotency key matches a pending one is reported as a duplicate, as in
    /// [`Self::send`]. One result per message, in order.
    pub async fn send_many(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = (Vec<u8>, SendOpts)>,
    ) -> Result<Vec<SendResult>, QueueError> {
        let params = messages
            .into_iter()
            .enumerate()
            .map(|(i, (payload, opts))| {
                self.prepare_send(topic, payload, opts).map_err(|e| QueueError::Invalid(format!("message {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let results = match &self.inner.publisher {
            // Vercel's queue service has no transaction to share: one send each.
            Some(remote) => {
                let mut sent = Vec::with_capacity(params.len());
                for p in params {
                    sent.push(remote.send(p).await?);
                }
                sent
            }
            None => self.inner.store.message_send_many(MessageSendManyParams { messages: params }).await?,
        };
        // A replaced message is not a new one (not counted), but its due time changed.
        let published = results.iter().filter(|r| !r.duplicate && !r.replaced).count();
        let replaced = results.iter().filter(|r| r.replaced).count();
        if published > 0 {
            tracing::debug!(queue.name = topic, messages = published, "published");
            self.with_metrics(|| {
                metrics::counter!(METRIC_PUBLISHED, "topic" => topic.to_owned()).increment(published as u64)
            });
        }
        if replaced > 0 {
            tracing::debug!(queue.name = topic, messages = replaced, "replaced");
        }
        if published + replaced > 0 {
            self.wake();
        }
        Ok(results)
    }

    /// Why a due delivery of message `id` (in `topic`) waits because of its message group:
    /// `"group_concurrency"` when its group is full, `"rate_limit"` when its group's bucket
    /// allows no start now (the group rate limit in force for `topic`); `None` otherwise.
    pub async fn group_held(&self, id: &str, topic: &str) -> Result<Option<&'static str>, QueueError> {
        let p = crate::store::DeliveryGroupHeldParams {
            message_id: id.to_owned(),
            group_rate_limit: self.limits_in_force_known(topic).group_rate_limit,
            now: self.inner.clock.now(),
        };
        Ok(self.inner.store.delivery_group_held(p).await?.map(|h| match h {
            crate::store::GroupHeld::Concurrency => "group_concurrency",
            crate::store::GroupHeld::RateLimit => "rate_limit",
        }))
    }

    /// Validate a publish and turn it into the backend's params without sending it — for a
    /// backend function that publishes inside the caller's database transaction
    /// (`vqs_postgres::enqueue_in`).
    pub fn prepare_send(&self, topic: &str, payload: Vec<u8>, opts: SendOpts) -> Result<MessageSendParams, QueueError> {
        if !is_valid_name(topic) {
            return Err(QueueError::Invalid(format!("invalid topic {topic:?}: use letters, digits, '-' and '_' only")));
        }
        if let Some(key) = &opts.idempotency_key {
            if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_LEN {
                return Err(QueueError::Invalid(format!(
                    "invalid idempotency key: it must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
                )));
            }
            check_storable("idempotency key", key)?;
        }
        if opts.on_duplicate == OnDuplicate::Replace {
            if opts.idempotency_key.is_none() {
                return Err(QueueError::Invalid(
                    "on_duplicate \"replace\" needs an idempotency key: it replaces the message that holds the key"
                        .into(),
                ));
            }
            if self.publishes_elsewhere() {
                return Err(QueueError::Invalid(
                    "on_duplicate \"replace\" is not available through Vercel Queues, which only drops duplicates: \
                     send with \"skip\" (the default), or run the queue on this database"
                        .into(),
                ));
            }
        }
        if let Some(g) = &opts.group {
            crate::check_group_key(g)?;
        }
        let priority = match opts.priority {
            Some(n) => crate::check_priority(i64::from(n))?,
            None => 0,
        };
        if let Some(h) = &opts.headers_json {
            check_storable_long("headers", h)?;
        }
        if let Some(ct) = &opts.content_type
            && !is_valid_content_type(ct)
        {
            return Err(QueueError::Invalid(format!(
                "invalid content type {ct:?}: it must be a header value (visible ASCII, no line breaks)"
            )));
        }
        let retention = opts.retention.unwrap_or(DEFAULT_RETENTION);
        if retention < MIN_RETENTION || retention > MAX_RETENTION {
            return Err(QueueError::Invalid(format!(
                "invalid retention {}s: it must be between {} and {} seconds",
                retention.as_secs(),
                MIN_RETENTION.as_secs(),
                MAX_RETENTION.as_secs()
            )));
        }
        if opts.delay > retention {
            return Err(QueueError::Invalid(format!(
                "invalid delay {}s: it cannot exceed the retention ({}s), or the message would expire before it is due",
                opts.delay.as_secs(),
                retention.as_secs()
            )));
        }
        Ok(MessageSendParams {
            group_key: opts.group,
            priority,
            topic: topic.to_owned(),
            payload,
            content_type: opts.content_type.unwrap_or_else(|| "application/json".to_owned()),
            idempotency_key: opts.idempotency_key,
            delay_seconds: opts.delay.as_secs() as u32,
            retention_seconds: retention.as_secs() as u32,
            // Published from inside a job (or a traced request): carry its trace context.
            headers_json: opts.headers_json.or_else(|| {
                TraceContext::current().map(|c| serde_json::json!({ "traceparent": c.traceparent() }).to_string())
            }),
            only_group: None,
            on_duplicate: opts.on_duplicate,
            now: self.inner.clock.now(),
        })
    }

    /// Executions, newest first.
    pub async fn executions(&self, p: ExecutionListParams) -> Result<Vec<ExecutionRecord>, QueueError> {
        check_filter("topic", p.topic.as_deref())?;
        check_filter("message id", p.message_id.as_deref())?;
        check_filter("consumer group", p.consumer_group.as_deref())?;
        Ok(self.inner.store.execution_list(p).await?)
    }

    /// The attempt number a run of this delivery would be, read from the attempts this
    /// database recorded of it: one more than the last one's, or 1. For a push that carries
    /// no attempt stored with its lease (Vercel's, which counts deliveries only): a lease
    /// renewed or run out before the job started spends no attempt. Two deliveries of one
    /// message at once (at-least-once) may both read the same number.
    pub async fn next_attempt(&self, message_id: &str, consumer_group: &str) -> Result<u32, QueueError> {
        let last = self
            .inner
            .store
            .execution_list(ExecutionListParams {
                message_id: Some(message_id.to_owned()),
                consumer_group: Some(consumer_group.to_owned()),
                limit: 1,
                ..ExecutionListParams::default()
            })
            .await?;
        // A snoozed attempt was given back: the next run keeps its number.
        Ok(last.first().map_or(1, |e| match e.status {
            ExecutionStatus::Snoozed => e.attempt.max(1),
            _ => e.attempt.saturating_add(1),
        }))
    }

    /// Make a delayed message, or one waiting for its retry, due now in every consumer
    /// group (the operator's "run now"): returns how many deliveries were made due, 0 when
    /// it was due already. A message being run, or finished, is a [`QueueError::Conflict`]
    /// saying which; an unknown one [`StoreError::NotFound`]. Its attempts are unchanged.
    pub async fn run_now(&self, message_id: &str) -> Result<u64, QueueError> {
        check_filter("message id", Some(message_id))?;
        if self.publishes_elsewhere() {
            return Err(QueueError::Invalid(
                "run now is not available through Vercel Queues: its messages live in Vercel's queue service".into(),
            ));
        }
        let made_due = self
            .inner
            .store
            .message_run_now(MessageRunNowParams { message_id: message_id.to_owned(), now: self.inner.clock.now() })
            .await?;
        if made_due > 0 {
            self.wake();
            return Ok(made_due);
        }
        let Some(m) = self.message(message_id).await? else {
            return Err(StoreError::NotFound(format!("no message {message_id}")).into());
        };
        let states: Vec<DeliveryState> = m.deliveries.iter().map(|d| d.state).collect();
        if states.is_empty() {
            return Err(QueueError::Conflict(format!(
                "message {message_id} is in no consumer group yet (nothing subscribes to topic {:?}): nothing to make due",
                m.topic
            )));
        }
        if states.contains(&DeliveryState::Pending) {
            return Ok(0);
        }
        if states.contains(&DeliveryState::Leased) {
            return Err(QueueError::Conflict(format!("message {message_id} is running: it cannot be made due now")));
        }
        Err(QueueError::Conflict(format!(
            "message {message_id} has finished (acknowledged or dead-lettered): nothing to run; replay a dead letter instead"
        )))
    }

    /// Cancel a message in every consumer group (the operator's "cancel"): a pending
    /// delivery never runs; a running one is told ([`crate::JobContext::cancelled`]) and its
    /// job dropped within a second, on whichever process runs it; its attempt is recorded
    /// `cancelled`. Returns what was cancelled. A message that had already finished
    /// everywhere is a [`QueueError::Conflict`] saying how; an unknown one
    /// [`StoreError::NotFound`]. On Vercel ([`Queue::publishes_elsewhere`]) the message
    /// cannot be seen: the cancel is recorded (`remote: true`) and each delivery of it that
    /// arrives is acknowledged without running; a second cancel is a conflict.
    pub async fn cancel(&self, message_id: &str) -> Result<MessageCancelled, QueueError> {
        check_filter("message id", Some(message_id))?;
        if self.publishes_elsewhere() {
            // The message lives in Vercel's queue service, which has no cancel: recorded here,
            // each delivery of it that reaches this deployment is acknowledged unrun.
            let now = self.inner.clock.now();
            let expires_at = now + chrono::Duration::from_std(MAX_RETENTION).unwrap_or(chrono::Duration::days(7));
            let p = RemoteCancelParams {
                message_id: message_id.to_owned(),
                reason: CANCELLED_BY_OPERATOR.to_owned(),
                expires_at,
                now,
            };
            if !self.inner.store.remote_cancel_record(p).await? {
                return Err(QueueError::Conflict(format!("message {message_id} was already cancelled")));
            }
            tracing::info!(message.id = message_id, "cancel recorded for a message in Vercel's queue service");
            return Ok(MessageCancelled { found: true, remote: true, ..MessageCancelled::default() });
        }
        let done = self
            .inner
            .store
            .message_cancel(MessageCancelParams {
                message_id: message_id.to_owned(),
                reason: CANCELLED_BY_OPERATOR.to_owned(),
                now: self.inner.clock.now(),
            })
            .await?;
        if !done.found {
            return Err(StoreError::NotFound(format!("no message {message_id}")).into());
        }
        if done.pending.is_empty() && done.running.is_empty() {
            if done.finished.is_empty() {
                return Err(QueueError::Conflict(format!(
                    "message {message_id} is in no consumer group yet (nothing subscribes to its topic): nothing to cancel"
                )));
            }
            let how: Vec<String> =
                done.finished.iter().map(|(group, state)| format!("{} in {group}", finished_word(*state))).collect();
            return Err(QueueError::Conflict(format!(
                "message {message_id} has already finished ({}): nothing to cancel",
                how.join(", ")
            )));
        }
        // This process may be running it, or hold its lease in a dispatcher's buffer.
        self.notice_cancelled(message_id);
        tracing::info!(message.id = message_id, running = done.running.len(), "cancelled");
        Ok(done)
    }

    /// Cancel every pending message of `topic` (of one consumer group with `group`); with
    /// `dry_run`, only count them. Running ones are left to finish (cancel them one by one).
    pub async fn purge(&self, topic: &str, group: Option<&str>, dry_run: bool) -> Result<u64, QueueError> {
        if !is_valid_name(topic) {
            return Err(QueueError::Invalid(format!("invalid topic {topic:?}: use letters, digits, '-' and '_' only")));
        }
        if let Some(g) = group
            && !is_valid_name(g)
        {
            return Err(QueueError::Invalid(format!(
                "invalid consumer group {g:?}: use letters, digits, '-' and '_' only"
            )));
        }
        if self.publishes_elsewhere() {
            return Err(QueueError::Invalid(
                "purge is not available through Vercel Queues: its messages live in Vercel's queue service".into(),
            ));
        }
        let n = self
            .inner
            .store
            .topic_purge(TopicPurgeParams {
                topic: topic.to_owned(),
                consumer_group: group.map(str::to_owned),
                dry_run,
                now: self.inner.clock.now(),
            })
            .await?;
        if !dry_run && n > 0 {
            tracing::info!(queue.name = topic, queue.consumer_group = group, cancelled = n, "purged");
            self.with_metrics(|| metrics::counter!(METRIC_CANCELLED, "topic" => topic.to_owned()).increment(n));
        }
        Ok(n)
    }

    /// One message with its deliveries.
    pub async fn message(&self, id: &str) -> Result<Option<MessageRecord>, QueueError> {
        check_storable("message id", id)?;
        Ok(self.inner.store.message_get(MessageGetParams { id: id.to_owned() }).await?)
    }

    /// Per-topic counts.
    pub async fn stats(&self) -> Result<Vec<TopicStats>, QueueError> {
        Ok(self.inner.store.queue_stats(QueueStatsParams { now: self.inner.clock.now() }).await?)
    }

    /// Live counts per topic (waiting, delayed, running, oldest due, dead letters): cheap at
    /// any history size, for health checks, dashboards and metrics.
    pub async fn depth(&self) -> Result<Vec<TopicDepth>, QueueError> {
        Ok(self.inner.store.queue_depth(QueueDepthParams { now: self.inner.clock.now() }).await?)
    }

    /// Executions started in the last `window`, per topic and status (throughput).
    pub async fn execution_counts(&self, window: Duration) -> Result<Vec<ExecutionCounts>, QueueError> {
        let since = crate::store::retention_cutoff(self.inner.clock.now(), window.as_secs());
        Ok(self.inner.store.execution_counts(ExecutionCountParams { since }).await?)
    }

    /// Progress reports of running (and recently finished) jobs, most recent first.
    pub async fn progress(&self, p: ProgressListParams) -> Result<Vec<ProgressRecord>, QueueError> {
        check_filter("message id", p.message_id.as_deref())?;
        Ok(self.inner.store.progress_list(p).await?)
    }

    /// The sync log of a topic's keys (or of every topic).
    pub async fn sync_log(&self, topic: Option<&str>) -> Result<Vec<SyncLogRecord>, QueueError> {
        check_filter("topic", topic)?;
        Ok(self.inner.store.sync_log_list(SyncLogListParams { topic: topic.map(str::to_owned) }).await?)
    }

    /// Dead letters, newest first, each with a preview of its payload (the first
    /// [`crate::store::PAYLOAD_PREVIEW_BYTES`], its size, and whether it was cut).
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetterRecord>, QueueError> {
        Ok(self.inner.store.dead_letter_list(DeadLetterListParams { limit }).await?)
    }

    /// One dead letter with its whole payload.
    pub async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterRecord>, QueueError> {
        Ok(self.inner.store.dead_letter_get(DeadLetterGetParams { id }).await?)
    }

    /// Publish a dead letter's payload again (with its headers: the trace continues), to the
    /// consumer group it died in, and remove it from the dead-letter store — one transaction
    /// with the local store, so of concurrent replays (and discards) of one dead letter
    /// exactly one wins and the others get [`QueueError::Conflict`]. Returns the new message.
    pub async fn dead_letter_replay(&self, id: i64) -> Result<SendResult, QueueError> {
        let local = self.inner.publisher.is_none();
        let publish = local.then(|| DeadLetterReplayOpts { retention_seconds: DEFAULT_RETENTION.as_secs() as u32 });
        let (letter, payload, sent) = self.settle_dead_letter(id, DeadLetterAction::Replay, publish).await?;
        if let Some(sent) = sent {
            tracing::debug!(queue.name = %letter.topic, message.id = %sent.message_id, dead_letter.id = id, "replayed");
            self.count(METRIC_PUBLISHED, &letter.topic);
            self.wake();
            return Ok(sent);
        }
        // A remote queue service shares no transaction with this database: the dead letter
        // is claimed first (so concurrent replays still publish once), then published, and
        // put back when the publish fails.
        let opts = SendOpts {
            content_type: Some(letter.content_type.clone()),
            headers_json: letter.headers_json.clone(),
            ..SendOpts::default()
        };
        match self.send_to(&letter.topic, payload.clone(), opts, Some(letter.consumer_group.clone())).await {
            Ok(sent) => Ok(sent),
            Err(e) => {
                self.inner.store.dead_letter_restore(DeadLetterRestoreParams { letter, payload }).await?;
                Err(e)
            }
        }
    }

    /// Remove a dead letter for good. [`StoreError::NotFound`] when there is none with that
    /// id; [`QueueError::Conflict`] when another call replayed or discarded it first.
    pub async fn dead_letter_discard(&self, id: i64) -> Result<(), QueueError> {
        self.settle_dead_letter(id, DeadLetterAction::Discard, None).await.map(|_| ())
    }

    /// Every operator action on a dead letter goes through here: one atomic claim in the
    /// store, so an action added later is at-most-once under concurrency too.
    async fn settle_dead_letter(
        &self,
        id: i64,
        action: DeadLetterAction,
        publish: Option<DeadLetterReplayOpts>,
    ) -> Result<(DeadLetterRecord, Vec<u8>, Option<SendResult>), QueueError> {
        let now = self.inner.clock.now();
        let p = DeadLetterSettleParams { id, action, publish, now };
        match self.inner.store.dead_letter_settle(p).await? {
            DeadLetterSettled::Settled { letter, payload, sent } => Ok((*letter, payload, sent)),
            DeadLetterSettled::AlreadySettled { action, at, message_id } => Err(QueueError::Conflict(format!(
                "dead letter {id} was already {} at {}{}: nothing was done",
                action.past_tense(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                message_id.map(|m| format!(" (as message {m})")).unwrap_or_default()
            ))),
            DeadLetterSettled::NotFound => Err(StoreError::NotFound(format!("dead letter {id}")).into()),
        }
    }

    /// Close attempts still `running` although they started more than `max_run` ago (and at
    /// most a day before that), for messages this database does not lease — those pushed by
    /// Vercel Queues, whose lease lives there. On a host that kills a run at `max_run` (a
    /// Vercel Function's `maxDuration`) such an attempt has certainly ended; its row is closed
    /// as failed ([`crate::store::OUTLIVED_ERROR`]). At most `limit` rows; returns how many.
    pub async fn close_outlived_executions(&self, max_run: std::time::Duration, limit: u32) -> Result<u64, QueueError> {
        let now = self.inner.clock.now();
        let max_run = chrono::Duration::from_std(max_run).unwrap_or(chrono::Duration::MAX);
        let started_before = now.checked_sub_signed(max_run).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let started_after = started_before
            .checked_sub_signed(chrono::Duration::days(1))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let closed = self
            .inner
            .store
            .execution_close_outlived(crate::store::OutlivedParams { now, started_after, started_before, limit })
            .await?;
        if closed > 0 {
            tracing::warn!(closed, "closed attempts that outlived the function's maximum duration");
        }
        Ok(closed)
    }

    /// One maintenance pass: rescue abandoned executions, prune by retention (each table at
    /// most `retention.batch` rows; [`MaintenanceReport::hit_batch_limit`] says whether
    /// another pass has more to do).
    pub async fn maintenance(&self, retention: &RetentionConfig) -> Result<MaintenanceReport, QueueError> {
        let report = self
            .inner
            .store
            .maintenance_run(MaintenanceParams {
                now: self.inner.clock.now(),
                execution_retention_seconds: retention.executions.as_secs(),
                max_executions: retention.max_executions,
                message_retention_seconds: retention.messages.as_secs(),
                max_messages: retention.max_messages,
                cron_run_retention_seconds: retention.cron_runs.as_secs(),
                max_cron_runs: retention.max_cron_runs,
                dead_letter_retention_seconds: retention.dead_letters.as_secs(),
                batch: retention.batch,
            })
            .await?;
        if !report.is_empty() {
            tracing::info!(?report, "maintenance");
        }
        Ok(report)
    }
}

/// A read filter the database can compare: see [`check_storable`].
fn check_filter(field: &str, value: Option<&str>) -> Result<(), QueueError> {
    value.map_or(Ok(()), |v| check_storable(field, v))
}

/// How long finished work is kept. Age limits and count limits both apply; a count limit of
/// 0 means none. Every value is safe: an age longer than the time since 1970 keeps
/// everything (cut-offs are clamped to the Unix epoch, [`crate::store::retention_cutoff`]),
/// and a count above `i64::MAX` is `i64::MAX` ([`crate::store::sql_count`]) — nothing
/// overflows, panics or wraps. The web app refuses settings beyond 10 years and 10¹² rows. Unfinished work (live messages, `running` rows, the latest run and the
/// latest success of each cron) is never pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Execution rows, by start time. Default 7 days.
    pub executions: Duration,
    /// Execution rows kept at most (the newest). Default 1 000 000.
    pub max_executions: u64,
    /// Finished messages (every delivery acknowledged or dead), by creation time. Default 24
    /// hours. A message is removed at the end of its own retention in any case.
    pub messages: Duration,
    /// Messages kept at most; only finished ones are deleted. Default 1 000 000.
    pub max_messages: u64,
    /// Cron runs, by start time. Default 30 days.
    pub cron_runs: Duration,
    /// Runs kept per cron at most. Default 1000.
    pub max_cron_runs: u64,
    /// Dead letters. Default 30 days.
    pub dead_letters: Duration,
    /// Rows deleted per table per pass. Default 1000.
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        RetentionConfig {
            executions: Duration::from_secs(7 * DAY),
            max_executions: 1_000_000,
            messages: Duration::from_secs(DAY),
            max_messages: 1_000_000,
            cron_runs: Duration::from_secs(30 * DAY),
            max_cron_runs: 1000,
            dead_letters: Duration::from_secs(30 * DAY),
            batch: 1000,
        }
    }
}

/// The doors an app's HTTP layer needs beyond publishing and the admin reads (health,
/// dashboard sessions, Vercel Cron's runs, a remote publisher), so that it never reaches the
/// store itself.
impl Queue {
    /// The same store and clock, publishing to `publisher` ([`Queue::with_publisher`]).
    pub fn publishing_to(&self, publisher: Arc<dyn QueueService>) -> Queue {
        Queue::with_publisher(self.inner.store.clone(), self.inner.clock.clone(), publisher)
    }

    /// This database as a queue service: the `/_vqs` API's and the local consumer's door
    /// to leases.
    pub fn local_service(&self) -> crate::LocalQueueService {
        crate::LocalQueueService::new(self.clone())
    }

    /// Whether the store answers (and its background writers run): readiness.
    pub async fn ping(&self) -> Result<(), QueueError> {
        Ok(self.inner.store.ping().await?)
    }

    /// Sign a dashboard session out, for every process, until `p.expires_at`.
    pub async fn session_revoke(&self, p: crate::store::SessionRevokeParams) -> Result<(), QueueError> {
        Ok(self.inner.store.session_revoke(p).await?)
    }

    /// Whether the dashboard session `nonce` was signed out.
    pub async fn session_revoked(&self, nonce: &str) -> Result<bool, QueueError> {
        Ok(self.inner.store.session_revoked(SessionRevokedParams { nonce: nonce.to_owned() }).await?)
    }

    /// Claim a cron tick that something other than [`crate::CronScheduler`] fires (Vercel
    /// Cron): `Some(run id)` for the first claim of `(path, schedule, scheduled_at)`, `None`
    /// when the tick already ran.
    pub async fn cron_run_start(&self, p: crate::store::CronRunStartParams) -> Result<Option<i64>, QueueError> {
        Ok(self.inner.store.cron_run_start(p).await?)
    }

    /// Record how a claimed cron run ended.
    pub async fn cron_run_finish(&self, p: crate::store::CronRunFinishParams) -> Result<(), QueueError> {
        Ok(self.inner.store.cron_run_finish(p).await?)
    }
}

/// The error recorded for an attempt an operator cancelled.
pub(crate) const CANCELLED_BY_OPERATOR: &str = "cancelled by an operator";

impl Queue {
    /// Why a message of another queue service (Vercel's) was cancelled, if it was (see
    /// [`Queue::cancel`]): the consumer acknowledges such a delivery without running it.
    pub async fn remote_cancel(&self, message_id: &str) -> Result<Option<String>, QueueError> {
        let p = RemoteCancelGetParams { message_id: message_id.to_owned() };
        Ok(self.inner.store.remote_cancel_get(p).await?)
    }
}

/// How a finished delivery ended, in an operator's words.
fn finished_word(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Acked => "succeeded",
        DeliveryState::Dead => "dead-lettered",
        DeliveryState::Cancelled => "cancelled",
        DeliveryState::Pending => "pending",
        DeliveryState::Leased => "running",
    }
}
