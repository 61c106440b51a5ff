//! The seam every storage backend implements. SQL lives behind it, in the backend crates.
//!
//! [`QueueStore`] is the trait a backend implements; its docs say what each method must
//! guarantee. Methods are noun-first with one params struct each, so adding a field never
//! changes a signature. Every method that depends on time takes `now` in its params: the
//! facade owns the clock.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The error text of an execution closed because its lease expired before it finished.
pub const ABANDONED_ERROR: &str =
    "abandoned: the lease expired before the attempt finished (the process died or the job outlived its lease)";

/// The error text of an attempt closed because it was still `running` long after the longest
/// run its host allows (a Vercel Function killed at `maxDuration`, or frozen and reclaimed).
pub const OUTLIVED_ERROR: &str = "abandoned: still running after the function's maximum duration (the function was killed or its instance reclaimed)";

/// A new message id: `msg_` and a time-ordered UUID (v7).
pub fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

/// A new message id for a message created at `now` (the queue's clock): `msg_` and a UUID v7
/// whose time part is `now`, so ids sort by creation time as the queue sees it.
pub fn new_message_id_at(now: DateTime<Utc>) -> String {
    let secs = now.timestamp().max(0) as u64;
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, now.timestamp_subsec_nanos());
    format!("msg_{}", uuid::Uuid::new_v7(ts).simple())
}

/// The smallest message id that [`new_message_id_at`] can issue at `t` or later: ids are
/// time-ordered (UUID v7, milliseconds first), so `id < message_id_floor(t)` selects the
/// messages created before `t` through the primary key, with no index on `created_at`.
pub fn message_id_floor(t: DateTime<Utc>) -> String {
    format!("msg_{:012x}{}", t.timestamp_millis().max(0), "0".repeat(20))
}

/// `now` minus a retention of `seconds`, never before the Unix epoch: a retention longer
/// than the time since 1970 keeps everything, and no length overflows a date or wraps to a
/// negative one (which would put the cut-off in the future and delete everything).
pub fn retention_cutoff(now: DateTime<Utc>, seconds: u64) -> DateTime<Utc> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    i64::try_from(seconds)
        .ok()
        .and_then(chrono::TimeDelta::try_seconds)
        .and_then(|d| now.checked_sub_signed(d))
        .map_or(epoch, |t| t.max(epoch))
}

/// A count as SQL's signed 64-bit integer, saturating: `u64::MAX` is `i64::MAX` ("no row is
/// beyond it"), never `-1` (which SQLite reads as "no offset": everything beyond it).
pub fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A receipt handle names a message and the lease token of one delivery of it:
/// `<message id>.<lease token>`.
pub fn receipt_handle(message_id: &str, lease_token: &str) -> String {
    format!("{message_id}.{lease_token}")
}

/// The message id and lease token of a receipt handle.
pub fn split_receipt_handle(handle: &str) -> Result<(&str, &str), StoreError> {
    handle
        .rsplit_once('.')
        .filter(|(m, t)| !m.is_empty() && !t.is_empty())
        .ok_or_else(|| StoreError::NotFound(format!("receipt handle {handle:?} is not one this queue issued")))
}

/// A dead letter's payload field from the bytes a backend read (`payload`, the whole of it
/// or a preview) and the whole payload's size: (payload, size, truncated).
pub fn payload_preview(bytes: &[u8], total: i64, content_type: &str) -> (serde_json::Value, u64, bool) {
    let total = u64::try_from(total).unwrap_or(0).max(bytes.len() as u64);
    let truncated = total > bytes.len() as u64;
    let value = if truncated {
        serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
    } else {
        payload_json(bytes, content_type)
    };
    (value, total, truncated)
}

/// A payload as the admin API shows it: JSON when it is JSON, else text.
pub fn payload_json(bytes: &[u8], content_type: &str) -> serde_json::Value {
    if content_type.starts_with("application/json")
        && let Ok(v) = serde_json::from_slice(bytes)
    {
        return v;
    }
    serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// What can go wrong in a backend.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No message, lease or dead letter with that id.
    #[error("not found: {0}")]
    NotFound(String),
    /// The lease named by the receipt handle is no longer held (expired and taken by another
    /// consumer, or the handle does not match).
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// Receive-by-id of a message currently leased by someone else.
    #[error("message {0} is locked by another consumer")]
    Locked(String),
    /// Receive-by-id of a message whose delivery already finished.
    #[error("message {0} was already acknowledged")]
    AlreadyAcknowledged(String),
    /// The database said no.
    #[error("database error: {0}")]
    Database(String),
    /// The database refused a value of this operation (a character or a size it cannot
    /// store, a constraint): the same input fails the same way again, and a group commit
    /// that held it is written again row by row so that only this operation fails.
    #[error("the database refused the input: {0}")]
    Refused(String),
}

/// Publish one message.
#[derive(Debug, Clone)]
pub struct MessageSendParams {
    /// The topic to publish to (validated by the facade); every consumer group subscribed
    /// to it receives the message.
    pub topic: String,
    /// The message body, as bytes (a job's JSON, or anything `content_type` says).
    pub payload: Vec<u8>,
    /// The body's MIME type (`application/json` for a job's arguments), handed back to
    /// consumers.
    pub content_type: String,
    /// Deduplicates sends: while a message of this topic holding the key is kept, another
    /// send of it queues nothing (or replaces it, by `on_duplicate`). `None`: no dedup.
    pub idempotency_key: Option<String>,
    /// Seconds after `now` before the message is first due (0: at once); each
    /// subscription's `initial_delay_seconds` may push it later.
    pub delay_seconds: u32,
    /// Seconds the message is kept from `now` (its `expires_at`): past it, it is no longer
    /// delivered, it is pruned, and its idempotency key is free again.
    pub retention_seconds: u32,
    /// Producer trace context (`traceparent`, …) as a JSON object, carried to consumers.
    pub headers_json: Option<String>,
    /// Deliver to this consumer group only (dead-letter replay); `None` = every subscriber.
    pub only_group: Option<String>,
    /// What a send whose idempotency key is held by another message does (SPEC.md, "Job
    /// outcomes"). Ignored without a key.
    pub on_duplicate: OnDuplicate,
    /// The message's group key (a tenant, an account: SPEC.md, "Flow control"), validated
    /// by the facade (1–256 characters, no control characters). `None`: ungrouped.
    pub group_key: Option<String>,
    /// The message's priority, validated by the facade (−100..=100, lower starts first).
    pub priority: i16,
    /// The queue's clock at the send: the message's `created_at`, and what delay and
    /// retention count from.
    pub now: DateTime<Utc>,
}

/// What a send does when its idempotency key is held by a message of the topic still kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDuplicate {
    /// Queue nothing; answer the original's id with `duplicate: true` (Vercel's behaviour).
    #[default]
    Skip,
    /// If the key's message has not started — every delivery pending (due, delayed or
    /// waiting for a retry), none leased — it takes the new payload, content type, headers
    /// and due time (`delay_seconds` from now, in every consumer group), its attempts
    /// unchanged: `replaced: true`. If it has started or finished, the key moves to a new
    /// message sent as usual (`replaced: false`). `replace` with a delay is a debounce.
    Replace,
}

impl OnDuplicate {
    /// As stored and in the API: `skip` or `replace`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDuplicate::Skip => "skip",
            OnDuplicate::Replace => "replace",
        }
    }

    /// The value of [`Self::as_str`]'s text; `None` for any other.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(OnDuplicate::Skip),
            "replace" => Some(OnDuplicate::Replace),
            _ => None,
        }
    }
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SendResult {
    /// The new message's id, or the id of the pending original when `duplicate` is true.
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// True when the idempotency key matched a message of the topic still kept (within its
    /// retention, finished or not): nothing new was queued.
    pub duplicate: bool,
    /// True when [`OnDuplicate::Replace`] gave the key's message (`message_id`) the new
    /// payload and due time instead of queueing another.
    pub replaced: bool,
}

/// Subscribe a consumer group to a topic (or to a `prefix*` pattern).
#[derive(Debug, Clone)]
pub struct SubscriptionEnsureParams {
    /// The topic the group consumes: an exact name, or `prefix*` for every topic that
    /// starts with `prefix` (`*` alone: every topic).
    pub topic_pattern: String,
    /// The consumer group's name: each group gets its own delivery of every matching
    /// message.
    pub consumer_group: String,
    /// Each message becomes visible to this group no sooner than `created_at + initial_delay`.
    pub initial_delay_seconds: u32,
    /// The consumer group claims under a group concurrency limit
    /// ([`DeliveryClaimParams::group_concurrency`]): its deliveries carry their message's
    /// group key (`""` for an ungrouped message) and its groups are tracked in the ready set.
    /// A change re-keys the group's live deliveries.
    pub grouped: bool,
    /// The queue's clock at the call (the facade's, never the system's): the instant this
    /// happens at.
    pub now: DateTime<Utc>,
}

/// Make every subscription to exactly `topic` grouped ([`QueueStore::subscription_group_topic`]).
#[derive(Debug, Clone)]
pub struct SubscriptionGroupTopicParams {
    /// The exact topic name (not a pattern): only subscriptions whose pattern is exactly
    /// this are changed.
    pub topic: String,
    /// The queue's clock at the call (the facade's, never the system's): the instant this
    /// happens at.
    pub now: DateTime<Utc>,
}

/// Lease due messages of a consumer group.
#[derive(Debug, Clone)]
pub struct DeliveryClaimParams {
    /// The consumer group whose deliveries are leased.
    pub consumer_group: String,
    /// Restrict to one topic (the receive API names one); `None` = every topic of the group.
    pub topic: Option<String>,
    /// Lease this one message (receive by id).
    pub message_id: Option<String>,
    /// Messages leased at most by this call (fewer when fewer are due or a limit holds them
    /// back).
    pub limit: u32,
    /// How long each lease lasts from `now`, in seconds: unless acknowledged or extended by
    /// then, the message is due again.
    pub visibility_seconds: u32,
    /// Record each leased message's attempt as a `running` execution in the same write (the
    /// local dispatcher does this for the job routes of its own process: the lease *is* the
    /// start of the attempt, and the consumer needs no write of its own before it runs).
    pub start_executions: bool,
    /// The process that will run the leased jobs, when it beats ([`ProcessBeatParams`]):
    /// if it stops beating, another process makes these leases due at once
    /// ([`QueueStore::process_rescue`]) instead of waiting for them to run out. `None` (a
    /// remote consumer, the `/_vqs` receive API): the lease ends only when it runs out.
    pub lease_holder: Option<String>,
    /// The consumer group's limit across processes (a trigger's `maxConcurrency`): lease
    /// at most this many minus the live leases held by *other* holders than `lease_holder`
    /// (every live lease when it is `None`) minus `leased_here`, counted under a lock so that
    /// processes claiming at once never overshoot it. `None`: no such limit.
    pub max_leased: Option<u32>,
    /// With `max_leased` and a `lease_holder`: the leases this holder still counts as busy
    /// (its jobs running and its leases waiting to run). Its own leases whose jobs are done
    /// but whose acknowledgement is still being written do not hold back its next claim.
    pub leased_here: u32,
    /// The topic's rate limit in force: lease no more than its bucket allows now, and
    /// advance the bucket by the number leased, under the same lock as `max_leased` (the
    /// group's claims are serialised whenever either is set). The bucket is the consumer
    /// group's for `topic` (the empty string when the claim names no topic).
    pub rate_limit: Option<RateLimit>,
    /// Leased at once per (consumer group, group key) at most, across every process (a
    /// lease counts from the claim; the group's unexpired push slots, taken by
    /// [`QueueStore::flow_group_start`], count too). Needs the subscription ensured with `grouped`. Grouped
    /// messages are then claimed through the ready groups only: a full group is out of the
    /// ready set, so its backlog is never scanned. `None`: claimed as without groups.
    pub group_concurrency: Option<u32>,
    /// Starts per (consumer group, group key), across every process: each group's bucket
    /// (GCRA, kept with the group's row) is read and advanced by the grouped claim under the
    /// group's lock, and a group whose bucket is empty is left out of the ready set until its
    /// next start. Needs the subscription ensured with `grouped`. `None`: no such limit.
    pub group_rate_limit: Option<RateLimit>,
    /// The queue's clock at the claim: what is due, and when each lease ends, count from
    /// it.
    pub now: DateTime<Utc>,
}

/// A message handed to a consumer under a lease.
#[derive(Debug, Clone)]
pub struct LeasedMessage {
    /// The message's id (`msg_…`).
    pub message_id: String,
    /// The topic it was published to.
    pub topic: String,
    /// The consumer group this delivery belongs to.
    pub consumer_group: String,
    /// The message body as sent.
    pub payload: Vec<u8>,
    /// The body's MIME type as sent.
    pub content_type: String,
    /// The producer's trace context (`traceparent`, …) as a JSON object; `None` when the
    /// send carried none.
    pub headers_json: Option<String>,
    /// 1 on the first delivery.
    pub delivery_count: u32,
    /// Real runs of the job so far, this one included when the lease recorded its
    /// execution (`start_executions`); apart from `delivery_count`, which every lease raises.
    pub attempts: u32,
    /// Names this lease (`<message id>.<lease token>`): pass it back to acknowledge, retry,
    /// extend or release. A newer lease of the delivery makes it stale.
    pub receipt_handle: String,
    /// When the message was published.
    pub created_at: DateTime<Utc>,
    /// When the message's retention ends: it is not delivered after this.
    pub expires_at: DateTime<Utc>,
    /// When the lease ends unless acknowledged or extended.
    pub lease_until: DateTime<Utc>,
    /// The `running` execution recorded with the lease (`start_executions`).
    pub execution_id: Option<i64>,
    /// The message's group key (SPEC.md, "Flow control"), whether or not the consumer group
    /// is grouped: a lease waiting in a dispatcher's buffer when its group is paused is given
    /// back unrun. `None`: the message has none, or the store does not know it (a lease
    /// from a remote queue service).
    pub group_key: Option<String>,
}

/// Identify a lease.
#[derive(Debug, Clone)]
pub struct LeaseParams {
    /// The consumer group the lease was taken in.
    pub consumer_group: String,
    /// The receipt handle the claim returned ([`LeasedMessage::receipt_handle`]).
    pub receipt_handle: String,
    /// The queue's clock at the call (the facade's, never the system's): the instant this
    /// happens at.
    pub now: DateTime<Utc>,
}

/// Change a lease's visibility timeout (extend it, or release it with 0).
#[derive(Debug, Clone)]
pub struct LeaseVisibilityParams {
    /// The lease to change.
    pub lease: LeaseParams,
    /// The lease's new length from `lease.now`, in seconds; 0 makes the message due again
    /// at once.
    pub visibility_seconds: u32,
}

/// Acknowledge a lease: the delivery is done.
#[derive(Debug, Clone)]
pub struct DeliveryAckParams {
    /// The lease being acknowledged.
    pub lease: LeaseParams,
    /// The attempt that just ran, closed in the same write as the acknowledgement (so an
    /// execution never reads `success` while its message is still leased, and the pair
    /// costs one round trip). Closed even when the lease turns out to be lost.
    pub execution: Option<ExecutionFinishParams>,
}

/// Give a message back for another attempt after `delay_seconds`.
#[derive(Debug, Clone)]
pub struct DeliveryRetryParams {
    /// The lease being given back for a retry.
    pub lease: LeaseParams,
    /// Due again this long after `lease.now`; fractions of a second are kept (a trigger's
    /// `retryAfterSeconds` may be `1.5`).
    pub delay: std::time::Duration,
    /// The attempt that just failed, closed in the same write (see [`DeliveryAckParams`]).
    pub execution: Option<ExecutionFinishParams>,
}

/// Give a lease back unused: the message was leased but never handed to a consumer (it
/// waited for a free execution slot too long, or the process is stopping). It is due again
/// at once and the delivery is not counted (`delivery_count` goes back down); the `running`
/// execution recorded with the lease is removed. No attempt was made, so none is spent.
#[derive(Debug, Clone)]
pub struct DeliveryReleaseParams {
    /// The lease being given back.
    pub lease: LeaseParams,
    /// The attempt recorded with the lease (`start_executions`): removed while still `running`.
    pub execution_id: Option<i64>,
}

/// Acknowledge a lease and keep the message in the dead-letter store.
#[derive(Debug, Clone)]
pub struct DeliveryDeadLetterParams {
    /// The lease being ended.
    pub lease: LeaseParams,
    /// Why the message died (the last attempt's error), kept as the dead letter's `error`.
    pub reason: String,
    /// The last attempt, closed in the same write (see [`DeliveryAckParams`]).
    pub execution: Option<ExecutionFinishParams>,
}

/// Keep a dead letter for a message this database never stored: one that came from
/// another queue service (Vercel's), whose payload the consumer has in hand.
#[derive(Debug, Clone)]
pub struct DeadLetterInsertParams {
    /// The message's id in the queue service it came from.
    pub message_id: String,
    /// The topic it was published to.
    pub topic: String,
    /// The consumer group it died in (a replay publishes to this group only).
    pub consumer_group: String,
    /// The body's MIME type.
    pub content_type: String,
    /// The whole body, as the consumer received it.
    pub payload: Vec<u8>,
    /// Why it died: the last attempt's error.
    pub error: String,
    /// Real runs of the job made before it died.
    pub attempts: u32,
    /// The message's trace context (`traceparent`, …) as a JSON object, kept for a replay.
    pub headers_json: Option<String>,
    /// The queue's clock at the call: the dead letter's `created_at`.
    pub now: DateTime<Utc>,
}

/// What an operator does with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterAction {
    /// Publish its message again, to the consumer group it died in.
    Replay,
    /// Remove it for good.
    Discard,
}

impl DeadLetterAction {
    /// As stored and shown: `replayed`, `discarded`.
    pub fn past_tense(self) -> &'static str {
        match self {
            DeadLetterAction::Replay => "replayed",
            DeadLetterAction::Discard => "discarded",
        }
    }

    /// The action of a text [`Self::past_tense`] produced; `None` for any other.
    pub fn parse_past_tense(s: &str) -> Option<Self> {
        match s {
            "replayed" => Some(DeadLetterAction::Replay),
            "discarded" => Some(DeadLetterAction::Discard),
            _ => None,
        }
    }
}

/// Settle a dead letter: take it out of the dead-letter store and record what was done, in
/// one transaction, so of concurrent calls exactly one settles it and the others are told
/// it was settled already. Every operator action on a dead letter is one of these.
#[derive(Debug, Clone)]
pub struct DeadLetterSettleParams {
    /// The dead letter's id ([`DeadLetterRecord::id`]).
    pub id: i64,
    /// Replay it or discard it.
    pub action: DeadLetterAction,
    /// A replay's message, published in the same transaction: topic, payload, content type,
    /// headers and consumer group are filled in from the dead letter. `None` for a discard,
    /// and for a replay that the caller publishes elsewhere (a remote queue service).
    pub publish: Option<DeadLetterReplayOpts>,
    /// The queue's clock at the call: when it was settled (and the replay's `created_at`).
    pub now: DateTime<Utc>,
}

/// How a replayed message is published.
#[derive(Debug, Clone)]
pub struct DeadLetterReplayOpts {
    /// Seconds the replayed message is kept (see [`MessageSendParams::retention_seconds`]).
    pub retention_seconds: u32,
}

/// What settling a dead letter did.
#[derive(Debug, Clone)]
pub enum DeadLetterSettled {
    /// This call settled it: the dead letter as it was, and the replay's new message when
    /// the store published it.
    Settled {
        /// The dead letter as it was before it was taken out (its payload field a preview
        /// or the whole, as [`QueueStore::dead_letter_get`] reads it).
        letter: Box<DeadLetterRecord>,
        /// Its whole payload, as stored: what a replay publishes elsewhere, or what
        /// [`QueueStore::dead_letter_restore`] puts back.
        payload: Vec<u8>,
        /// The replay's message when the store published it ([`DeadLetterSettleParams::publish`]);
        /// `None` for a discard or a replay the caller publishes.
        sent: Option<SendResult>,
    },
    /// Another call settled it first.
    AlreadySettled {
        /// What the winning call did with it.
        action: DeadLetterAction,
        /// When it was settled.
        at: DateTime<Utc>,
        /// The id of the message its replay published, when the store recorded one.
        message_id: Option<String>,
    },
    /// No dead letter with that id (or it was settled so long ago that the record is gone).
    NotFound,
}

/// How long the record of a settled dead letter is kept (so a late duplicate click answers
/// "already replayed" rather than "not found"): 7 days.
pub const DEAD_LETTER_SETTLEMENT_RETENTION_SECONDS: i64 = 7 * 24 * 3600;

/// A runtime schedule as stored (SPEC.md, "Runtime schedules"), with its next fire time and
/// what its last fire did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleRecord {
    /// The schedule's unique name (letters, digits, `-` and `_`).
    pub name: String,
    /// The five-field cron expression (Vercel's dialect), read in `timezone`.
    pub cron: String,
    /// The IANA time zone the cron expression is read in (`UTC` by default).
    pub timezone: String,
    /// The topic each fire publishes to.
    pub topic: String,
    /// The JSON payload of each fire's message.
    pub payload: serde_json::Value,
    /// False: the schedule is kept but never fires (an operator's trigger still does).
    pub enabled: bool,
    /// After downtime, fire the one missed tick (true) or skip missed ticks (false).
    pub catch_up: bool,
    /// Each fire happens up to this long after its tick (0: at the tick).
    pub jitter_seconds: u32,
    /// The tick the schedule fires next; `None` when it never fires again.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// When that tick fires: the tick plus its jitter offset (the due query reads this).
    pub due_at: Option<DateTime<Utc>>,
    /// When the schedule was first inserted (kept across upserts).
    pub created_at: DateTime<Utc>,
    /// Changes on every upsert: a fire computed from an older version is refused.
    pub updated_at: DateTime<Utc>,
    /// The tick of the last fire (the time it was for) and when it happened.
    pub last_tick: Option<DateTime<Utc>>,
    /// When the last fire happened (`None`: never fired).
    pub last_fired_at: Option<DateTime<Utc>>,
    /// The message the last fire published (or found under its idempotency key).
    pub last_message_id: Option<String>,
}

impl ScheduleRecord {
    /// The schedule's definition, without its state.
    pub fn schedule(&self) -> crate::Schedule {
        crate::Schedule {
            name: self.name.clone(),
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            enabled: self.enabled,
            catch_up: self.catch_up,
            jitter_seconds: self.jitter_seconds,
        }
    }
}

/// Insert a schedule or replace its definition (by name). The caller has validated it
/// ([`crate::Schedule::validate`]) and passes its next fire time after `now`; `created_at`
/// and the last fire are kept on update, `updated_at` becomes `now`.
#[derive(Debug, Clone)]
pub struct ScheduleUpsertParams {
    /// The validated definition; its name is the key.
    pub schedule: crate::Schedule,
    /// The first tick after `now` (`None`: the expression never fires again).
    pub next_fire_at: Option<DateTime<Utc>>,
    /// When that tick fires (the tick plus its jitter offset).
    pub due_at: Option<DateTime<Utc>>,
    /// The queue's clock at the call: `updated_at` (and `created_at` on insert).
    pub now: DateTime<Utc>,
}

/// Read one schedule by name.
#[derive(Debug, Clone)]
pub struct ScheduleGetParams {
    /// The schedule's name, exactly.
    pub name: String,
}

/// One page of schedules in name order (byte order, as the primary key sorts): at most
/// `limit` of those whose name is after `after` (exclusive; `None` starts at the first).
/// Read through the primary key, so a page costs the same whichever it is.
#[derive(Debug, Clone)]
pub struct ScheduleListParams {
    /// The last name of the previous page (exclusive); `None` for the first page.
    pub after: Option<String>,
    /// Schedules returned at most.
    pub limit: u32,
}

/// Count schedules, stopping at `cap` (the answer is at most `cap`): every schedule
/// (`overdue_before: None`, through the primary key), or the enabled ones whose
/// `next_fire_at` is at or before `overdue_before` (through the due index, so the cost
/// follows the number overdue).
#[derive(Debug, Clone)]
pub struct ScheduleCountParams {
    /// `None`: count every schedule; `Some(t)`: count the enabled ones whose `next_fire_at`
    /// is at or before `t`.
    pub overdue_before: Option<DateTime<Utc>>,
    /// Stop counting here: the answer never exceeds it.
    pub cap: u32,
}

/// The enabled schedules whose `next_fire_at` is at or before `before`, the most overdue
/// first, at most `limit`: what health and metrics look at to find late schedules without
/// reading every schedule (the due index, like [`ScheduleDueParams`], but read-only and
/// never used to fire).
#[derive(Debug, Clone)]
pub struct ScheduleOverdueParams {
    /// Schedules whose `next_fire_at` is at or before this are overdue.
    pub before: DateTime<Utc>,
    /// Schedules returned at most.
    pub limit: u32,
}

/// Delete a schedule by name, with its fire records (the messages they published stay).
#[derive(Debug, Clone)]
pub struct ScheduleDeleteParams {
    /// The schedule's name, exactly.
    pub name: String,
}

/// The enabled schedules whose `due_at` is at or before `now`, the most overdue first, at
/// most `limit`: read through an index on `due_at`, so the cost follows the number due,
/// not the number of schedules.
#[derive(Debug, Clone)]
pub struct ScheduleDueParams {
    /// The queue's clock at the read: schedules whose `due_at` is at or before it are due.
    pub now: DateTime<Utc>,
    /// Schedules returned at most.
    pub limit: u32,
}

/// Which fire [`QueueStore::schedule_fire`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleFireKind {
    /// The due tick `tick`, as read by [`QueueStore::schedule_due`]: fires only while the
    /// schedule is enabled, its `next_fire_at` is still `tick` and its `updated_at` is still
    /// `updated_at` (compare-and-set), moving `next_fire_at` to `next_fire_at` and `due_at`
    /// to `next_due_at`.
    Due {
        /// The schedule's `updated_at` as read with the tick: the version the fire applies to.
        updated_at: DateTime<Utc>,
        /// The tick after this one (`None`: the schedule never fires again).
        next_fire_at: Option<DateTime<Utc>>,
        /// When that next tick fires: the tick plus its jitter offset.
        next_due_at: Option<DateTime<Utc>>,
    },
    /// An operator's "fire now": any existing schedule, enabled or not; `next_fire_at` is
    /// left alone.
    Trigger,
}

/// What a claimed tick does ([`ScheduleFireParams::mode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScheduleFireMode {
    /// Publish the message in the claim's transaction.
    #[default]
    Publish,
    /// Record the fire without a message and answer [`ScheduleFired::Claimed`]: the caller
    /// publishes elsewhere (a remote queue service) and then reports the message with
    /// [`QueueStore::schedule_fire_sent`]. Until it does, [`QueueStore::schedule_unsent`]
    /// lists the fire, so a publish that failed is tried again.
    Claim,
    /// A missed tick of a schedule without catch-up: moved past and recorded `missed`,
    /// nothing published.
    Skip,
}

/// Fire one tick of a schedule, in one transaction: claim it (see [`ScheduleFireKind`]),
/// record the fire under the unique `(name, tick)`, and (by [`ScheduleFireMode`]) publish
/// the schedule's topic with its payload (JSON) and idempotency key
/// `schedule:<name>:<tick>` exactly as a send does. Of concurrent calls for one tick
/// exactly one claims it. A fire also deletes this schedule's fire records older than
/// [`SCHEDULE_FIRE_RETENTION_SECONDS`] before its tick.
#[derive(Debug, Clone)]
pub struct ScheduleFireParams {
    /// The schedule's name.
    pub name: String,
    /// The tick fired: the instant the cron expression named (not the jittered due time);
    /// part of the idempotency key.
    pub tick: DateTime<Utc>,
    /// A due tick (compare-and-set on the version read) or an operator's trigger.
    pub kind: ScheduleFireKind,
    /// Publish here, only claim, or skip the tick.
    pub mode: ScheduleFireMode,
    /// Retention of the published message.
    pub retention_seconds: u32,
    /// The queue's clock at the fire: the fire's `fired_at` and the message's `created_at`.
    pub now: DateTime<Utc>,
}

/// How long a schedule's fire records are kept, counted back from its latest tick: 7 days.
/// Each fire prunes its own schedule's older records (a range of the primary key), so a
/// per-minute schedule keeps about ten thousand, not every fire it ever made.
pub const SCHEDULE_FIRE_RETENTION_SECONDS: i64 = 7 * 24 * 3600;

/// What [`QueueStore::schedule_fire`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleFired {
    /// This call fired the tick: the message it published (or the one its idempotency key
    /// already named, `duplicate`).
    Fired {
        /// The message the fire published, or the one its idempotency key already named.
        message_id: String,
        /// True when the key named a message already kept: nothing new was queued.
        duplicate: bool,
    },
    /// The tick was fired already (another process won the race); nothing published.
    AlreadyFired,
    /// The schedule was edited, disabled or deleted since it was read, or its next tick is
    /// another one: nothing published. Read it again.
    Changed,
    /// (Trigger only) No schedule with that name.
    NotFound,
    /// ([`ScheduleFireMode::Claim`]) This call claimed the tick and recorded it: publish
    /// `payload` (JSON text) to `topic` under the tick's idempotency key, then report it.
    Claimed {
        /// The schedule's topic.
        topic: String,
        /// The schedule's payload, as JSON text.
        payload: String,
    },
    /// ([`ScheduleFireMode::Skip`]) The missed tick was moved past, nothing published.
    Skipped,
}

/// Record the message a claimed fire published ([`ScheduleFireMode::Claim`]): the fire's
/// and the schedule's `last_message_id`. A fire no longer recorded is ignored.
#[derive(Debug, Clone)]
pub struct ScheduleFireSentParams {
    /// The schedule's name.
    pub name: String,
    /// The tick of the claimed fire.
    pub tick: DateTime<Utc>,
    /// The id of the message the caller published for it.
    pub message_id: String,
}

/// Claimed fires without a message yet ([`ScheduleFireMode::Claim`]), recorded in
/// `since..=until` (by `fired_at`), oldest first, at most `limit`, with their schedule's
/// topic and payload; fires of deleted schedules are gone with them.
#[derive(Debug, Clone)]
pub struct ScheduleUnsentParams {
    /// Fires recorded at or after this.
    pub since: DateTime<Utc>,
    /// Fires recorded at or before this.
    pub until: DateTime<Utc>,
    /// Fires returned at most.
    pub limit: u32,
}

/// One claimed fire still to publish ([`QueueStore::schedule_unsent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleUnsent {
    /// The schedule's name.
    pub name: String,
    /// The tick fired: part of the idempotency key to publish under
    /// (`schedule:<name>:<tick>`).
    pub tick: DateTime<Utc>,
    /// The schedule's topic, to publish to.
    pub topic: String,
    /// JSON text.
    pub payload: String,
}

/// Start one execution row (`running`).
#[derive(Debug, Clone)]
pub struct ExecutionStartParams {
    /// The job's topic.
    pub topic: String,
    /// The message the attempt runs.
    pub message_id: String,
    /// The consumer group of the delivery.
    pub consumer_group: String,
    /// The attempt's number: 1 for the first run.
    pub attempt: u32,
    /// The queue's clock at the start: the row's `started_at`.
    pub now: DateTime<Utc>,
}

/// An execution's end state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// The attempt is still running (or its process died and no one has closed it yet).
    Running,
    /// The job returned success.
    Success,
    /// The job failed (an error, a panic, a timeout, or it was abandoned): the attempt is
    /// spent.
    Failed,
    /// The job asked to run again later ([`crate::JobError::snooze`]); the attempt was not spent.
    Snoozed,
    /// The job cancelled itself ([`crate::JobError::cancel`]), or an operator cancelled it.
    Cancelled,
}

impl ExecutionStatus {
    /// As stored and in the API: `running`, `success`, `failed`, `snoozed`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Success => "success",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Snoozed => "snoozed",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    /// The status of a text [`Self::as_str`] produced; `None` for any other.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(ExecutionStatus::Running),
            "success" => Some(ExecutionStatus::Success),
            "failed" => Some(ExecutionStatus::Failed),
            "snoozed" => Some(ExecutionStatus::Snoozed),
            "cancelled" => Some(ExecutionStatus::Cancelled),
            _ => None,
        }
    }
}

/// Close an execution row.
#[derive(Debug, Clone)]
pub struct ExecutionFinishParams {
    /// The execution's id ([`QueueStore::execution_start`],
    /// [`LeasedMessage::execution_id`]).
    pub id: i64,
    /// How the attempt ended (not `Running`).
    pub status: ExecutionStatus,
    /// The error the job returned, for a failed, snoozed or cancelled attempt; `None` on
    /// success.
    pub error: Option<String>,
    /// When the job's code began, if later than the row's `started_at`: an attempt recorded
    /// with its lease may wait a moment for a free execution slot. The duration counts from
    /// here (`None`: from `started_at`); `started_at` itself stays when the attempt was
    /// recorded, so closing a row never changes an indexed column.
    pub began_at: Option<DateTime<Utc>>,
    /// The queue's clock at the end: the row's `finished_at`.
    pub now: DateTime<Utc>,
}

/// One attempt of one job, as recorded in `job_executions`.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionRecord {
    /// The row's id: increasing, so newer attempts have larger ids.
    pub id: i64,
    /// The job's topic.
    pub topic: String,
    /// The message the attempt ran.
    pub message_id: String,
    /// The consumer group of the delivery.
    pub consumer_group: String,
    /// The attempt's number: 1 for the first run.
    pub attempt: u32,
    /// How it ended, or `Running`.
    pub status: ExecutionStatus,
    /// When the attempt was recorded: its lease, for the local dispatcher's pushes (a
    /// prefetched message may then wait a few milliseconds for a free execution slot).
    pub started_at: DateTime<Utc>,
    /// When it was closed; `None` while running.
    pub finished_at: Option<DateTime<Utc>>,
    /// How long the job's code ran (from when it began, not from `started_at`).
    pub duration_ms: Option<i64>,
    /// The error of a failed, snoozed or cancelled attempt; `None` on success or while
    /// running.
    pub error: Option<String>,
}

/// Filter executions, newest first.
#[derive(Debug, Clone, Default)]
pub struct ExecutionListParams {
    /// One topic's executions only; `None`: every topic's.
    pub topic: Option<String>,
    /// Only executions with this status; `None`: any.
    pub status: Option<ExecutionStatus>,
    /// One message's executions only; `None`: every message's.
    pub message_id: Option<String>,
    /// One consumer group's attempts (with `message_id`: one delivery's).
    pub consumer_group: Option<String>,
    /// The keyset cursor of a page of history: only executions whose id is below this one
    /// (the last id of the previous page), so a page never skips or counts rows it does not show.
    pub before_id: Option<i64>,
    /// Rows returned at most.
    pub limit: u32,
}

/// A delivery's state for one consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting until `visible_at` (due now or delayed).
    Pending,
    /// Leased to a consumer until `visible_at`.
    Leased,
    /// Acknowledged: done.
    Acked,
    /// Acknowledged and kept in the dead-letter store.
    Dead,
    /// Ended without running to completion: cancelled by the job itself, an operator or a
    /// purge. Final, like `acked`.
    Cancelled,
}

impl DeliveryState {
    /// As stored and in the API: `pending`, `leased`, `acked`, `dead`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Leased => "leased",
            DeliveryState::Acked => "acked",
            DeliveryState::Dead => "dead",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    /// The state of a text [`Self::as_str`] produced; `None` for any other.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "leased" => Some(DeliveryState::Leased),
            "acked" => Some(DeliveryState::Acked),
            "dead" => Some(DeliveryState::Dead),
            "cancelled" => Some(DeliveryState::Cancelled),
            _ => None,
        }
    }
}

/// A message's delivery to one consumer group.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    /// The consumer group this delivery is to.
    pub consumer_group: String,
    /// Where the delivery stands.
    pub state: DeliveryState,
    /// Leases taken so far (1 after the first delivery), whether or not the job ran.
    pub delivery_count: u32,
    /// Real runs of the job (SPEC.md, "Attempts vs deliveries"): a delivery that did not
    /// run it (a `/_vqs` receive, a lease given back unused) raises `delivery_count` only.
    pub attempts: u32,
    /// When it is next due (pending) or when its lease ends (leased).
    pub visible_at: DateTime<Utc>,
}

/// Parameters of [`QueueStore::message_list`].
#[derive(Debug, Clone)]
pub struct MessageListParams {
    /// The topic (exact name, no pattern).
    pub topic: String,
    /// Ids returned at most.
    pub limit: u32,
}

/// A message and its deliveries.
#[derive(Debug, Clone, Serialize)]
pub struct MessageRecord {
    /// The message's id (`msg_…`).
    pub id: String,
    /// The topic it was published to.
    pub topic: String,
    /// The body's MIME type.
    pub content_type: String,
    /// The body as the admin API shows it: JSON when it is JSON, else text.
    pub payload: serde_json::Value,
    /// When it was published.
    pub created_at: DateTime<Utc>,
    /// When its retention ends: it is pruned after this, finished or not.
    pub expires_at: DateTime<Utc>,
    /// The idempotency key it was sent with, if any.
    pub idempotency_key: Option<String>,
    /// The message's group key (SPEC.md, "Flow control"); `None`: ungrouped.
    pub group_key: Option<String>,
    /// The message's priority (−100..=100, lower starts first; SPEC.md, "Flow control").
    pub priority: i16,
    /// One per consumer group it was fanned out to.
    pub deliveries: Vec<DeliveryRecord>,
}

/// Per-topic counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TopicStats {
    /// The topic the counts are of.
    pub topic: String,
    /// Deliveries pending and due now.
    pub waiting: i64,
    /// Deliveries pending and not due yet (a send delay or a retry backoff).
    pub delayed: i64,
    /// Deliveries leased to a consumer.
    pub running: i64,
    /// Deliveries acknowledged (done) and still kept.
    pub succeeded: i64,
    /// Failed attempts recorded (execution rows, not deliveries: one delivery may fail
    /// several times).
    pub failed: i64,
    /// Deliveries dead-lettered and still kept.
    pub dead: i64,
    /// Deliveries cancelled (by the job, an operator or a purge).
    pub cancelled: i64,
}

/// Live counts of one topic, read from unfinished deliveries only, so the cost follows the
/// queue's depth, not its history (health, dashboard and `/metrics` poll it).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TopicDepth {
    /// The topic the counts are of.
    pub topic: String,
    /// Due now, not leased.
    pub waiting: i64,
    /// Not due yet (a send delay or a retry backoff).
    pub delayed: i64,
    /// Leased to a consumer whose lease has not expired.
    pub running: i64,
    /// The `visible_at` of the oldest due delivery: how long the head of the queue has waited.
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// Rows in the dead-letter store.
    pub dead_letters: i64,
}

/// Per-topic depth from the rows a backend read: `due` as (topic, count, oldest
/// `visible_at`), `not_due` as (topic, pending, leased), `dead` as (topic, dead letters).
/// A topic may appear more than once (one row per consumer group); counts add up.
pub fn topic_depths(
    due: impl IntoIterator<Item = (String, i64, Option<DateTime<Utc>>)>,
    not_due: impl IntoIterator<Item = (String, i64, i64)>,
    dead: impl IntoIterator<Item = (String, i64)>,
) -> Vec<TopicDepth> {
    let mut by_topic: std::collections::BTreeMap<String, TopicDepth> = Default::default();
    fn at(m: &mut std::collections::BTreeMap<String, TopicDepth>, topic: String) -> &mut TopicDepth {
        m.entry(topic.clone()).or_insert_with(|| TopicDepth { topic, ..TopicDepth::default() })
    }
    for (topic, n, oldest) in due {
        let d = at(&mut by_topic, topic);
        d.waiting += n;
        d.oldest_due_at = match (d.oldest_due_at, oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    for (topic, pending, leased) in not_due {
        let d = at(&mut by_topic, topic);
        d.delayed += pending;
        d.running += leased;
    }
    for (topic, n) in dead {
        at(&mut by_topic, topic).dead_letters += n;
    }
    by_topic.into_values().collect()
}

/// Read live counts per topic.
#[derive(Debug, Clone)]
pub struct QueueDepthParams {
    /// The queue's clock at the read: what is due, delayed or leased is judged at it.
    pub now: DateTime<Utc>,
}

/// Executions per topic started since an instant (throughput).
#[derive(Debug, Clone)]
pub struct ExecutionCountParams {
    /// Executions started at or after this are counted.
    pub since: DateTime<Utc>,
}

/// How many executions of one topic started in the window, by status.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ExecutionCounts {
    /// The topic the counts are of.
    pub topic: String,
    /// Executions still running.
    pub running: i64,
    /// Executions that ended `success`.
    pub success: i64,
    /// Executions that ended `failed`.
    pub failed: i64,
    /// Executions that ended `snoozed`.
    pub snoozed: i64,
    /// Executions that ended `cancelled`.
    pub cancelled: i64,
}

/// Report a running job's progress (replaces the previous report of the same delivery).
#[derive(Debug, Clone)]
pub struct ProgressPutParams {
    /// The message the job is running.
    pub message_id: String,
    /// The consumer group of the delivery.
    pub consumer_group: String,
    /// The job's topic.
    pub topic: String,
    /// Units of work done so far (the job's own unit: items, pages, bytes).
    pub done: u64,
    /// `None` when the total is not known.
    pub total: Option<u64>,
    /// A short human-readable note shown with the progress (`None`: no note).
    pub note: Option<String>,
    /// The queue's clock at the report: its `updated_at`.
    pub now: DateTime<Utc>,
}

/// Progress reports, most recently updated first.
#[derive(Debug, Clone, Default)]
pub struct ProgressListParams {
    /// One message's reports only; `None`: every message's.
    pub message_id: Option<String>,
    /// Reports returned at most.
    pub limit: u32,
}

/// The latest progress a job reported for one delivery.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProgressRecord {
    /// The message the job is running.
    pub message_id: String,
    /// The consumer group of the delivery.
    pub consumer_group: String,
    /// The job's topic.
    pub topic: String,
    /// Units of work done so far, in the job's own unit.
    pub done: u64,
    /// Units in all; `None` when the job did not know.
    pub total: Option<u64>,
    /// The job's note, if it gave one.
    pub note: Option<String>,
    /// When the job last reported.
    pub updated_at: DateTime<Utc>,
}

/// A sync job's record of one account (or any key it syncs separately).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SyncLogRecord {
    /// The job's topic.
    pub topic: String,
    /// The key synced separately (an account id, a tenant).
    pub key: String,
    /// Where the next run starts (the upstream's cursor after the last success).
    pub cursor: Option<String>,
    /// When the key was last attempted, successfully or not.
    pub last_attempt_at: DateTime<Utc>,
    /// When the key last synced successfully (`None`: never).
    pub last_success_at: Option<DateTime<Utc>>,
    /// The error of the last attempt; `None` when it succeeded.
    pub last_error: Option<String>,
    /// Items synced by the last successful run.
    pub items_synced: u64,
}

/// Record one attempt of syncing a key: on success the cursor moves and `last_success_at`
/// is set; on failure only the error and the attempt time change.
#[derive(Debug, Clone)]
pub struct SyncLogPutParams {
    /// The sync job's topic.
    pub topic: String,
    /// The key synced.
    pub key: String,
    /// How the attempt ended.
    pub outcome: SyncOutcome,
    /// The queue's clock at the attempt: `last_attempt_at` (and `last_success_at` on
    /// success).
    pub now: DateTime<Utc>,
}

/// How a sync attempt of one key ended.
#[derive(Debug, Clone)]
pub enum SyncOutcome {
    /// The run synced the key: its cursor moves and `last_success_at` is set.
    Success {
        /// Where the next run starts (the upstream's cursor after this run); `None`: from the
        /// beginning.
        cursor: Option<String>,
        /// Items this run synced.
        items_synced: u64,
    },
    /// The run failed: only the error and the attempt time change; the cursor stays.
    Failure {
        /// What went wrong, shown as the key's `last_error`.
        error: String,
    },
}

/// How much of each payload a list of dead letters reads: the first 1 KiB. A list never
/// loads whole payloads (50 dead letters of 20 MB would be 1 GB); one dead letter read by
/// id ([`QueueStore::dead_letter_get`]) has all of it.
pub const PAYLOAD_PREVIEW_BYTES: u32 = 1024;

/// A message kept after its last attempt.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterRecord {
    /// The dead letter's id, what the admin API and the settle, get and delete calls name.
    pub id: i64,
    /// The id of the message that died.
    pub message_id: String,
    /// The topic it was published to.
    pub topic: String,
    /// The consumer group it died in (a replay goes to this group only).
    pub consumer_group: String,
    /// The body's MIME type.
    pub content_type: String,
    /// The payload (JSON when it is JSON, else text) — in a list, only its first
    /// [`PAYLOAD_PREVIEW_BYTES`], as text when that cut it (`payload_truncated`).
    pub payload: serde_json::Value,
    /// The whole payload's size in bytes.
    pub payload_bytes: u64,
    /// True when `payload` is a preview: the first [`PAYLOAD_PREVIEW_BYTES`] only.
    pub payload_truncated: bool,
    /// Why it died: the last attempt's error (or the dead-lettering reason).
    pub error: String,
    /// Real runs of the job made before it died.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub created_at: DateTime<Utc>,
    /// The message's trace context as a JSON object (a replay carries it on).
    #[serde(skip)]
    pub headers_json: Option<String>,
    /// The message's group key (a replay keeps it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
    /// The message's priority (a replay keeps it).
    pub priority: i16,
}

/// Save a job's checkpoint for its next attempt.
#[derive(Debug, Clone)]
pub struct CheckpointPutParams {
    /// The message the job is running.
    pub message_id: String,
    /// The consumer group of the delivery: each group's attempts see their own checkpoint.
    pub consumer_group: String,
    /// The checkpoint, any JSON the job chooses (replaces the previous one).
    pub value: serde_json::Value,
    /// The queue's clock at the save.
    pub now: DateTime<Utc>,
}

/// [`QueueStore::execution_close_outlived`]: close attempts of messages this database holds no
/// delivery of (pushed by another queue service, e.g. Vercel Queues) that are still `running`
/// although they started in `[started_after, started_before)`.
#[derive(Debug, Clone)]
pub struct OutlivedParams {
    /// The queue's clock at the call: the closed attempts' `finished_at`.
    pub now: DateTime<Utc>,
    /// Only attempts started at or after this.
    pub started_after: DateTime<Utc>,
    /// Only attempts started before this: now minus the longest run the host allows.
    pub started_before: DateTime<Utc>,
    /// At most this many rows.
    pub limit: u32,
}

/// Maintenance knobs for one pass. A `max_*` of 0 means no count limit.
#[derive(Debug, Clone)]
pub struct MaintenanceParams {
    /// The queue's clock at the pass: retention ages count back from it.
    pub now: DateTime<Utc>,
    /// Delete execution rows older than this many seconds.
    pub execution_retention_seconds: u64,
    /// Keep at most this many execution rows (the newest).
    pub max_executions: u64,
    /// Delete finished messages (every delivery acknowledged or dead) created longer ago than this.
    pub message_retention_seconds: u64,
    /// Keep at most this many messages; only finished ones are deleted to get there.
    pub max_messages: u64,
    /// Delete cron runs older than this many seconds.
    pub cron_run_retention_seconds: u64,
    /// Keep at most this many runs per cron (path and schedule).
    pub max_cron_runs: u64,
    /// Delete dead letters older than this many seconds.
    pub dead_letter_retention_seconds: u64,
    /// At most this many rows per table per pass, so a pass never stalls the queue.
    pub batch: u32,
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    /// `running` executions closed as failed because their lease expired.
    pub executions_rescued: u64,
    /// Messages past their retention deleted.
    pub messages_pruned: u64,
    /// Finished messages deleted by the retention policy (age or count).
    pub finished_messages_pruned: u64,
    /// Execution rows past retention deleted.
    pub executions_pruned: u64,
    /// Dead letters past retention deleted.
    pub dead_letters_pruned: u64,
    /// Cron runs left `running` for over an hour (their process died) closed as failed.
    pub cron_runs_rescued: u64,
    /// Cron runs past retention (age or count) deleted.
    pub cron_runs_pruned: u64,
    /// Expired message-group push slots (`flow_group_slots`) deleted.
    pub flow_group_slots_pruned: u64,
    /// Idle message-group rows (`flow_groups`: nothing pending or leased in the group, no
    /// unexpired slot, its rate bucket in the past) deleted; a later message recreates one.
    pub flow_groups_pruned: u64,
}

impl MaintenanceReport {
    /// True when the pass did nothing.
    pub fn is_empty(&self) -> bool {
        *self == MaintenanceReport::default()
    }

    /// True when some table hit the batch limit: another pass has more to do.
    pub fn hit_batch_limit(&self, batch: u32) -> bool {
        let b = u64::from(batch.max(1));
        [
            self.messages_pruned,
            self.finished_messages_pruned,
            self.executions_pruned,
            self.dead_letters_pruned,
            self.cron_runs_pruned,
            self.flow_group_slots_pruned,
            self.flow_groups_pruned,
        ]
        .iter()
        .any(|n| *n >= b)
    }
}

/// Claim one scheduled tick of a cron (unique per path, schedule and instant).
#[derive(Debug, Clone)]
pub struct CronRunStartParams {
    /// The cron route's path, as `vercel.json` names it.
    pub path: String,
    /// The cron expression as `vercel.json` declares it.
    pub schedule: String,
    /// The instant the schedule named (whole minute, UTC).
    pub scheduled_at: DateTime<Utc>,
    /// The queue's clock at the claim: the run's `started_at`.
    pub now: DateTime<Utc>,
}

/// Record how a cron invocation ended.
#[derive(Debug, Clone)]
pub struct CronRunFinishParams {
    /// The run's id, as [`QueueStore::cron_run_start`] returned it.
    pub id: i64,
    /// The HTTP status the route answered, when it answered.
    pub status_code: Option<u16>,
    /// True when the invocation succeeded (a 2xx answer).
    pub success: bool,
    /// Why it failed (a non-2xx status, a transport error); `None` on success.
    pub error: Option<String>,
    /// The queue's clock at the end: the run's `finished_at`.
    pub now: DateTime<Utc>,
}

/// One cron invocation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CronRunRecord {
    /// The run's id.
    pub id: i64,
    /// The cron route's path.
    pub path: String,
    /// The cron expression it ran under.
    pub schedule: String,
    /// The tick it ran for (whole minute, UTC).
    pub scheduled_at: DateTime<Utc>,
    /// When the invocation began.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while running.
    pub finished_at: Option<DateTime<Utc>>,
    /// How long the invocation took; `None` while running.
    pub duration_ms: Option<i64>,
    /// The HTTP status the route answered; `None` while running or when it never answered.
    pub status_code: Option<u16>,
    /// `running`, `success` or `failed`.
    pub outcome: String,
    /// Why it failed; `None` on success or while running.
    pub error: Option<String>,
}

/// The latest run and the last success of one (path, schedule).
#[derive(Debug, Clone, Serialize)]
pub struct CronRunSummary {
    /// The cron route's path.
    pub path: String,
    /// The cron expression.
    pub schedule: String,
    /// The most recent run (`None`: never ran).
    pub last_run: Option<CronRunRecord>,
    /// When a run last succeeded (`None`: never).
    pub last_success_at: Option<DateTime<Utc>>,
}

/// Take (or take over an expired) named lock.
#[derive(Debug, Clone)]
pub struct CronLockParams {
    /// The lock's name: callers that name the same lock exclude each other.
    pub name: String,
    /// Who holds it: only the owner releases it.
    pub owner: String,
    /// How long the lock is held from `now` without an extension, in seconds: after that
    /// anyone may take it over.
    pub ttl_seconds: u32,
    /// The queue's clock at the call.
    pub now: DateTime<Utc>,
}

/// Extend a held named lock: it is held by `owner` until `now + ttl`.
pub type CronLockExtendParams = CronLockParams;

/// Record that a process is alive: its lifeline beats.
#[derive(Debug, Clone)]
pub struct ProcessBeatParams {
    /// The beating process's id, as its lease holder name
    /// ([`DeliveryClaimParams::lease_holder`]).
    pub process_id: String,
    /// The queue's clock at the beat: the process's last beat.
    pub now: DateTime<Utc>,
}

/// Find the processes whose last beat is older than `dead_before`, forget them, and make
/// the leases they held due at once (the next claim closes their `running` executions as
/// abandoned and leases them again).
#[derive(Debug, Clone)]
pub struct ProcessRescueParams {
    /// Processes whose last beat is older than this are presumed dead.
    pub dead_before: DateTime<Utc>,
    /// The process asking: never presumed dead by itself, however late its own last beat.
    pub rescuer: String,
    /// The queue's clock at the rescue: their leases become due at it.
    pub now: DateTime<Utc>,
}

/// What a rescue found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessRescueReport {
    /// Processes presumed dead (no beat within the threshold), now forgotten.
    pub processes: u64,
    /// Their leases, made due at once.
    pub deliveries: u64,
}

/// Record that a message living in another queue service (Vercel's) is cancelled
/// ([`QueueStore::remote_cancel_record`]).
#[derive(Debug, Clone)]
pub struct RemoteCancelParams {
    /// The id of the message in the other queue service.
    pub message_id: String,
    /// Recorded as the `error` of the cancelled attempt when a delivery of it arrives.
    pub reason: String,
    /// Kept until then (the longest a message can live); earlier records that expired are
    /// removed in the same write.
    pub expires_at: DateTime<Utc>,
    /// The queue's clock at the call: when the cancel was recorded, and what expired
    /// records are judged by.
    pub now: DateTime<Utc>,
}

/// Read a remote cancel ([`QueueStore::remote_cancel_get`]).
#[derive(Debug, Clone)]
pub struct RemoteCancelGetParams {
    /// The id of the message in the other queue service.
    pub message_id: String,
}

/// Pause or resume a topic ([`QueueStore::topic_control_set`]).
#[derive(Debug, Clone)]
pub struct TopicControlSetParams {
    /// A valid topic name (the facade checks it).
    pub topic: String,
    /// True: no delivery of the topic is claimed until it is set false again.
    pub paused: bool,
    /// The queue's clock at the call: the control's `updated_at`.
    pub now: DateTime<Utc>,
}

/// List the topics' controls ([`QueueStore::topic_control_list`]).
#[derive(Debug, Clone, Default)]
pub struct TopicControlListParams {
    /// Only the paused topics (what every process polls).
    pub paused_only: bool,
}

/// Pause or resume one message group of a topic ([`QueueStore::group_pause_set`]).
#[derive(Debug, Clone)]
pub struct GroupPauseSetParams {
    /// A valid topic name (the facade checks it).
    pub topic: String,
    /// A valid group key (1–256 characters, no control characters; the facade checks it).
    pub group_key: String,
    /// True: no delivery of the topic's messages of this group is claimed until it is
    /// set false again (the row is then removed).
    pub paused: bool,
    /// The queue's clock at the call: the pause's `paused_at`.
    pub now: DateTime<Utc>,
}

/// List the paused message groups ([`QueueStore::group_pause_list`]).
#[derive(Debug, Clone, Default)]
pub struct GroupPauseListParams {
    /// Only this topic's; `None`: every topic's.
    pub topic: Option<String>,
    /// Only this group key's (with `topic`: is this one group paused?).
    pub group_key: Option<String>,
    /// At most this many, ordered by topic then group key.
    pub limit: u32,
}

/// One paused message group of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPause {
    /// The topic whose messages of the group are held.
    pub topic: String,
    /// The paused group key.
    pub group_key: String,
    /// When it was paused.
    pub paused_at: DateTime<Utc>,
}

/// A rate limit: a bucket of `limit` starts refilled at `limit` per `period_seconds` (GCRA:
/// at most `limit` at once, `limit` per period on average, never more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RateLimit {
    /// Starts per period, and the most allowed at once (the bucket's size); at least 1.
    pub limit: u32,
    /// The period in seconds over which `limit` starts refill; at least 1.
    pub period_seconds: u32,
}

/// A topic's limits (SPEC "Flow control"): a job type's defaults, an operator's overrides,
/// or the two merged (the limits in force). `None`: no such limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TopicLimits {
    /// Leased at once for each consumer group of the topic, across processes (replaces a
    /// trigger's `maxConcurrency` while set).
    pub concurrency: Option<u32>,
    /// Starts per consumer group of the topic, across processes.
    pub rate_limit: Option<RateLimit>,
    /// Leased at once per (consumer group, group key), across processes.
    pub group_concurrency: Option<u32>,
    /// Starts per (consumer group, group key) bucket, across processes (see
    /// [`DeliveryClaimParams::group_rate_limit`]).
    pub group_rate_limit: Option<RateLimit>,
}

impl TopicLimits {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == TopicLimits::default()
    }
}

/// A change to a topic's overrides: per field, `None` keeps it, `Some(None)` clears it,
/// `Some(Some(v))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicLimitsPatch {
    /// The concurrency override: `None` keeps it, `Some(None)` clears it, `Some(Some(n))`
    /// sets it.
    pub concurrency: Option<Option<u32>>,
    /// The rate limit override, patched the same way.
    pub rate_limit: Option<Option<RateLimit>>,
    /// The group concurrency override, patched the same way.
    pub group_concurrency: Option<Option<u32>>,
    /// The group rate limit override, patched the same way.
    pub group_rate_limit: Option<Option<RateLimit>>,
}

/// Change a topic's limit overrides ([`QueueStore::topic_limits_set`]).
#[derive(Debug, Clone)]
pub struct TopicLimitsSetParams {
    /// A valid topic name (the facade checks it, and the values).
    pub topic: String,
    /// Which overrides change, and to what.
    pub patch: TopicLimitsPatch,
    /// The queue's clock at the call: the row's `updated_at`.
    pub now: DateTime<Utc>,
}

/// Read a rate bucket ([`QueueStore::rate_bucket_get`]).
#[derive(Debug, Clone)]
pub struct RateBucketGetParams {
    /// The consumer group whose bucket it is.
    pub consumer_group: String,
    /// The bucket's topic (the empty string for a claim that named none).
    pub topic: String,
}

/// Take one start from a rate bucket ([`QueueStore::rate_bucket_take`]).
#[derive(Debug, Clone)]
pub struct RateBucketTakeParams {
    /// The consumer group whose bucket it is.
    pub consumer_group: String,
    /// The bucket's topic.
    pub topic: String,
    /// The rate limit in force (the bucket's size and refill).
    pub rate: RateLimit,
    /// The queue's clock at the call: whether a start is allowed is judged at it.
    pub now: DateTime<Utc>,
}

/// Give back the start a delivery took from its rate buckets ([`QueueStore::rate_bucket_credit`]):
/// the delivery snoozed (SPEC.md: "a snooze does not count as a start"), or a push that took
/// the topic's start was then deferred by its message group.
#[derive(Debug, Clone)]
pub struct RateBucketCreditParams {
    /// The consumer group whose buckets they are.
    pub consumer_group: String,
    /// The delivery's topic (names the topic's bucket).
    pub topic: String,
    /// The delivery's message: names its group when `group_key` is `None`.
    pub message_id: String,
    /// The topic's rate limit in force: the `(consumer_group, topic)` bucket is credited one
    /// of its emission intervals (`None`: the topic's bucket is left alone).
    pub rate: Option<RateLimit>,
    /// The message group's key (a push this database did not lease: the job type's
    /// [`crate::Jobbable::group`]); `None`: the group key of the consumer group's delivery of
    /// `message_id` in this database (a local lease), if it has one.
    pub group_key: Option<String>,
    /// The group rate limit in force: the group's bucket (`flow_groups.tat_us`) is credited
    /// one of its emission intervals (`None`: the group's bucket is left alone).
    pub group_rate: Option<RateLimit>,
}

/// A topic's limit overrides as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicLimitsRow {
    /// The topic the overrides apply to.
    pub topic: String,
    /// The operator's overrides (`None` fields: the job type's defaults apply).
    pub overrides: TopicLimits,
    /// When they last changed.
    pub updated_at: DateTime<Utc>,
}

/// The operator controls of one topic: a row per topic that was ever paused (the place limit
/// overrides will live too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicControl {
    /// The topic.
    pub topic: String,
    /// True while the topic is paused: none of its deliveries is claimed.
    pub paused: bool,
    /// When it was last paused or resumed.
    pub updated_at: DateTime<Utc>,
}

/// Revoke a dashboard session (sign-out) until it would have expired anyway.
#[derive(Debug, Clone)]
pub struct SessionRevokeParams {
    /// The session's nonce (never the token, never the whole cookie).
    pub nonce: String,
    /// When the session would have expired: the revocation is kept until then.
    pub expires_at: DateTime<Utc>,
    /// Revocations that expired before this are removed in the same write.
    pub now: DateTime<Utc>,
}

/// Publish many messages at once ([`QueueStore::message_send_many`]).
#[derive(Debug, Clone, Default)]
pub struct MessageSendManyParams {
    /// In the order their results are returned.
    pub messages: Vec<MessageSendParams>,
}

/// Make a message's waiting deliveries due now ([`QueueStore::message_run_now`]).
#[derive(Debug, Clone)]
pub struct MessageRunNowParams {
    /// The message to run now.
    pub message_id: String,
    /// The queue's clock at the call: the deliveries become due at it.
    pub now: DateTime<Utc>,
}

/// Cancel a message in every consumer group ([`QueueStore::message_cancel`]).
#[derive(Debug, Clone)]
pub struct MessageCancelParams {
    /// The message to cancel.
    pub message_id: String,
    /// Recorded as the `error` of the attempts it closes (e.g. "cancelled by an operator").
    pub reason: String,
    /// The queue's clock at the call: the closed attempts' `finished_at`.
    pub now: DateTime<Utc>,
}

/// What [`QueueStore::message_cancel`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCancelled {
    /// False: no such message (or pruned); nothing else is set.
    pub found: bool,
    /// Consumer groups whose pending delivery was cancelled: it will never run.
    pub pending: Vec<String>,
    /// Consumer groups whose delivery was leased (running, or waiting in a dispatcher's
    /// buffer): now `cancelled`, its `running` executions closed `cancelled`; the process
    /// running it must drop the job (it learns through [`QueueStore::delivery_cancelled`]
    /// or the backend's notification).
    pub running: Vec<String>,
    /// Consumer groups whose delivery had already finished, with how.
    pub finished: Vec<(String, DeliveryState)>,
    /// The message lives in another queue service (Vercel's): this store recorded the cancel
    /// ([`QueueStore::remote_cancel_record`]) and each delivery that arrives is acknowledged
    /// without running; the groups above are unknown here. Set by [`crate::Queue::cancel`].
    pub remote: bool,
}

/// Cancel every pending delivery of a topic ([`QueueStore::topic_purge`]).
#[derive(Debug, Clone)]
pub struct TopicPurgeParams {
    /// The topic to purge (exact name).
    pub topic: String,
    /// One consumer group only; `None`: every group.
    pub consumer_group: Option<String>,
    /// Count what would be cancelled; change nothing.
    pub dry_run: bool,
    /// The queue's clock at the call.
    pub now: DateTime<Utc>,
}

/// Which of these deliveries are cancelled ([`QueueStore::delivery_cancelled`]).
#[derive(Debug, Clone)]
pub struct DeliveryCancelledParams {
    /// (message id, consumer group) pairs: the deliveries a process is running.
    pub deliveries: Vec<(String, String)>,
}

/// Read one message with its deliveries ([`QueueStore::message_get`]).
#[derive(Debug, Clone)]
pub struct MessageGetParams {
    /// The message's id.
    pub id: String,
}

/// Find the messages holding an idempotency key ([`QueueStore::message_ids_by_key`]).
#[derive(Debug, Clone)]
pub struct MessageKeyLookupParams {
    /// The key, exactly.
    pub key: String,
    /// Ids returned at most.
    pub limit: u32,
}

/// Ask whether a message waits only because its group is full
/// ([`QueueStore::delivery_group_held`]).
#[derive(Debug, Clone)]
pub struct DeliveryGroupHeldParams {
    /// The message whose delivery is asked about.
    pub message_id: String,
    /// The topic's group rate limit in force: also say whether the group's bucket allows no
    /// start now.
    pub group_rate_limit: Option<RateLimit>,
    /// The queue's clock at the call: whether the bucket allows a start is judged at it.
    pub now: DateTime<Utc>,
}

/// The busiest message groups of a topic ([`QueueStore::flow_group_busiest`]).
#[derive(Debug, Clone)]
pub struct FlowGroupBusiestParams {
    /// Its grouped consumer groups are those subscribed to exactly this topic.
    pub topic: String,
    /// Groups returned at most (over all of the topic's grouped consumer groups).
    pub limit: u32,
    /// Pending deliveries counted per group at most (a group's backlog is never read further).
    pub waiting_cap: u32,
    /// The queue's clock at the call: a lease that ends at or before it is not running.
    pub now: DateTime<Utc>,
}

/// One message group's live work in one consumer group ([`QueueStore::flow_group_busiest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowGroupLoad {
    /// The consumer group whose deliveries these are.
    pub consumer_group: String,
    /// The message group's key.
    pub group_key: String,
    /// Live leases now (`leased`, lease not expired), plus unexpired push slots.
    pub running: u32,
    /// Pending deliveries (due or not), counted up to the params' `waiting_cap`.
    pub waiting: u32,
    /// The group concurrency the group's last claim applied (`None`: never claimed under one).
    pub concurrency: Option<u32>,
    /// The group's rate bucket (GCRA theoretical arrival time, µs since the epoch).
    pub tat_us: Option<i64>,
}

/// Start a push of one message group that this process did not lease (Vercel's) under the
/// group's limits ([`QueueStore::flow_group_start`]).
#[derive(Debug, Clone)]
pub struct FlowGroupStartParams {
    /// The consumer group the push is for.
    pub consumer_group: String,
    /// The pushed message's group key.
    pub group_key: String,
    /// The pushed message: its slot (a push of it again reuses the slot).
    pub message_id: String,
    /// At most this many pushes of the group hold a slot at once (`None`: no slot taken).
    pub concurrency: Option<u32>,
    /// Starts per the group's rate bucket (`flow_groups.tat_us`, the claim's bucket).
    pub rate: Option<RateLimit>,
    /// The slot frees itself at this time (a killed function's slot is not held forever).
    pub slot_until: DateTime<Utc>,
    /// The queue's clock at the call: slots that expired by then are freed, the bucket is
    /// judged at it.
    pub now: DateTime<Utc>,
}

/// What [`QueueStore::flow_group_start`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowGroupStart {
    /// Started: a start taken from the bucket (under a rate), a slot held (under a concurrency).
    Started,
    /// As many slots of the group held as its concurrency: nothing taken.
    Full,
    /// The group's bucket allows no start for another `wait_us` microseconds: nothing taken.
    RateLimited {
        /// Microseconds until the bucket allows a start.
        wait_us: i64,
    },
}

/// Free a push's group slot ([`QueueStore::flow_group_slot_release`]).
#[derive(Debug, Clone)]
pub struct FlowGroupSlotReleaseParams {
    /// The consumer group the push was for.
    pub consumer_group: String,
    /// The pushed message's group key.
    pub group_key: String,
    /// The pushed message, whose slot is freed (nothing when it holds none).
    pub message_id: String,
    /// The queue's clock: a group a grouped claim parked full of slots is woken at this
    /// instant when one is freed, not at the freed slot's end.
    pub now: DateTime<Utc>,
}

/// Why a due delivery waits because of its message group ([`QueueStore::delivery_group_held`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupHeld {
    /// Its group has as many live leases as its group concurrency.
    Concurrency,
    /// Its group's rate bucket allows no start now.
    RateLimit,
}

/// Count a consumer group's live leases ([`QueueStore::delivery_leased_count`]).
#[derive(Debug, Clone)]
pub struct DeliveryLeasedCountParams {
    /// The consumer group whose leases are counted.
    pub consumer_group: String,
    /// A lease that ends at or before `now` is not counted.
    pub now: DateTime<Utc>,
}

/// Find the topic of a message's delivery to a group ([`QueueStore::delivery_topic`]).
#[derive(Debug, Clone)]
pub struct DeliveryTopicParams {
    /// The message's id.
    pub message_id: String,
    /// The consumer group of the delivery.
    pub consumer_group: String,
}

/// Find when a consumer group's next delivery is due ([`QueueStore::delivery_next_due`]).
#[derive(Debug, Clone)]
pub struct DeliveryNextDueParams {
    /// The consumer group asked about.
    pub consumer_group: String,
}

/// Read a job's checkpoint ([`QueueStore::checkpoint_get`]).
#[derive(Debug, Clone)]
pub struct CheckpointGetParams {
    /// The message the job is running.
    pub message_id: String,
    /// The consumer group of the delivery.
    pub consumer_group: String,
}

/// Count every topic's messages by state ([`QueueStore::queue_stats`]).
#[derive(Debug, Clone)]
pub struct QueueStatsParams {
    /// What is due, delayed or leased is judged at this instant.
    pub now: DateTime<Utc>,
}

/// Read one key of a sync job's log ([`QueueStore::sync_log_get`]).
#[derive(Debug, Clone)]
pub struct SyncLogGetParams {
    /// The sync job's topic.
    pub topic: String,
    /// The key synced.
    pub key: String,
}

/// List a sync job's log ([`QueueStore::sync_log_list`]).
#[derive(Debug, Clone, Default)]
pub struct SyncLogListParams {
    /// One topic's keys; `None`: every topic's.
    pub topic: Option<String>,
}

/// List dead letters, newest first ([`QueueStore::dead_letter_list`]).
#[derive(Debug, Clone)]
pub struct DeadLetterListParams {
    /// Dead letters returned at most.
    pub limit: u32,
}

/// Read one dead letter with its whole payload ([`QueueStore::dead_letter_get`]).
#[derive(Debug, Clone)]
pub struct DeadLetterGetParams {
    /// The dead letter's id.
    pub id: i64,
}

/// Remove one dead letter for good, keeping no record ([`QueueStore::dead_letter_delete`]).
#[derive(Debug, Clone)]
pub struct DeadLetterDeleteParams {
    /// The dead letter's id.
    pub id: i64,
}

/// Put back a dead letter that settling took out ([`QueueStore::dead_letter_restore`]).
#[derive(Debug, Clone)]
pub struct DeadLetterRestoreParams {
    /// The dead letter as [`DeadLetterSettled::Settled`] returned it.
    pub letter: DeadLetterRecord,
    /// Its whole payload, as settling returned it.
    pub payload: Vec<u8>,
}

/// How many characters of an error's first line make a dead letter's fingerprint.
pub const DEAD_LETTER_FINGERPRINT_CHARS: usize = 200;

/// The fingerprint dead letters are grouped by ([`QueueStore::dead_letter_groups`]): the
/// error's first line (up to the first `\n`), at most [`DEAD_LETTER_FINGERPRINT_CHARS`]
/// characters. Errors that differ only in their details below the first line (a backtrace,
/// a response body) fall in one group; ids or numbers on the first line make groups of their
/// own. Both backends compute the same value in SQL; this is its definition.
///
/// ```
/// use vqs::store::dead_letter_fingerprint;
/// assert_eq!(dead_letter_fingerprint("upstream 503\nbody: …"), "upstream 503");
/// assert_eq!(dead_letter_fingerprint(&"x".repeat(300)).chars().count(), 200);
/// ```
pub fn dead_letter_fingerprint(error: &str) -> String {
    error.split('\n').next().unwrap_or("").chars().take(DEAD_LETTER_FINGERPRINT_CHARS).collect()
}

/// Dead letters grouped by topic and error fingerprint ([`QueueStore::dead_letter_groups`]).
#[derive(Debug, Clone)]
pub struct DeadLetterGroupsParams {
    /// Groups returned at most (the largest first).
    pub limit: u32,
}

/// The dead letters of one topic sharing an error fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterGroup {
    /// The topic of the dead letters.
    pub topic: String,
    /// [`dead_letter_fingerprint`] of their errors: with the topic, what names the group.
    pub error: String,
    /// How many dead letters the group holds.
    pub count: u64,
    /// When its oldest dead letter was kept.
    pub oldest_at: DateTime<Utc>,
    /// When its newest dead letter was kept.
    pub newest_at: DateTime<Utc>,
}

/// A page of one group's dead letter ids, oldest first ([`QueueStore::dead_letter_group_ids`]).
#[derive(Debug, Clone)]
pub struct DeadLetterGroupIdsParams {
    /// The group's topic.
    pub topic: String,
    /// The group's fingerprint ([`dead_letter_fingerprint`]).
    pub error: String,
    /// Ids above this one only (the keyset cursor; 0 for the first page).
    pub after_id: i64,
    /// Ids up to this one only: the newest when the bulk action began, so dead letters that
    /// arrive meanwhile (a replay failing again) are not taken in the same action.
    pub through_id: i64,
    /// Ids returned at most.
    pub limit: u32,
}

/// One rollup transaction ([`QueueStore::stats_rollup`]; see `crate::stats`).
#[derive(Debug, Clone)]
pub struct StatsRollupParams {
    /// The queue's clock at the pass: the depth sample's minute.
    pub now: DateTime<Utc>,
    /// Executions read at most after the cursor.
    pub batch: u32,
    /// Waiting messages per topic, kept as the depth of `now`'s minute.
    pub depth: Vec<(String, i64)>,
    /// Minutes before this are deleted.
    pub prune_before: DateTime<Utc>,
}

/// What a rollup transaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsRollupReport {
    /// Executions counted into the figures.
    pub counted: u64,
    /// Executions remembered as running.
    pub pending: u64,
    /// The batch was full: more may follow.
    pub more: bool,
    /// Another process held the rollup: nothing was done.
    pub skipped: bool,
}

/// Read the rollup's minutes ([`QueueStore::stats_series`]).
#[derive(Debug, Clone)]
pub struct StatsSeriesParams {
    /// One topic's; `None`: every topic's.
    pub topic: Option<String>,
    /// Minutes from this one on.
    pub since: DateTime<Utc>,
}

/// One topic's minute in the rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsMinuteRecord {
    /// The topic the figures are of.
    pub topic: String,
    /// The minute's start (UTC, whole minute).
    pub minute: DateTime<Utc>,
    /// The attempts that finished in the minute: counts and latency buckets.
    pub figures: crate::stats::MinuteFigures,
    /// Messages waiting (due, not leased) as sampled in that minute; `None` when no pass
    /// sampled it.
    pub depth: Option<i64>,
}

/// List cron runs, newest first ([`QueueStore::cron_run_list`]).
#[derive(Debug, Clone)]
pub struct CronRunListParams {
    /// One path's runs; `None`: every path's.
    pub path: Option<String>,
    /// Runs returned at most.
    pub limit: u32,
}

/// Summarise every cron that ever ran ([`QueueStore::cron_run_summary`]).
#[derive(Debug, Clone, Default)]
pub struct CronRunSummaryParams {}

/// Release a named lock ([`QueueStore::cron_lock_release`]).
#[derive(Debug, Clone)]
pub struct CronLockReleaseParams {
    /// The lock's name.
    pub name: String,
    /// Only the owner releases it.
    pub owner: String,
}

/// Ask whether a dashboard session was signed out ([`QueueStore::session_revoked`]).
#[derive(Debug, Clone)]
pub struct SessionRevokedParams {
    /// The session's nonce.
    pub nonce: String,
}

/// The storage backend: the seam a new backend implements (`vqs-sqlite` and `vqs-postgres`
/// do). The core calls nothing else of a backend; SQL lives behind it.
///
/// A backend is done when `vqs-store-tests`' `exercise` passes against it. The guarantees
/// it checks, which every implementation must keep:
///
/// - **Shape.** Methods are noun-first and take one params struct each (`XxxParams`), so
///   adding a field never changes a signature. Every method that depends on time takes
///   `now` in its params: the facade owns the clock, and a backend never reads the system
///   clock for queue state (a test runs on a manual clock).
/// - **Atomicity.** Each method is one transaction: it happens whole or not at all, and
///   no other call sees it half done. A settlement (ack, retry, dead letter) closes the
///   attempt's execution in the same transaction as it changes the delivery, so an
///   execution never reads `success` while its message is still leased.
/// - **One lease per message and group.** At any instant at most one receipt handle of a
///   delivery is live: a claim leases a delivery only when it is pending and due, or
///   leased with a lease that ended; concurrent claims (in this process or another) never
///   hand out the same delivery twice. A lease is named by its token: a settlement with a
///   stale handle fails with [`StoreError::LeaseLost`] and changes nothing.
/// - **Settled once.** Of two settlements of one delivery, at most one succeeds. A backend
///   that batches writes (group commit) must never put two acknowledgements of one
///   delivery in one statement — a multi-row statement reports which deliveries it
///   changed, not with which handle — so each goes in a statement of its own, in order
///   ([`crate::store_support::ack_rounds`]).
/// - **A refused value fails its own operation only.** When a batched write is refused
///   ([`StoreError::Refused`]), the batch is written again operation by operation so that
///   only the one that holds the bad value fails ([`crate::store_support::write_row_by_row`]).
/// - **Dedup within retention.** A send whose idempotency key matches a message of the same
///   topic still kept (within its retention, finished or not) queues nothing and reports
///   the original's id with `duplicate: true`; after the original expires the key is free.
/// - **Nothing lost.** A message is delivered to every consumer group subscribed to its
///   topic (exact name or `prefix*`) at send time or later (a late subscription gets the
///   messages not yet expired), until each delivery is acknowledged, dead-lettered or the
///   message expires.
/// - **Attempts counted once.** `delivery_count` rises with every lease; `attempts` rises
///   only with a lease that records its execution (`start_executions`); a lease given back
///   unused ([`QueueStore::delivery_release`]) takes both back down.
/// - **Executions closed exactly once.** A `running` execution is closed by its settlement,
///   by the claim that re-leases its expired lease ([`ABANDONED_ERROR`]), by maintenance,
///   or by [`QueueStore::execution_close_outlived`] — whichever comes first; a closed one
///   never changes again.
/// - **Decisions are the core's.** What is not SQL — why a lease operation failed, the stats
///   merge, topic patterns, the writer's batching rules — is written once in
///   [`crate::store_support`]; a backend supplies its statements and calls it.
/// - **Errors.** Missing rows are values (`None`, `false`, [`DeadLetterSettled::NotFound`]),
///   not errors, unless the method says otherwise; database failures are
///   [`StoreError::Database`] or [`StoreError::Refused`].
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Publish a message: fan it out to every subscribed consumer group, unless the
    /// idempotency key matches a message of the same topic that is still kept (within its
    /// retention, finished or not). Two sends of one key, however concurrent, queue one
    /// message. With [`OnDuplicate::Replace`] the key's message is replaced instead, or its
    /// key handed to a new one (see there); concurrent replaces of one key take turns, and
    /// a claim never leases the message with a payload a replace's answer says it replaced.
    async fn message_send(&self, p: MessageSendParams) -> Result<SendResult, StoreError>;
    /// Publish many messages in one transaction — all of them or, on an error, none — each
    /// as [`Self::message_send`] would (a duplicate key is reported, not an error; two of one
    /// key in the batch dedup too, or the second replaces the first), in as few round trips
    /// as the backend can. One result per message, in input order.
    async fn message_send_many(&self, p: MessageSendManyParams) -> Result<Vec<SendResult>, StoreError>;
    /// A message with its deliveries (`None`: no such message, or pruned).
    async fn message_get(&self, p: MessageGetParams) -> Result<Option<MessageRecord>, StoreError>;
    /// The ids of the messages of any topic that hold idempotency key `p.key`, newest first
    /// (an operator's search); a finished message is found while it is kept.
    async fn message_ids_by_key(&self, p: MessageKeyLookupParams) -> Result<Vec<String>, StoreError>;
    /// Why a delivery of the message that is due and pending waits because of its group:
    /// full under group concurrency (the admin API's `"held": "group_concurrency"`), or its
    /// bucket empty under `p.group_rate_limit` (`"rate_limit"`); `None` when neither.
    async fn delivery_group_held(&self, p: DeliveryGroupHeldParams) -> Result<Option<GroupHeld>, StoreError>;
    /// The busiest message groups (never the `""` pseudo-group of ungrouped messages) of the
    /// consumer groups subscribed grouped to exactly `p.topic`: those with live leases first,
    /// most first, then groups with work waiting (the next to run first), each with its
    /// live leases plus its unexpired push slots (`flow_group_slots`, Vercel's running pushes)
    /// as `running` and its pending deliveries counted up to `p.waiting_cap`; at most
    /// `p.limit`, a group with nothing live left out. Read through indexes: the live leases,
    /// the ready groups and each listed group's slice — never the whole backlog.
    async fn flow_group_busiest(&self, p: FlowGroupBusiestParams) -> Result<Vec<FlowGroupLoad>, StoreError>;
    /// A push this process did not lease (Vercel's) of a message group, under the group's
    /// limits, atomically per group across processes: with a concurrency, `Full` when that
    /// many unexpired slots of the group are held by other messages and live leases of the
    /// group's deliveries are held in this database (one limit for both: the grouped
    /// [`Self::delivery_claim`] counts unexpired slots beside its leases, under the same
    /// per-group serialisation); with a rate, `RateLimited`
    /// when its bucket (the grouped claim's `flow_groups.tat_us`) allows no start now;
    /// otherwise a start is taken from the bucket and a slot keyed by the message id held
    /// until `p.slot_until` (or its release), and `Started`. Held: nothing is taken.
    async fn flow_group_start(&self, p: FlowGroupStartParams) -> Result<FlowGroupStart, StoreError>;
    /// Free the slot [`Self::flow_group_start`] took for the message (none: nothing to do).
    async fn flow_group_slot_release(&self, p: FlowGroupSlotReleaseParams) -> Result<(), StoreError>;
    /// The ids of a topic's messages still to be worked, oldest first: those with a delivery
    /// pending or leased, and those no consumer group has subscribed to yet (what
    /// `vqs::testing`'s `assert_enqueued` reads).
    async fn message_list(&self, p: MessageListParams) -> Result<Vec<String>, StoreError>;

    /// Make every pending delivery of a message that is not yet due (delayed, or waiting
    /// for a retry) due at `now`, in every consumer group, and return how many. Leased,
    /// acknowledged and dead deliveries are untouched, and one already due is not counted.
    /// Its attempts and delivery count are unchanged. A backend shared by processes wakes
    /// their dispatchers (PostgreSQL: NOTIFY), as a publish does.
    async fn message_run_now(&self, p: MessageRunNowParams) -> Result<u64, StoreError>;

    /// Cancel a message in every consumer group, in one transaction: each pending or leased
    /// delivery becomes `cancelled` (a leased one's `running` executions are closed
    /// `cancelled` with `reason`; its lease can no longer be acknowledged, retried or
    /// dead-lettered), finished ones are reported as they are. When every delivery is then
    /// finished, the message's idempotency key stays held until the message expires, as for
    /// any finished message. A backend shared by processes tells them which message was
    /// cancelled (PostgreSQL: `NOTIFY vqs_control, 'cancel:<id>'`) so the one running it drops it.
    async fn message_cancel(&self, p: MessageCancelParams) -> Result<MessageCancelled, StoreError>;
    /// Cancel every pending (not leased) delivery of a topic, or of one consumer group of it;
    /// return how many messages were (with `dry_run`: would be) cancelled. In batches, so a
    /// large backlog does not hold one long transaction; a delivery leased meanwhile is left.
    async fn topic_purge(&self, p: TopicPurgeParams) -> Result<u64, StoreError>;
    /// Of the given deliveries, those that are `cancelled`: how a process that cannot be told
    /// (no LISTEN) learns which of its running jobs to drop, in one statement per poll.
    async fn delivery_cancelled(&self, p: DeliveryCancelledParams) -> Result<Vec<(String, String)>, StoreError>;

    /// Subscribe a consumer group (idempotent; a second call updates the initial delay);
    /// messages already in the topic and not expired are delivered too.
    async fn subscription_ensure(&self, p: SubscriptionEnsureParams) -> Result<(), StoreError>;
    /// Mark every consumer group subscribed to exactly `topic` `grouped` (a runtime group limit
    /// was set, or a message group of the topic is being paused), re-keying the live deliveries of each that was not; returns how many changed.
    /// Idempotent; a group already grouped is untouched.
    async fn subscription_group_topic(&self, p: SubscriptionGroupTopicParams) -> Result<u64, StoreError>;

    /// Lease up to `limit` due messages (pending and due, or leased with an expired lease),
    /// oldest due first, each to one caller only (see the trait's "one lease per message").
    /// Re-leasing an expired lease closes that delivery's `running` executions as failed
    /// ([`ABANDONED_ERROR`]); with `start_executions`, each new attempt's `running`
    /// execution is recorded in the same transaction. With `message_id`, the errors say why
    /// that message cannot be leased ([`StoreError::Locked`], [`StoreError::AlreadyAcknowledged`],
    /// [`StoreError::NotFound`]). Deliveries of a paused topic ([`QueueStore::topic_control_set`])
    /// are never leased: they stay pending, their counts unchanged. Nor are a paused message
    /// group's ([`QueueStore::group_pause_set`]); a consumer group subscribed `grouped` with no
    /// group limit in `p` claims through its ready groups, with no limit per group, while a
    /// group of a topic it subscribes to is paused, so that the paused group's backlog is not
    /// read (a backend may learn of another process's pause up to a second late, holding the
    /// group back by a filter meanwhile).
    async fn delivery_claim(&self, p: DeliveryClaimParams) -> Result<Vec<LeasedMessage>, StoreError>;
    /// Acknowledge: the delivery is done (and close the attempt's execution, if given, in the
    /// same transaction — even when the lease turns out to be lost). A stale or unknown
    /// handle is [`StoreError::LeaseLost`] or [`StoreError::NotFound`]
    /// ([`crate::store_support::lease_failure`] decides which). When the closing execution
    /// is [`ExecutionStatus::Cancelled`] (the job cancelled itself) the delivery ends
    /// `cancelled` instead of `acked`.
    async fn delivery_ack(&self, p: DeliveryAckParams) -> Result<(), StoreError>;
    /// Extend (or with 0 release) a lease; returns when it now ends. Fails as an ack does
    /// when the lease is no longer held.
    async fn delivery_set_visibility(&self, p: LeaseVisibilityParams) -> Result<DateTime<Utc>, StoreError>;
    /// Release a lease for another attempt after a delay (and close the attempt's execution,
    /// if given, in the same transaction). When the closing execution is
    /// [`ExecutionStatus::Snoozed`] the attempt is given back (`attempts` lowered by one, as
    /// [`Self::delivery_release`] does): a snooze does not count against `max_attempts`.
    async fn delivery_retry(&self, p: DeliveryRetryParams) -> Result<(), StoreError>;
    /// Give an unused lease back (see [`DeliveryReleaseParams`]): due at once, not counted.
    async fn delivery_release(&self, p: DeliveryReleaseParams) -> Result<(), StoreError>;
    /// Acknowledge and keep a dead letter, in one transaction (and close the attempt's
    /// execution, if given).
    async fn delivery_dead_letter(&self, p: DeliveryDeadLetterParams) -> Result<(), StoreError>;
    /// How many of a group's deliveries are leased with a lease that has not ended at `now`
    /// (the queue service's `Vqs-Max-Concurrency`).
    async fn delivery_leased_count(&self, p: DeliveryLeasedCountParams) -> Result<i64, StoreError>;
    /// The topic of a message's delivery to a consumer group (`None`: no such delivery). A
    /// lease's topic, for callers that name it (the `/_vqs` lease routes).
    async fn delivery_topic(&self, p: DeliveryTopicParams) -> Result<Option<String>, StoreError>;
    /// The earliest `visible_at` of a group's unfinished deliveries (for the dispatcher's sleep).
    async fn delivery_next_due(&self, p: DeliveryNextDueParams) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Record an attempt as `running`; returns its id.
    async fn execution_start(&self, p: ExecutionStartParams) -> Result<i64, StoreError>;
    /// Close a `running` execution; one already closed is left as it is (closed once).
    async fn execution_finish(&self, p: ExecutionFinishParams) -> Result<(), StoreError>;
    /// Executions matching the filter, newest first.
    async fn execution_list(&self, p: ExecutionListParams) -> Result<Vec<ExecutionRecord>, StoreError>;

    /// A delivery's saved checkpoint (`None`: none saved).
    async fn checkpoint_get(&self, p: CheckpointGetParams) -> Result<Option<serde_json::Value>, StoreError>;
    /// Save (replace) a delivery's checkpoint.
    async fn checkpoint_put(&self, p: CheckpointPutParams) -> Result<(), StoreError>;

    /// Every topic's counts by state (the dashboard's full table; reads history, so it is
    /// not polled). The merge of the backend's two reads is [`crate::store_support::topic_stats`].
    async fn queue_stats(&self, p: QueueStatsParams) -> Result<Vec<TopicStats>, StoreError>;
    /// Live counts per topic from unfinished deliveries only (cheap: polled by health and metrics).
    async fn queue_depth(&self, p: QueueDepthParams) -> Result<Vec<TopicDepth>, StoreError>;
    /// Executions started since `p.since`, per topic and status.
    async fn execution_counts(&self, p: ExecutionCountParams) -> Result<Vec<ExecutionCounts>, StoreError>;

    /// Replace a delivery's progress report.
    async fn progress_put(&self, p: ProgressPutParams) -> Result<(), StoreError>;
    /// Progress reports, most recently updated first.
    async fn progress_list(&self, p: ProgressListParams) -> Result<Vec<ProgressRecord>, StoreError>;

    /// One key of a sync job's log (`None`: never attempted).
    async fn sync_log_get(&self, p: SyncLogGetParams) -> Result<Option<SyncLogRecord>, StoreError>;
    /// Record one sync attempt of a key (see [`SyncLogPutParams`]).
    async fn sync_log_put(&self, p: SyncLogPutParams) -> Result<(), StoreError>;
    /// Every key of a topic (or of every topic), by key.
    async fn sync_log_list(&self, p: SyncLogListParams) -> Result<Vec<SyncLogRecord>, StoreError>;

    /// Dead letters, newest first, each with a preview of its payload ([`PAYLOAD_PREVIEW_BYTES`]).
    async fn dead_letter_list(&self, p: DeadLetterListParams) -> Result<Vec<DeadLetterRecord>, StoreError>;
    /// One dead letter with its whole payload.
    async fn dead_letter_get(&self, p: DeadLetterGetParams) -> Result<Option<DeadLetterRecord>, StoreError>;
    /// Remove a dead letter, keeping no record; false when there was none.
    async fn dead_letter_delete(&self, p: DeadLetterDeleteParams) -> Result<bool, StoreError>;
    /// Take a dead letter out and record the action, atomically: of concurrent calls exactly
    /// one settles it (see [`DeadLetterSettleParams`]).
    async fn dead_letter_settle(&self, p: DeadLetterSettleParams) -> Result<DeadLetterSettled, StoreError>;
    /// Put back a dead letter (its record and payload as settling returned them) whose replay
    /// could not be published elsewhere, and forget that it was settled.
    async fn dead_letter_restore(&self, p: DeadLetterRestoreParams) -> Result<(), StoreError>;
    /// Dead letters grouped by (topic, [`dead_letter_fingerprint`]), with counts and the oldest
    /// and newest time, the largest groups first (then by topic and fingerprint).
    async fn dead_letter_groups(&self, p: DeadLetterGroupsParams) -> Result<Vec<DeadLetterGroup>, StoreError>;
    /// A page of the ids of one group's dead letters, ascending (see [`DeadLetterGroupIdsParams`]).
    async fn dead_letter_group_ids(&self, p: DeadLetterGroupIdsParams) -> Result<Vec<i64>, StoreError>;
    /// One rollup transaction (see [`crate::stats`]): executions after the cursor (at most
    /// `p.batch`) and those remembered as running, counted into their finish minute with
    /// [`crate::stats::roll`]; the depth sample; minutes before `p.prune_before` deleted. Of
    /// concurrent calls one works and the others return `skipped` (or wait their turn).
    async fn stats_rollup(&self, p: StatsRollupParams) -> Result<StatsRollupReport, StoreError>;
    /// The rollup's minutes since `p.since`, by topic and minute.
    async fn stats_series(&self, p: StatsSeriesParams) -> Result<Vec<StatsMinuteRecord>, StoreError>;
    /// Keep a dead letter of a message delivered by another queue service (no message row here).
    async fn dead_letter_insert(&self, p: DeadLetterInsertParams) -> Result<i64, StoreError>;

    /// Rescue abandoned executions and prune by retention, in bounded batches (at most
    /// `p.batch` rows per table), so a pass never stalls the queue. Never deletes a message
    /// with a delivery still to be worked, unless the message expired.
    async fn maintenance_run(&self, p: MaintenanceParams) -> Result<MaintenanceReport, StoreError>;

    /// Close as failed ([`OUTLIVED_ERROR`]) the attempts [`OutlivedParams`] describes — those of
    /// messages with no delivery row here, whose lease lives in another queue service, so
    /// [`QueueStore::maintenance_run`] cannot see it run out. Returns how many were closed.
    async fn execution_close_outlived(&self, p: OutlivedParams) -> Result<u64, StoreError>;

    /// Claim a tick: `Some(run id)` for the one caller (in any process) that fires it,
    /// `None` if it was claimed already.
    async fn cron_run_start(&self, p: CronRunStartParams) -> Result<Option<i64>, StoreError>;
    /// Record how a cron run ended.
    async fn cron_run_finish(&self, p: CronRunFinishParams) -> Result<(), StoreError>;
    /// Runs, newest first, optionally of one path.
    async fn cron_run_list(&self, p: CronRunListParams) -> Result<Vec<CronRunRecord>, StoreError>;
    /// For every (path, schedule) that ever ran: its latest run and its last success.
    async fn cron_run_summary(&self, p: CronRunSummaryParams) -> Result<Vec<CronRunSummary>, StoreError>;
    /// True when the lock was free (or expired) and is now held by `owner` until `now + ttl`;
    /// of concurrent callers at most one gets it.
    async fn cron_lock_acquire(&self, p: CronLockParams) -> Result<bool, StoreError>;
    /// Extend a lock `owner` holds to `now + ttl`; false when it no longer holds it (another
    /// run took it after it expired, or maintenance removed it).
    async fn cron_lock_extend(&self, p: CronLockExtendParams) -> Result<bool, StoreError>;
    /// Release a lock `owner` holds; false if it held none.
    async fn cron_lock_release(&self, p: CronLockReleaseParams) -> Result<bool, StoreError>;

    /// Record a process's beat. True when the process was known; false when this beat
    /// registered it (its first, or one after it was presumed dead and forgotten).
    async fn process_beat(&self, p: ProcessBeatParams) -> Result<bool, StoreError>;
    /// Presume dead the processes that stopped beating and make their leases due now (never
    /// the rescuer itself).
    async fn process_rescue(&self, p: ProcessRescueParams) -> Result<ProcessRescueReport, StoreError>;

    /// Record that a message of another queue service is cancelled, so each delivery of it
    /// that arrives is acknowledged without running; true when newly recorded.
    async fn remote_cancel_record(&self, p: RemoteCancelParams) -> Result<bool, StoreError>;
    /// The reason a message of another queue service was cancelled, if it was.
    async fn remote_cancel_get(&self, p: RemoteCancelGetParams) -> Result<Option<String>, StoreError>;

    /// Pause or resume a topic (idempotent; concurrent identical calls leave one row) and
    /// return its controls as stored. While a topic is paused, [`QueueStore::delivery_claim`]
    /// leases none of its deliveries (publishing is unaffected, leases already taken stand).
    /// A backend that can notify other processes announces the change in the same
    /// transaction (PostgreSQL: `NOTIFY vqs_control`, `pause:<topic>` / `resume:<topic>`).
    async fn topic_control_set(&self, p: TopicControlSetParams) -> Result<TopicControl, StoreError>;
    /// The topics' controls, ordered by topic.
    async fn topic_control_list(&self, p: TopicControlListParams) -> Result<Vec<TopicControl>, StoreError>;
    /// Pause (`paused`: a `group_pauses` row) or resume (the row removed) one message group
    /// of a topic; idempotent, concurrent identical calls leave one row. While it is paused,
    /// [`QueueStore::delivery_claim`] leases none of the topic's deliveries whose message
    /// carries that group key, on every process at once (the claim reads the table), and a
    /// grouped consumer group skips the group in its ready set. Returns the pause as stored
    /// after a pause; after a resume the pause removed (`None`: the group was not paused).
    async fn group_pause_set(&self, p: GroupPauseSetParams) -> Result<Option<GroupPause>, StoreError>;
    /// The paused message groups, ordered by topic then group key.
    async fn group_pause_list(&self, p: GroupPauseListParams) -> Result<Vec<GroupPause>, StoreError>;
    /// Apply a patch to a topic's limit overrides (concurrent identical calls leave one row;
    /// the pause state is untouched) and return them as stored. A backend that can notify
    /// other processes announces `limits:<topic>` on `vqs_control` in the same transaction.
    async fn topic_limits_set(&self, p: TopicLimitsSetParams) -> Result<TopicLimitsRow, StoreError>;
    /// Every topic with an override, ordered by topic.
    async fn topic_limits_list(&self) -> Result<Vec<TopicLimitsRow>, StoreError>;
    /// A rate bucket's theoretical arrival time in microseconds since the epoch (`None`: the
    /// bucket was never used), for the admin API's `"held": "rate_limit"`.
    async fn rate_bucket_get(&self, p: RateBucketGetParams) -> Result<Option<i64>, StoreError>;
    /// Take one start from a rate bucket if it allows one now, atomically across processes
    /// (a push this process did not lease: Vercel's). `None`: taken; `Some(us)`: none is
    /// allowed for another `us` microseconds (nothing taken).
    async fn rate_bucket_take(&self, p: RateBucketTakeParams) -> Result<Option<i64>, StoreError>;
    /// Give back one start taken from the topic's bucket (`p.rate`) and/or the message group's
    /// bucket (`p.group_rate`): each bucket's theoretical arrival time is lowered by one
    /// emission interval of the rate given, atomically (concurrent takers and credits of a
    /// bucket never lose an update). A bucket that does not exist, or a `tat` already in the
    /// past, stays as it is in effect (GCRA judges `max(tat, now)`, so a credit never allows
    /// more than the burst). A no-op when both rates are `None`.
    ///
    /// Who calls it (the core's consumer, `crates/vqs/src/consumer.rs`), not the settlement:
    /// a snooze of a local lease settles through [`Self::delivery_retry`], but a snooze of a
    /// push this process did not lease (Vercel's) settles at Vercel's queue service, and that
    /// push took its starts through [`Self::rate_bucket_take`] / [`Self::flow_group_start`];
    /// one method called by the consumer covers both. So [`Self::delivery_retry`] never
    /// credits a bucket itself. A consumer also credits the topic's start when a push it took
    /// one for is then deferred by its message group.
    async fn rate_bucket_credit(&self, p: RateBucketCreditParams) -> Result<(), StoreError>;

    /// Record a signed-out dashboard session so every process refuses it.
    async fn session_revoke(&self, p: SessionRevokeParams) -> Result<(), StoreError>;
    /// True when the session with this nonce was signed out (and the revocation has not expired).
    async fn session_revoked(&self, p: SessionRevokedParams) -> Result<bool, StoreError>;

    /// Insert or update a runtime schedule; the record as stored.
    async fn schedule_upsert(&self, p: ScheduleUpsertParams) -> Result<ScheduleRecord, StoreError>;
    /// One schedule by name.
    async fn schedule_get(&self, p: ScheduleGetParams) -> Result<Option<ScheduleRecord>, StoreError>;
    /// A page of schedules ordered by name (see [`ScheduleListParams`]).
    async fn schedule_list(&self, p: ScheduleListParams) -> Result<Vec<ScheduleRecord>, StoreError>;
    /// How many schedules there are, or how many are overdue, at most `cap` (see
    /// [`ScheduleCountParams`]).
    async fn schedule_count(&self, p: ScheduleCountParams) -> Result<u64, StoreError>;
    /// Overdue enabled schedules, the most overdue first (see [`ScheduleOverdueParams`]).
    async fn schedule_overdue(&self, p: ScheduleOverdueParams) -> Result<Vec<ScheduleRecord>, StoreError>;
    /// Delete a schedule; true when it existed.
    async fn schedule_delete(&self, p: ScheduleDeleteParams) -> Result<bool, StoreError>;
    /// Enabled schedules due at `now`, the most overdue first (see [`ScheduleDueParams`]).
    async fn schedule_due(&self, p: ScheduleDueParams) -> Result<Vec<ScheduleRecord>, StoreError>;
    /// Fire one tick of a schedule: claim, record and publish in one transaction (see
    /// [`ScheduleFireParams`]).
    async fn schedule_fire(&self, p: ScheduleFireParams) -> Result<ScheduleFired, StoreError>;
    /// Record the message a claimed fire published (see [`ScheduleFireSentParams`]).
    async fn schedule_fire_sent(&self, p: ScheduleFireSentParams) -> Result<(), StoreError>;
    /// Claimed fires still to publish (see [`ScheduleUnsentParams`]).
    async fn schedule_unsent(&self, p: ScheduleUnsentParams) -> Result<Vec<ScheduleUnsent>, StoreError>;

    /// Cheap liveness probe: it takes no params (it asks nothing).
    async fn ping(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod extremes {
    use super::*;

    #[test]
    fn retention_cutoffs_at_the_extremes_neither_panic_nor_wrap() {
        let now: DateTime<Utc> = "2026-03-02T09:00:00Z".parse().unwrap();
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        for seconds in [u64::MAX, i64::MAX as u64, i64::MAX as u64 + 1, 99_999_999 * 86_400, 60 * 365 * 86_400] {
            assert_eq!(retention_cutoff(now, seconds), epoch, "{seconds}");
        }
        assert_eq!(retention_cutoff(now, 0), now);
        assert_eq!(retention_cutoff(now, 3600), now - chrono::Duration::hours(1));
        assert_eq!(retention_cutoff(DateTime::<Utc>::MIN_UTC, 1), epoch);
        assert_eq!((sql_count(u64::MAX), sql_count(0), sql_count(7)), (i64::MAX, 0, 7));
    }
}
