//! A consumer group's limit across processes (`DeliveryClaimParams::max_leased`, a
//! trigger's `maxConcurrency`): claims lease at most the limit minus the group's live
//! leases, however many claim at once; a lease that ran out frees its slot; other groups
//! are not held back.

use vqs::store::*;

use crate::support::*;

fn limited(group: &str, limit: u32, max: u32, now: i64) -> DeliveryClaimParams {
    DeliveryClaimParams { max_leased: Some(max), ..claim_params(group, limit, at(now)) }
}

pub async fn sixteen_claims_at_once_never_lease_past_the_limit(s: Store) {
    subscribe(&s, "t", "g").await;
    subscribe(&s, "t", "other").await;
    for _ in 0..20 {
        send(&s, "t", at(0)).await;
    }
    let race = (0..16).map(|_| {
        let s = s.clone();
        async move { s.delivery_claim(limited("g", 5, 3, 1)).await.unwrap().len() }
    });
    let leased: usize = futures::future::join_all(race).await.into_iter().sum();
    assert_eq!(leased, 3, "the limit holds across concurrent claims");
    assert!(s.delivery_claim(limited("g", 5, 3, 2)).await.unwrap().is_empty(), "full");
    // Another consumer group of the same topic has its own slots.
    assert_eq!(s.delivery_claim(limited("other", 5, 3, 2)).await.unwrap().len(), 3);
    let count = s.delivery_leased_count(DeliveryLeasedCountParams { consumer_group: "g".into(), now: at(3) });
    assert_eq!(count.await.unwrap(), 3);
    // A claim without the limit (receive by a remote client) is not held back by it.
    let unlimited = s.delivery_claim(claim_params("g", 2, at(3))).await.unwrap();
    assert_eq!(unlimited.len(), 2);
}

pub async fn an_acknowledged_or_expired_lease_frees_its_slot(s: Store) {
    subscribe(&s, "t", "g").await;
    for _ in 0..5 {
        send(&s, "t", at(0)).await;
    }
    let first = s.delivery_claim(limited("g", 5, 2, 1)).await.unwrap();
    assert_eq!(first.len(), 2);
    s.delivery_ack(DeliveryAckParams {
        lease: LeaseParams { receipt_handle: first[0].receipt_handle.clone(), consumer_group: "g".into(), now: at(2) },
        execution: None,
    })
    .await
    .unwrap();
    assert_eq!(s.delivery_claim(limited("g", 5, 2, 3)).await.unwrap().len(), 1, "one slot freed by the ack");
    assert!(s.delivery_claim(limited("g", 5, 2, 4)).await.unwrap().is_empty());
    // Leases run out 30 s after they were taken (claim_params): their slots are free again.
    assert_eq!(s.delivery_claim(limited("g", 5, 2, 40)).await.unwrap().len(), 2);
}
