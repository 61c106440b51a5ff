//! Publishing: fan-out, dedup, delay.

use vqs::store::*;

use crate::support::*;

pub async fn send_fans_out_to_every_subscribed_group(s: Store) {
    subscribe(&s, "t", "a").await;
    subscribe(&s, "t", "b").await;
    subscribe(&s, "other", "c").await;
    let id = send(&s, "t", at(1)).await;
    let m = s.message_get(MessageGetParams { id: id.to_string() }).await.unwrap().expect("stored");
    let mut groups: Vec<_> = m.deliveries.iter().map(|d| d.consumer_group.clone()).collect();
    groups.sort();
    assert_eq!(groups, ["a", "b"]);
    assert!(m.deliveries.iter().all(|d| d.state == DeliveryState::Pending && d.delivery_count == 0));
    assert_eq!(claim(&s, "a", 10, at(1)).await.len(), 1);
    assert_eq!(claim(&s, "b", 10, at(1)).await.len(), 1);
    assert!(claim(&s, "c", 10, at(1)).await.is_empty());
}

pub async fn only_group_delivers_to_one_group(s: Store) {
    subscribe(&s, "t", "a").await;
    subscribe(&s, "t", "b").await;
    let id = s
        .message_send(MessageSendParams { only_group: Some("b".into()), ..send_params("t", "{}", at(1)) })
        .await
        .unwrap()
        .message_id;
    let m = s.message_get(MessageGetParams { id: id.to_string() }).await.unwrap().unwrap();
    assert_eq!(m.deliveries.len(), 1);
    assert_eq!(m.deliveries[0].consumer_group, "b");
}

pub async fn duplicate_key_within_pending_is_reported_not_queued(s: Store) {
    subscribe(&s, "t", "a").await;
    let p = MessageSendParams { idempotency_key: Some("k".into()), ..send_params("t", "{}", at(1)) };
    let first = s.message_send(p.clone()).await.unwrap();
    assert!(!first.duplicate);
    let again = s.message_send(MessageSendParams { now: at(2), ..p.clone() }).await.unwrap();
    assert_eq!(again, SendResult { message_id: first.message_id.clone(), duplicate: true, replaced: false });
    // Another topic's key space is its own.
    let other = s.message_send(MessageSendParams { topic: "u".into(), ..p }).await.unwrap();
    assert!(!other.duplicate);
    assert_eq!(claim(&s, "a", 10, at(3)).await.len(), 1, "one message queued, not two");
}

pub async fn key_dedups_within_retention_even_once_finished(s: Store) {
    subscribe(&s, "t", "a").await;
    let p =
        MessageSendParams { idempotency_key: Some("k".into()), retention_seconds: 60, ..send_params("t", "{}", at(1)) };
    let first = s.message_send(p.clone()).await.unwrap();
    let leased = claim(&s, "a", 1, at(2)).await;
    assert!(s.message_send(MessageSendParams { now: at(3), ..p.clone() }).await.unwrap().duplicate, "running");
    ack(&s, &leased[0], at(4)).await.unwrap();
    let done = s.message_send(MessageSendParams { now: at(5), ..p.clone() }).await.unwrap();
    assert_eq!(
        done,
        SendResult { message_id: first.message_id.clone(), duplicate: true, replaced: false },
        "finished, within retention"
    );
    let after = s.message_send(MessageSendParams { now: at(61), ..p }).await.unwrap();
    assert!(!after.duplicate, "past the original's retention the key queues a new message");
    assert_ne!(after.message_id, first.message_id);
}

pub async fn delay_holds_a_message_back(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = s.message_send(MessageSendParams { delay_seconds: 60, ..send_params("t", "{}", at(0)) }).await.unwrap();
    assert!(claim(&s, "a", 10, at(59)).await.is_empty());
    assert_eq!(
        s.delivery_next_due(DeliveryNextDueParams { consumer_group: "a".to_owned() }).await.unwrap(),
        Some(at(60))
    );
    let leased = claim(&s, "a", 10, at(60)).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].message_id, id.message_id);
    assert_eq!(leased[0].delivery_count, 1);
}

pub async fn send_many_keeps_input_order(s: Store) {
    subscribe(&s, "t", "a").await;
    let key = |k: &str| MessageSendParams { idempotency_key: Some(k.into()), ..send_params("t", "{}", at(1)) };
    let r = s.message_send_many(MessageSendManyParams { messages: vec![key("x"), key("y"), key("x")] }).await.unwrap();
    assert_eq!(r.len(), 3);
    assert!(!r[0].duplicate && !r[1].duplicate);
    assert_ne!(r[0].message_id, r[1].message_id);
    assert_eq!(r[2], SendResult { message_id: r[0].message_id.clone(), duplicate: true, replaced: false });
}

pub async fn subscribing_late_sees_earlier_messages(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(1)).await;
    s.subscription_ensure(SubscriptionEnsureParams {
        grouped: false,
        topic_pattern: "t*".into(),
        consumer_group: "late".into(),
        initial_delay_seconds: 0,
        now: at(2),
    })
    .await
    .unwrap();
    let leased = claim(&s, "late", 10, at(3)).await;
    assert_eq!(leased.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
}

/// The operator's "run now": a delayed delivery and one waiting for its retry become due at
/// once, in every group, without spending an attempt; a leased, a finished or an unknown
/// message is left alone (0).
pub async fn run_now_makes_waiting_deliveries_due(s: Store) {
    subscribe(&s, "t", "a").await;
    subscribe(&s, "t", "b").await;
    let run_now = |id: &str, now| s.message_run_now(MessageRunNowParams { message_id: id.to_owned(), now });
    let delayed = s
        .message_send(MessageSendParams { delay_seconds: 3600, ..send_params("t", "{}", at(0)) })
        .await
        .unwrap()
        .message_id;
    assert!(claim(&s, "a", 10, at(1)).await.is_empty(), "delayed an hour");
    assert_eq!(run_now(&delayed, at(2)).await.unwrap(), 2, "due now in both groups");
    assert_eq!(run_now(&delayed, at(2)).await.unwrap(), 0, "already due");
    let leased = claim(&s, "a", 10, at(2)).await.remove(0);
    assert_eq!(leased.message_id, delayed);

    // Waiting for its retry in group a; due (not leased) in group b.
    s.delivery_retry(DeliveryRetryParams {
        lease: lease(&leased, at(3)),
        delay: std::time::Duration::from_secs(900),
        execution: None,
    })
    .await
    .unwrap();
    assert_eq!(run_now(&delayed, at(4)).await.unwrap(), 1, "only a's retry was waiting");
    let d = state(&s, &delayed, "a").await.unwrap();
    assert_eq!((d.state, d.visible_at, d.delivery_count), (DeliveryState::Pending, at(4), 1));
    assert_eq!(d.attempts, leased.attempts, "no attempt spent");

    // Leased, then finished: nothing to make due.
    let again = claim(&s, "a", 10, at(4)).await.remove(0);
    assert_eq!(run_now(&delayed, at(5)).await.unwrap(), 0, "leased in a, due in b");
    ack(&s, &again, at(6)).await.unwrap();
    let b = claim(&s, "b", 10, at(6)).await.remove(0);
    ack(&s, &b, at(7)).await.unwrap();
    assert_eq!(run_now(&delayed, at(8)).await.unwrap(), 0, "finished");
    assert_eq!(state(&s, &delayed, "a").await.unwrap().state, DeliveryState::Acked);
    assert_eq!(run_now("msg_unknown", at(8)).await.unwrap(), 0);
}

pub async fn messages_are_found_by_the_key_they_hold_in_any_topic(s: Store) {
    subscribe(&s, "t", "a").await;
    subscribe(&s, "u", "a").await;
    let keyed = |topic: &str, key: &str, n: i64| MessageSendParams {
        idempotency_key: Some(key.into()),
        ..send_params(topic, "{}", at(n))
    };
    let first = s.message_send(keyed("t", "order-42", 1)).await.unwrap().message_id;
    let second = s.message_send(keyed("u", "order-42", 2)).await.unwrap().message_id;
    s.message_send(keyed("t", "order-43", 3)).await.unwrap();
    s.message_send(send_params("t", "{}", at(4))).await.unwrap();
    let find = |key: &str, limit: u32| s.message_ids_by_key(MessageKeyLookupParams { key: key.into(), limit });
    assert_eq!(find("order-42", 10).await.unwrap(), [second.to_string(), first.to_string()], "newest first");
    assert_eq!(find("order-42", 1).await.unwrap(), [second.to_string()]);
    assert!(find("order-4", 10).await.unwrap().is_empty(), "exact keys only");
    assert!(find("", 10).await.unwrap().is_empty());
    // Finished, it is still found while it is kept (its key dedups until then too).
    let leased = claim(&s, "a", 10, at(5)).await;
    for m in leased.iter().filter(|m| m.message_id == second) {
        ack(&s, m, at(6)).await.unwrap();
    }
    assert_eq!(find("order-42", 10).await.unwrap(), [second.to_string(), first.to_string()]);
}
