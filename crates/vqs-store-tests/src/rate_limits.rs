//! Limits per topic (SPEC.md, "Flow control"): a rate limit is one bucket per (consumer
//! group, topic) that every claimer shares — a burst of N, then N per S, never more — kept
//! by the claim itself (`DeliveryClaimParams::rate_limit`); the overrides are stored per
//! topic beside the pause state, and concurrent identical changes leave one row.

use chrono::{DateTime, Utc};
use vqs::store::*;

use crate::support::*;

const RATE: RateLimit = RateLimit { limit: 5, period_seconds: 10 };

fn rated(group: &str, holder: &str, limit: u32, now: DateTime<Utc>) -> DeliveryClaimParams {
    DeliveryClaimParams {
        topic: Some("t".into()),
        lease_holder: Some(holder.into()),
        rate_limit: Some(RATE),
        visibility_seconds: 3600,
        ..claim_params(group, limit, now)
    }
}

pub async fn a_rate_limit_allows_a_burst_then_n_per_period_across_claimers(s: Store) {
    subscribe(&s, "t", "g").await;
    subscribe(&s, "t", "other").await;
    for _ in 0..40 {
        send(&s, "t", at(0)).await;
    }
    // Two claimers of one group, each asking for 10 at once, once a second for 40 s (a
    // driven clock): between them they start 5 at first, then one every 2 s (5 per 10 s).
    let mut started = 0usize;
    for t in 1..=40 {
        let both = [rated("g", "p1", 10, at(t)), rated("g", "p2", 10, at(t))].map(|p| {
            let s = s.clone();
            async move { s.delivery_claim(p).await.expect("claim").len() }
        });
        started += futures::future::join_all(both).await.into_iter().sum::<usize>();
        let expected = (5 + (t - 1) / 2) as usize;
        assert_eq!(started, expected.min(40), "at t = {t} s: a burst of 5, then 5 per 10 s, never more");
    }
    // Another consumer group of the topic has its own bucket.
    assert_eq!(s.delivery_claim(rated("other", "p1", 10, at(40))).await.unwrap().len(), 5);
    // A claim that finds nothing due spends nothing of the bucket.
    let idle = s.delivery_claim(rated("g", "p1", 10, at(100))).await.unwrap();
    assert!(idle.len() <= 40usize.saturating_sub(started));
}

pub async fn a_rate_limit_and_a_concurrency_limit_hold_together(s: Store) {
    subscribe(&s, "t", "g").await;
    for _ in 0..10 {
        send(&s, "t", at(0)).await;
    }
    // Concurrency 2 is the tighter limit at first; the rate limit's burst is 5.
    let both = |n: i64| DeliveryClaimParams { max_leased: Some(2), ..rated("g", "p1", 10, at(n)) };
    let first = s.delivery_claim(both(1)).await.unwrap();
    assert_eq!(first.len(), 2, "the concurrency limit");
    for m in &first {
        let lease = LeaseParams { receipt_handle: m.receipt_handle.clone(), consumer_group: "g".into(), now: at(1) };
        s.delivery_ack(DeliveryAckParams { lease, execution: None }).await.unwrap();
    }
    // Slots are free again, but only 3 starts are left in the bucket at t = 1.
    assert_eq!(s.delivery_claim(DeliveryClaimParams { max_leased: Some(9), ..both(1) }).await.unwrap().len(), 3);
    assert!(s.delivery_claim(DeliveryClaimParams { max_leased: Some(9), ..both(1) }).await.unwrap().is_empty());
}

fn patch_all(concurrency: u32, rate: RateLimit) -> TopicLimitsPatch {
    TopicLimitsPatch { concurrency: Some(Some(concurrency)), rate_limit: Some(Some(rate)), ..Default::default() }
}

async fn set(s: &Store, topic: &str, patch: TopicLimitsPatch, now: i64) -> TopicLimitsRow {
    let p = TopicLimitsSetParams { topic: topic.into(), patch, now: at(now) };
    s.topic_limits_set(p).await.expect("topic_limits_set")
}

pub async fn limit_overrides_are_patched_field_by_field_and_sixteen_identical_sets_leave_one_row(s: Store) {
    assert!(s.topic_limits_list().await.unwrap().is_empty());
    // The pause state is its own: a limit change leaves it alone.
    s.topic_control_set(TopicControlSetParams { topic: "t".into(), paused: true, now: at(0) }).await.unwrap();
    let sets = (0..16).map(|_| set(&s, "t", patch_all(3, RATE), 1));
    for row in futures::future::join_all(sets).await {
        assert_eq!(row.overrides, TopicLimits { concurrency: Some(3), rate_limit: Some(RATE), ..Default::default() });
    }
    let list = s.topic_limits_list().await.unwrap();
    assert_eq!(list.len(), 1, "one row for sixteen identical sets");
    assert_eq!(list[0].topic, "t");
    // A patch leaves out what it does not name, and clears what it sets to None.
    let row = set(&s, "t", TopicLimitsPatch { concurrency: Some(Some(7)), ..Default::default() }, 2).await;
    assert_eq!(row.overrides, TopicLimits { concurrency: Some(7), rate_limit: Some(RATE), ..Default::default() });
    let row = set(&s, "t", TopicLimitsPatch { rate_limit: Some(None), ..Default::default() }, 3).await;
    assert_eq!(row.overrides, TopicLimits { concurrency: Some(7), ..Default::default() });
    assert_eq!(row.updated_at, at(3));
    let paused = s.topic_control_list(TopicControlListParams { paused_only: true }).await.unwrap();
    assert_eq!(paused.len(), 1, "still paused");
    // Cleared entirely: no longer listed.
    let row = set(&s, "t", TopicLimitsPatch { concurrency: Some(None), ..Default::default() }, 4).await;
    assert!(row.overrides.is_empty());
    assert!(s.topic_limits_list().await.unwrap().is_empty());
    // A topic never paused gets its row from a limit alone, not paused.
    set(&s, "u", TopicLimitsPatch { concurrency: Some(Some(1)), ..Default::default() }, 5).await;
    let paused = s.topic_control_list(TopicControlListParams { paused_only: true }).await.unwrap();
    assert_eq!(paused.iter().map(|c| c.topic.as_str()).collect::<Vec<_>>(), ["t"]);
}
