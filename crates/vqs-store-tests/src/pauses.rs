//! Pausing a topic (SPEC.md, "Flow control"): the state is stored, a claim leases nothing of
//! a paused topic (and spends nothing on it), publishing still works, and a resume drains
//! the backlog in due order.

use chrono::{DateTime, Utc};
use vqs::store::*;

use crate::support::*;

async fn set(s: &Store, topic: &str, paused: bool, now: DateTime<Utc>) -> TopicControl {
    s.topic_control_set(TopicControlSetParams { topic: topic.into(), paused, now }).await.expect("topic_control_set")
}

async fn paused(s: &Store) -> Vec<String> {
    let list = s.topic_control_list(TopicControlListParams { paused_only: true }).await.expect("topic_control_list");
    list.into_iter().map(|c| c.topic).collect()
}

fn claim_exec(group: &str, limit: u32, now: DateTime<Utc>) -> DeliveryClaimParams {
    DeliveryClaimParams { start_executions: true, ..claim_params(group, limit, now) }
}

pub async fn pause_and_resume_are_stored_and_idempotent(s: Store) {
    assert!(paused(&s).await.is_empty());
    let c = set(&s, "t", true, at(1)).await;
    assert_eq!(c, TopicControl { topic: "t".into(), paused: true, updated_at: at(1) });
    // Pausing again changes nothing, not even the time it was paused.
    assert_eq!(set(&s, "t", true, at(2)).await.updated_at, at(1));
    set(&s, "u", true, at(3)).await;
    assert_eq!(paused(&s).await, ["t", "u"]);
    let c = set(&s, "t", false, at(4)).await;
    assert_eq!((c.paused, c.updated_at), (false, at(4)));
    assert_eq!(paused(&s).await, ["u"]);
    // The full list keeps the resumed topic's row (where limit overrides will live too).
    let all = s.topic_control_list(TopicControlListParams { paused_only: false }).await.unwrap();
    let all: Vec<(String, bool)> = all.into_iter().map(|c| (c.topic, c.paused)).collect();
    assert_eq!(all, [("t".to_owned(), false), ("u".to_owned(), true)]);
}

pub async fn sixteen_concurrent_pauses_leave_one_state(s: Store) {
    let calls = (0..16).map(|i| {
        let s = s.clone();
        async move { set(&s, "t", true, at(1 + i % 3)).await }
    });
    let done = futures::future::join_all(calls).await;
    assert!(done.iter().all(|c| c.paused && c.topic == "t"));
    let all = s.topic_control_list(TopicControlListParams { paused_only: false }).await.unwrap();
    assert_eq!(all.len(), 1, "one row: {all:?}");
}

pub async fn a_claim_skips_a_paused_topic_and_spends_nothing_on_it(s: Store) {
    subscribe(&s, "held", "g-held").await;
    subscribe(&s, "free", "g-free").await;
    set(&s, "held", true, at(0)).await;
    // Publishing to a paused topic works.
    let held = send(&s, "held", at(1)).await;
    send(&s, "free", at(1)).await;
    assert!(s.delivery_claim(claim_exec("g-held", 10, at(2))).await.unwrap().is_empty());
    assert_eq!(s.delivery_claim(claim_exec("g-free", 10, at(2))).await.unwrap().len(), 1, "other topics run");
    // The held delivery is untouched: pending, no delivery, no attempt, no execution row.
    let d = state(&s, &held, "g-held").await.expect("a delivery");
    assert_eq!((d.state, d.delivery_count, d.attempts), (DeliveryState::Pending, 0, 0));
    assert!(executions(&s, &held).await.is_empty());
    // Nor can it be received by id while paused.
    let by_id = DeliveryClaimParams { message_id: Some(held.clone()), ..claim_params("g-held", 1, at(3)) };
    assert!(s.delivery_claim(by_id).await.is_err());
}

pub async fn a_wildcard_group_claims_its_unpaused_topics_only(s: Store) {
    subscribe(&s, "orders-*", "g").await;
    set(&s, "orders-eu", true, at(0)).await;
    for i in 0..3 {
        send(&s, "orders-eu", at(1 + i)).await;
    }
    let us = send(&s, "orders-us", at(5)).await;
    let got = claim(&s, "g", 10, at(6)).await;
    let ids: Vec<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, [us.as_str()]);
}

pub async fn a_resume_drains_the_backlog_in_order(s: Store) {
    subscribe(&s, "t", "g").await;
    set(&s, "t", true, at(0)).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(send(&s, "t", at(1 + i)).await);
    }
    assert!(claim(&s, "g", 10, at(10)).await.is_empty());
    set(&s, "t", false, at(11)).await;
    let got = s.delivery_claim(claim_exec("g", 10, at(12))).await.unwrap();
    let ids: Vec<String> = got.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids, sent, "in due order");
    assert!(got.iter().all(|m| m.attempts == 1 && m.delivery_count == 1), "the wait spent no attempt: {got:?}");
}

pub async fn a_pause_leaves_a_lease_already_taken_to_finish(s: Store) {
    subscribe(&s, "t", "g").await;
    let id = send(&s, "t", at(0)).await;
    let m = s.delivery_claim(claim_exec("g", 1, at(1))).await.unwrap().pop().expect("due");
    set(&s, "t", true, at(2)).await;
    s.delivery_ack(DeliveryAckParams {
        lease: lease(&m, at(3)),
        execution: finish(m.execution_id, ExecutionStatus::Success, at(3)),
    })
    .await
    .expect("a running job finishes while its topic is paused");
    assert_eq!(state(&s, &id, "g").await.unwrap().state, DeliveryState::Acked);
}
