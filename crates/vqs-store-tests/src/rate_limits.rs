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

fn credit(rate: Option<RateLimit>, message_id: &str) -> RateBucketCreditParams {
    RateBucketCreditParams {
        consumer_group: "g".into(),
        topic: "t".into(),
        message_id: message_id.into(),
        rate,
        group_key: None,
        group_rate: None,
    }
}

/// SPEC.md: "a snooze does not count as a start". One start a minute: the start a snoozed
/// delivery took is given back (`rate_bucket_credit`), so the next message starts at once;
/// a push's start (`rate_bucket_take`) is given back the same way.
pub async fn a_start_given_back_lets_the_next_message_start_at_once(s: Store) {
    const ONE_A_MINUTE: RateLimit = RateLimit { limit: 1, period_seconds: 60 };
    subscribe(&s, "t", "g").await;
    for _ in 0..3 {
        send(&s, "t", at(0)).await;
    }
    let one = |now: i64| DeliveryClaimParams { rate_limit: Some(ONE_A_MINUTE), ..rated("g", "p1", 10, at(now)) };
    let first = s.delivery_claim(one(1)).await.unwrap();
    assert_eq!(first.len(), 1, "the bucket's one start");
    assert!(s.delivery_claim(one(1)).await.unwrap().is_empty(), "then none for a minute");
    // The job snoozes: its delivery goes back for later and its start is given back.
    let retry = DeliveryRetryParams {
        lease: lease(&first[0], at(1)),
        delay: std::time::Duration::from_secs(30),
        execution: finish(first[0].execution_id, ExecutionStatus::Snoozed, at(1)),
    };
    s.delivery_retry(retry).await.unwrap();
    s.rate_bucket_credit(credit(Some(ONE_A_MINUTE), &first[0].message_id)).await.unwrap();
    let next = s.delivery_claim(one(2)).await.unwrap();
    assert_eq!(next.len(), 1, "the next message starts at once");
    assert_ne!(next[0].message_id, first[0].message_id, "not the snoozed one: it is due in 30 s");
    assert!(s.delivery_claim(one(2)).await.unwrap().is_empty(), "one start given back, one taken: no more");

    // A push's start (Vercel's) is taken and given back the same way.
    let take = |now: i64| RateBucketTakeParams {
        consumer_group: "other".into(),
        topic: "t".into(),
        rate: ONE_A_MINUTE,
        now: at(now),
    };
    assert_eq!(s.rate_bucket_take(take(3)).await.unwrap(), None, "taken");
    assert!(s.rate_bucket_take(take(3)).await.unwrap().is_some(), "none left");
    let give_back = RateBucketCreditParams { consumer_group: "other".into(), ..credit(Some(ONE_A_MINUTE), "m") };
    s.rate_bucket_credit(give_back.clone()).await.unwrap();
    assert_eq!(s.rate_bucket_take(take(3)).await.unwrap(), None, "given back: taken again");
    // Credits never make a burst larger than the bucket: two given back, still one start.
    s.rate_bucket_credit(give_back.clone()).await.unwrap();
    s.rate_bucket_credit(give_back).await.unwrap();
    assert_eq!(s.rate_bucket_take(take(3)).await.unwrap(), None);
    assert!(s.rate_bucket_take(take(3)).await.unwrap().is_some(), "a burst of one, never two");
    // Nothing in force: nothing changes (and a bucket never used is not created).
    s.rate_bucket_credit(credit(None, "m")).await.unwrap();
    let get = RateBucketGetParams { consumer_group: "nobody".into(), topic: "t".into() };
    s.rate_bucket_credit(RateBucketCreditParams { consumer_group: "nobody".into(), ..credit(Some(ONE_A_MINUTE), "m") })
        .await
        .unwrap();
    assert_eq!(s.rate_bucket_get(get).await.unwrap(), None);
}
