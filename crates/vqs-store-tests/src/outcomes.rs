//! Job outcomes (SPEC.md, "Job outcomes"): a snooze spends no attempt; a cancel — by the
//! job, an operator or a purge — ends a delivery `cancelled`, final like `acked`, and its
//! lease can no longer settle it.

use std::time::Duration;

use chrono::DateTime;
use chrono::Utc;
use vqs::store::*;

use crate::support::*;

fn claim_exec(group: &str, now: DateTime<Utc>) -> DeliveryClaimParams {
    DeliveryClaimParams { start_executions: true, ..claim_params(group, 1, now) }
}

async fn claim_one(s: &Store, group: &str, now: DateTime<Utc>) -> LeasedMessage {
    s.delivery_claim(claim_exec(group, now)).await.expect("claim").pop().expect("a message is due")
}

fn cancel_params(id: &str, now: DateTime<Utc>) -> MessageCancelParams {
    MessageCancelParams { message_id: id.into(), reason: "cancelled by an operator".into(), now }
}

async fn cancel(s: &Store, id: &str, now: DateTime<Utc>) -> MessageCancelled {
    s.message_cancel(cancel_params(id, now)).await.expect("message_cancel")
}

fn purge(topic: &str, group: Option<&str>, dry_run: bool, now: DateTime<Utc>) -> TopicPurgeParams {
    TopicPurgeParams { topic: topic.into(), consumer_group: group.map(Into::into), dry_run, now }
}

fn retry(m: &LeasedMessage, status: ExecutionStatus, now: DateTime<Utc>) -> DeliveryRetryParams {
    DeliveryRetryParams { lease: lease(m, now), delay: Duration::ZERO, execution: finish(m.execution_id, status, now) }
}

async fn delivery_state(s: &Store, id: &str, group: &str) -> DeliveryState {
    state(s, id, group).await.expect("a delivery").state
}

fn is_lease_lost<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::LeaseLost(_)))
}

pub async fn a_snoozed_retry_gives_the_attempt_back(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let m = claim_one(&s, "a", at(1)).await;
    assert_eq!(m.attempts, 1);
    s.delivery_retry(retry(&m, ExecutionStatus::Snoozed, at(2))).await.unwrap();
    let again = claim_one(&s, "a", at(3)).await;
    assert_eq!((again.attempts, again.delivery_count), (1, 2), "a snooze spends no attempt, a delivery it does");
    // A failure spends one.
    s.delivery_retry(retry(&again, ExecutionStatus::Failed, at(4))).await.unwrap();
    let third = claim_one(&s, "a", at(5)).await;
    assert_eq!((third.attempts, third.delivery_count), (2, 3));
    let rows = executions(&s, &id).await;
    let statuses: Vec<(u32, ExecutionStatus)> = rows.iter().rev().map(|r| (r.attempt, r.status)).collect();
    assert_eq!(
        statuses,
        [(1, ExecutionStatus::Snoozed), (1, ExecutionStatus::Failed), (2, ExecutionStatus::Running)],
        "the snoozed attempt is recorded, and the next real attempt keeps its number"
    );
}

pub async fn an_ack_closing_cancelled_ends_the_delivery_cancelled(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let m = claim_one(&s, "a", at(1)).await;
    let execution = m.execution_id.map(|id| ExecutionFinishParams {
        id,
        status: ExecutionStatus::Cancelled,
        error: Some("no longer needed".into()),
        began_at: None,
        now: at(2),
    });
    s.delivery_ack(DeliveryAckParams { lease: lease(&m, at(2)), execution }).await.unwrap();
    assert_eq!(delivery_state(&s, &id, "a").await, DeliveryState::Cancelled);
    let rows = executions(&s, &id).await;
    assert_eq!((rows[0].status, rows[0].error.as_deref()), (ExecutionStatus::Cancelled, Some("no longer needed")));
    assert!(claim(&s, "a", 10, at(1000)).await.is_empty(), "never claimed again");
    // A plain ack still ends `acked`, in the same statement as another's cancel.
    let (x, y) = (send(&s, "t", at(3)).await, send(&s, "t", at(3)).await);
    let leased = s.delivery_claim(DeliveryClaimParams { limit: 2, ..claim_exec("a", at(4)) }).await.unwrap();
    let acks = leased.iter().map(|m| {
        let status = if m.message_id == x { ExecutionStatus::Cancelled } else { ExecutionStatus::Success };
        s.delivery_ack(DeliveryAckParams { lease: lease(m, at(5)), execution: finish(m.execution_id, status, at(5)) })
    });
    for r in futures::future::join_all(acks).await {
        r.unwrap();
    }
    assert_eq!(delivery_state(&s, &x, "a").await, DeliveryState::Cancelled);
    assert_eq!(delivery_state(&s, &y, "a").await, DeliveryState::Acked);
}

/// Sixty acknowledgements sent at once, settled together: each delivery ends as its own ack
/// said (a job that cancelled itself `cancelled`, the others `acked`), and a forged receipt
/// handle among them fails alone, its delivery still leased.
pub async fn a_batch_of_acks_settles_each_delivery_by_its_own_lease(s: Store) {
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Ack {
        Forged,
        Cancelled,
        Success,
    }
    let ack_of = |i: usize| match i {
        _ if i.is_multiple_of(5) => Ack::Forged,
        _ if i.is_multiple_of(3) => Ack::Cancelled,
        _ => Ack::Success,
    };
    subscribe(&s, "t", "a").await;
    for _ in 0..60 {
        send(&s, "t", at(0)).await;
    }
    let leased = s.delivery_claim(DeliveryClaimParams { limit: 60, ..claim_exec("a", at(1)) }).await.unwrap();
    assert_eq!(leased.len(), 60);
    let acks = leased.iter().enumerate().map(|(i, m)| {
        let (m, status) = match ack_of(i) {
            Ack::Forged => (
                LeasedMessage { receipt_handle: receipt_handle(&m.message_id, "forged"), ..m.clone() },
                ExecutionStatus::Success,
            ),
            Ack::Cancelled => (m.clone(), ExecutionStatus::Cancelled),
            Ack::Success => (m.clone(), ExecutionStatus::Success),
        };
        s.delivery_ack(DeliveryAckParams { lease: lease(&m, at(2)), execution: finish(m.execution_id, status, at(2)) })
    });
    let results = futures::future::join_all(acks).await;
    for (i, (m, r)) in leased.iter().zip(&results).enumerate() {
        let expected = match ack_of(i) {
            Ack::Forged => DeliveryState::Leased,
            Ack::Cancelled => DeliveryState::Cancelled,
            Ack::Success => DeliveryState::Acked,
        };
        if ack_of(i) == Ack::Forged {
            assert!(is_lease_lost(r), "ack {i}: a forged handle is a lost lease: {r:?}");
        } else {
            assert!(r.is_ok(), "ack {i} ({:?}): {r:?}", ack_of(i));
        }
        assert_eq!(delivery_state(&s, &m.message_id, "a").await, expected, "delivery {i} ({:?})", ack_of(i));
    }
}

pub async fn cancelling_a_pending_message_means_it_never_runs(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let r = cancel(&s, &id, at(1)).await;
    assert_eq!(r, MessageCancelled { found: true, pending: vec!["a".into()], ..MessageCancelled::default() });
    assert_eq!(delivery_state(&s, &id, "a").await, DeliveryState::Cancelled);
    assert!(claim(&s, "a", 10, at(1000)).await.is_empty());
    let by_id = s.delivery_claim(DeliveryClaimParams { message_id: Some(id.clone()), ..claim_params("a", 1, at(2)) });
    assert!(matches!(by_id.await, Err(StoreError::AlreadyAcknowledged(_))), "finished, not locked");
    assert_eq!(s.delivery_next_due(DeliveryNextDueParams { consumer_group: "a".into() }).await.unwrap(), None);
    let run_now = s.message_run_now(MessageRunNowParams { message_id: id.clone(), now: at(3) }).await.unwrap();
    assert_eq!(run_now, 0, "run-now does not revive it");
    let listed = s.message_list(MessageListParams { topic: "t".into(), limit: 10 }).await.unwrap();
    assert!(listed.is_empty(), "not listed among the live messages: {listed:?}");
    // A second cancel changes nothing and says so.
    let again = cancel(&s, &id, at(4)).await;
    assert_eq!(again.finished, [("a".to_string(), DeliveryState::Cancelled)]);
    assert!(again.pending.is_empty() && again.running.is_empty());
}

pub async fn cancelling_a_leased_message_closes_its_attempt_and_voids_its_lease(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let m = claim_one(&s, "a", at(1)).await;
    let r = cancel(&s, &id, at(2)).await;
    assert_eq!(r, MessageCancelled { found: true, running: vec!["a".into()], ..MessageCancelled::default() });
    let rows = executions(&s, &id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status, rows[0].error.as_deref(), rows[0].finished_at),
        (ExecutionStatus::Cancelled, Some("cancelled by an operator"), Some(at(2)))
    );
    // The lease settles nothing any more: answered as a lost lease.
    let acked = s
        .delivery_ack(DeliveryAckParams {
            lease: lease(&m, at(3)),
            execution: finish(m.execution_id, ExecutionStatus::Success, at(3)),
        })
        .await;
    assert!(is_lease_lost(&acked), "{acked:?}");
    let retried = s.delivery_retry(retry(&m, ExecutionStatus::Failed, at(3))).await;
    assert!(is_lease_lost(&retried), "{retried:?}");
    let lettered = s
        .delivery_dead_letter(DeliveryDeadLetterParams {
            lease: lease(&m, at(3)),
            reason: "boom".into(),
            execution: None,
        })
        .await;
    assert!(is_lease_lost(&lettered), "{lettered:?}");
    let extended =
        s.delivery_set_visibility(LeaseVisibilityParams { lease: lease(&m, at(3)), visibility_seconds: 60 }).await;
    assert!(is_lease_lost(&extended), "{extended:?}");
    let released =
        s.delivery_release(DeliveryReleaseParams { lease: lease(&m, at(3)), execution_id: m.execution_id }).await;
    assert!(is_lease_lost(&released), "{released:?}");
    // Nothing above changed the delivery or its closed attempt.
    let d = state(&s, &id, "a").await.unwrap();
    assert_eq!((d.state, d.attempts), (DeliveryState::Cancelled, 1));
    let rows = executions(&s, &id).await;
    assert_eq!((rows.len(), rows[0].status), (1, ExecutionStatus::Cancelled), "closed once: {rows:?}");
    assert!(s.dead_letter_list(DeadLetterListParams { limit: 10 }).await.unwrap().is_empty());
    // Not leased again when its lease would have ended, nor rescued.
    assert!(claim(&s, "a", 10, at(100)).await.is_empty());
    let report = s.maintenance_run(keep_everything(at(100))).await.unwrap();
    assert_eq!(report.executions_rescued, 0);
    assert_eq!(delivery_state(&s, &id, "a").await, DeliveryState::Cancelled);
}

pub async fn cancelling_a_finished_message_changes_nothing(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let m = claim_one(&s, "a", at(1)).await;
    s.delivery_ack(DeliveryAckParams {
        lease: lease(&m, at(2)),
        execution: finish(m.execution_id, ExecutionStatus::Success, at(2)),
    })
    .await
    .unwrap();
    let r = cancel(&s, &id, at(3)).await;
    assert_eq!(
        r,
        MessageCancelled {
            found: true,
            finished: vec![("a".into(), DeliveryState::Acked)],
            ..MessageCancelled::default()
        }
    );
    assert_eq!(delivery_state(&s, &id, "a").await, DeliveryState::Acked);
    assert_eq!(executions(&s, &id).await[0].status, ExecutionStatus::Success);
}

pub async fn cancelling_an_unknown_message_finds_nothing(s: Store) {
    subscribe(&s, "t", "a").await;
    send(&s, "t", at(0)).await;
    let r = cancel(&s, "0190a4b2-0000-7000-8000-000000000000", at(1)).await;
    assert_eq!(r, MessageCancelled::default());
    assert!(!r.found);
    assert_eq!(claim(&s, "a", 10, at(2)).await.len(), 1, "the other message is untouched");
}

pub async fn a_cancel_reaches_every_consumer_group(s: Store) {
    for g in ["a", "b", "c"] {
        subscribe(&s, "t", g).await;
    }
    let id = send(&s, "t", at(0)).await;
    let done = claim_one(&s, "a", at(1)).await;
    let execution = finish(done.execution_id, ExecutionStatus::Success, at(2));
    s.delivery_ack(DeliveryAckParams { lease: lease(&done, at(2)), execution }).await.unwrap();
    let running = claim_one(&s, "c", at(2)).await;
    let r = cancel(&s, &id, at(3)).await;
    assert_eq!(
        r,
        MessageCancelled {
            found: true,
            pending: vec!["b".into()],
            running: vec!["c".into()],
            finished: vec![("a".into(), DeliveryState::Acked)],
            remote: false,
        }
    );
    assert_eq!(delivery_state(&s, &id, "a").await, DeliveryState::Acked);
    assert_eq!(delivery_state(&s, &id, "b").await, DeliveryState::Cancelled);
    assert_eq!(delivery_state(&s, &id, "c").await, DeliveryState::Cancelled);
    assert!(is_lease_lost(&ack(&s, &running, at(4)).await));
    let by_group: Vec<(String, ExecutionStatus)> =
        executions(&s, &id).await.into_iter().map(|e| (e.consumer_group, e.status)).rev().collect();
    assert_eq!(by_group, [("a".into(), ExecutionStatus::Success), ("c".into(), ExecutionStatus::Cancelled)]);
}

pub async fn sixteen_concurrent_cancels_have_one_winner(s: Store) {
    subscribe(&s, "t", "a").await;
    subscribe(&s, "t", "b").await;
    let id = send(&s, "t", at(0)).await;
    claim_one(&s, "b", at(1)).await;
    let all = futures::future::join_all((0..16).map(|_| s.message_cancel(cancel_params(&id, at(2))))).await;
    let all: Vec<MessageCancelled> = all.into_iter().map(|r| r.expect("every cancel answers")).collect();
    let winners: Vec<&MessageCancelled> =
        all.iter().filter(|r| !r.pending.is_empty() || !r.running.is_empty()).collect();
    assert_eq!(winners.len(), 1, "{all:?}");
    assert_eq!(
        (winners[0].pending.as_slice(), winners[0].running.as_slice()),
        (&["a".to_string()][..], &["b".to_string()][..])
    );
    for r in all.iter().filter(|r| r.pending.is_empty() && r.running.is_empty()) {
        assert_eq!(
            r.finished,
            [("a".to_string(), DeliveryState::Cancelled), ("b".to_string(), DeliveryState::Cancelled)],
            "the others see it cancelled"
        );
    }
    assert_eq!(executions(&s, &id).await[0].status, ExecutionStatus::Cancelled);
}

pub async fn a_cancel_racing_an_ack_has_one_winner(s: Store) {
    subscribe(&s, "t", "a").await;
    for i in 0..20 {
        let now = at(10 * i);
        let id = send(&s, "t", now).await;
        let m = claim_one(&s, "a", now).await;
        let ack = s.delivery_ack(DeliveryAckParams {
            lease: lease(&m, now),
            execution: finish(m.execution_id, ExecutionStatus::Success, now),
        });
        let (acked, cancelled) = tokio::join!(ack, s.message_cancel(cancel_params(&id, now)));
        let cancelled = cancelled.expect("the cancel answers");
        let status = executions(&s, &id).await[0].status;
        match acked {
            Ok(()) => {
                assert_eq!(cancelled.finished, [("a".to_string(), DeliveryState::Acked)], "the ack won");
                assert!(cancelled.running.is_empty());
                assert_eq!(delivery_state(&s, &id, "a").await, DeliveryState::Acked);
                assert_eq!(status, ExecutionStatus::Success);
            }
            Err(e) => {
                assert!(matches!(e, StoreError::LeaseLost(_)), "the cancel won: {e:?}");
                assert_eq!(cancelled.running, ["a".to_string()]);
                assert_eq!(delivery_state(&s, &id, "a").await, DeliveryState::Cancelled);
                assert_eq!(status, ExecutionStatus::Cancelled);
            }
        }
    }
}

/// `n` messages of topic "t", consumed by groups "a" and "b".
async fn backlog(s: &Store, n: usize) -> Vec<String> {
    subscribe(s, "t", "a").await;
    subscribe(s, "t", "b").await;
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let messages = chunk.iter().map(|_| send_params("t", "{}", at(0))).collect();
        let sent = s.message_send_many(MessageSendManyParams { messages }).await.expect("send_many");
        ids.extend(sent.into_iter().map(|r| r.message_id));
    }
    ids
}

pub async fn a_dry_run_purge_counts_and_changes_nothing(s: Store) {
    let ids = backlog(&s, 3).await;
    send(&s, "other", at(0)).await;
    assert_eq!(s.topic_purge(purge("t", None, true, at(1))).await.unwrap(), 3, "messages, not deliveries");
    assert_eq!(s.topic_purge(purge("t", Some("a"), true, at(1))).await.unwrap(), 3);
    assert_eq!(s.topic_purge(purge("nothing", None, true, at(1))).await.unwrap(), 0);
    for id in &ids {
        assert_eq!(delivery_state(&s, id, "a").await, DeliveryState::Pending);
        assert_eq!(delivery_state(&s, id, "b").await, DeliveryState::Pending);
    }
}

pub async fn a_purge_of_one_group_leaves_the_others(s: Store) {
    let ids = backlog(&s, 3).await;
    assert_eq!(s.topic_purge(purge("t", Some("a"), false, at(1))).await.unwrap(), 3);
    for id in &ids {
        assert_eq!(delivery_state(&s, id, "a").await, DeliveryState::Cancelled);
        assert_eq!(delivery_state(&s, id, "b").await, DeliveryState::Pending);
    }
    assert!(claim(&s, "a", 10, at(2)).await.is_empty());
    assert_eq!(claim(&s, "b", 10, at(2)).await.len(), 3);
    assert_eq!(s.topic_purge(purge("t", Some("a"), false, at(3))).await.unwrap(), 0, "nothing left to purge");
}

pub async fn a_purge_leaves_leased_deliveries_alone(s: Store) {
    subscribe(&s, "t", "a").await;
    let ids: Vec<String> = futures::future::join_all((0..3).map(|_| send(&s, "t", at(0)))).await;
    let running = claim_one(&s, "a", at(1)).await;
    assert_eq!(s.topic_purge(purge("t", None, true, at(2))).await.unwrap(), 2);
    assert_eq!(s.topic_purge(purge("t", None, false, at(2))).await.unwrap(), 2);
    for id in &ids {
        let expected = if *id == running.message_id { DeliveryState::Leased } else { DeliveryState::Cancelled };
        assert_eq!(delivery_state(&s, id, "a").await, expected);
    }
    ack(&s, &running, at(3)).await.expect("the running job settles as usual");
    assert_eq!(
        executions(&s, &running.message_id).await[0].status,
        ExecutionStatus::Running,
        "not closed by the purge"
    );
}

pub async fn a_purge_of_a_large_backlog_goes_in_batches(s: Store) {
    let n = 11_001;
    let ids = backlog(&s, n).await;
    let leased = claim(&s, "b", 1, at(1)).await;
    assert_eq!(s.topic_purge(purge("t", None, true, at(2))).await.unwrap(), n as u64);
    assert_eq!(s.topic_purge(purge("t", None, false, at(2))).await.unwrap(), n as u64, "each message once");
    assert_eq!(s.topic_purge(purge("t", None, true, at(3))).await.unwrap(), 0);
    assert!(claim(&s, "a", 10, at(4)).await.is_empty());
    assert!(claim(&s, "b", 10, at(4)).await.is_empty());
    let stats = s.queue_stats(QueueStatsParams { now: at(4) }).await.unwrap();
    assert_eq!((stats[0].cancelled, stats[0].running), (2 * n as i64 - 1, 1));
    assert_eq!(delivery_state(&s, &leased[0].message_id, "b").await, DeliveryState::Leased);
    assert_eq!(delivery_state(&s, &ids[n - 1], "a").await, DeliveryState::Cancelled);
}

pub async fn delivery_cancelled_names_the_cancelled_ones(s: Store) {
    subscribe(&s, "t", "a").await;
    let ids: Vec<String> = futures::future::join_all((0..3).map(|_| send(&s, "t", at(0)))).await;
    let leased = s.delivery_claim(DeliveryClaimParams { limit: 3, ..claim_exec("a", at(1)) }).await.unwrap();
    assert_eq!(leased.len(), 3);
    cancel(&s, &ids[1], at(2)).await;
    ack(&s, leased.iter().find(|m| m.message_id == ids[2]).unwrap(), at(2)).await.unwrap();
    let mut asked: Vec<(String, String)> = ids.iter().map(|id| (id.clone(), "a".to_string())).collect();
    asked.push((ids[1].clone(), "other group".into()));
    asked.push(("unknown".into(), "a".into()));
    let r = s.delivery_cancelled(DeliveryCancelledParams { deliveries: asked }).await.unwrap();
    assert_eq!(r, [(ids[1].clone(), "a".to_string())]);
    let none = s.delivery_cancelled(DeliveryCancelledParams { deliveries: Vec::new() }).await.unwrap();
    assert!(none.is_empty());
}

pub async fn the_key_of_a_cancelled_message_still_dedups(s: Store) {
    subscribe(&s, "t", "a").await;
    let p =
        MessageSendParams { idempotency_key: Some("k".into()), retention_seconds: 60, ..send_params("t", "{}", at(1)) };
    let first = s.message_send(p.clone()).await.unwrap();
    cancel(&s, &first.message_id, at(2)).await;
    let again = s.message_send(MessageSendParams { now: at(3), ..p.clone() }).await.unwrap();
    assert_eq!((again.message_id.as_str(), again.duplicate), (first.message_id.as_str(), true), "within retention");
    let after = s.message_send(MessageSendParams { now: at(61), ..p }).await.unwrap();
    assert!(!after.duplicate, "past the original's retention the key queues a new message");
    assert_eq!(claim(&s, "a", 10, at(62)).await.len(), 1);
}

pub async fn maintenance_prunes_a_cancelled_message_like_a_finished_one(s: Store) {
    subscribe(&s, "t", "a").await;
    let cancelled = send(&s, "t", at(0)).await;
    let live = send(&s, "t", at(0)).await;
    cancel(&s, &cancelled, at(1)).await;
    let p = MaintenanceParams { message_retention_seconds: 10, ..keep_everything(at(1000)) };
    let r = s.maintenance_run(p).await.unwrap();
    assert_eq!(r.finished_messages_pruned, 1);
    assert!(s.message_get(MessageGetParams { id: cancelled }).await.unwrap().is_none());
    assert!(s.message_get(MessageGetParams { id: live }).await.unwrap().is_some(), "the pending one stays");
}

pub async fn queue_stats_count_cancelled_deliveries(s: Store) {
    subscribe(&s, "t", "a").await;
    let (x, _) = (send(&s, "t", at(0)).await, send(&s, "t", at(0)).await);
    let y = send(&s, "t", at(0)).await;
    cancel(&s, &x, at(1)).await;
    let m = s.delivery_claim(DeliveryClaimParams { message_id: Some(y), ..claim_params("a", 1, at(1)) }).await.unwrap();
    ack(&s, &m[0], at(2)).await.unwrap();
    let stats = s.queue_stats(QueueStatsParams { now: at(3) }).await.unwrap();
    assert_eq!(
        stats,
        [TopicStats { topic: "t".into(), waiting: 1, succeeded: 1, cancelled: 1, ..TopicStats::default() }]
    );
}

pub async fn execution_counts_count_snoozed_and_cancelled_attempts(s: Store) {
    subscribe(&s, "t", "a").await;
    let (x, _) = (send(&s, "t", at(0)).await, send(&s, "t", at(0)).await);
    let m = s.delivery_claim(DeliveryClaimParams { message_id: Some(x.clone()), ..claim_exec("a", at(1)) }).await;
    s.delivery_retry(retry(&m.unwrap()[0], ExecutionStatus::Snoozed, at(2))).await.unwrap();
    let m = s.delivery_claim(DeliveryClaimParams { message_id: Some(x.clone()), ..claim_exec("a", at(3)) }).await;
    s.delivery_retry(retry(&m.unwrap()[0], ExecutionStatus::Failed, at(4))).await.unwrap();
    claim_one(&s, "a", at(5)).await;
    claim_one(&s, "a", at(5)).await;
    cancel(&s, &x, at(6)).await;
    let counts = s.execution_counts(ExecutionCountParams { since: at(0) }).await.unwrap();
    assert_eq!(
        counts,
        [ExecutionCounts { topic: "t".into(), running: 1, success: 0, failed: 1, snoozed: 1, cancelled: 1 }]
    );
}

pub async fn a_group_subscribing_later_does_not_run_a_cancelled_message(s: Store) {
    subscribe(&s, "t", "a").await;
    let cancelled = send(&s, "t", at(0)).await;
    let live = send(&s, "t", at(0)).await;
    cancel(&s, &cancelled, at(1)).await;
    subscribe(&s, "t", "late").await;
    assert!(state(&s, &cancelled, "late").await.is_none(), "the cancelled message is not delivered again");
    let leased: Vec<String> = claim(&s, "late", 10, at(2)).await.into_iter().map(|m| m.message_id).collect();
    assert_eq!(leased, [live]);
}
