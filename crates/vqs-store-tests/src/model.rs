//! The model-based test: random sequences of send / claim / ack / retry / release /
//! dead-letter / lease expiry (time advances) / replay / prune, and the job outcomes (an ack
//! by a job that cancelled itself, a snoozed retry, an operator's cancel, a purge), run
//! against a plain reference model, checking ARCHITECTURE.md's invariants after every step:
//!
//! - a key dedups while its message is kept (within retention), finished or not;
//! - nothing is lost: every sent message is pending, leased, acknowledged, dead-lettered or
//!   cancelled in every group it was delivered to, until retention prunes it — and
//!   retention prunes only finished messages;
//! - a cancelled delivery is final: never claimed again, its lease settles nothing;
//! - one lease per (message, group): a claim hands out only due deliveries, and only the
//!   current lease's receipt handle settles one (a stale one gets `LeaseLost`, a finished
//!   one `NotFound`);
//! - attempts and deliveries are counted once: a delivery's count equals its execution rows
//!   (a release gives both back), with at most one `running`; a snooze gives its attempt
//!   back, so the next execution keeps its attempt number;
//! - executions are closed exactly once: by their settlement, or as abandoned when the lease
//!   is taken over or rescued, and never reopened.
//!
//! Seeded (the same sequences every run), shrinking, 32 cases of at most 40 steps.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use vqs::store::*;

use crate::Fresh;
use crate::support::*;

const GROUPS: [&str; 2] = ["a", "b"];
const VISIBILITY: i64 = 30;
const SEED: [u8; 32] = *b"vqs conformance model, seed 0001";

/// One operation. Indices pick among what exists (modulo its length).
#[derive(Debug, Clone)]
pub enum Op {
    Send {
        key: Option<u8>,
        delay: u8,
    },
    Claim {
        group: usize,
        limit: u32,
    },
    /// `cancel`: the job cancelled itself (its attempt and the delivery end `cancelled`).
    Ack {
        handle: usize,
        cancel: bool,
    },
    /// `snooze`: the job snoozed (the attempt is given back).
    Retry {
        handle: usize,
        delay: u8,
        snooze: bool,
    },
    Release(usize),
    DeadLetter(usize),
    Advance(u16),
    Replay(usize),
    Prune {
        retention: u16,
    },
    /// An operator cancels a message in every group.
    Cancel(usize),
    /// Every pending delivery of the topic (or of one group) is cancelled.
    Purge {
        group: Option<usize>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::option::of(0u8..3), prop_oneof![3 => Just(0u8), 1 => 1u8..40]).prop_map(|(key, delay)| Op::Send { key, delay }),
        4 => (0usize..2, 1u32..4).prop_map(|(group, limit)| Op::Claim { group, limit }),
        3 => (any::<usize>(), prop_oneof![4 => Just(false), 1 => Just(true)]).prop_map(|(handle, cancel)| Op::Ack { handle, cancel }),
        2 => (any::<usize>(), 0u8..40, any::<bool>()).prop_map(|(handle, delay, snooze)| Op::Retry { handle, delay, snooze }),
        1 => any::<usize>().prop_map(Op::Release),
        2 => any::<usize>().prop_map(Op::DeadLetter),
        2 => (1u16..90).prop_map(Op::Advance),
        1 => any::<usize>().prop_map(Op::Replay),
        1 => (0u16..120).prop_map(|retention| Op::Prune { retention }),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => proptest::option::of(0usize..2).prop_map(|group| Op::Purge { group }),
    ]
}

#[derive(Debug, Clone)]
struct Delivery {
    state: DeliveryState,
    count: u32,
    /// Attempts spent: deliveries, less the snoozed ones.
    attempts: u32,
    /// Due at (pending) or the lease's end (leased).
    visible_at: DateTime<Utc>,
    handle: Option<String>,
}

#[derive(Debug, Clone)]
struct Msg {
    key: Option<u8>,
    created: DateTime<Utc>,
    deliveries: BTreeMap<String, Delivery>,
}

impl Msg {
    fn finished(&self) -> bool {
        self.deliveries.values().all(|d| !matches!(d.state, DeliveryState::Pending | DeliveryState::Leased))
    }
}

#[derive(Debug, Clone)]
struct Exec {
    message_id: String,
    group: String,
    attempt: u32,
    status: ExecutionStatus,
}

#[derive(Default)]
struct Model {
    messages: BTreeMap<String, Msg>,
    pruned: BTreeSet<String>,
    executions: BTreeMap<i64, Exec>,
    /// (message id, group) of each dead letter not yet replayed.
    dead: BTreeSet<(String, String)>,
    handles: Vec<LeasedMessage>,
}

type Step = Result<(), TestCaseError>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)*)));
        }
    };
}

fn db<T>(r: Result<T, StoreError>, what: &str) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("{what}: {e}")))
}

/// Runs the model test on fresh stores from `make`.
pub fn run<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let config = Config { cases: 32, failure_persistence: None, max_shrink_iters: 256, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    // A store that can be reset serves every case; otherwise each case gets a fresh one.
    let held: std::cell::RefCell<Option<Fresh>> = Default::default();
    let result = runner.run(&proptest::collection::vec(op(), 1..=40), |ops| {
        rt.block_on(async {
            let reused = held.borrow_mut().take();
            let fresh = match reused {
                Some(f) => {
                    if let Some(reset) = &f.reset {
                        reset().await;
                    }
                    f
                }
                None => make().await,
            };
            let outcome = play(&fresh.store, &ops).await;
            if fresh.reset.is_some() {
                *held.borrow_mut() = Some(fresh);
            } else if let Some(t) = fresh.teardown {
                t.await;
            }
            outcome
        })
    });
    if let Some(t) = held.into_inner().and_then(|f| f.teardown) {
        rt.block_on(t);
    }
    if let Err(e) = result {
        panic!("the store diverged from the model: {e}");
    }
}

async fn play(s: &Store, ops: &[Op]) -> Step {
    for g in GROUPS {
        subscribe(s, "t", g).await;
    }
    let mut m = Model::default();
    let mut now = at(0);
    for (i, op) in ops.iter().enumerate() {
        step(s, &mut m, &mut now, op).await.map_err(|e| TestCaseError::fail(format!("step {i} {op:?}: {e}")))?;
        check(s, &m, now).await.map_err(|e| TestCaseError::fail(format!("after step {i} {op:?}: {e}")))?;
    }
    Ok(())
}

fn due(d: &Delivery, now: DateTime<Utc>) -> bool {
    matches!(d.state, DeliveryState::Pending | DeliveryState::Leased) && d.visible_at <= now
}

/// What settling `h` must answer, from the model.
fn expected_settle(m: &Model, h: &LeasedMessage) -> &'static str {
    match m.messages.get(&h.message_id).and_then(|msg| msg.deliveries.get(&h.consumer_group)) {
        None => "not found",
        Some(d) if matches!(d.state, DeliveryState::Acked | DeliveryState::Dead) => "not found",
        // Cancelled while it was held (or before): as a lost lease.
        Some(d) if d.state == DeliveryState::Leased && d.handle.as_deref() == Some(h.receipt_handle.as_str()) => "ok",
        Some(_) => "lease lost",
    }
}

fn answer(r: &Result<(), StoreError>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(StoreError::NotFound(_)) => "not found",
        Err(StoreError::LeaseLost(_)) => "lease lost",
        Err(_) => "another error",
    }
}

/// Close a running execution (settling closes it even when the lease was lost).
fn close(m: &mut Model, id: Option<i64>, status: ExecutionStatus) {
    if let Some(e) = id.and_then(|id| m.executions.get_mut(&id))
        && e.status == ExecutionStatus::Running
    {
        e.status = status;
    }
}

async fn step(s: &Store, m: &mut Model, now: &mut DateTime<Utc>, op: &Op) -> Step {
    let now_ = *now;
    match op {
        Op::Send { key, delay } => {
            let p = MessageSendParams {
                group_key: None,
                idempotency_key: key.map(|k| format!("k{k}")),
                delay_seconds: u32::from(*delay),
                ..send_params("t", "{}", now_)
            };
            let r = db(s.message_send(p).await, "send")?;
            let original =
                m.messages.iter().find(|(_, msg)| key.is_some() && msg.key == *key).map(|(id, _)| id.clone());
            match original {
                Some(id) => ensure!(
                    r == SendResult { message_id: id.clone(), duplicate: true, replaced: false },
                    "expected a duplicate of {id}, got {r:?}"
                ),
                None => {
                    ensure!(!r.duplicate, "a duplicate of a pruned message or of no key: {r:?}");
                    let visible_at = now_ + chrono::Duration::seconds(i64::from(*delay));
                    let deliveries = GROUPS
                        .iter()
                        .map(|g| {
                            (
                                g.to_string(),
                                Delivery {
                                    state: DeliveryState::Pending,
                                    count: 0,
                                    attempts: 0,
                                    visible_at,
                                    handle: None,
                                },
                            )
                        })
                        .collect();
                    m.messages.insert(r.message_id, Msg { key: *key, created: now_, deliveries });
                }
            }
        }
        Op::Claim { group, limit } => {
            let g = GROUPS[*group];
            let p = DeliveryClaimParams { start_executions: true, ..claim_params(g, *limit, now_) };
            let leased = db(s.delivery_claim(p).await, "claim")?;
            let due_count =
                m.messages.values().filter(|msg| msg.deliveries.get(g).is_some_and(|d| due(d, now_))).count();
            ensure!(
                leased.len() == due_count.min(*limit as usize),
                "leased {} of {due_count} due (limit {limit})",
                leased.len()
            );
            let mut seen = BTreeSet::new();
            for l in leased {
                ensure!(seen.insert(l.message_id.clone()), "{} leased twice in one claim", l.message_id);
                let Some(d) = m.messages.get_mut(&l.message_id).and_then(|msg| msg.deliveries.get_mut(g)) else {
                    return Err(TestCaseError::fail(format!("leased {} which the model does not hold", l.message_id)));
                };
                ensure!(due(d, now_), "leased {} which is not due ({d:?})", l.message_id);
                let taken_over = d.state == DeliveryState::Leased;
                d.state = DeliveryState::Leased;
                d.count += 1;
                d.attempts += 1;
                d.visible_at = now_ + chrono::Duration::seconds(VISIBILITY);
                d.handle = Some(l.receipt_handle.clone());
                let attempt = d.attempts;
                ensure!(l.delivery_count == d.count, "delivery count {} (model {})", l.delivery_count, d.count);
                ensure!(l.attempts == attempt, "attempts {} (model {attempt})", l.attempts);
                ensure!(l.lease_until == d.visible_at, "lease until {} (model {})", l.lease_until, d.visible_at);
                if taken_over {
                    for e in m.executions.values_mut() {
                        if e.message_id == l.message_id && e.group == g && e.status == ExecutionStatus::Running {
                            e.status = ExecutionStatus::Failed;
                        }
                    }
                }
                let Some(exec) = l.execution_id else {
                    return Err(TestCaseError::fail("no execution recorded with the lease"));
                };
                let e = Exec {
                    message_id: l.message_id.clone(),
                    group: g.into(),
                    attempt,
                    status: ExecutionStatus::Running,
                };
                ensure!(m.executions.insert(exec, e).is_none(), "execution id {exec} reused");
                m.handles.push(l);
            }
        }
        Op::Ack { handle: i, .. } | Op::Retry { handle: i, .. } | Op::Release(i) | Op::DeadLetter(i) => {
            if m.handles.is_empty() {
                return Ok(());
            }
            let h = m.handles[i % m.handles.len()].clone();
            let expected = expected_settle(m, &h);
            let mut released_a_recorded_attempt = false;
            let (r, status) = match op {
                Op::Ack { cancel, .. } => {
                    let status = if *cancel { ExecutionStatus::Cancelled } else { ExecutionStatus::Success };
                    let execution = finish(h.execution_id, status, now_);
                    (s.delivery_ack(DeliveryAckParams { lease: lease(&h, now_), execution }).await, Some(status))
                }
                Op::Retry { delay, snooze, .. } => {
                    let status = if *snooze { ExecutionStatus::Snoozed } else { ExecutionStatus::Failed };
                    let execution = finish(h.execution_id, status, now_);
                    let delay = Duration::from_secs(u64::from(*delay));
                    (
                        s.delivery_retry(DeliveryRetryParams { lease: lease(&h, now_), delay, execution }).await,
                        Some(status),
                    )
                }
                Op::DeadLetter(_) => {
                    let execution = finish(h.execution_id, ExecutionStatus::Failed, now_);
                    let p = DeliveryDeadLetterParams { lease: lease(&h, now_), reason: "model".into(), execution };
                    (s.delivery_dead_letter(p).await, Some(ExecutionStatus::Failed))
                }
                _ => (
                    s.delivery_release(DeliveryReleaseParams { lease: lease(&h, now_), execution_id: h.execution_id })
                        .await,
                    None,
                ),
            };
            ensure!(
                answer(&r) == expected,
                "settling {} answered {r:?}, the model expects {expected}",
                h.receipt_handle
            );
            match status {
                Some(status) => close(m, h.execution_id, status),
                // A release removes its attempt while it is still running.
                None => {
                    let id = h.execution_id.unwrap_or_default();
                    if m.executions.get(&id).is_some_and(|e| e.status == ExecutionStatus::Running) {
                        m.executions.remove(&id);
                    } else {
                        // Closed meanwhile (rescued as abandoned): on record, still counted.
                        released_a_recorded_attempt = true;
                    }
                }
            }
            if expected != "ok" {
                return Ok(());
            }
            let d = m
                .messages
                .get_mut(&h.message_id)
                .and_then(|msg| msg.deliveries.get_mut(&h.consumer_group))
                .expect("held");
            d.handle = None;
            match op {
                Op::Ack { cancel, .. } => {
                    d.state = if *cancel { DeliveryState::Cancelled } else { DeliveryState::Acked };
                }
                Op::Retry { delay, snooze, .. } => {
                    d.state = DeliveryState::Pending;
                    d.visible_at = now_ + chrono::Duration::seconds(i64::from(*delay));
                    if *snooze {
                        d.attempts -= 1;
                    }
                }
                Op::DeadLetter(_) => {
                    d.state = DeliveryState::Dead;
                    m.dead.insert((h.message_id.clone(), h.consumer_group.clone()));
                }
                _ => {
                    d.state = DeliveryState::Pending;
                    if !released_a_recorded_attempt {
                        d.count -= 1;
                        d.attempts -= 1;
                    }
                    d.visible_at = now_;
                }
            }
        }
        Op::Advance(secs) => *now += chrono::Duration::seconds(i64::from(*secs)),
        Op::Replay(i) => {
            if m.dead.is_empty() {
                return Ok(());
            }
            let (message_id, group) = m.dead.iter().nth(i % m.dead.len()).cloned().expect("in range");
            let letters = db(s.dead_letter_list(DeadLetterListParams { limit: 1000 }).await, "dead_letter_list")?;
            let Some(letter) = letters.iter().find(|l| l.message_id == message_id && l.consumer_group == group) else {
                return Err(TestCaseError::fail(format!("no dead letter for {message_id} in {group}")));
            };
            let settle = |now| DeadLetterSettleParams {
                id: letter.id,
                action: DeadLetterAction::Replay,
                publish: Some(DeadLetterReplayOpts { retention_seconds: 7 * 24 * 3600 }),
                now,
            };
            let DeadLetterSettled::Settled { sent: Some(sent), .. } =
                db(s.dead_letter_settle(settle(now_)).await, "settle")?
            else {
                return Err(TestCaseError::fail("the first replay did not publish"));
            };
            let again = db(s.dead_letter_settle(settle(now_)).await, "settle again")?;
            ensure!(matches!(again, DeadLetterSettled::AlreadySettled { .. }), "replayed twice: {again:?}");
            m.dead.remove(&(message_id, group.clone()));
            let d = Delivery { state: DeliveryState::Pending, count: 0, attempts: 0, visible_at: now_, handle: None };
            m.messages.insert(sent.message_id, Msg { key: None, created: now_, deliveries: [(group, d)].into() });
        }
        Op::Prune { retention } => {
            let p = MaintenanceParams { message_retention_seconds: u64::from(*retention), ..keep_everything(now_) };
            let r = db(s.maintenance_run(p).await, "maintenance")?;
            let cutoff = now_ - chrono::Duration::seconds(i64::from(*retention));
            let prunable: Vec<String> = m
                .messages
                .iter()
                // A keyed message is kept until it expires, its key dedups until then (7 days:
                // beyond any run's clock).
                .filter(|(_, msg)| msg.finished() && msg.created < cutoff && msg.key.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            ensure!(
                r.finished_messages_pruned == prunable.len() as u64,
                "pruned {} (model {})",
                r.finished_messages_pruned,
                prunable.len()
            );
            for id in prunable {
                m.messages.remove(&id);
                m.pruned.insert(id);
            }
            // Maintenance closes the attempts whose lease ran out.
            let mut rescued = 0;
            for msg_id in m.messages.keys() {
                for (g, d) in &m.messages[msg_id].deliveries {
                    if d.state == DeliveryState::Leased && d.visible_at <= now_ {
                        for e in m.executions.values_mut() {
                            if &e.message_id == msg_id && &e.group == g && e.status == ExecutionStatus::Running {
                                e.status = ExecutionStatus::Failed;
                                rescued += 1;
                            }
                        }
                    }
                }
            }
            ensure!(r.executions_rescued == rescued, "rescued {} executions (model {rescued})", r.executions_rescued);
        }
        Op::Cancel(i) => {
            if m.messages.is_empty() {
                return Ok(());
            }
            let id = m.messages.keys().nth(i % m.messages.len()).cloned().expect("in range");
            let p = MessageCancelParams { message_id: id.clone(), reason: "model".into(), now: now_ };
            let r = db(s.message_cancel(p).await, "message_cancel")?;
            let msg = m.messages.get_mut(&id).expect("held");
            let mut want = MessageCancelled { found: true, ..MessageCancelled::default() };
            for (g, d) in &mut msg.deliveries {
                match d.state {
                    DeliveryState::Pending => want.pending.push(g.clone()),
                    DeliveryState::Leased => want.running.push(g.clone()),
                    other => {
                        want.finished.push((g.clone(), other));
                        continue;
                    }
                }
                d.state = DeliveryState::Cancelled;
                d.handle = None;
                for e in m.executions.values_mut() {
                    if e.message_id == id && &e.group == g && e.status == ExecutionStatus::Running {
                        e.status = ExecutionStatus::Cancelled;
                    }
                }
            }
            ensure!(r == want, "cancel answered {r:?}, the model expects {want:?}");
        }
        Op::Purge { group } => {
            let group = group.map(|g| GROUPS[g]);
            let mut want = 0;
            for msg in m.messages.values_mut() {
                let mut hit = false;
                for (g, d) in &mut msg.deliveries {
                    if d.state == DeliveryState::Pending && group.is_none_or(|only| only == g) {
                        d.state = DeliveryState::Cancelled;
                        hit = true;
                    }
                }
                want += u64::from(hit);
            }
            let p = |dry_run| TopicPurgeParams {
                topic: "t".into(),
                consumer_group: group.map(Into::into),
                dry_run,
                now: now_,
            };
            let counted = db(s.topic_purge(p(true)).await, "topic_purge dry run")?;
            ensure!(counted == want, "a dry run counted {counted} (model {want})");
            let purged = db(s.topic_purge(p(false)).await, "topic_purge")?;
            ensure!(purged == want, "purged {purged} (model {want})");
        }
    }
    Ok(())
}

async fn check(s: &Store, m: &Model, now: DateTime<Utc>) -> Step {
    for (id, msg) in &m.messages {
        let Some(stored) = db(s.message_get(MessageGetParams { id: id.to_string() }).await, "message_get")? else {
            return Err(TestCaseError::fail(format!("message {id} was lost")));
        };
        ensure!(
            stored.deliveries.len() == msg.deliveries.len(),
            "{id}: {} deliveries (model {})",
            stored.deliveries.len(),
            msg.deliveries.len()
        );
        for d in &stored.deliveries {
            let Some(want) = msg.deliveries.get(&d.consumer_group) else {
                return Err(TestCaseError::fail(format!(
                    "{id}: a delivery to {} the model never made",
                    d.consumer_group
                )));
            };
            ensure!(
                (d.state, d.delivery_count, d.attempts) == (want.state, want.count, want.attempts),
                "{id} in {}: {:?} × {}, {} attempts (model {:?} × {}, {} attempts)",
                d.consumer_group,
                d.state,
                d.delivery_count,
                d.attempts,
                want.state,
                want.count,
                want.attempts
            );
            if matches!(d.state, DeliveryState::Pending | DeliveryState::Leased) {
                ensure!(
                    d.visible_at == want.visible_at,
                    "{id} in {}: visible at {} (model {})",
                    d.consumer_group,
                    d.visible_at,
                    want.visible_at
                );
            }
        }
    }
    for id in &m.pruned {
        ensure!(
            db(s.message_get(MessageGetParams { id: id.to_string() }).await, "message_get")?.is_none(),
            "pruned message {id} is back"
        );
    }
    for g in GROUPS {
        let live = m
            .messages
            .values()
            .filter_map(|msg| msg.deliveries.get(g))
            .filter(|d| d.state == DeliveryState::Leased && d.visible_at > now)
            .count();
        let count = db(
            s.delivery_leased_count(DeliveryLeasedCountParams { consumer_group: g.to_string(), now }).await,
            "leased_count",
        )?;
        ensure!(count == live as i64, "{g}: {count} live leases (model {live})");
    }
    let rows =
        db(s.execution_list(ExecutionListParams { limit: 100_000, ..Default::default() }).await, "execution_list")?;
    let got: BTreeMap<i64, (String, String, u32, ExecutionStatus)> =
        rows.into_iter().map(|r| (r.id, (r.message_id, r.consumer_group, r.attempt, r.status))).collect();
    let want: BTreeMap<i64, (String, String, u32, ExecutionStatus)> = m
        .executions
        .iter()
        .map(|(id, e)| (*id, (e.message_id.clone(), e.group.clone(), e.attempt, e.status)))
        .collect();
    ensure!(got == want, "executions differ:\n store {got:?}\n model {want:?}");
    // Attempts are counted once: as many attempts as deliveries, at most one running.
    for (id, msg) in &m.messages {
        for (g, d) in &msg.deliveries {
            let mine: Vec<_> = m.executions.values().filter(|e| &e.message_id == id && &e.group == g).collect();
            ensure!(mine.len() as u32 == d.count, "{id} in {g}: {} attempts for {} deliveries", mine.len(), d.count);
            let running = mine.iter().filter(|e| e.status == ExecutionStatus::Running).count();
            ensure!(running <= 1, "{id} in {g}: {running} attempts running at once");
        }
    }
    let letters = db(s.dead_letter_list(DeadLetterListParams { limit: 1000 }).await, "dead_letter_list")?;
    let got: BTreeSet<(String, String)> = letters.into_iter().map(|l| (l.message_id, l.consumer_group)).collect();
    ensure!(got == m.dead, "dead letters differ:\n store {got:?}\n model {:?}", m.dead);
    Ok(())
}
