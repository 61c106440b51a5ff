//! Pausing one message group of a topic (`group_pauses`): the claim leases none of its
//! messages — on an ungrouped consumer group (skipped in due order) and on a grouped one
//! (skipped in the ready set) — while the topic's other groups and ungrouped messages go on;
//! a resume makes its backlog claimable in due order; a held message spends nothing; pauses
//! are idempotent and sixteen at once leave one row.

use vqs::store::*;

use crate::support::*;

async fn send_to(s: &Store, topic: &str, key: Option<&str>, now: i64) -> String {
    let p = MessageSendParams { group_key: key.map(str::to_owned), ..send_params(topic, "{}", at(now)) };
    s.message_send(p).await.expect("send").message_id
}

async fn set(s: &Store, topic: &str, key: &str, paused: bool, now: i64) -> Option<GroupPause> {
    let p = GroupPauseSetParams { topic: topic.into(), group_key: key.into(), paused, now: at(now) };
    s.group_pause_set(p).await.expect("group pause")
}

async fn listed(s: &Store, topic: Option<&str>) -> Vec<(String, String)> {
    let p = GroupPauseListParams { topic: topic.map(str::to_owned), group_key: None, limit: 100 };
    s.group_pause_list(p).await.unwrap().into_iter().map(|g| (g.topic, g.group_key)).collect()
}

fn ids(leased: &[LeasedMessage]) -> Vec<String> {
    let mut v: Vec<String> = leased.iter().map(|m| m.message_id.clone()).collect();
    v.sort();
    v
}

pub async fn a_pause_is_stored_idempotent_and_per_topic(s: Store) {
    let first = set(&s, "t", "A", true, 1).await.expect("paused");
    assert_eq!((first.topic.as_str(), first.group_key.as_str()), ("t", "A"));
    let again = set(&s, "t", "A", true, 5).await.expect("still paused");
    assert_eq!(again.paused_at, at(1), "a second pause keeps the first pause's time");
    set(&s, "u", "A", true, 2).await;
    assert_eq!(listed(&s, None).await, [("t".into(), "A".into()), ("u".into(), "A".into())]);
    assert_eq!(listed(&s, Some("t")).await, [("t".into(), "A".into())]);
    let one = GroupPauseListParams { topic: Some("t".into()), group_key: Some("B".into()), limit: 1 };
    assert!(s.group_pause_list(one).await.unwrap().is_empty(), "B is not paused");
    let removed = set(&s, "t", "A", false, 6).await.expect("the resume returns the pause it removed");
    assert_eq!(removed.paused_at, at(1));
    assert!(set(&s, "t", "A", false, 7).await.is_none(), "a second resume finds nothing");
    assert_eq!(listed(&s, None).await, [("u".into(), "A".into())]);
}

pub async fn sixteen_concurrent_pauses_leave_one_row(s: Store) {
    let calls = (0..16).map(|i| {
        let s = s.clone();
        async move { set(&s, "t", "A", true, i).await }
    });
    let out = futures::future::join_all(calls).await;
    assert!(out.iter().all(Option::is_some));
    assert_eq!(listed(&s, None).await.len(), 1);
    let calls = (0..16).map(|i| {
        let s = s.clone();
        async move { set(&s, "t", "A", false, 20 + i).await }
    });
    let removed = futures::future::join_all(calls).await.into_iter().filter(Option::is_some).count();
    assert_eq!(removed, 1, "one resume removed it; the others found nothing");
}

pub async fn a_claim_skips_a_paused_group_and_spends_nothing_on_it(s: Store) {
    subscribe(&s, "t", "g").await;
    subscribe(&s, "u", "h").await;
    // The paused group's messages are the oldest: a claim must look past them.
    let a: Vec<String> = [send_to(&s, "t", Some("A"), 0).await, send_to(&s, "t", Some("A"), 0).await].into();
    let b = send_to(&s, "t", Some("B"), 1).await;
    let none = send_to(&s, "t", None, 1).await;
    // The same key in another topic is another group.
    let other_topic = send_to(&s, "u", Some("A"), 1).await;
    set(&s, "t", "A", true, 2).await;
    let leased = s.delivery_claim(claim_params("g", 10, at(3))).await.unwrap();
    let mut want = vec![b, none];
    want.sort();
    assert_eq!(ids(&leased), want, "B and the ungrouped message; none of A");
    assert_eq!(ids(&s.delivery_claim(claim_params("h", 10, at(3))).await.unwrap()), [other_topic]);
    assert!(s.delivery_claim(claim_params("g", 10, at(4))).await.unwrap().is_empty());
    for id in &a {
        let m = s.message_get(MessageGetParams { id: id.clone() }).await.unwrap().unwrap();
        assert_eq!((m.deliveries[0].attempts, m.deliveries[0].delivery_count), (0, 0), "held: nothing spent");
    }
    // Resumed: A's backlog, in due order.
    set(&s, "t", "A", false, 5).await;
    let leased = s.delivery_claim(claim_params("g", 1, at(6))).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert!(a.contains(&leased[0].message_id));
    assert_eq!(s.delivery_claim(claim_params("g", 10, at(6))).await.unwrap().len(), 1, "the rest of A");
}

/// A lease names its message's group, whichever way it was claimed — plain (the consumer
/// group is not grouped), grouped, or by id — so a dispatcher can hold back a buffered
/// lease of a group paused after the claim.
pub async fn a_lease_names_its_messages_group_however_it_was_claimed(s: Store) {
    subscribe(&s, "t", "plain").await;
    subscribe_grouped(&s, "t", "grouped").await;
    let a = send_to(&s, "t", Some("tenant/A é"), 0).await;
    let none = send_to(&s, "t", None, 1).await;
    let keys = |leased: Vec<LeasedMessage>| {
        let mut v: Vec<(String, Option<String>)> = leased.into_iter().map(|m| (m.message_id, m.group_key)).collect();
        v.sort();
        v
    };
    let mut want = vec![(a.clone(), Some("tenant/A é".to_owned())), (none.clone(), None)];
    want.sort();
    assert_eq!(keys(s.delivery_claim(claim_params("plain", 10, at(2))).await.unwrap()), want, "plain");
    let grouped = DeliveryClaimParams { group_concurrency: Some(5), ..claim_params("grouped", 10, at(2)) };
    assert_eq!(keys(s.delivery_claim(grouped).await.unwrap()), want, "grouped");
    let by_id = DeliveryClaimParams { message_id: Some(a.clone()), ..claim_params("plain", 1, at(200)) };
    assert_eq!(keys(s.delivery_claim(by_id).await.unwrap()), [(a, Some("tenant/A é".to_owned()))], "by id");
}

pub async fn a_grouped_claim_skips_a_paused_group_until_resumed(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    let grouped =
        |limit: u32, now: i64| DeliveryClaimParams { group_concurrency: Some(5), ..claim_params("g", limit, at(now)) };
    for _ in 0..3 {
        send_to(&s, "t", Some("A"), 0).await;
    }
    let b = send_to(&s, "t", Some("B"), 1).await;
    set(&s, "t", "A", true, 2).await;
    assert_eq!(ids(&s.delivery_claim(grouped(10, 3)).await.unwrap()), [b]);
    // A publish to the paused group wakes it; the claim still skips it.
    send_to(&s, "t", Some("A"), 4).await;
    assert!(s.delivery_claim(grouped(10, 5)).await.unwrap().is_empty(), "A stays held");
    set(&s, "t", "A", false, 6).await;
    assert_eq!(s.delivery_claim(grouped(10, 7)).await.unwrap().len(), 4, "resumed: A's four, under its limit of 5");
}

/// What [`vqs::Queue::pause_group`] does first: the topic's subscriptions grouped.
async fn group_topic(s: &Store, topic: &str, now: i64) {
    s.subscription_group_topic(SubscriptionGroupTopicParams { topic: topic.into(), now: at(now) }).await.unwrap();
}

/// The ids of `leased`, in claim order.
fn in_order(leased: &[LeasedMessage]) -> Vec<String> {
    leased.iter().map(|m| m.message_id.clone()).collect()
}

pub async fn an_ungrouped_consumer_group_claims_around_a_paused_backlog_through_the_ready_groups(s: Store) {
    // A consumer group without group limits, tenant A's 120 due messages queued before
    // B's: once A is paused (the subscription grouped, as `Queue::pause_group` does), the
    // claim goes through the ready groups, which skip A — B and the ungrouped messages come
    // back as one full batch, and A's backlog is held, not read past.
    subscribe(&s, "t", "g").await;
    let mut a = Vec::new();
    for i in 0..120 {
        a.push(send_to(&s, "t", Some("A"), i / 10).await);
    }
    let mut runnable = Vec::new();
    for _ in 0..4 {
        runnable.push(send_to(&s, "t", Some("B"), 20).await);
    }
    for _ in 0..3 {
        runnable.push(send_to(&s, "t", None, 20).await);
    }
    // Eight more groups with one message each: one claim takes from all of them.
    for i in 0..8 {
        runnable.push(send_to(&s, "t", Some(&format!("C{i}")), 20).await);
    }
    group_topic(&s, "t", 21).await;
    set(&s, "t", "A", true, 21).await;
    let leased = s.delivery_claim(claim_params("g", 15, at(22))).await.unwrap();
    runnable.sort();
    assert_eq!(ids(&leased), runnable, "one full batch of the runnable rows, none of A");
    // A message published into A while it is paused waits; B keeps flowing.
    let late_a = send_to(&s, "t", Some("A"), 23).await;
    let late_b = send_to(&s, "t", Some("B"), 23).await;
    assert_eq!(ids(&s.delivery_claim(claim_params("g", 50, at(24))).await.unwrap()), [late_b]);
    assert!(s.delivery_claim(claim_params("g", 50, at(25))).await.unwrap().is_empty(), "A stays held");
    for id in a.iter().take(3) {
        let m = s.message_get(MessageGetParams { id: id.clone() }).await.unwrap().unwrap();
        assert_eq!((m.deliveries[0].attempts, m.deliveries[0].delivery_count), (0, 0), "held: nothing spent");
    }
    // Resumed: A drains in due order, nothing lost, the late one last.
    set(&s, "t", "A", false, 26).await;
    let mut drained = Vec::new();
    loop {
        let batch = s.delivery_claim(claim_params("g", 50, at(27))).await.unwrap();
        if batch.is_empty() {
            break;
        }
        drained.extend(in_order(&batch));
    }
    assert_eq!(drained.len(), 121, "every message of A, once");
    assert_eq!(drained.last(), Some(&late_a));
    // Due order: each second's ten come before the next second's.
    let second = |id: &String| a.iter().position(|x| x == id).map_or(12, |i| i / 10);
    assert!(drained.windows(2).all(|w| second(&w[0]) <= second(&w[1])), "A in due order");
}

pub async fn a_consumer_group_with_a_paused_group_still_takes_a_full_batch_of_one_group(s: Store) {
    // No per-group limit: one group's (or the ungrouped messages') whole batch in one claim.
    subscribe(&s, "t", "g").await;
    send_to(&s, "t", Some("A"), 0).await;
    let mut b = Vec::new();
    for _ in 0..30 {
        b.push(send_to(&s, "t", Some("B"), 1).await);
    }
    let mut plain = Vec::new();
    for _ in 0..30 {
        plain.push(send_to(&s, "t", None, 1).await);
    }
    group_topic(&s, "t", 2).await;
    set(&s, "t", "A", true, 2).await;
    let first = s.delivery_claim(claim_params("g", 25, at(3))).await.unwrap();
    assert_eq!(first.len(), 25, "a full batch");
    let second = s.delivery_claim(claim_params("g", 100, at(3))).await.unwrap();
    let mut got = ids(&first);
    got.extend(ids(&second));
    got.sort();
    let mut want: Vec<String> = b.into_iter().chain(plain).collect();
    want.sort();
    assert_eq!(got, want, "B's thirty and the thirty without a group, each once");
}
