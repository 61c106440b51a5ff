//! Maintenance and retention: prune by age and count, never an unfinished message.

use chrono::{DateTime, Utc};
use vqs::store::*;

use crate::support::*;

/// Sends `n` messages a second apart from `at(0)`, acknowledges the first `finished`.
async fn messages(s: &Store, n: i64, finished: usize) -> Vec<String> {
    subscribe(s, "t", "a").await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(send(s, "t", at(i)).await);
    }
    for id in &ids[..finished] {
        let by_id = DeliveryClaimParams { message_id: Some(id.clone()), ..claim_params("a", 1, at(100)) };
        let m = s.delivery_claim(by_id).await.unwrap().remove(0);
        ack(s, &m, at(101)).await.unwrap();
    }
    ids
}

async fn kept(s: &Store, ids: &[String]) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        out.push(s.message_get(MessageGetParams { id: id.to_string() }).await.unwrap().is_some());
    }
    out
}

pub async fn prunes_finished_messages_by_age(s: Store) {
    let ids = messages(&s, 4, 3).await;
    // At 1000 s, a retention of 998.5 s cuts off at 1.5 s: messages 0 and 1 are old enough.
    let p = MaintenanceParams { message_retention_seconds: 998, ..keep_everything(at(1000)) };
    let r = s.maintenance_run(p).await.unwrap();
    assert_eq!(r.finished_messages_pruned, 2);
    assert_eq!(kept(&s, &ids).await, [false, false, true, true]);
    // Everything old enough now, but message 3 is unfinished.
    let r = s
        .maintenance_run(MaintenanceParams { message_retention_seconds: 1, ..keep_everything(at(5000)) })
        .await
        .unwrap();
    assert_eq!(r.finished_messages_pruned, 1);
    assert_eq!(kept(&s, &ids).await, [false, false, false, true]);
}

pub async fn prunes_finished_messages_by_count_never_unfinished(s: Store) {
    let ids = messages(&s, 5, 2).await;
    let r = s.maintenance_run(MaintenanceParams { max_messages: 1, ..keep_everything(at(200)) }).await.unwrap();
    assert_eq!(r.finished_messages_pruned, 2, "only the finished ones go, even above the count");
    assert_eq!(kept(&s, &ids).await, [false, false, true, true, true]);
    assert!(s.maintenance_run(keep_everything(at(300))).await.unwrap().is_empty(), "nothing more to do");
}

pub async fn rescues_abandoned_executions_and_prunes_rows(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    s.delivery_claim(DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, at(1)) }).await.unwrap();
    let r = s.maintenance_run(keep_everything(at(20))).await.unwrap();
    assert_eq!(r.executions_rescued, 0, "the lease still holds");
    let r = s.maintenance_run(keep_everything(at(40))).await.unwrap();
    assert_eq!(r.executions_rescued, 1);
    let e = executions(&s, &id).await.remove(0);
    assert_eq!((e.status, e.error.as_deref()), (ExecutionStatus::Failed, Some(ABANDONED_ERROR)));
    let r = s
        .maintenance_run(MaintenanceParams { execution_retention_seconds: 10, ..keep_everything(at(100)) })
        .await
        .unwrap();
    assert_eq!(r.executions_pruned, 1);
    assert!(executions(&s, &id).await.is_empty());
}

// Retention: pruning removes what it should and nothing else — finished messages, old
// execution rows and cron runs by age and by count, in bounded batches — while live
// messages, `running` attempts, dead letters within their retention and each cron's latest
// run and latest success stay. Then the rescue of attempts whose lease or message ran out.
// (Moved from apps/web/tests/retention.rs and crash_recovery.rs.)

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// Lease what is due in group "a" at `now`, recording the attempts (as the local dispatcher).
async fn lease_running(s: &Store, now: DateTime<Utc>) -> Vec<LeasedMessage> {
    let p = DeliveryClaimParams { visibility_seconds: 60, start_executions: true, ..claim_params("a", 10, now) };
    s.delivery_claim(p).await.unwrap()
}

fn closing(m: &LeasedMessage, status: ExecutionStatus, now: DateTime<Utc>) -> Option<ExecutionFinishParams> {
    let error = (status == ExecutionStatus::Failed).then(|| "it failed".to_owned());
    m.execution_id.map(|id| ExecutionFinishParams { id, status, error, began_at: None, now })
}

/// Every execution row, oldest first: (message, attempt, status).
async fn all_executions(s: &Store) -> Vec<(String, u32, ExecutionStatus)> {
    let mut rows = s.execution_list(ExecutionListParams { limit: 1000, ..Default::default() }).await.unwrap();
    rows.reverse();
    rows.into_iter().map(|e| (e.message_id, e.attempt, e.status)).collect()
}

pub async fn finished_messages_go_after_their_retention_live_ones_stay(s: Store) {
    subscribe(&s, "probe", "a").await;
    let day = |now| MessageSendParams { retention_seconds: DAY as u32, ..send_params("probe", "{}", now) };
    let ok = s.message_send(day(at(0))).await.unwrap().message_id;
    let dead = s.message_send(day(at(0))).await.unwrap().message_id;
    let retrying = s.message_send(day(at(0))).await.unwrap().message_id;
    let delayed =
        s.message_send(MessageSendParams { delay_seconds: 20 * HOUR as u32, ..day(at(0)) }).await.unwrap().message_id;
    // One succeeds, one is dead-lettered, one fails and waits for its retry (100 s).
    for m in lease_running(&s, at(0)).await {
        let l = lease(&m, at(0));
        if m.message_id == ok {
            let execution = closing(&m, ExecutionStatus::Success, at(0));
            s.delivery_ack(DeliveryAckParams { lease: l, execution }).await.unwrap();
        } else if m.message_id == dead {
            let execution = closing(&m, ExecutionStatus::Failed, at(0));
            s.delivery_dead_letter(DeliveryDeadLetterParams { lease: l, reason: "fatal".into(), execution })
                .await
                .unwrap();
        } else {
            assert_eq!(m.message_id, retrying);
            let execution = closing(&m, ExecutionStatus::Failed, at(0));
            let delay = std::time::Duration::from_secs(100);
            s.delivery_retry(DeliveryRetryParams { lease: l, delay, execution }).await.unwrap();
        }
    }
    // Finished messages are kept 12 h (each message also ends at its own retention, 24 h).
    let pass = |now| MaintenanceParams { message_retention_seconds: 12 * HOUR as u64, ..default_retention(now) };
    let exists = async |id: &str| s.message_get(MessageGetParams { id: id.to_string() }).await.unwrap().is_some();

    // Within the retention: nothing goes.
    let report = s.maintenance_run(pass(at(11 * HOUR))).await.unwrap();
    assert_eq!(report.finished_messages_pruned, 0, "{report:?}");
    for id in [&ok, &dead, &retrying, &delayed] {
        assert!(exists(id).await);
    }

    // Past it: the acknowledged and the dead-lettered message go, with their deliveries;
    // the one waiting for its retry and the delayed one stay, and so do the dead letter and
    // every execution row (their own retentions are longer).
    let report = s.maintenance_run(pass(at(13 * HOUR))).await.unwrap();
    assert_eq!(report.finished_messages_pruned, 2, "{report:?}");
    assert!(!exists(&ok).await);
    assert!(!exists(&dead).await);
    assert_eq!(state(&s, &retrying, "a").await.expect("a retrying message is live").state, DeliveryState::Pending);
    assert!(exists(&delayed).await);
    assert_eq!(s.dead_letter_list(DeadLetterListParams { limit: 10 }).await.unwrap().len(), 1);
    assert_eq!(all_executions(&s).await.len(), 3);
    // A second pass finds nothing more.
    assert!(s.maintenance_run(pass(at(13 * HOUR))).await.unwrap().is_empty());

    // Execution rows go after theirs (7 days); the live messages have expired by then
    // (their retention, 24 h) and were dead-lettered, not dropped.
    let report = s.maintenance_run(pass(at(13 * HOUR + 7 * DAY))).await.unwrap();
    assert_eq!(report.executions_pruned, 3, "{report:?}");
    assert_eq!(report.messages_pruned, 2, "{report:?}");
    assert_eq!(s.dead_letter_list(DeadLetterListParams { limit: 10 }).await.unwrap().len(), 3);
    // Dead letters after 30 days.
    let report = s.maintenance_run(pass(at(13 * HOUR + 38 * DAY))).await.unwrap();
    assert_eq!(report.dead_letters_pruned, 3);
}

pub async fn count_limits_keep_the_newest_and_never_a_running_attempt(s: Store) {
    subscribe(&s, "probe", "a").await;
    // A long job, left running: its execution row is `running` under a live lease.
    let long = send(&s, "probe", at(0)).await;
    let by_id =
        DeliveryClaimParams { message_id: Some(long.clone()), visibility_seconds: 3600, ..claim_params("a", 1, at(0)) };
    assert_eq!(s.delivery_claim(by_id).await.unwrap().len(), 1);
    s.execution_start(ExecutionStartParams {
        topic: "probe".into(),
        message_id: long.clone(),
        consumer_group: "a".into(),
        attempt: 1,
        now: at(0),
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    for k in 1..=5 {
        ids.push(send(&s, "probe", at(k)).await);
        let leased = lease_running(&s, at(k)).await;
        assert_eq!(leased.len(), 1);
        let execution = closing(&leased[0], ExecutionStatus::Success, at(k));
        s.delivery_ack(DeliveryAckParams { lease: lease(&leased[0], at(k)), execution }).await.unwrap();
    }
    assert_eq!(all_executions(&s).await.len(), 6);

    // Keep 3 execution rows and 2 messages; prune 2 rows per pass: several bounded passes.
    let p = MaintenanceParams { max_executions: 3, max_messages: 2, batch: 2, ..default_retention(at(5)) };
    let mut passes = 0;
    loop {
        passes += 1;
        assert!(passes <= 100, "maintenance never drained");
        if !s.maintenance_run(p.clone()).await.unwrap().hit_batch_limit(p.batch) {
            break;
        }
    }
    assert!(passes >= 2, "a batch of 2 cannot prune it all in one pass");
    let left = all_executions(&s).await;
    let newest: Vec<&String> = ids.iter().rev().take(3).collect();
    assert_eq!(left.len(), 4, "{left:?}");
    assert_eq!(left[0], (long.clone(), 1, ExecutionStatus::Running), "the running row stays, however old");
    assert!(left[1..].iter().all(|(m, _, st)| newest.contains(&m) && *st == ExecutionStatus::Success), "{left:?}");
    // Messages: the newest 2 stay; so does the older running one (only finished messages
    // are deleted to meet the limit).
    assert!(s.message_get(MessageGetParams { id: long.clone() }).await.unwrap().is_some());
    assert_eq!(kept(&s, &ids).await, vec![false, false, false, true, true]);
}

pub async fn cron_runs_keep_each_crons_latest_run_and_latest_success(s: Store) {
    let mut hour = 0;
    let mut run = async |path: &str, success: bool| {
        hour += 1;
        let now = at(hour * HOUR);
        let start = CronRunStartParams { path: path.into(), schedule: "0 * * * *".into(), scheduled_at: now, now };
        let id = s.cron_run_start(start).await.unwrap().unwrap();
        let finish = CronRunFinishParams { id, status_code: Some(200), success, error: None, now };
        s.cron_run_finish(finish).await.unwrap();
        id
    };
    let a_success = run("/api/cron/a", true).await;
    let a_failed = run("/api/cron/a", false).await;
    let a_latest = run("/api/cron/a", false).await;
    let mut b = Vec::new();
    for _ in 0..5 {
        b.push(run("/api/cron/b", true).await);
    }
    let now = at(hour * HOUR);
    let ids = async |path: &str| -> Vec<i64> {
        let mut v: Vec<i64> = s
            .cron_run_list(CronRunListParams { path: Some(path.to_string()), limit: 100 })
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        v.sort();
        v
    };

    // Count: 2 runs per cron. b keeps its newest 2; a's third-newest run is its latest
    // success, which the heartbeat needs: it stays over the limit.
    let p = MaintenanceParams { max_cron_runs: 2, ..default_retention(now) };
    assert_eq!(s.maintenance_run(p).await.unwrap().cron_runs_pruned, 3);
    assert_eq!(ids("/api/cron/a").await, vec![a_success, a_failed, a_latest]);
    assert_eq!(ids("/api/cron/b").await, b[3..].to_vec());

    // Age: after 30 days everything old goes but the latest run and latest success of each.
    let later = now + chrono::Duration::days(31);
    assert_eq!(s.maintenance_run(default_retention(later)).await.unwrap().cron_runs_pruned, 2);
    assert_eq!(ids("/api/cron/a").await, vec![a_success, a_latest]);
    assert_eq!(ids("/api/cron/b").await, vec![b[4]]);
}

pub async fn maintenance_closes_running_rows_whose_lease_expired(s: Store) {
    subscribe(&s, "probe", "a").await;
    let id = send(&s, "probe", at(0)).await;
    // A worker leases the message and starts an execution, then vanishes.
    let p = DeliveryClaimParams { visibility_seconds: 60, ..claim_params("a", 1, at(0)) };
    assert_eq!(s.delivery_claim(p).await.unwrap().len(), 1);
    s.execution_start(ExecutionStartParams {
        topic: "probe".into(),
        message_id: id.clone(),
        consumer_group: "a".into(),
        attempt: 1,
        now: at(0),
    })
    .await
    .unwrap();
    let report = s.maintenance_run(default_retention(at(0))).await.unwrap();
    assert_eq!(report.executions_rescued, 0, "the lease still holds");
    let report = s.maintenance_run(default_retention(at(61))).await.unwrap();
    assert_eq!(report.executions_rescued, 1);
    let rows: Vec<_> = executions(&s, &id).await.into_iter().map(|e| (e.attempt, e.status)).collect();
    assert_eq!(rows, vec![(1, ExecutionStatus::Failed)]);
}

pub async fn maintenance_closes_an_attempt_whose_message_expired_and_leaves_other_queues_attempts_alone(s: Store) {
    subscribe(&s, "probe", "a").await;
    let start = |message_id: &str| ExecutionStartParams {
        topic: "probe".into(),
        message_id: message_id.into(),
        consumer_group: "a".into(),
        attempt: 1,
        now: at(0),
    };
    // A message with a short retention, leased for a long job that never comes back.
    let id = s
        .message_send(MessageSendParams { retention_seconds: 60, ..send_params("probe", "{}", at(0)) })
        .await
        .unwrap()
        .message_id;
    let claim = DeliveryClaimParams { visibility_seconds: 600, start_executions: true, ..claim_params("a", 1, at(0)) };
    assert_eq!(s.delivery_claim(claim).await.unwrap().len(), 1);
    // An attempt of a message delivered by another queue service (Vercel's): its delivery is
    // not in this database, and nothing here can tell that it is over.
    let elsewhere = s.execution_start(start("msg_delivered_by_vercel")).await.unwrap();

    let report = s.maintenance_run(default_retention(at(120))).await.unwrap();
    assert_eq!(report.messages_pruned, 1);
    let rows = s.execution_list(ExecutionListParams { limit: 10, ..Default::default() }).await.unwrap();
    let of = |id: &str| rows.iter().find(|r| r.message_id == id).unwrap();
    assert_eq!(of(&id).status, ExecutionStatus::Failed, "closed with its expired message");
    assert!(of(&id).error.as_deref().unwrap().starts_with("abandoned"));
    let other = of("msg_delivered_by_vercel");
    assert_eq!((other.id, other.status), (elsewhere, ExecutionStatus::Running), "still running, as far as we know");
}

/// Message-group rows are pruned once idle — nothing pending or leased, no unexpired push
/// slot, the rate bucket in the past — in bounded batches, and expired push slots with them;
/// a message published into a group whose row was pruned is still claimed.
pub async fn maintenance_prunes_idle_message_groups_and_expired_slots(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    let send_to = |key: &'static str, now: i64| {
        let s = s.clone();
        async move {
            let p = MessageSendParams { group_key: Some(key.into()), ..send_params("t", "{}", at(now)) };
            s.message_send(p).await.expect("send").message_id
        }
    };
    let grouped = |now: i64| DeliveryClaimParams { group_concurrency: Some(1), ..claim_params("g", 10, at(now)) };
    send_to("A", 0).await;
    send_to("B", 0).await;
    send_to("B", 0).await;
    let first = s.delivery_claim(grouped(1)).await.unwrap();
    assert_eq!(first.len(), 2, "one of A, one of B");
    for m in &first {
        let r = s.message_get(MessageGetParams { id: m.message_id.clone() }).await.unwrap().unwrap();
        if r.group_key.as_deref() == Some("A") {
            ack(&s, m, at(2)).await.unwrap();
        }
    }
    assert!(s.delivery_claim(grouped(3)).await.unwrap().is_empty(), "B is full, A has nothing");
    // Pushes (Vercel's): C and D took a start from their buckets (one an hour), D also holds
    // a slot until 10.
    let start = |key: &str, concurrency: Option<u32>, rate: Option<RateLimit>| FlowGroupStartParams {
        consumer_group: "g".into(),
        group_key: key.into(),
        message_id: format!("push-{key}"),
        concurrency,
        rate,
        slot_until: at(10),
        now: at(3),
    };
    let hourly = RateLimit { limit: 1, period_seconds: 3600 };
    assert_eq!(s.flow_group_start(start("C", None, Some(hourly))).await.unwrap(), FlowGroupStart::Started);
    assert_eq!(s.flow_group_start(start("D", Some(1), Some(hourly))).await.unwrap(), FlowGroupStart::Started);

    let r = s.maintenance_run(keep_everything(at(5))).await.unwrap();
    assert_eq!((r.flow_group_slots_pruned, r.flow_groups_pruned), (0, 1), "only A is idle: {r:?}");
    // A message into A, whose row is gone, is claimed as before.
    let again = send_to("A", 6).await;
    let claimed = s.delivery_claim(grouped(7)).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), [again.as_str()]);

    // An hour on: D's slot expired, C's bucket is full again; A and B still have leases.
    let one_at_a_time = MaintenanceParams { batch: 1, ..keep_everything(at(8000)) };
    let r = s.maintenance_run(one_at_a_time.clone()).await.unwrap();
    assert_eq!((r.flow_group_slots_pruned, r.flow_groups_pruned), (1, 1), "one of each per batch: {r:?}");
    assert!(r.hit_batch_limit(1));
    let r = s.maintenance_run(one_at_a_time.clone()).await.unwrap();
    assert_eq!((r.flow_group_slots_pruned, r.flow_groups_pruned), (0, 1), "{r:?}");
    let r = s.maintenance_run(one_at_a_time).await.unwrap();
    assert_eq!((r.flow_group_slots_pruned, r.flow_groups_pruned), (0, 0), "A and B are live: {r:?}");
    // D's slot is gone: a push of D starts.
    let d = FlowGroupStartParams { now: at(8000), slot_until: at(8060), ..start("D", Some(1), None) };
    let d = FlowGroupStartParams { message_id: "other".into(), ..d };
    assert_eq!(s.flow_group_start(d).await.unwrap(), FlowGroupStart::Started);
}

/// A consumer group whose subscription stays grouped but claims with no group limit (its
/// limit was cleared) still has its message-group rows pruned once their work is done: one
/// row per group key ever used must not stay for good.
pub async fn maintenance_prunes_the_groups_of_a_consumer_group_claiming_without_group_limits(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    for key in ["A", "B", "C"] {
        let p = MessageSendParams { group_key: Some(key.into()), ..send_params("t", "{}", at(0)) };
        s.message_send(p).await.expect("send");
    }
    let leased = s.delivery_claim(claim_params("g", 10, at(1))).await.unwrap();
    assert_eq!(leased.len(), 3, "a claim with no group limit takes every group's message");
    for m in &leased {
        ack(&s, m, at(2)).await.unwrap();
    }
    let r = s.maintenance_run(keep_everything(at(5))).await.unwrap();
    assert_eq!(r.flow_groups_pruned, 3, "A, B and C are idle: {r:?}");
    let r = s.maintenance_run(keep_everything(at(6))).await.unwrap();
    assert_eq!(r.flow_groups_pruned, 0, "{r:?}");
    // A group limit again: a new message of a pruned group is claimed.
    let p = MessageSendParams { group_key: Some("B".into()), ..send_params("t", "{}", at(7)) };
    let again = s.message_send(p).await.unwrap().message_id;
    let grouped = DeliveryClaimParams { group_concurrency: Some(1), ..claim_params("g", 10, at(8)) };
    let claimed = s.delivery_claim(grouped).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), [again.as_str()]);
}
