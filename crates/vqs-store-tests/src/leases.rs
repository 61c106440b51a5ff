//! Leases and settlement: every state change of a delivery goes through a lease check.

use std::time::Duration;

use vqs::store::*;

use crate::support::*;

async fn one(s: &Store) -> (String, LeasedMessage) {
    subscribe(s, "t", "a").await;
    let id = send(s, "t", at(0)).await;
    let mut leased = claim(s, "a", 10, at(1)).await;
    assert_eq!(leased.len(), 1);
    (id, leased.remove(0))
}

pub async fn claim_leases_once_until_the_lease_ends(s: Store) {
    let (id, m) = one(&s).await;
    assert_eq!((m.message_id.as_str(), m.delivery_count, m.lease_until), (id.as_str(), 1, at(31)));
    assert!(claim(&s, "a", 10, at(30)).await.is_empty(), "leased until 31");
    let again = claim(&s, "a", 10, at(31)).await;
    assert_eq!(again.len(), 1, "due again when the lease ends");
    assert_eq!(again[0].delivery_count, 2);
    assert_ne!(again[0].receipt_handle, m.receipt_handle);
}

pub async fn ack_finishes_a_delivery(s: Store) {
    let (id, m) = one(&s).await;
    ack(&s, &m, at(2)).await.unwrap();
    let d = state(&s, &id, "a").await.unwrap();
    assert_eq!((d.state, d.delivery_count), (DeliveryState::Acked, 1));
    assert!(claim(&s, "a", 10, at(100)).await.is_empty());
    assert_eq!(s.delivery_next_due(DeliveryNextDueParams { consumer_group: "a".to_owned() }).await.unwrap(), None);
}

pub async fn retry_makes_it_due_after_the_delay(s: Store) {
    let (id, m) = one(&s).await;
    s.delivery_retry(DeliveryRetryParams {
        lease: lease(&m, at(2)),
        delay: Duration::from_millis(10_500),
        execution: None,
    })
    .await
    .unwrap();
    let d = state(&s, &id, "a").await.unwrap();
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.visible_at, at(12) + chrono::Duration::milliseconds(500));
    assert!(claim(&s, "a", 10, at(12)).await.is_empty());
    let again = claim(&s, "a", 10, at(13)).await;
    assert_eq!(again[0].delivery_count, 2);
}

pub async fn release_spends_no_delivery(s: Store) {
    let (id, m) = one(&s).await;
    s.delivery_release(DeliveryReleaseParams { lease: lease(&m, at(2)), execution_id: None }).await.unwrap();
    let d = state(&s, &id, "a").await.unwrap();
    assert_eq!((d.state, d.delivery_count), (DeliveryState::Pending, 0));
    let again = claim(&s, "a", 10, at(2)).await;
    assert_eq!(again[0].delivery_count, 1, "due at once, the delivery not counted");
}

pub async fn dead_letter_keeps_the_message(s: Store) {
    let (id, m) = one(&s).await;
    s.delivery_dead_letter(DeliveryDeadLetterParams {
        lease: lease(&m, at(2)),
        reason: "boom".into(),
        execution: None,
    })
    .await
    .unwrap();
    assert_eq!(state(&s, &id, "a").await.unwrap().state, DeliveryState::Dead);
    let letters = s.dead_letter_list(DeadLetterListParams { limit: 10 }).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].message_id.as_str(), letters[0].error.as_str()), (id.as_str(), "boom"));
    assert_eq!((letters[0].consumer_group.as_str(), letters[0].attempts), ("a", 1));
}

pub async fn settling_twice_is_not_found(s: Store) {
    let (_, m) = one(&s).await;
    ack(&s, &m, at(2)).await.unwrap();
    assert!(matches!(ack(&s, &m, at(3)).await, Err(StoreError::NotFound(_))));
    let retry =
        s.delivery_retry(DeliveryRetryParams { lease: lease(&m, at(3)), delay: Duration::ZERO, execution: None });
    assert!(matches!(retry.await, Err(StoreError::NotFound(_))));
}

pub async fn a_stale_lease_cannot_settle(s: Store) {
    let (id, stale) = one(&s).await;
    let fresh = claim(&s, "a", 10, at(40)).await.remove(0);
    assert!(matches!(ack(&s, &stale, at(41)).await, Err(StoreError::LeaseLost(_))));
    let dl = s.delivery_dead_letter(DeliveryDeadLetterParams {
        lease: lease(&stale, at(41)),
        reason: "x".into(),
        execution: None,
    });
    assert!(matches!(dl.await, Err(StoreError::LeaseLost(_))));
    let vis = s.delivery_set_visibility(LeaseVisibilityParams { lease: lease(&stale, at(41)), visibility_seconds: 60 });
    assert!(matches!(vis.await, Err(StoreError::LeaseLost(_))));
    assert_eq!(state(&s, &id, "a").await.unwrap().state, DeliveryState::Leased, "the fresh lease still holds");
    ack(&s, &fresh, at(42)).await.unwrap();
    // A forged token on a live message is lost, not found.
    let forged = LeasedMessage { receipt_handle: receipt_handle(&id, "forged"), ..fresh };
    let (id2, _) = (send(&s, "t", at(43)).await, ());
    let live = claim(&s, "a", 1, at(44)).await.remove(0);
    assert_eq!(live.message_id, id2);
    let forged_live = LeasedMessage { receipt_handle: receipt_handle(&id2, "forged"), ..forged };
    assert!(matches!(ack(&s, &forged_live, at(45)).await, Err(StoreError::LeaseLost(_))));
}

pub async fn unknown_message_is_not_found(s: Store) {
    let (_, m) = one(&s).await;
    let ghost = LeasedMessage { receipt_handle: receipt_handle("msg_nope", "t"), ..m.clone() };
    assert!(matches!(ack(&s, &ghost, at(2)).await, Err(StoreError::NotFound(_))));
    let bad = LeasedMessage { receipt_handle: "no-dot".into(), ..m.clone() };
    assert!(matches!(ack(&s, &bad, at(2)).await, Err(StoreError::NotFound(_))));
    let other_group = LeasedMessage { consumer_group: "zzz".into(), ..m };
    assert!(matches!(ack(&s, &other_group, at(2)).await, Err(StoreError::NotFound(_))));
}

pub async fn extend_and_release_visibility(s: Store) {
    let (id, m) = one(&s).await;
    let until = s.delivery_set_visibility(LeaseVisibilityParams { lease: lease(&m, at(20)), visibility_seconds: 100 });
    assert_eq!(until.await.unwrap(), at(120));
    assert!(claim(&s, "a", 10, at(119)).await.is_empty());
    s.delivery_set_visibility(LeaseVisibilityParams { lease: lease(&m, at(50)), visibility_seconds: 0 }).await.unwrap();
    assert_eq!(state(&s, &id, "a").await.unwrap().state, DeliveryState::Pending);
    assert_eq!(claim(&s, "a", 10, at(50)).await.len(), 1);
}

pub async fn receive_by_id_of_a_leased_message_is_locked(s: Store) {
    let (id, m) = one(&s).await;
    let by_id = |now| DeliveryClaimParams { message_id: Some(id.clone()), ..claim_params("a", 1, now) };
    assert!(matches!(s.delivery_claim(by_id(at(2))).await, Err(StoreError::Locked(_))));
    ack(&s, &m, at(3)).await.unwrap();
    assert!(matches!(s.delivery_claim(by_id(at(4))).await, Err(StoreError::AlreadyAcknowledged(_))));
}

pub async fn leased_count_counts_live_leases(s: Store) {
    subscribe(&s, "t", "a").await;
    for i in 0..3 {
        send(&s, "t", at(i)).await;
    }
    let leased = claim(&s, "a", 2, at(5)).await;
    assert_eq!(leased.len(), 2);
    assert_eq!(
        s.delivery_leased_count(DeliveryLeasedCountParams { consumer_group: "a".to_owned(), now: at(6) })
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.delivery_leased_count(DeliveryLeasedCountParams { consumer_group: "a".to_owned(), now: at(35) })
            .await
            .unwrap(),
        0,
        "expired leases are not live"
    );
    assert_eq!(
        s.delivery_topic(DeliveryTopicParams {
            message_id: leased[0].message_id.to_string(),
            consumer_group: "a".to_owned()
        })
        .await
        .unwrap()
        .as_deref(),
        Some("t")
    );
    assert_eq!(
        s.delivery_topic(DeliveryTopicParams {
            message_id: leased[0].message_id.to_string(),
            consumer_group: "b".to_owned()
        })
        .await
        .unwrap(),
        None
    );
}

/// A stale lease's move and the current lease's move of one delivery, sent together (so a
/// group-commit writer takes them in one batch): only the current one succeeds, and the
/// answers say so — the stale one's failure is not reported as the current one's.
pub async fn a_stale_and_a_fresh_move_of_one_delivery_sent_together(s: Store) {
    for round in 0..8 {
        let topic = format!("t{round}");
        subscribe(&s, &topic, "a").await;
        let id = send(&s, &topic, at(0)).await;
        let stale = claim(&s, "a", 10, at(1)).await.remove(0);
        let fresh = claim(&s, "a", 10, at(40)).await.remove(0);
        assert_eq!((stale.message_id.as_str(), fresh.message_id.as_str()), (id.as_str(), id.as_str()));
        let retry = |m: &LeasedMessage| {
            s.delivery_retry(DeliveryRetryParams {
                lease: lease(m, at(41)),
                delay: Duration::from_secs(5),
                execution: None,
            })
        };
        // Both orders: the writer must not attribute the one update to whichever came first.
        let (a, b) = if round % 2 == 0 {
            let (st, fr) = tokio::join!(retry(&stale), retry(&fresh));
            (st, fr)
        } else {
            let (fr, st) = tokio::join!(retry(&fresh), retry(&stale));
            (st, fr)
        };
        assert!(matches!(a, Err(StoreError::LeaseLost(_))), "round {round}: the stale lease's retry: {a:?}");
        assert!(b.is_ok(), "round {round}: the fresh lease's retry: {b:?}");
        let d = state(&s, &id, "a").await.unwrap();
        assert_eq!((d.state, d.visible_at), (DeliveryState::Pending, at(46)), "round {round}");
        // Nothing else is due for this group before the retry.
        assert!(claim(&s, "a", 10, at(45)).await.is_empty(), "round {round}");
        let again = claim(&s, "a", 10, at(46)).await.remove(0);
        ack(&s, &again, at(47)).await.unwrap();
    }
}
