//! Message priorities (SPEC.md, "Flow control"): lower starts first, by due time within a
//! priority; a priority is kept across a retry, an expired lease, a rescue and a dead-letter
//! replay, and holds under a group limit and a concurrency limit.

use vqs::store::*;

use crate::support::*;

async fn send_at(s: &Store, priority: i16, now: i64) -> String {
    let p = MessageSendParams { priority, ..send_params("t", "{}", at(now)) };
    s.message_send(p).await.expect("send").message_id
}

async fn claim_one(s: &Store, group: &str, now: i64) -> LeasedMessage {
    let mut leased = claim(s, group, 1, at(now)).await;
    assert_eq!(leased.len(), 1, "one due at {now}");
    leased.remove(0)
}

pub async fn lower_priorities_start_first_in_due_order_within_one(s: Store) {
    subscribe(&s, "t", "g").await;
    subscribe(&s, "t", "batch").await;
    let p5_old = send_at(&s, 5, 0).await;
    let p0_old = send_at(&s, 0, 1).await;
    let m3_old = send_at(&s, -3, 2).await;
    let p0_new = send_at(&s, 0, 3).await;
    let p5_new = send_at(&s, 5, 4).await;
    let m3_new = send_at(&s, -3, 5).await;
    // Most urgent of all, but not due yet: it does not hold the others back.
    let delayed = MessageSendParams { priority: -100, delay_seconds: 100, ..send_params("t", "{}", at(6)) };
    let delayed = s.message_send(delayed).await.unwrap().message_id;
    let expected = [&m3_old, &m3_new, &p0_old, &p0_new, &p5_old, &p5_new];
    let mut one_by_one = Vec::new();
    for i in 0..6 {
        one_by_one.push(claim_one(&s, "g", 10 + i).await.message_id);
    }
    assert_eq!(one_by_one.iter().collect::<Vec<_>>(), expected, "lower first, oldest first within a priority");
    assert!(claim(&s, "g", 1, at(20)).await.is_empty(), "the delayed one is not due yet");
    // A batch comes back in the same order (a worker starts them in that order).
    let batch: Vec<String> = claim(&s, "batch", 10, at(20)).await.into_iter().map(|m| m.message_id).collect();
    assert_eq!(batch.iter().collect::<Vec<_>>(), expected);
    // Once due, the most urgent goes first.
    send_at(&s, 0, 106).await;
    assert_eq!(claim_one(&s, "g", 107).await.message_id, delayed);
    let viewed = s.message_get(MessageGetParams { id: m3_old.clone() }).await.unwrap().unwrap();
    assert_eq!((viewed.priority, viewed.deliveries.len()), (-3, 2), "the message shows its priority");
}

pub async fn a_priority_is_kept_across_retry_expiry_rescue_and_replay(s: Store) {
    subscribe(&s, "t", "g").await;
    send_at(&s, 0, 0).await;
    send_at(&s, 0, 1).await;
    let urgent = send_at(&s, -1, 2).await;
    // A retry: due again after its delay, then ahead of the older priority-0 messages.
    let m = claim_one(&s, "g", 3).await;
    assert_eq!(m.message_id, urgent);
    let retry =
        DeliveryRetryParams { lease: lease(&m, at(4)), delay: std::time::Duration::from_secs(5), execution: None };
    s.delivery_retry(retry).await.unwrap();
    let meanwhile = claim_one(&s, "g", 5).await;
    assert_ne!(meanwhile.message_id, urgent, "not due yet: another runs meanwhile");
    ack(&s, &meanwhile, at(6)).await.unwrap();
    let m = claim_one(&s, "g", 10).await;
    assert_eq!(m.message_id, urgent, "after its retry delay it is first again");
    // Its lease runs out (30 s, claim_params) with no settlement: first again.
    let m = claim_one(&s, "g", 45).await;
    assert_eq!((m.message_id.as_str(), m.delivery_count), (urgent.as_str(), 3), "after its lease ran out");
    // Its holder dies: the rescue makes it due, first again.
    s.process_beat(ProcessBeatParams { process_id: "p1".into(), now: at(80) }).await.unwrap();
    let held = DeliveryClaimParams {
        lease_holder: Some("p1".into()),
        visibility_seconds: 300,
        ..claim_params("g", 1, at(81))
    };
    assert_eq!(s.delivery_claim(held).await.unwrap()[0].message_id, urgent);
    let rescue = ProcessRescueParams { dead_before: at(100), rescuer: "p2".into(), now: at(120) };
    assert_eq!(s.process_rescue(rescue).await.unwrap().deliveries, 1);
    let m = claim_one(&s, "g", 121).await;
    assert_eq!(m.message_id, urgent, "after a rescue");
    // Dead-lettered, then replayed: the letter and the new message keep the priority.
    let dead = DeliveryDeadLetterParams { lease: lease(&m, at(122)), reason: "boom".into(), execution: None };
    s.delivery_dead_letter(dead).await.unwrap();
    let letter = s.dead_letter_list(DeadLetterListParams { limit: 10 }).await.unwrap().remove(0);
    assert_eq!(letter.priority, -1);
    let replay = DeadLetterSettleParams {
        id: letter.id,
        action: DeadLetterAction::Replay,
        publish: Some(DeadLetterReplayOpts { retention_seconds: 3600 }),
        now: at(123),
    };
    let DeadLetterSettled::Settled { sent: Some(sent), .. } = s.dead_letter_settle(replay).await.unwrap() else {
        panic!("replayed")
    };
    let r = s.message_get(MessageGetParams { id: sent.message_id.clone() }).await.unwrap().unwrap();
    assert_eq!(r.priority, -1);
    assert_eq!(claim_one(&s, "g", 124).await.message_id, sent.message_id, "the replay is first too");
}

pub async fn priorities_hold_under_a_group_limit_and_a_concurrency_limit(s: Store) {
    subscribe_grouped(&s, "t", "grouped").await;
    subscribe(&s, "t", "limited").await;
    let send_in = async |key: &str, priority: i16, now: i64| {
        let p = MessageSendParams { group_key: Some(key.into()), priority, ..send_params("t", "{}", at(now)) };
        s.message_send(p).await.unwrap().message_id
    };
    send_in("A", 0, 0).await;
    let a_urgent = send_in("A", -5, 1).await;
    send_in("B", 3, 2).await;
    let b_urgent = send_in("B", -2, 3).await;
    // One at a time per group: each group's most urgent goes first.
    let grouped = DeliveryClaimParams { group_concurrency: Some(1), ..claim_params("grouped", 10, at(4)) };
    let mut got: Vec<String> = s.delivery_claim(grouped).await.unwrap().into_iter().map(|m| m.message_id).collect();
    got.sort();
    let mut want = vec![a_urgent.clone(), b_urgent.clone()];
    want.sort();
    assert_eq!(got, want, "each group's best priority");
    // Two at once in all: the two most urgent of the four.
    let limited = DeliveryClaimParams { max_leased: Some(2), ..claim_params("limited", 10, at(4)) };
    let got: Vec<String> = s.delivery_claim(limited).await.unwrap().into_iter().map(|m| m.message_id).collect();
    assert_eq!(got, [a_urgent, b_urgent], "the limit's room goes to the lowest priorities, in order");
}

/// Under group concurrency the groups themselves are taken in priority order: a group whose
/// best waiting message is more urgent is visited before older groups, also when more groups
/// are ready than one claim takes, after a publish makes a group more urgent, and after a
/// retry makes an urgent message due again.
pub async fn groups_are_taken_by_their_best_priority(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    let send_in = async |key: &str, priority: i16, now: i64| {
        let p = MessageSendParams { group_key: Some(key.into()), priority, ..send_params("t", "{}", at(now)) };
        s.message_send(p).await.unwrap().message_id
    };
    let claim_n = async |limit: u32, now: i64| -> Vec<LeasedMessage> {
        let p = DeliveryClaimParams { group_concurrency: Some(1), ..claim_params("g", limit, at(now)) };
        s.delivery_claim(p).await.unwrap()
    };
    let ids = |leased: &[LeasedMessage]| leased.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>();
    // Twenty older groups at the default priority, then a relaxed group and an urgent one.
    let mut old = Vec::new();
    for i in 0..20 {
        old.push(send_in(&format!("old-{i:02}"), 0, i).await);
    }
    let relaxed = send_in("relaxed", 5, 20).await;
    let urgent = send_in("urgent", -5, 21).await;
    // One claim takes five groups: the urgent one is among them, first, though it is the newest.
    let got = ids(&claim_n(5, 30).await);
    assert_eq!(got.len(), 5);
    assert_eq!(got[0], urgent, "the most urgent group first");
    assert_eq!(got[1..], old[..4], "then the oldest ready groups of priority 0, oldest first");
    let got = ids(&claim_n(100, 31).await);
    assert_eq!(got.len(), 17);
    assert_eq!(got[..16], old[4..], "the rest of priority 0");
    assert_eq!(got[16], relaxed, "the relaxed group last");

    // A group's priority follows its waiting messages: group "late" waits at 3 behind
    // "mid" at 1 — until an urgent message is published into it.
    let late_relaxed = send_in("late", 3, 40).await;
    let mid = send_in("mid", 1, 41).await;
    let late_urgent = send_in("late", -9, 42).await;
    let first = claim_n(1, 50).await;
    assert_eq!(ids(&first)[0], late_urgent, "the publish made the group urgent");
    assert_eq!(ids(&claim_n(1, 51).await), [mid], "late is full; mid (1) next");

    // The urgent message is retried: due again, it brings its group ahead of another at 0
    // (the group's own next message is at 3).
    let plain = send_in("plain", 0, 52).await;
    let retry =
        DeliveryRetryParams { lease: lease(&first[0], at(53)), delay: std::time::Duration::ZERO, execution: None };
    s.delivery_retry(retry).await.unwrap();
    let again = claim_n(1, 54).await;
    assert_eq!((again[0].message_id.as_str(), again[0].delivery_count), (late_urgent.as_str(), 2), "the retry first");
    ack(&s, &again[0], at(55)).await.unwrap();
    assert_eq!(ids(&claim_n(2, 56).await), [plain, late_relaxed], "then by priority: 0, 3");
}

/// What asks "when" rather than "which first" reads the priority-ordered index one priority
/// at a time (migration 0027): the next due time is the earliest over every priority, and
/// the live counts and the count of live leases see every priority.
pub async fn the_next_due_time_and_the_live_counts_span_every_priority(s: Store) {
    subscribe(&s, "t", "g").await;
    let delayed = |priority: i16, seconds: u32| MessageSendParams {
        priority,
        delay_seconds: seconds,
        ..send_params("t", "{}", at(0))
    };
    for (priority, seconds) in [(5, 10), (-3, 30), (0, 20)] {
        s.message_send(delayed(priority, seconds)).await.unwrap();
    }
    let next_due = || s.delivery_next_due(DeliveryNextDueParams { consumer_group: "g".into() });
    assert_eq!(next_due().await.unwrap(), Some(at(10)), "the earliest of all priorities, not the lowest's");
    assert_eq!(depth(&s, 0).await, (0, 3, 0), "all three wait out their delay");
    // At 25 the priority-0 message (due 20) starts before the priority-5 one (due 10).
    let m = claim_one(&s, "g", 25).await;
    assert_eq!(s.message_get(MessageGetParams { id: m.message_id }).await.unwrap().unwrap().priority, 0);
    assert_eq!(depth(&s, 25).await, (1, 1, 1), "one waiting (5), one delayed (-3), one running (0)");
    let leased = DeliveryLeasedCountParams { consumer_group: "g".into(), now: at(25) };
    assert_eq!(s.delivery_leased_count(leased).await.unwrap(), 1);
    assert_eq!(next_due().await.unwrap(), Some(at(10)), "the waiting one is still the earliest");
}

/// Topic `t`'s (waiting, delayed, running) at `now`.
async fn depth(s: &Store, now: i64) -> (i64, i64, i64) {
    let all = s.queue_depth(QueueDepthParams { now: at(now) }).await.unwrap();
    let t = all.into_iter().find(|d| d.topic == "t").expect("topic t counted");
    (t.waiting, t.delayed, t.running)
}
