//! Message groups under group concurrency (`DeliveryClaimParams::group_concurrency`, a job's
//! `group_concurrency`): at most N deliveries of one (consumer group, group key) leased at
//! once however many claim at once; a full group never holds back another; an ack, a retry,
//! an expired lease or a rescue frees the slot; ungrouped messages are not limited; the
//! group is kept across retries and dead-letter replays; a held message spends nothing.

use std::collections::HashMap;

use vqs::store::*;

use crate::support::*;

async fn send_to(s: &Store, key: Option<&str>, now: i64) -> String {
    let p = MessageSendParams { group_key: key.map(str::to_owned), ..send_params("t", "{}", at(now)) };
    s.message_send(p).await.expect("send").message_id
}

fn grouped(limit: u32, n: u32, now: i64) -> DeliveryClaimParams {
    DeliveryClaimParams { group_concurrency: Some(n), ..claim_params("g", limit, at(now)) }
}

async fn keys_of(s: &Store, leased: &[LeasedMessage]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for m in leased {
        let r = s.message_get(MessageGetParams { id: m.message_id.clone() }).await.unwrap().unwrap();
        out.push(r.group_key);
    }
    out.sort();
    out
}

pub async fn a_full_group_does_not_hold_back_another(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    // Group A's backlog is older than B's: a claim that scanned in due order would see only A.
    for _ in 0..5 {
        send_to(&s, Some("A"), 0).await;
    }
    send_to(&s, Some("B"), 1).await;
    let first = s.delivery_claim(grouped(10, 1, 2)).await.unwrap();
    assert_eq!(keys_of(&s, &first).await, [Some("A".into()), Some("B".into())], "one of each group");
    assert!(s.delivery_claim(grouped(10, 1, 3)).await.unwrap().is_empty(), "A full, B empty");
    // A message of A waiting behind the full group says why.
    let waiting = s.message_get(MessageGetParams { id: send_to(&s, Some("A"), 3).await }).await.unwrap().unwrap();
    let p = DeliveryGroupHeldParams { message_id: waiting.id.clone(), group_rate_limit: None, now: at(4) };
    assert_eq!(s.delivery_group_held(p).await.unwrap(), Some(GroupHeld::Concurrency), "held by its group");
    assert_eq!(waiting.deliveries[0].attempts, 0, "a held message spends no attempt");
    assert_eq!(waiting.deliveries[0].delivery_count, 0);
    // Acking A's lease frees its slot: the next of A is leased.
    let a = if keys_of(&s, &first[..1]).await[0].as_deref() == Some("A") { &first[0] } else { &first[1] };
    s.delivery_ack(DeliveryAckParams { lease: lease(a, at(5)), execution: None }).await.unwrap();
    let next = s.delivery_claim(grouped(10, 1, 6)).await.unwrap();
    assert_eq!(keys_of(&s, &next).await, [Some("A".into())], "the ack freed A's slot");
}

pub async fn an_expired_lease_or_a_rescue_frees_the_slot(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    for _ in 0..3 {
        send_to(&s, Some("A"), 0).await;
    }
    let first = s.delivery_claim(grouped(10, 1, 1)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(s.delivery_claim(grouped(10, 1, 2)).await.unwrap().is_empty());
    // Leases run out 30 s after they were taken (claim_params), with no settlement at all:
    // the group is not stuck full.
    let after_expiry = s.delivery_claim(grouped(10, 1, 40)).await.unwrap();
    assert_eq!(after_expiry.len(), 1, "the expired lease's slot is free again");
    // A crashed holder: its lease made due by the rescue frees the slot at once.
    s.process_beat(ProcessBeatParams { process_id: "p1".into(), now: at(41) }).await.unwrap();
    s.process_beat(ProcessBeatParams { process_id: "p1".into(), now: at(42) }).await.unwrap();
    let held = DeliveryClaimParams { lease_holder: Some("p1".into()), visibility_seconds: 300, ..grouped(10, 1, 80) };
    assert_eq!(s.delivery_claim(held).await.unwrap().len(), 1);
    assert!(s.delivery_claim(grouped(10, 1, 81)).await.unwrap().is_empty(), "full for 300 s");
    let rescue = ProcessRescueParams { dead_before: at(60), rescuer: "p2".into(), now: at(90) };
    assert_eq!(s.process_rescue(rescue).await.unwrap().deliveries, 1);
    assert_eq!(s.delivery_claim(grouped(10, 1, 91)).await.unwrap().len(), 1, "the rescue freed the slot");
}

pub async fn sixteen_claims_at_once_never_exceed_the_group_limit(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    for i in 0..40 {
        send_to(&s, Some(["A", "B", "C", "D"][i % 4]), 0).await;
    }
    let race = (0..16).map(|_| {
        let s = s.clone();
        async move { s.delivery_claim(grouped(5, 2, 1)).await.unwrap() }
    });
    let leased: Vec<LeasedMessage> = futures::future::join_all(race).await.into_iter().flatten().collect();
    let mut per_group: HashMap<Option<String>, usize> = HashMap::new();
    for k in keys_of(&s, &leased).await {
        *per_group.entry(k).or_default() += 1;
    }
    assert!(per_group.values().all(|n| *n <= 2), "at most 2 per group: {per_group:?}");
    assert!(s.delivery_claim(grouped(5, 2, 2)).await.unwrap().len() + leased.len() == 8, "every group filled");
}

pub async fn ungrouped_messages_are_not_limited(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    subscribe(&s, "t", "plain").await;
    for _ in 0..4 {
        send_to(&s, None, 0).await;
    }
    for _ in 0..3 {
        send_to(&s, Some("A"), 0).await;
    }
    let leased = s.delivery_claim(grouped(10, 1, 1)).await.unwrap();
    assert_eq!(leased.len(), 5, "4 ungrouped and 1 of A");
    // A consumer group without group concurrency claims everything, keys or not.
    assert_eq!(s.delivery_claim(claim_params("plain", 10, at(1))).await.unwrap().len(), 7);
}

pub async fn the_group_is_kept_across_retry_and_replay(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    let id = send_to(&s, Some("A"), 0).await;
    send_to(&s, Some("A"), 1).await;
    let m = s.delivery_claim(grouped(10, 1, 1)).await.unwrap().remove(0);
    assert_eq!(m.message_id, id);
    // A retry frees the slot; the retried message is still of A (and still limited).
    s.delivery_retry(DeliveryRetryParams {
        lease: lease(&m, at(2)),
        delay: std::time::Duration::from_secs(5),
        execution: None,
    })
    .await
    .unwrap();
    let other = s.delivery_claim(grouped(10, 1, 3)).await.unwrap();
    assert_eq!(other.len(), 1, "the retry freed A's slot");
    assert_ne!(other[0].message_id, id);
    assert!(s.delivery_claim(grouped(10, 1, 10)).await.unwrap().is_empty(), "the retried one waits for A's slot");
    s.delivery_ack(DeliveryAckParams { lease: lease(&other[0], at(11)), execution: None }).await.unwrap();
    let again = s.delivery_claim(grouped(10, 1, 12)).await.unwrap().remove(0);
    assert_eq!(again.message_id, id);
    // Dead-lettered, then replayed: the new message has the same group.
    s.delivery_dead_letter(DeliveryDeadLetterParams {
        lease: lease(&again, at(13)),
        reason: "boom".into(),
        execution: None,
    })
    .await
    .unwrap();
    let letter = s.dead_letter_list(DeadLetterListParams { limit: 10 }).await.unwrap().remove(0);
    assert_eq!(letter.group_key.as_deref(), Some("A"));
    let replay = DeadLetterSettleParams {
        id: letter.id,
        action: DeadLetterAction::Replay,
        publish: Some(DeadLetterReplayOpts { retention_seconds: 3600 }),
        now: at(14),
    };
    let DeadLetterSettled::Settled { sent: Some(sent), .. } = s.dead_letter_settle(replay).await.unwrap() else {
        panic!("replayed")
    };
    let r = s.message_get(MessageGetParams { id: sent.message_id.clone() }).await.unwrap().unwrap();
    assert_eq!(r.group_key.as_deref(), Some("A"));
    let replayed = s.delivery_claim(grouped(10, 1, 15)).await.unwrap();
    assert_eq!(replayed.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), [sent.message_id.as_str()]);
}

fn busiest(topic: &str, limit: u32, waiting_cap: u32, now: i64) -> FlowGroupBusiestParams {
    FlowGroupBusiestParams { topic: topic.into(), limit, waiting_cap, now: at(now) }
}

/// (group, running, waiting) of each listed group, in order.
async fn loads(s: &Store, p: FlowGroupBusiestParams) -> Vec<(String, u32, u32)> {
    let out = s.flow_group_busiest(p).await.unwrap();
    assert!(out.iter().all(|l| l.consumer_group == "g"), "{out:?}");
    out.into_iter().map(|l| (l.group_key, l.running, l.waiting)).collect()
}

pub async fn the_busiest_groups_are_listed_running_first(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    subscribe(&s, "plain", "p").await;
    send(&s, "plain", at(0)).await;
    for _ in 0..3 {
        send_to(&s, Some("A"), 0).await;
    }
    send_to(&s, Some("B"), 1).await;
    for _ in 0..5 {
        send_to(&s, Some("C"), 2).await;
    }
    send_to(&s, None, 2).await;
    let leased = s.delivery_claim(grouped(20, 2, 3)).await.unwrap();
    assert_eq!(leased.len(), 6, "two of A, one of B, two of C, the ungrouped one");
    send_to(&s, Some("D"), 4).await;
    let all = [("C".into(), 2, 3), ("A".into(), 2, 1), ("B".into(), 1, 0), ("D".into(), 0, 1)];
    assert_eq!(loads(&s, busiest("t", 10, 100, 5)).await, all, "most running, then most waiting; never the \"\" group");
    assert_eq!(loads(&s, busiest("t", 2, 100, 5)).await, all[..2], "at most the limit");
    assert_eq!(loads(&s, busiest("t", 10, 2, 5)).await[0], ("C".into(), 2, 2), "waiting counted up to the cap");
    let full = s.flow_group_busiest(busiest("t", 1, 100, 5)).await.unwrap();
    assert_eq!(full[0].concurrency, Some(2), "the group concurrency its claim applied");
    assert!(s.flow_group_busiest(busiest("plain", 10, 100, 5)).await.unwrap().is_empty(), "an ungrouped topic: none");
    assert!(s.flow_group_busiest(busiest("none", 10, 100, 5)).await.unwrap().is_empty());
    // B's only delivery acknowledged: nothing of B is live, so it is left out.
    for m in &leased {
        if keys_of(&s, std::slice::from_ref(m)).await == [Some("B".to_owned())] {
            s.delivery_ack(DeliveryAckParams { lease: lease(m, at(6)), execution: None }).await.unwrap();
        }
    }
    let without_b = [all[0].clone(), all[1].clone(), all[3].clone()];
    assert_eq!(loads(&s, busiest("t", 10, 100, 7)).await, without_b);
    // Leases run out 30 s after the claim: expired ones are not running.
    let mut expired = loads(&s, busiest("t", 10, 100, 40)).await;
    assert_eq!(expired[0], ("C".into(), 0, 3), "the most waiting first");
    expired[1..].sort();
    assert_eq!(expired[1..], [("A".into(), 0, 1), ("D".into(), 0, 1)], "a tie in the order the groups became ready");
}

fn start(id: &str, concurrency: Option<u32>, rate: Option<RateLimit>, now: i64) -> FlowGroupStartParams {
    FlowGroupStartParams {
        consumer_group: "g".into(),
        group_key: "A".into(),
        message_id: id.into(),
        concurrency,
        rate,
        slot_until: at(now + 60),
        now: at(now),
    }
}

fn release(id: &str, now: i64) -> FlowGroupSlotReleaseParams {
    FlowGroupSlotReleaseParams {
        consumer_group: "g".into(),
        group_key: "A".into(),
        message_id: id.into(),
        now: at(now),
    }
}

pub async fn pushes_of_a_group_take_its_slots_and_its_bucket(s: Store) {
    use FlowGroupStart::*;
    let two = Some(2);
    assert_eq!(s.flow_group_start(start("m1", two, None, 0)).await.unwrap(), Started);
    assert_eq!(s.flow_group_start(start("m2", two, None, 0)).await.unwrap(), Started);
    assert_eq!(s.flow_group_start(start("m3", two, None, 1)).await.unwrap(), Full, "two slots held");
    assert_eq!(s.flow_group_start(start("m1", two, None, 1)).await.unwrap(), Started, "a push again reuses its slot");
    let other = FlowGroupStartParams { group_key: "B".into(), ..start("m9", Some(1), None, 1) };
    assert_eq!(s.flow_group_start(other).await.unwrap(), Started, "another group has its own slots");
    s.flow_group_slot_release(release("m1", 1)).await.unwrap();
    s.flow_group_slot_release(release("m1", 1)).await.unwrap();
    assert_eq!(s.flow_group_start(start("m3", two, None, 2)).await.unwrap(), Started, "the release freed one");
    assert_eq!(s.flow_group_start(start("m4", two, None, 2)).await.unwrap(), Full);
    // m2's slot ran out (60 s after it was taken, its function killed): free again.
    assert_eq!(s.flow_group_start(start("m4", two, None, 61)).await.unwrap(), Started, "an expired slot frees itself");

    // A rate of 1 per 10 s, with one slot: a held push takes nothing from the bucket.
    let rate = Some(RateLimit { limit: 1, period_seconds: 10 });
    let p = |id: &str, now: i64| FlowGroupStartParams { group_key: "C".into(), ..start(id, Some(1), rate, now) };
    let free = |id: &str| FlowGroupSlotReleaseParams { group_key: "C".into(), ..release(id, 101) };
    assert_eq!(s.flow_group_start(p("r1", 100)).await.unwrap(), Started);
    assert_eq!(s.flow_group_start(p("r2", 101)).await.unwrap(), Full, "the slot first");
    s.flow_group_slot_release(free("r1")).await.unwrap();
    assert_eq!(s.flow_group_start(p("r2", 102)).await.unwrap(), RateLimited { wait_us: 8_000_000 });
    assert_eq!(s.flow_group_start(p("r2", 110)).await.unwrap(), Started, "the bucket allows one 10 s on");
    let rate_only = |id: &str, now: i64| FlowGroupStartParams { group_key: "D".into(), ..start(id, None, rate, now) };
    assert_eq!(s.flow_group_start(rate_only("d1", 200)).await.unwrap(), Started);
    assert_eq!(s.flow_group_start(rate_only("d1", 201)).await.unwrap(), RateLimited { wait_us: 9_000_000 });
}

pub async fn sixteen_pushes_at_once_never_take_more_than_the_group_slots(s: Store) {
    let calls = (0..16).map(|i| {
        let s = s.clone();
        async move { s.flow_group_start(start(&format!("m{i}"), Some(3), None, 0)).await.unwrap() }
    });
    let out = futures::future::join_all(calls).await;
    assert_eq!(out.iter().filter(|o| **o == FlowGroupStart::Started).count(), 3, "{out:?}");
    assert_eq!(out.iter().filter(|o| **o == FlowGroupStart::Full).count(), 13);
}

/// On Vercel running pushes hold `flow_group_slots` rows, not leases: the busiest groups count
/// unexpired slots as running (beside this database's live leases), so a group with as many
/// slots as its concurrency shows full. Expired slots are not running.
pub async fn the_busiest_groups_count_push_slots_as_running(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    send_to(&s, Some("A"), 0).await;
    send_to(&s, Some("B"), 1).await;
    send_to(&s, Some("B"), 1).await;
    let leased = s.delivery_claim(grouped(1, 2, 1)).await.unwrap();
    assert_eq!(keys_of(&s, &leased).await, [Some("A".to_owned())], "the oldest ready group");
    // Two pushes of B (another function's) hold B's two slots until t = 61.
    for id in ["p1", "p2"] {
        let p = FlowGroupStartParams { group_key: "B".into(), ..start(id, Some(2), None, 1) };
        assert_eq!(s.flow_group_start(p).await.unwrap(), FlowGroupStart::Started);
    }
    assert_eq!(loads(&s, busiest("t", 10, 100, 2)).await, [("B".into(), 2, 2), ("A".into(), 1, 0)]);
    assert_eq!(loads(&s, busiest("t", 10, 100, 62)).await, [("B".into(), 0, 2)], "slots and leases ran out");
}

/// A group's limit is one limit for this database's leases and other functions' push slots:
/// a push finds the group full of leases, and a claim finds it full of slots.
pub async fn leases_and_push_slots_share_the_group_concurrency(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    for _ in 0..4 {
        send_to(&s, Some("A"), 0).await;
    }
    let leased = s.delivery_claim(grouped(10, 2, 1)).await.unwrap();
    assert_eq!(leased.len(), 2);
    assert_eq!(s.flow_group_start(start("p1", Some(2), None, 1)).await.unwrap(), FlowGroupStart::Full, "two leases");
    for m in &leased {
        ack(&s, m, at(2)).await.unwrap();
    }
    assert_eq!(s.flow_group_start(start("p1", Some(2), None, 2)).await.unwrap(), FlowGroupStart::Started);
    let one = s.delivery_claim(grouped(10, 2, 3)).await.unwrap();
    assert_eq!(one.len(), 1, "one slot taken by the push: room for one lease");
    assert!(s.delivery_claim(grouped(10, 2, 3)).await.unwrap().is_empty(), "full");
    s.flow_group_slot_release(release("p1", 4)).await.unwrap();
    // Parked full of the lease and the slot until its earliest end (the lease's, 33); the
    // release wakes it.
    assert_eq!(s.delivery_claim(grouped(10, 2, 4)).await.unwrap().len(), 1, "the slot released: room for one");
    // Both leases ran out (at 33 and 34): room for two.
    assert_eq!(s.delivery_claim(grouped(10, 2, 40)).await.unwrap().len(), 2, "room for two");
}

/// Several tasks pushing a group (`flow_group_start`) while others claim it (grouped
/// `delivery_claim`), all at once: never more than the group concurrency live at once,
/// leases and slots together.
pub async fn pushes_racing_grouped_claims_never_pass_the_group_concurrency(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    for _ in 0..20 {
        send_to(&s, Some("A"), 0).await;
    }
    for round in 0..4i64 {
        let now = 1 + round * 100; // every earlier lease and slot has run out by then
        let pushes = (0..8).map(|i| {
            let s = s.clone();
            async move {
                let p = start(&format!("r{round}p{i}"), Some(3), None, now);
                usize::from(s.flow_group_start(p).await.unwrap() == FlowGroupStart::Started)
            }
        });
        let claims = (0..8).map(|_| {
            let s = s.clone();
            async move {
                let p = DeliveryClaimParams { visibility_seconds: 60, ..grouped(2, 3, now) };
                s.delivery_claim(p).await.unwrap().len()
            }
        });
        let (pushed, claimed) = futures::join!(futures::future::join_all(pushes), futures::future::join_all(claims));
        let live = pushed.iter().sum::<usize>() + claimed.iter().sum::<usize>();
        assert!(live <= 3, "round {round}: {live} live at once (pushes {pushed:?}, claims {claimed:?})");
        assert!(live >= 1, "round {round}: someone started");
    }
}
