//! A group rate limit (`DeliveryClaimParams::group_rate_limit`, a job's `group_rate_limit`):
//! at most `limit` starts per period for each message group — a burst of `limit`, then one
//! per interval — however many claim at once; a group over its rate never holds back
//! another; with a group concurrency both hold.

use vqs::RateLimit;
use vqs::store::*;

use crate::support::*;

async fn send_to(s: &Store, key: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let p = MessageSendParams { group_key: Some(key.into()), ..send_params("t", "{}", at(0)) };
        ids.push(s.message_send(p).await.expect("send").message_id);
    }
    ids
}

/// Two starts per 10 s per group: a burst of 2, then one every 5 s.
const RATE: RateLimit = RateLimit { limit: 2, period_seconds: 10 };

fn claim(limit: u32, now: i64, concurrency: Option<u32>) -> DeliveryClaimParams {
    DeliveryClaimParams {
        group_rate_limit: Some(RATE),
        group_concurrency: concurrency,
        // Leases longer than the test, so only the rate limits starts.
        visibility_seconds: 3600,
        ..claim_params("g", limit, at(now))
    }
}

async fn groups_of(s: &Store, leased: &[LeasedMessage]) -> Vec<String> {
    let mut out = Vec::new();
    for m in leased {
        let r = s.message_get(MessageGetParams { id: m.message_id.clone() }).await.unwrap().unwrap();
        out.push(r.group_key.unwrap_or_default());
    }
    out.sort();
    out
}

pub async fn a_group_starts_a_burst_then_one_per_interval_and_never_holds_back_another(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    let a = send_to(&s, "A", 6).await;
    send_to(&s, "B", 1).await;
    let first = s.delivery_claim(claim(10, 1, None)).await.unwrap();
    assert_eq!(groups_of(&s, &first).await, ["A", "A", "B"], "A's burst of 2, and B");
    assert!(s.delivery_claim(claim(10, 2, None)).await.unwrap().is_empty(), "A's bucket is empty");
    // A waiting message of A says why (nothing spent), and with no rate in force it would not.
    let leased: Vec<&str> = first.iter().map(|m| m.message_id.as_str()).collect();
    let waiting = a.iter().find(|id| !leased.contains(&id.as_str())).unwrap().clone();
    let held = |rate: Option<RateLimit>| {
        s.delivery_group_held(DeliveryGroupHeldParams {
            message_id: waiting.clone(),
            group_rate_limit: rate,
            now: at(2),
        })
    };
    assert_eq!(held(Some(RATE)).await.unwrap(), Some(GroupHeld::RateLimit));
    assert_eq!(held(None).await.unwrap(), None);
    // A message of B published now is not held back by A.
    send_to(&s, "B", 1).await;
    assert_eq!(groups_of(&s, &s.delivery_claim(claim(10, 3, None)).await.unwrap()).await, ["B"]);
    // One interval (5 s) after the burst: one more start of A, then none until the next.
    assert!(s.delivery_claim(claim(10, 5, None)).await.unwrap().is_empty(), "not yet (t = 5 < 6)");
    assert_eq!(groups_of(&s, &s.delivery_claim(claim(10, 6, None)).await.unwrap()).await, ["A"]);
    assert!(s.delivery_claim(claim(10, 7, None)).await.unwrap().is_empty());
    assert_eq!(groups_of(&s, &s.delivery_claim(claim(10, 11, None)).await.unwrap()).await, ["A"]);
    // Over a long quiet spell the bucket refills to its burst, no more.
    assert_eq!(s.delivery_claim(claim(10, 500, None)).await.unwrap().len(), 2, "the burst again, not the backlog");
}

pub async fn sixteen_claims_at_once_never_pass_the_group_rate(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    send_to(&s, "A", 40).await;
    let claims = (0..16).map(|_| {
        let s = s.clone();
        async move { s.delivery_claim(claim(5, 1, None)).await.unwrap().len() }
    });
    let leased: usize = futures::future::join_all(claims).await.into_iter().sum();
    assert_eq!(leased, 2, "the burst, whoever claimed it");
}

pub async fn a_group_rate_and_a_group_concurrency_hold_together(s: Store) {
    subscribe_grouped(&s, "t", "g").await;
    send_to(&s, "A", 6).await;
    // Concurrency 1 is the tighter: one at a time, even with the bucket full.
    let first = s.delivery_claim(claim(10, 1, Some(1))).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(s.delivery_claim(claim(10, 2, Some(1))).await.unwrap().is_empty(), "full");
    s.delivery_ack(DeliveryAckParams { lease: lease(&first[0], at(2)), execution: None }).await.unwrap();
    assert_eq!(s.delivery_claim(claim(10, 2, Some(1))).await.unwrap().len(), 1, "the bucket's second start");
    let done = s.delivery_claim(claim(10, 2, Some(1))).await.unwrap();
    assert!(done.is_empty(), "full again");
}

/// A snoozed delivery's group start is given back (`rate_bucket_credit` with the group rate):
/// for a local lease by the delivery's own group key, for a push this database did not lease
/// by the key its `flow_group_start` used. Only that group's bucket is credited.
pub async fn a_group_start_given_back_lets_the_group_start_again_at_once(s: Store) {
    const ONE_A_MINUTE: RateLimit = RateLimit { limit: 1, period_seconds: 60 };
    subscribe_grouped(&s, "t", "g").await;
    let a = send_to(&s, "A", 3).await;
    send_to(&s, "B", 2).await;
    let grouped = |now: i64| DeliveryClaimParams {
        group_rate_limit: Some(ONE_A_MINUTE),
        visibility_seconds: 3600,
        ..claim_params("g", 10, at(now))
    };
    let first = s.delivery_claim(grouped(1)).await.unwrap();
    assert_eq!(groups_of(&s, &first).await, ["A", "B"], "one start each");
    let from_a = first.iter().find(|m| a.contains(&m.message_id)).unwrap();
    let retry = DeliveryRetryParams {
        lease: lease(from_a, at(1)),
        delay: std::time::Duration::from_secs(30),
        execution: finish(from_a.execution_id, ExecutionStatus::Snoozed, at(1)),
    };
    s.delivery_retry(retry).await.unwrap();
    let give_back = RateBucketCreditParams {
        consumer_group: "g".into(),
        topic: "t".into(),
        message_id: from_a.message_id.clone(),
        rate: None,
        group_key: None,
        group_rate: Some(ONE_A_MINUTE),
    };
    s.rate_bucket_credit(give_back).await.unwrap();
    let next = s.delivery_claim(grouped(2)).await.unwrap();
    assert_eq!(groups_of(&s, &next).await, ["A"], "A starts its next message at once; B's bucket is as it was");
    assert_ne!(next[0].message_id, from_a.message_id, "not the snoozed one");
    assert!(s.delivery_claim(grouped(2)).await.unwrap().is_empty());

    // A push (Vercel's) of group C: its start taken by `flow_group_start`, given back by key.
    let start = |id: &str| FlowGroupStartParams {
        consumer_group: "g".into(),
        group_key: "C".into(),
        message_id: id.into(),
        concurrency: None,
        rate: Some(ONE_A_MINUTE),
        slot_until: at(3600),
        now: at(3),
    };
    assert_eq!(s.flow_group_start(start("c1")).await.unwrap(), FlowGroupStart::Started);
    assert!(matches!(s.flow_group_start(start("c2")).await.unwrap(), FlowGroupStart::RateLimited { .. }));
    let give_back = RateBucketCreditParams {
        consumer_group: "g".into(),
        topic: "t".into(),
        message_id: "c1".into(),
        rate: None,
        group_key: Some("C".into()),
        group_rate: Some(ONE_A_MINUTE),
    };
    s.rate_bucket_credit(give_back).await.unwrap();
    assert_eq!(s.flow_group_start(start("c2")).await.unwrap(), FlowGroupStart::Started, "given back");
    assert!(matches!(s.flow_group_start(start("c3")).await.unwrap(), FlowGroupStart::RateLimited { .. }));
}
