//! The decisions a storage backend makes that are not SQL, written once: each backend runs
//! its own statements and hands what they read to these functions.
//!
//! - [`lease_failure`]: why a settlement matched no lease (gone, finished, or lost);
//! - [`topic_stats`]: the merge of [`QueueStore::queue_stats`](crate::store::QueueStore::queue_stats)'s two reads;
//! - [`TopicPattern`]: what a subscription's `topic_pattern` matches;
//! - [`dead_letter_replay`] and [`already_settled`]: a dead letter's replay message, and the
//!   answer of a settlement that lost the race;
//! - the group-commit rules of a batching writer: [`drain_batch`] (how much one commit
//!   takes), [`ack_rounds`] (two acknowledgements of one delivery never share a statement)
//!   and [`write_row_by_row`] (a refused batch is written again one operation at a time);
//! - [`CountLimitBoundary`]: where a large retention count limit fell, remembered between
//!   maintenance passes instead of walked again at each.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::store::{
    DeadLetterAction, DeadLetterRecord, DeadLetterReplayOpts, DeadLetterSettled, LeaseParams, MessageSendParams,
    StoreError, TopicStats, split_receipt_handle,
};

/// Why a lease operation (ack, retry, visibility, dead letter, release) matched no row,
/// from the delivery's `state` as the backend read it afterwards (`None`: no delivery of
/// that message to that group).
///
/// - no delivery: [`StoreError::NotFound`];
/// - `acked` or `dead`: [`StoreError::NotFound`] ("already acknowledged");
/// - otherwise (pending again, leased under another token, or `cancelled` while it was
///   held): [`StoreError::LeaseLost`] — the holder's work no longer counts.
pub fn lease_failure(message_id: &str, consumer_group: &str, handle: &str, state: Option<&str>) -> StoreError {
    match state {
        None => StoreError::NotFound(format!("no message {message_id} for consumer group {consumer_group}")),
        Some("acked" | "dead") => StoreError::NotFound(format!("message {message_id} was already acknowledged")),
        Some(_) => StoreError::LeaseLost(format!("receipt handle {handle:?} no longer holds the lease")),
    }
}

/// One row of a backend's count of deliveries per topic, by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCountRow {
    /// The topic counted.
    pub topic: String,
    /// Pending or leased, and due (`visible_at <= now`).
    pub waiting: i64,
    /// Pending and not due yet.
    pub delayed: i64,
    /// Leased with a lease that has not ended.
    pub running: i64,
    /// Finished and acknowledged.
    pub acked: i64,
    /// Dead-lettered.
    pub dead: i64,
    /// Cancelled by an operator or by the job.
    pub cancelled: i64,
}

/// [`TopicStats`] per topic, by name, from the backend's two reads: delivery counts by state
/// (one row per topic) and failed executions (topic, count). A topic with failed executions
/// and no delivery left still appears.
pub fn topic_stats(
    deliveries: impl IntoIterator<Item = DeliveryCountRow>,
    failed: impl IntoIterator<Item = (String, i64)>,
) -> Vec<TopicStats> {
    let mut by_topic: BTreeMap<String, TopicStats> = BTreeMap::new();
    for r in deliveries {
        let s =
            by_topic.entry(r.topic.clone()).or_insert_with(|| TopicStats { topic: r.topic, ..TopicStats::default() });
        s.waiting += r.waiting;
        s.delayed += r.delayed;
        s.running += r.running;
        s.succeeded += r.acked;
        s.dead += r.dead;
        s.cancelled += r.cancelled;
    }
    for (topic, n) in failed {
        by_topic.entry(topic.clone()).or_insert_with(|| TopicStats { topic, ..TopicStats::default() }).failed += n;
    }
    by_topic.into_values().collect()
}

/// What a subscription's `topic_pattern` matches: one topic by name, or every topic that
/// starts with a prefix (`orders.*` → `orders.`; a lone `*` matches every topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    /// The topic name, or the prefix without its `*`.
    pub prefix: String,
    /// True when `prefix` is a prefix (the pattern ended in `*`).
    pub is_prefix: bool,
}

impl TopicPattern {
    /// A pattern as a subscription names it: a trailing `*` makes it a prefix.
    pub fn parse(pattern: &str) -> TopicPattern {
        match pattern.strip_suffix('*') {
            Some(prefix) => TopicPattern { prefix: prefix.to_owned(), is_prefix: true },
            None => TopicPattern { prefix: pattern.to_owned(), is_prefix: false },
        }
    }

    /// True when the pattern matches `topic` (what the backends' fan-out does in SQL).
    pub fn matches(&self, topic: &str) -> bool {
        if self.is_prefix { topic.starts_with(&self.prefix) } else { topic == self.prefix }
    }
}

/// The answer to one operation queued for a group commit.
pub type Reply<T> = tokio::sync::oneshot::Sender<Result<T, StoreError>>;

/// The callers' side of a group-commit writer: operations (`Op`, the backend's own enum,
/// each carrying its [`Reply`]) go into a queue that the backend's writer task(s) drain
/// ([`drain_batch`]) and answer. Cheap to clone; the receiver sees the queue close when the
/// last handle drops.
pub struct WriteQueue<Op> {
    tx: tokio::sync::mpsc::UnboundedSender<Op>,
    /// What a caller is told once no writer answers (it stopped, or its batch panicked).
    stopped: &'static str,
}

impl<Op> Clone for WriteQueue<Op> {
    fn clone(&self) -> Self {
        WriteQueue { tx: self.tx.clone(), stopped: self.stopped }
    }
}

impl<Op> std::fmt::Debug for WriteQueue<Op> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue").field("running", &self.is_running()).finish()
    }
}

impl<Op> WriteQueue<Op> {
    /// A queue and the receiver its writer task(s) drain. `stopped` is the error text
    /// callers get once no writer answers.
    pub fn new(stopped: &'static str) -> (WriteQueue<Op>, tokio::sync::mpsc::UnboundedReceiver<Op>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (WriteQueue { tx, stopped }, rx)
    }

    /// False once every writer has stopped (callers get an error; health says down).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Queue the operation `op` builds around its reply, and wait for the answer.
    pub async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send(op(reply)).map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> StoreError {
        StoreError::Database(self.stopped.into())
    }
}

/// Operations one group commit takes at most: `first`, then whatever `next` has ready, up to
/// `max` in all (at least `first`). `next` must not wait: it says what is queued now.
pub fn drain_batch<T>(first: T, max: usize, mut next: impl FnMut() -> Option<T>) -> Vec<T> {
    let mut out = vec![first];
    while out.len() < max {
        match next() {
            Some(op) => out.push(op),
            None => break,
        }
    }
    out
}

/// Split acknowledgements into rounds, each written as statements of its own, in order, so
/// that **two acknowledgements of one delivery never share a statement**: a multi-row
/// statement reports which deliveries it acknowledged, not with which receipt handle, so of
/// a stale lease's ack and the current one's in one statement both would read as done.
/// `delivery` names an operation's delivery (message id and consumer group); the first
/// round holds each delivery's first operation, the second its second, and so on. Order
/// within a round is input order.
/// The keys are borrowed from the operations (no copy of the names per acknowledgement).
pub fn ack_rounds<T>(ops: Vec<T>, delivery: impl Fn(&T) -> (&str, &str)) -> Vec<Vec<T>> {
    // An operation's round is how many of its delivery's came before it.
    let round_of: Vec<usize> = {
        let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(ops.len());
        ops.iter()
            .map(|op| {
                let n = seen.entry(delivery(op)).or_insert(0);
                *n += 1;
                *n - 1
            })
            .collect()
    };
    let mut rounds: Vec<Vec<T>> = Vec::new();
    for (op, round) in ops.into_iter().zip(round_of) {
        if round == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[round].push(op);
    }
    rounds
}

/// The delivery a lease operation names, as [`ack_rounds`] keys it: (consumer group, message
/// id). A receipt handle that does not parse is its own key (it fails alone anyway).
pub fn lease_delivery(lease: &LeaseParams) -> (&str, &str) {
    let message = split_receipt_handle(&lease.receipt_handle).map_or(lease.receipt_handle.as_str(), |(m, _)| m);
    (lease.consumer_group.as_str(), message)
}

/// The message a dead letter's replay publishes: its payload, content type and trace
/// headers, to the consumer group it died in only, due at once.
pub fn dead_letter_replay(
    letter: &DeadLetterRecord,
    payload: &[u8],
    opts: &DeadLetterReplayOpts,
    now: DateTime<Utc>,
) -> MessageSendParams {
    MessageSendParams {
        // The group is kept: a replay is limited with its group as the original was.
        group_key: letter.group_key.clone(),
        // And its priority: a replay is ordered as the original was.
        priority: letter.priority,
        topic: letter.topic.clone(),
        payload: payload.to_vec(),
        content_type: letter.content_type.clone(),
        idempotency_key: None,
        on_duplicate: Default::default(),
        delay_seconds: 0,
        retention_seconds: opts.retention_seconds,
        headers_json: letter.headers_json.clone(),
        only_group: Some(letter.consumer_group.clone()),
        now,
    }
}

/// What a settlement that lost the race answers, from the settlement record the winner
/// left: its action as stored ([`DeadLetterAction::past_tense`]), when, and the replay's
/// message. An action this version does not know is a database error.
pub fn already_settled(
    action: &str,
    at: DateTime<Utc>,
    message_id: Option<String>,
) -> Result<DeadLetterSettled, StoreError> {
    let action = DeadLetterAction::parse_past_tense(action)
        .ok_or_else(|| StoreError::Database(format!("unknown dead-letter action {action:?}")))?;
    Ok(DeadLetterSettled::AlreadySettled { action, at, message_id })
}

/// Whether a batch that failed with `error` is written again one operation at a time: only
/// when the database refused a value ([`StoreError::Refused`], the same input fails the same
/// way again) and the batch held more than one operation, so that only the operation that
/// holds the value fails. Any other error fails the whole batch.
pub fn write_row_by_row(error: &StoreError, operations: usize) -> bool {
    matches!(error, StoreError::Refused(_)) && operations > 1
}

/// Where a retention count limit (`max_messages`, `max_executions`) fell when it was last
/// found: the newest row beyond the limit, or none. Finding it is an `OFFSET` walk over
/// `limit` index entries — with the default million, 0.2–0.8 s of a database core (more
/// when the table's visibility map is not set) — and the maintenance loop runs a pass every
/// 15 s, or every 250 ms while a pass fills its batch: a queue busy enough to keep a
/// million messages would have walked a million entries several times a second. So a
/// limit of [`CountLimitBoundary::REMEMBERED_FROM`] or more is walked at most once per
/// [`CountLimitBoundary::FOR`] per process, and pruned up to the boundary found meanwhile.
///
/// Why a remembered boundary is safe: rows newer than it only ever get added (ids grow),
/// which moves the true boundary newer, so the remembered one prunes less than it could,
/// never a row within the newest `limit`. (Rows newer than the boundary deleted meanwhile —
/// expired messages, an operator's purge; age prunes the oldest first — let it prune that
/// many too many until the next walk.) Smaller limits are walked at every pass: that is
/// cheap, and exact.
#[derive(Debug)]
pub struct CountLimitBoundary<T> {
    /// The limit it was found for, the boundary, and when.
    found: std::sync::Mutex<Option<(u64, Option<T>, std::time::Instant)>>,
}

impl<T> Default for CountLimitBoundary<T> {
    fn default() -> Self {
        CountLimitBoundary { found: std::sync::Mutex::new(None) }
    }
}

impl<T: Clone> CountLimitBoundary<T> {
    /// Limits at least this large are remembered.
    pub const REMEMBERED_FROM: u64 = 100_000;
    /// How long a boundary is used before it is walked again.
    pub const FOR: std::time::Duration = std::time::Duration::from_secs(60);

    /// The boundary for `limit` found less than [`Self::FOR`] ago (`Some(None)`: the table
    /// was within the limit), or `None` when it must be walked.
    fn remembered(&self, limit: u64) -> Option<Option<T>> {
        if limit < Self::REMEMBERED_FROM {
            return None;
        }
        let found = self.found.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*found {
            Some((l, b, at)) if *l == limit && at.elapsed() < Self::FOR => Some(b.clone()),
            _ => None,
        }
    }

    /// The boundary for `limit`: the remembered one, or what `walk` finds now (remembered).
    pub async fn get_or_walk<E, F>(&self, limit: u64, walk: impl FnOnce() -> F) -> Result<Option<T>, E>
    where
        F: std::future::Future<Output = Result<Option<T>, E>>,
    {
        if let Some(found) = self.remembered(limit) {
            return Ok(found);
        }
        let found = walk().await?;
        self.remember(limit, found.clone());
        Ok(found)
    }

    /// Remember what a walk for `limit` found.
    fn remember(&self, limit: u64, boundary: Option<T>) {
        if limit >= Self::REMEMBERED_FROM {
            *self.found.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((limit, boundary, std::time::Instant::now()));
        }
    }
}

/// A store's remembered count-limit boundaries, one per limited table.
#[derive(Debug, Default)]
pub struct CountLimitBoundaries {
    /// The newest message id beyond `max_messages`.
    pub messages: CountLimitBoundary<String>,
    /// The newest execution id beyond `max_executions`.
    pub executions: CountLimitBoundary<i64>,
}

/// The message a schedule's fire publishes: the schedule's topic and payload (JSON text), to
/// every subscriber, due at once, under the idempotency key `schedule:<name>:<tick>` — so a
/// tick published twice (a fire record pruned, a trigger at the same instant) is still one
/// message.
/// The `kind` a schedule fire is recorded under: `trigger`, `due` or (a skipped missed
/// tick) `missed`.
pub fn schedule_fire_kind(p: &crate::store::ScheduleFireParams) -> &'static str {
    match (&p.kind, p.mode) {
        (crate::store::ScheduleFireKind::Trigger, _) => "trigger",
        (_, crate::store::ScheduleFireMode::Skip) => "missed",
        _ => "due",
    }
}

/// The message a schedule's fire publishes: JSON `payload` to `topic`, due now, under its
/// tick's idempotency key (so a tick sent twice is one message).
pub fn schedule_send(p: &crate::store::ScheduleFireParams, topic: String, payload: String) -> MessageSendParams {
    MessageSendParams {
        group_key: None,
        priority: 0,
        topic,
        payload: payload.into_bytes(),
        content_type: "application/json".to_owned(),
        idempotency_key: Some(crate::schedule_idempotency_key(&p.name, p.tick)),
        on_duplicate: Default::default(),
        delay_seconds: 0,
        retention_seconds: p.retention_seconds,
        headers_json: None,
        only_group: None,
        now: p.now,
    }
}

/// A rate limit's emission interval in microseconds: `period / limit`, rounded up (so the
/// bucket never allows more than `limit` per period). PostgreSQL's `vqs_claim_room` computes
/// the same in SQL.
pub fn rate_interval_us(r: crate::RateLimit) -> i64 {
    let limit = i64::from(r.limit.max(1));
    (i64::from(r.period_seconds) * 1_000_000 + limit - 1) / limit
}

/// How many starts a rate bucket allows at `now_us` (GCRA): with `tat_us` its theoretical
/// arrival time (`None`: never used), a start is allowed while `max(tat, now) <= now +
/// (limit - 1) * interval`; each start moves `tat` on by one interval. A full bucket allows
/// `limit` at once.
pub fn rate_room(r: crate::RateLimit, tat_us: Option<i64>, now_us: i64) -> u32 {
    let interval = rate_interval_us(r);
    let tolerance = i64::from(r.limit.max(1) - 1) * interval;
    let base = tat_us.unwrap_or(now_us).max(now_us);
    if base > now_us + tolerance {
        return 0;
    }
    u32::try_from((now_us + tolerance - base) / interval + 1).unwrap_or(u32::MAX)
}

/// The bucket's theoretical arrival time after `n` starts at `now_us`.
pub fn rate_advance(r: crate::RateLimit, tat_us: Option<i64>, now_us: i64, n: u32) -> i64 {
    tat_us.unwrap_or(now_us).max(now_us) + i64::from(n) * rate_interval_us(r)
}

/// Why a due delivery waits because of its group, from the two checks a backend makes (full
/// first: a full group waits for a slot whatever its bucket). `None`: neither (or no row).
pub fn group_held_reason(full: Option<bool>, bucket_empty: Option<bool>) -> Option<crate::store::GroupHeld> {
    match (full, bucket_empty) {
        (Some(true), _) => Some(crate::store::GroupHeld::Concurrency),
        (_, Some(true)) => Some(crate::store::GroupHeld::RateLimit),
        _ => None,
    }
}

/// The groups a grouped claim visited, split for the park: those it filled from no live
/// lease (`(filled, rest)`). A filled group is parked from what the claim knows — its
/// `running` is `per_group` and its earliest lease end the claim's own — with no read of its
/// slice; the rest (the `""` pseudo-group, never full, among them) are recounted.
/// `lives` are the visited groups' live leases before the claim, in `visited` order;
/// `leased_keys` the group of each delivery the claim leased.
pub fn groups_filled<'a, 'k>(
    visited: &'a [String],
    lives: &[i64],
    leased_keys: impl IntoIterator<Item = &'k str>,
    per_group: u32,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut leased: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for key in leased_keys {
        *leased.entry(key).or_default() += 1;
    }
    let (mut filled, mut rest) = (Vec::new(), Vec::new());
    for (key, live) in visited.iter().zip(lives) {
        let n = leased.get(key.as_str()).copied().unwrap_or(0);
        if !key.is_empty() && *live == 0 && n >= i64::from(per_group) {
            filled.push(key.as_str());
        } else {
            rest.push(key.as_str());
        }
    }
    (filled, rest)
}

/// A message group's rate bucket after a grouped claim leased `n` of it at `now_us`: its new
/// theoretical arrival time (unchanged when nothing was leased) and, when the bucket allows
/// no start now, the moment the next one is allowed (the group is parked until then).
pub fn group_rate_after(r: crate::RateLimit, tat_us: Option<i64>, now_us: i64, n: u32) -> (Option<i64>, Option<i64>) {
    let tat = if n == 0 { tat_us } else { Some(rate_advance(r, tat_us, now_us, n)) };
    let tolerance = i64::from(r.limit.max(1) - 1) * rate_interval_us(r);
    let next = tat.map(|t| t - tolerance).filter(|at| *at > now_us);
    (tat, next)
}

/// The groups a backend counts for [`crate::QueueStore::flow_group_busiest`]: the `limit`
/// with the most live leases (`running`: (consumer group, group key, leases), most first),
/// then the ready ones in the order given, each (consumer group, group key) once; and the
/// live leases by group, to fill in `running`.
#[allow(clippy::type_complexity)]
pub fn busiest_candidates(
    running: Vec<(String, String, i64)>,
    ready: Vec<(String, String)>,
    limit: u32,
) -> (std::collections::HashMap<(String, String), i64>, Vec<(String, String)>) {
    let live: std::collections::HashMap<(String, String), i64> =
        running.iter().map(|(c, k, n)| ((c.clone(), k.clone()), *n)).collect();
    let mut seen = std::collections::HashSet::new();
    let candidates = running
        .into_iter()
        .take(limit as usize)
        .map(|(c, k, _)| (c, k))
        .chain(ready)
        .filter(|ck| seen.insert(ck.clone()))
        .collect();
    (live, candidates)
}

/// The busiest message groups from a backend's candidates (those with live leases, then
/// the ready groups, each counted): most live leases first, then most waiting, the
/// candidates' order within a tie (the next to run first: best priority, then longest ready); one entry per (consumer group,
/// group key), none with nothing live, at most `limit` ([`crate::QueueStore::flow_group_busiest`]).
pub fn busiest_groups(candidates: Vec<crate::store::FlowGroupLoad>, limit: u32) -> Vec<crate::store::FlowGroupLoad> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<_> = candidates
        .into_iter()
        .filter(|c| c.running + c.waiting > 0)
        .filter(|c| seen.insert((c.consumer_group.clone(), c.group_key.clone())))
        .collect();
    out.sort_by(|a, b| b.running.cmp(&a.running).then(b.waiting.cmp(&a.waiting)));
    out.truncate(limit as usize);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[tokio::test]
    async fn a_large_count_limit_is_walked_once_a_small_one_every_time_and_a_failed_walk_not_remembered() {
        let b = CountLimitBoundary::<i64>::default();
        let walks = std::cell::Cell::new(0);
        let walk = |found: Result<Option<i64>, &'static str>| {
            walks.set(walks.get() + 1);
            async move { found }
        };
        assert_eq!(b.get_or_walk(1_000_000, || walk(Err("timed out"))).await, Err("timed out"));
        for _ in 0..3 {
            assert_eq!(b.get_or_walk(1_000_000, || walk(Ok(Some(9)))).await, Ok(Some(9)));
        }
        assert_eq!(walks.get(), 2, "the failed walk, then one walk remembered");
        for _ in 0..3 {
            assert_eq!(b.get_or_walk(1_000, || walk(Ok(None))).await, Ok(None));
        }
        assert_eq!(walks.get(), 5, "a small limit is walked at every pass");
    }

    #[test]
    fn a_large_count_limit_boundary_is_remembered_for_that_limit_and_a_small_one_never() {
        let b = CountLimitBoundary::<i64>::default();
        assert_eq!(b.remembered(1_000_000), None, "nothing found yet: walk");
        b.remember(1_000_000, Some(42));
        assert_eq!(b.remembered(1_000_000), Some(Some(42)));
        assert_eq!(b.remembered(2_000_000), None, "another limit: walk again");
        b.remember(1_000_000, None);
        assert_eq!(b.remembered(1_000_000), Some(None), "within the limit is remembered too");
        b.remember(99_999, Some(7));
        assert_eq!(b.remembered(99_999), None, "a small limit is walked at every pass");
        assert_eq!(b.remembered(1_000_000), Some(None));
    }

    #[test]
    fn a_group_bucket_parks_the_group_until_its_next_start() {
        let r = crate::RateLimit { limit: 2, period_seconds: 10 };
        // Two starts at once use the burst: the next is allowed one interval (5 s) later.
        assert_eq!(group_rate_after(r, None, 0, 2), (Some(10_000_000), Some(5_000_000)));
        // One start leaves room: no parking.
        assert_eq!(group_rate_after(r, None, 0, 1), (Some(5_000_000), None));
        // Nothing leased: the bucket is unchanged.
        assert_eq!(group_rate_after(r, Some(10_000_000), 1, 0), (Some(10_000_000), Some(5_000_000)));
        assert_eq!(group_rate_after(r, None, 1, 0), (None, None));
    }

    #[test]
    fn a_lease_failure_names_what_happened_to_the_delivery() {
        assert!(matches!(lease_failure("m", "g", "m.t", None), StoreError::NotFound(e) if e.contains("no message m")));
        for state in ["acked", "dead"] {
            let e = lease_failure("m", "g", "m.t", Some(state));
            assert!(matches!(e, StoreError::NotFound(ref s) if s.contains("already acknowledged")), "{state}: {e}");
        }
        for state in ["pending", "leased", "cancelled"] {
            assert!(matches!(lease_failure("m", "g", "m.t", Some(state)), StoreError::LeaseLost(_)), "{state}");
        }
    }

    #[test]
    fn stats_merge_adds_failed_executions_to_their_topic_and_keeps_topics_with_only_failures() {
        let row = |topic: &str, n: i64| DeliveryCountRow {
            topic: topic.into(),
            waiting: n,
            delayed: 2 * n,
            running: 3 * n,
            acked: 4 * n,
            dead: 5 * n,
            cancelled: 6 * n,
        };
        let stats = topic_stats([row("b", 1), row("a", 10)], [("b".into(), 7), ("gone".into(), 2)]);
        let names: Vec<&str> = stats.iter().map(|s| s.topic.as_str()).collect();
        assert_eq!(names, ["a", "b", "gone"]);
        assert_eq!(
            stats[1],
            TopicStats {
                topic: "b".into(),
                waiting: 1,
                delayed: 2,
                running: 3,
                succeeded: 4,
                failed: 7,
                dead: 5,
                cancelled: 6
            }
        );
        assert_eq!(stats[0].failed, 0);
        assert_eq!(stats[2], TopicStats { topic: "gone".into(), failed: 2, ..TopicStats::default() });
    }

    #[test]
    fn topic_patterns_match_a_name_or_a_prefix() {
        let exact = TopicPattern::parse("orders");
        assert_eq!(exact, TopicPattern { prefix: "orders".into(), is_prefix: false });
        assert!(exact.matches("orders") && !exact.matches("orders.paid"));
        let prefix = TopicPattern::parse("orders.*");
        assert_eq!(prefix, TopicPattern { prefix: "orders.".into(), is_prefix: true });
        assert!(prefix.matches("orders.paid") && !prefix.matches("orders"));
        assert!(TopicPattern::parse("*").matches("anything"));
    }

    #[test]
    fn a_batch_takes_what_is_queued_up_to_its_limit() {
        let mut queued = vec![4, 3, 2];
        assert_eq!(drain_batch(1, 3, || queued.pop()), [1, 2, 3]);
        assert_eq!(drain_batch(9, 3, || queued.pop()), [9, 4]);
        assert_eq!(drain_batch(0, 1, || Some(5)), [0]);
        assert_eq!(drain_batch(0, 0, || Some(5)), [0], "the first is always taken");
    }

    #[test]
    fn two_acks_of_one_delivery_never_share_a_round() {
        let ops = vec![("m1", "g", 1), ("m2", "g", 2), ("m1", "g", 3), ("m1", "h", 4), ("m1", "g", 5), ("m3", "g", 6)];
        let rounds = ack_rounds(ops, |(m, g, _)| (*m, *g));
        let ids: Vec<Vec<i32>> = rounds.iter().map(|r| r.iter().map(|o| o.2).collect()).collect();
        assert_eq!(ids, [vec![1, 2, 4, 6], vec![3], vec![5]]);
        for round in &rounds {
            let keys: HashSet<_> = round.iter().map(|(m, g, _)| (m, g)).collect();
            assert_eq!(keys.len(), round.len(), "one delivery twice in a round: {round:?}");
        }
        assert!(ack_rounds(Vec::<(String, String)>::new(), |(m, g)| (m.as_str(), g.as_str())).is_empty());
        let lease = |handle: &str| LeaseParams {
            consumer_group: "g".into(),
            receipt_handle: handle.into(),
            now: chrono::DateTime::UNIX_EPOCH,
        };
        assert_eq!(lease_delivery(&lease("m1.t1")), lease_delivery(&lease("m1.t2")), "one delivery, two leases");
        assert_ne!(lease_delivery(&lease("m1.t1")), lease_delivery(&lease("m2.t1")));
        assert_eq!(lease_delivery(&lease("bad")), ("g", "bad"));
    }

    #[test]
    fn a_replay_goes_to_the_group_it_died_in_with_its_headers() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let letter = DeadLetterRecord {
            id: 1,
            message_id: "msg_1".into(),
            topic: "t".into(),
            consumer_group: "g".into(),
            content_type: "application/json".into(),
            payload: serde_json::json!({}),
            payload_bytes: 2,
            payload_truncated: false,
            error: "boom".into(),
            attempts: 3,
            created_at: now,
            headers_json: Some("{}".into()),
            group_key: Some("tenant-1".into()),
            priority: -7,
        };
        let m = dead_letter_replay(&letter, b"{}", &DeadLetterReplayOpts { retention_seconds: 60 }, now);
        assert_eq!((m.topic.as_str(), m.only_group.as_deref(), m.payload.as_slice()), ("t", Some("g"), &b"{}"[..]));
        assert_eq!((m.delay_seconds, m.retention_seconds, m.idempotency_key), (0, 60, None));
        assert_eq!(m.headers_json.as_deref(), Some("{}"));
        assert_eq!(m.group_key.as_deref(), Some("tenant-1"));
        assert_eq!(m.priority, -7);
        assert!(matches!(
            already_settled("replayed", now, None),
            Ok(DeadLetterSettled::AlreadySettled { action: DeadLetterAction::Replay, .. })
        ));
        assert!(matches!(already_settled("eaten", now, None), Err(StoreError::Database(_))));
    }

    #[tokio::test]
    async fn a_write_queue_answers_while_a_writer_runs_and_errs_once_none_does() {
        let (q, mut rx) = WriteQueue::<(u8, Reply<u8>)>::new("stopped");
        let writer = tokio::spawn(async move {
            while let Some((n, reply)) = rx.recv().await {
                let _ = reply.send(Ok(n + 1));
            }
        });
        assert_eq!(q.call(|r| (1, r)).await.unwrap(), 2);
        assert!(q.is_running());
        writer.abort();
        let _ = writer.await;
        assert!(!q.is_running());
        assert!(matches!(q.call(|r| (1, r)).await, Err(StoreError::Database(e)) if e == "stopped"));
    }

    #[test]
    fn only_a_refused_batch_of_several_is_written_again_row_by_row() {
        assert!(write_row_by_row(&StoreError::Refused("nul".into()), 2));
        assert!(!write_row_by_row(&StoreError::Refused("nul".into()), 1));
        assert!(!write_row_by_row(&StoreError::Database("down".into()), 5));
    }

    #[test]
    fn a_rate_bucket_allows_a_burst_then_one_per_interval() {
        let r = crate::RateLimit { limit: 5, period_seconds: 10 };
        assert_eq!(rate_interval_us(r), 2_000_000);
        assert_eq!(rate_room(r, None, 0), 5, "a full bucket: the burst");
        let tat = rate_advance(r, None, 0, 5);
        assert_eq!(rate_room(r, Some(tat), 0), 0);
        assert_eq!(rate_room(r, Some(tat), 1_999_999), 0);
        assert_eq!(rate_room(r, Some(tat), 2_000_000), 1, "one per interval after it");
        assert_eq!(rate_room(r, Some(tat), 100_000_000), 5, "never more than the burst");
        // Rounded up: never more than the limit per period.
        assert_eq!(rate_interval_us(crate::RateLimit { limit: 3, period_seconds: 1 }), 333_334);
    }
}
