//! Executions: one row per attempt, closed exactly once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use vqs::store::*;

use crate::support::*;

pub async fn start_and_finish_record_an_attempt(s: Store) {
    let id = s
        .execution_start(ExecutionStartParams {
            topic: "t".into(),
            message_id: "msg_x".into(),
            consumer_group: "a".into(),
            attempt: 3,
            now: at(1),
        })
        .await
        .unwrap();
    let running = executions(&s, "msg_x").await;
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].status, running[0].attempt, running[0].started_at), (ExecutionStatus::Running, 3, at(1)));
    s.execution_finish(ExecutionFinishParams {
        id,
        status: ExecutionStatus::Failed,
        error: Some("boom".into()),
        began_at: None,
        now: at(3),
    })
    .await
    .unwrap();
    let done = executions(&s, "msg_x").await.remove(0);
    assert_eq!((done.status, done.error.as_deref()), (ExecutionStatus::Failed, Some("boom")));
    assert_eq!((done.finished_at, done.duration_ms), (Some(at(3)), Some(2000)));
}

pub async fn claim_records_running_attempts(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let m =
        s.delivery_claim(DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, at(1)) }).await.unwrap();
    let exec = m[0].execution_id.expect("an execution with the lease");
    let rows = executions(&s, &id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id, rows[0].status, rows[0].attempt), (exec, ExecutionStatus::Running, 1));
    let plain = claim(&s, "a", 1, at(40)).await;
    assert_eq!(plain[0].execution_id, None, "no execution without start_executions");
}

pub async fn settling_closes_the_attempt_once(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let claim_exec = |now| DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, now) };
    let m = s.delivery_claim(claim_exec(at(1))).await.unwrap().remove(0);
    s.delivery_retry(DeliveryRetryParams {
        lease: lease(&m, at(2)),
        delay: Duration::ZERO,
        execution: finish(m.execution_id, ExecutionStatus::Failed, at(2)),
    })
    .await
    .unwrap();
    let m2 = s.delivery_claim(claim_exec(at(3))).await.unwrap().remove(0);
    assert_eq!(m2.delivery_count, 2);
    s.delivery_ack(DeliveryAckParams {
        lease: lease(&m2, at(4)),
        execution: finish(m2.execution_id, ExecutionStatus::Success, at(4)),
    })
    .await
    .unwrap();
    let mut rows = executions(&s, &id).await;
    rows.sort_by_key(|r| r.attempt);
    let got: Vec<_> = rows.iter().map(|r| (r.attempt, r.status, r.finished_at)).collect();
    assert_eq!(got, [(1, ExecutionStatus::Failed, Some(at(2))), (2, ExecutionStatus::Success, Some(at(4)))]);
}

pub async fn abandoned_attempt_is_closed_on_re_lease(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let claim_exec = |now| DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, now) };
    let first = s.delivery_claim(claim_exec(at(1))).await.unwrap().remove(0);
    let second = s.delivery_claim(claim_exec(at(31))).await.unwrap().remove(0);
    assert_ne!(first.execution_id, second.execution_id);
    let rows = executions(&s, &id).await;
    let old = rows.iter().find(|r| Some(r.id) == first.execution_id).unwrap();
    assert_eq!((old.status, old.error.as_deref()), (ExecutionStatus::Failed, Some(ABANDONED_ERROR)));
    let new = rows.iter().find(|r| Some(r.id) == second.execution_id).unwrap();
    assert_eq!((new.status, new.attempt), (ExecutionStatus::Running, 2));
    // The stale worker's late acknowledgement neither settles nor reopens its attempt.
    let late = s.delivery_ack(DeliveryAckParams {
        lease: lease(&first, at(32)),
        execution: finish(first.execution_id, ExecutionStatus::Success, at(32)),
    });
    assert!(matches!(late.await, Err(StoreError::LeaseLost(_))));
    let old = executions(&s, &id).await.into_iter().find(|r| Some(r.id) == first.execution_id).unwrap();
    assert_eq!(old.status, ExecutionStatus::Failed, "closed exactly once: abandoned stays abandoned");
}

// Settling a delivery closes the attempt's execution in the same write: an execution never
// reads `success` beside a message still leased, and an attempt is closed even when its
// lease was lost on the way. (Moved from apps/web/tests/settlement.rs.)

/// Lease up to `limit` due messages of group "a" for 60 s, recording their attempts with the
/// lease when `start_executions` (as the local dispatcher does).
async fn lease_due(s: &Store, limit: u32, start_executions: bool, now: DateTime<Utc>) -> Vec<LeasedMessage> {
    let p = DeliveryClaimParams { visibility_seconds: 60, start_executions, ..claim_params("a", limit, now) };
    s.delivery_claim(p).await.expect("claim")
}

/// A message of "probe" sent and claimed at `now` with a 60 s lease, and the `running`
/// execution of its attempt, recorded apart from the lease.
async fn leased_attempt(s: &Store, now: DateTime<Utc>) -> (LeasedMessage, i64) {
    subscribe(s, "probe", "a").await;
    send(s, "probe", now).await;
    let m = lease_due(s, 1, false, now).await.pop().expect("a message is due");
    let id = s
        .execution_start(ExecutionStartParams {
            topic: "probe".into(),
            message_id: m.message_id.clone(),
            consumer_group: "a".into(),
            attempt: m.delivery_count,
            now,
        })
        .await
        .unwrap();
    (m, id)
}

fn closing(id: i64, status: ExecutionStatus, error: Option<&str>, now: DateTime<Utc>) -> Option<ExecutionFinishParams> {
    Some(ExecutionFinishParams { id, status, error: error.map(str::to_owned), began_at: None, now })
}

async fn the_execution(s: &Store, message_id: &str) -> ExecutionRecord {
    let rows = executions(s, message_id).await;
    assert_eq!(rows.len(), 1, "one attempt: {rows:?}");
    rows.into_iter().next().unwrap()
}

async fn delivery_state(s: &Store, message_id: &str) -> DeliveryState {
    state(s, message_id, "a").await.expect("a delivery").state
}

fn index(m: &LeasedMessage) -> u64 {
    serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["i"].as_u64().unwrap()
}

pub async fn an_ack_closes_the_attempt_with_it(s: Store) {
    let (m, id) = leased_attempt(&s, at(0)).await;
    let now = at(0) + chrono::Duration::milliseconds(1500);
    let execution = closing(id, ExecutionStatus::Success, None, now);
    s.delivery_ack(DeliveryAckParams { lease: lease(&m, now), execution }).await.unwrap();
    let e = the_execution(&s, &m.message_id).await;
    assert_eq!((e.status, e.duration_ms), (ExecutionStatus::Success, Some(1500)));
    assert_eq!(delivery_state(&s, &m.message_id).await, DeliveryState::Acked);
}

pub async fn a_retry_and_a_dead_letter_close_the_attempt_with_them(s: Store) {
    let (m, id) = leased_attempt(&s, at(0)).await;
    let execution = closing(id, ExecutionStatus::Failed, Some("upstream said 503"), at(0));
    let retry = DeliveryRetryParams { lease: lease(&m, at(0)), delay: Duration::from_secs(100), execution };
    s.delivery_retry(retry).await.unwrap();
    let e = the_execution(&s, &m.message_id).await;
    assert_eq!((e.status, e.error.as_deref()), (ExecutionStatus::Failed, Some("upstream said 503")));
    assert_eq!(delivery_state(&s, &m.message_id).await, DeliveryState::Pending);

    let (m, id) = leased_attempt(&s, at(0)).await;
    let execution = closing(id, ExecutionStatus::Failed, Some("fatal: no such account"), at(0));
    let dead = DeliveryDeadLetterParams { lease: lease(&m, at(0)), reason: "fatal: no such account".into(), execution };
    s.delivery_dead_letter(dead).await.unwrap();
    assert_eq!(the_execution(&s, &m.message_id).await.status, ExecutionStatus::Failed);
    assert_eq!(delivery_state(&s, &m.message_id).await, DeliveryState::Dead);
}

pub async fn an_attempt_is_closed_even_when_its_message_was_acknowledged_meanwhile(s: Store) {
    let (m, id) = leased_attempt(&s, at(0)).await;
    // Someone else acknowledged it (e.g. a consumer through /_vqs with the same handle).
    s.delivery_ack(DeliveryAckParams { lease: lease(&m, at(0)), execution: None }).await.unwrap();
    let execution = closing(id, ExecutionStatus::Success, None, at(0));
    let r = s.delivery_ack(DeliveryAckParams { lease: lease(&m, at(0)), execution }).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let e = the_execution(&s, &m.message_id).await;
    assert_eq!(e.status, ExecutionStatus::Success, "the attempt is not left running");
}

pub async fn a_late_settle_does_not_overwrite_an_abandoned_attempt(s: Store) {
    let (m, id) = leased_attempt(&s, at(0)).await;
    // The lease runs out and another consumer takes the message: attempt 1 is abandoned.
    let again = lease_due(&s, 1, false, at(61)).await.pop().expect("redelivered after the lease");
    assert_eq!(again.delivery_count, 2);
    let execution = closing(id, ExecutionStatus::Success, None, at(61));
    let r = s.delivery_ack(DeliveryAckParams { lease: lease(&m, at(61)), execution }).await;
    assert!(matches!(r, Err(StoreError::LeaseLost(_))), "{r:?}");
    let e = the_execution(&s, &m.message_id).await;
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert!(e.error.unwrap().starts_with("abandoned"), "the verdict of the takeover stands");
    assert_eq!(delivery_state(&s, &m.message_id).await, DeliveryState::Leased, "the new lease is untouched");
}

pub async fn the_local_dispatcher_records_the_attempt_with_its_lease(s: Store) {
    subscribe(&s, "probe", "a").await;
    let id = send(&s, "probe", at(0)).await;
    let first = lease_due(&s, 10, true, at(0)).await.pop().unwrap();
    let e = the_execution(&s, &id).await;
    assert_eq!(Some(e.id), first.execution_id);
    assert_eq!((e.attempt, e.status, e.started_at), (1, ExecutionStatus::Running, at(0)));

    // The process dies; the lease runs out; the next lease closes attempt 1 and opens attempt 2.
    let second = lease_due(&s, 10, true, at(61)).await.pop().unwrap();
    let rows = executions(&s, &id).await;
    let by_attempt: Vec<_> = rows.iter().rev().map(|e| (e.attempt, e.status, e.error.is_some())).collect();
    assert_eq!(by_attempt, vec![(1, ExecutionStatus::Failed, true), (2, ExecutionStatus::Running, false)]);
    assert_eq!(second.execution_id, Some(rows[0].id));
    assert!(rows[1].error.as_deref().unwrap().starts_with("abandoned"));
}

pub async fn an_attempt_recorded_with_its_lease_times_the_job_from_when_it_began(s: Store) {
    subscribe(&s, "probe", "a").await;
    let id = send(&s, "probe", at(0)).await;
    let m = lease_due(&s, 1, true, at(0)).await.pop().unwrap();
    // It waited 2 s for a free slot, then ran for 1 s.
    let execution = Some(ExecutionFinishParams {
        id: m.execution_id.unwrap(),
        status: ExecutionStatus::Success,
        error: None,
        began_at: Some(at(2)),
        now: at(3),
    });
    s.delivery_ack(DeliveryAckParams { lease: lease(&m, at(3)), execution }).await.unwrap();
    // started_at is when the attempt was recorded (its lease); the duration is the job's own.
    let e = the_execution(&s, &id).await;
    assert_eq!((e.started_at, e.finished_at, e.duration_ms), (at(0), Some(at(3)), Some(1000)));
}

pub async fn a_lease_given_back_unused_spends_no_attempt(s: Store) {
    subscribe(&s, "probe", "a").await;
    let id = send(&s, "probe", at(0)).await;
    // Leased ahead of a free slot, then given back without being pushed (twice over).
    for _ in 0..2 {
        let m = lease_due(&s, 1, true, at(0)).await.pop().unwrap();
        assert_eq!(m.delivery_count, 1);
        let p = DeliveryReleaseParams { lease: lease(&m, at(0)), execution_id: m.execution_id };
        s.delivery_release(p).await.unwrap();
        let d = state(&s, &id, "a").await.unwrap();
        assert_eq!((d.state, d.delivery_count, d.visible_at), (DeliveryState::Pending, 0, at(0)));
        let rows = executions(&s, &id).await;
        assert!(rows.is_empty(), "no attempt was made: {rows:?}");
    }
    // The first real delivery is attempt 1; a stale handle cannot release it.
    let m = lease_due(&s, 1, true, at(0)).await.pop().unwrap();
    assert_eq!(m.delivery_count, 1);
    let stale = LeaseParams { receipt_handle: format!("{id}.0000"), ..lease(&m, at(0)) };
    let r = s.delivery_release(DeliveryReleaseParams { lease: stale, execution_id: None }).await;
    assert!(matches!(r, Err(StoreError::LeaseLost(_))), "{r:?}");
    assert_eq!(the_execution(&s, &id).await.status, ExecutionStatus::Running);
}

/// Thousands of failures settling at once (a batch whose retries all come due together):
/// every retry, dead letter and release lands, each on its own lease, with its attempt.
pub async fn a_burst_of_failures_settles_every_lease(s: Store) {
    subscribe(&s, "probe", "a").await;
    let n = 1500u32;
    let sends = (0..n)
        .map(|i| MessageSendParams {
            group_key: None,
            idempotency_key: (i % 2 == 0).then(|| format!("key-{i}")),
            retention_seconds: 86_400,
            ..send_params("probe", &format!("{{\"i\":{i}}}"), at(0))
        })
        .collect();
    s.message_send_many(MessageSendManyParams { messages: sends }).await.unwrap();
    let leased = lease_due(&s, n, true, at(0)).await;
    assert_eq!(leased.len(), n as usize);

    // Each message's fate by its `i`: retried, dead-lettered or released.
    let settled = futures::future::join_all(leased.iter().map(|m| {
        let (s, lease) = (s.clone(), lease(m, at(0)));
        let execution = closing(m.execution_id.unwrap(), ExecutionStatus::Failed, Some("upstream said 503"), at(0));
        async move {
            match index(m) % 3 {
                0 => s.delivery_retry(DeliveryRetryParams { lease, delay: Duration::from_secs(100), execution }).await,
                1 => {
                    let reason = "gave up after 1 of 1 attempts: upstream said 503".into();
                    s.delivery_dead_letter(DeliveryDeadLetterParams { lease, reason, execution }).await
                }
                _ => s.delivery_release(DeliveryReleaseParams { lease, execution_id: m.execution_id }).await,
            }
        }
    }))
    .await;
    let failed: Vec<_> = settled.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "{} of {n} failed, e.g. {:?}", failed.len(), failed.first());

    let letters = s.dead_letter_list(DeadLetterListParams { limit: 2 * n }).await.unwrap();
    assert_eq!(letters.len(), n as usize / 3);
    for m in &leased {
        let d = state(&s, &m.message_id, "a").await.unwrap();
        let rows = executions(&s, &m.message_id).await;
        let attempts: Vec<_> = rows.iter().map(|e| (e.status, e.error.as_deref())).collect();
        match index(m) % 3 {
            0 => {
                assert_eq!((d.state, d.delivery_count), (DeliveryState::Pending, 1));
                assert_eq!(d.visible_at, at(100));
                assert_eq!(attempts, vec![(ExecutionStatus::Failed, Some("upstream said 503"))]);
            }
            1 => {
                assert_eq!((d.state, d.delivery_count), (DeliveryState::Dead, 1));
                assert_eq!(attempts, vec![(ExecutionStatus::Failed, Some("upstream said 503"))]);
                let letter = letters.iter().find(|l| l.message_id == m.message_id).expect("its dead letter");
                let payload: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                assert_eq!((&letter.payload, letter.attempts), (&payload, 1));
            }
            _ => {
                assert_eq!((d.state, d.delivery_count, d.visible_at), (DeliveryState::Pending, 0, at(0)));
                assert!(attempts.is_empty(), "{attempts:?}");
            }
        }
    }
    // Every message keeps its key for its retention: dead-lettered, retried or released.
    let keyed =
        |i: u32| MessageSendParams { idempotency_key: Some(format!("key-{i}")), ..send_params("probe", "{}", at(0)) };
    assert!(s.message_send(keyed(4)).await.unwrap().duplicate, "4 was dead-lettered");
    assert!(s.message_send(keyed(0)).await.unwrap().duplicate, "0 waits for its retry");
    assert!(s.message_send(keyed(2)).await.unwrap().duplicate, "2 was released");
}

/// Thousands of acknowledgements settling at once, each closing its own attempt: every
/// execution gets its own duration and status, and a receipt handle naming another lease's
/// token — mixed into the same burst — acknowledges nothing and fails alone.
pub async fn a_burst_of_acknowledgements_closes_each_attempt_with_its_own_values(s: Store) {
    subscribe(&s, "probe", "a").await;
    let n = 1200u32;
    let sends = (0..n).map(|i| send_params("probe", &format!("{{\"i\":{i}}}"), at(0))).collect();
    s.message_send_many(MessageSendManyParams { messages: sends }).await.unwrap();
    let leased = lease_due(&s, n, true, at(0)).await;
    assert_eq!(leased.len(), n as usize);
    let now = at(10);
    // The job of message i began i ms after the lease; every 7th message also gets an ack with
    // the next lease's token, before or after its own.
    let forged = |k: usize| {
        let (m, other) = (&leased[k], &leased[(k + 1) % leased.len()]);
        let token = other.receipt_handle.rsplit_once('.').unwrap().1;
        LeaseParams { receipt_handle: format!("{}.{token}", m.message_id), ..lease(m, now) }
    };
    let acks = leased.iter().enumerate().flat_map(|(k, m)| {
        let began = at(0) + chrono::Duration::milliseconds(index(m) as i64);
        let execution = Some(ExecutionFinishParams {
            id: m.execution_id.unwrap(),
            status: ExecutionStatus::Success,
            error: None,
            began_at: Some(began),
            now,
        });
        let genuine = DeliveryAckParams { lease: lease(m, now), execution };
        let fake = (k % 7 == 0).then(|| DeliveryAckParams { lease: forged(k), execution: None });
        // Sometimes the forged handle comes first.
        let (genuine, fake) = (Some((true, genuine)), fake.map(|f| (false, f)));
        if k % 2 == 0 { [genuine, fake] } else { [fake, genuine] }.into_iter().flatten()
    });
    let results = futures::future::join_all(acks.map(|(genuine, p)| {
        let s = s.clone();
        async move { (genuine, s.delivery_ack(p).await) }
    }))
    .await;
    for (genuine, r) in &results {
        if *genuine {
            assert!(r.is_ok(), "a genuine ack failed: {r:?}");
        } else {
            assert!(r.is_err(), "an ack with another lease's token was taken");
        }
    }
    for m in &leased {
        let e = the_execution(&s, &m.message_id).await;
        let expected = 10_000 - index(m) as i64;
        assert_eq!((e.status, e.duration_ms), (ExecutionStatus::Success, Some(expected)), "{}", m.message_id);
        assert_eq!(delivery_state(&s, &m.message_id).await, DeliveryState::Acked);
    }
}

/// A lease given back after maintenance closed its attempt as abandoned (the lease ran out
/// while it waited): the attempt is on record, so it stays counted — as many attempts as
/// deliveries, and the next one is attempt 2.
pub async fn a_release_after_its_attempt_was_rescued_keeps_it_counted(s: Store) {
    subscribe(&s, "probe", "a").await;
    let id = send(&s, "probe", at(0)).await;
    let m = lease_due(&s, 1, true, at(0)).await.pop().unwrap();
    let r = s.maintenance_run(keep_everything(at(61))).await.unwrap();
    assert_eq!(r.executions_rescued, 1);
    let p = DeliveryReleaseParams { lease: lease(&m, at(62)), execution_id: m.execution_id };
    s.delivery_release(p).await.unwrap();
    let d = state(&s, &id, "a").await.unwrap();
    assert_eq!((d.state, d.delivery_count, d.attempts), (DeliveryState::Pending, 1, 1));
    assert_eq!(the_execution(&s, &id).await.status, ExecutionStatus::Failed, "kept, closed once");
    let again = lease_due(&s, 1, true, at(62)).await.pop().unwrap();
    assert_eq!((again.delivery_count, again.attempts), (2, 2));
}
