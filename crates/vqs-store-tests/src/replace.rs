//! `on_duplicate: replace` (SPEC.md, "Job outcomes"): a key's message that has not started
//! takes the new payload and due time; one that has started or finished hands the key to
//! a new message.

use std::collections::HashSet;

use vqs::OnDuplicate;
use vqs::store::*;

use crate::support::*;

fn keyed(key: &str, payload: &str, now: chrono::DateTime<chrono::Utc>) -> MessageSendParams {
    MessageSendParams { idempotency_key: Some(key.into()), ..send_params("t", payload, now) }
}

fn replace(key: &str, payload: &str, now: chrono::DateTime<chrono::Utc>) -> MessageSendParams {
    MessageSendParams { on_duplicate: OnDuplicate::Replace, ..keyed(key, payload, now) }
}

async fn message(s: &Store, id: &str) -> MessageRecord {
    s.message_get(MessageGetParams { id: id.into() }).await.expect("message_get").expect("the message is kept")
}

fn replaced(id: &str) -> SendResult {
    SendResult { message_id: id.to_owned(), duplicate: false, replaced: true }
}

/// A pending message (due or delayed), in every group: new payload, content type, headers
/// and due time; delivery counts and attempts unchanged.
pub async fn a_pending_message_takes_the_new_payload_and_due_time(s: Store) {
    subscribe(&s, "t", "a").await;
    subscribe(&s, "t", "b").await;
    let first = s.message_send(keyed("k", r#"{"v":1}"#, at(1))).await.unwrap();
    assert_eq!((first.duplicate, first.replaced), (false, false));
    let again = s
        .message_send(MessageSendParams {
            group_key: None,
            content_type: "text/plain".into(),
            headers_json: Some(r#"{"traceparent":"00-1-2-01"}"#.into()),
            delay_seconds: 60,
            ..replace("k", "v2", at(2))
        })
        .await
        .unwrap();
    assert_eq!(again, replaced(&first.message_id));
    let m = message(&s, &first.message_id).await;
    assert_eq!((m.payload, m.content_type.as_str()), (serde_json::json!("v2"), "text/plain"));
    assert_eq!(m.idempotency_key.as_deref(), Some("k"));
    assert_eq!(m.deliveries.len(), 2);
    for d in &m.deliveries {
        assert_eq!((d.state, d.visible_at, d.delivery_count, d.attempts), (DeliveryState::Pending, at(62), 0, 0));
    }
    assert!(claim(&s, "a", 10, at(61)).await.is_empty(), "delayed by the replace");
    // Replaced again while delayed: the latest wins, due from the latest send.
    let third = s.message_send(replace("k", r#"{"v":3}"#, at(30))).await.unwrap();
    assert_eq!(third, replaced(&first.message_id));
    for group in ["a", "b"] {
        let leased = claim(&s, group, 10, at(30)).await;
        assert_eq!(leased.len(), 1, "one message in group {group}");
        let l = &leased[0];
        assert_eq!(l.message_id, first.message_id);
        assert_eq!((l.payload.as_slice(), l.content_type.as_str()), (br#"{"v":3}"#.as_slice(), "application/json"));
        assert_eq!(l.headers_json, None, "the headers of the latest send");
        assert_eq!(l.delivery_count, 1);
    }
}

/// A message waiting for its retry has not started again: it is replaced, its attempts kept.
pub async fn a_message_waiting_for_its_retry_is_replaced(s: Store) {
    subscribe(&s, "t", "a").await;
    let first = s.message_send(keyed("k", "1", at(1))).await.unwrap();
    let leased = s
        .delivery_claim(DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, at(2)) })
        .await
        .unwrap()
        .remove(0);
    assert_eq!(leased.attempts, 1);
    s.delivery_retry(DeliveryRetryParams {
        lease: lease(&leased, at(3)),
        delay: std::time::Duration::from_secs(900),
        execution: finish(leased.execution_id, ExecutionStatus::Failed, at(3)),
    })
    .await
    .unwrap();
    let again = s.message_send(replace("k", "2", at(4))).await.unwrap();
    assert_eq!(again, replaced(&first.message_id));
    let d = state(&s, &first.message_id, "a").await.unwrap();
    assert_eq!((d.state, d.visible_at, d.delivery_count, d.attempts), (DeliveryState::Pending, at(4), 1, 1));
    let next = s
        .delivery_claim(DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, at(4)) })
        .await
        .unwrap()
        .remove(0);
    assert_eq!((next.payload.as_slice(), next.attempts, next.delivery_count), (b"2".as_slice(), 2, 2));
}

/// A leased message has started: the key moves to a new message sent as usual, and a later
/// skip dedups to the new one. The running lease finishes as usual.
pub async fn a_leased_message_hands_its_key_to_a_new_one(s: Store) {
    subscribe(&s, "t", "a").await;
    let first = s.message_send(keyed("k", "1", at(1))).await.unwrap();
    let running = claim(&s, "a", 1, at(2)).await.remove(0);
    let again = s.message_send(replace("k", "2", at(3))).await.unwrap();
    assert_eq!((again.duplicate, again.replaced), (false, false));
    assert_ne!(again.message_id, first.message_id);
    let old = message(&s, &first.message_id).await;
    assert_eq!((old.idempotency_key, old.payload), (None, serde_json::json!(1)), "the running one is untouched");
    assert_eq!(message(&s, &again.message_id).await.idempotency_key.as_deref(), Some("k"));
    let skipped = s.message_send(keyed("k", "3", at(4))).await.unwrap();
    assert_eq!(skipped, SendResult { message_id: again.message_id.clone(), duplicate: true, replaced: false });
    ack(&s, &running, at(5)).await.unwrap();
    let next = claim(&s, "a", 10, at(5)).await;
    assert_eq!(
        next.iter().map(|m| (m.message_id.as_str(), m.payload.as_slice())).collect::<Vec<_>>(),
        [(again.message_id.as_str(), b"2".as_slice())]
    );
}

/// A message finished in one group (acknowledged, or dead) has started, even while another
/// group has not: the key moves to a new message.
pub async fn a_finished_message_hands_its_key_to_a_new_one(s: Store) {
    subscribe(&s, "t", "a").await;
    let first = s.message_send(keyed("k", "1", at(1))).await.unwrap();
    let leased = claim(&s, "a", 1, at(2)).await.remove(0);
    ack(&s, &leased, at(3)).await.unwrap();
    let second = s.message_send(replace("k", "2", at(4))).await.unwrap();
    assert_eq!((second.duplicate, second.replaced), (false, false));
    assert_ne!(second.message_id, first.message_id);
    assert_eq!(message(&s, &first.message_id).await.idempotency_key, None);

    // Dead in a, still pending in b: started.
    subscribe(&s, "t", "b").await;
    let leased = claim(&s, "a", 1, at(5)).await.remove(0);
    assert_eq!(leased.message_id, second.message_id);
    s.delivery_dead_letter(DeliveryDeadLetterParams {
        lease: lease(&leased, at(6)),
        reason: "bad".into(),
        execution: None,
    })
    .await
    .unwrap();
    let third = s.message_send(replace("k", "3", at(7))).await.unwrap();
    assert_eq!((third.duplicate, third.replaced), (false, false));
    assert_ne!(third.message_id, second.message_id);
    assert_eq!(message(&s, &second.message_id).await.payload, serde_json::json!(2), "finished: untouched");
    let b: Vec<_> = claim(&s, "b", 10, at(8)).await.into_iter().map(|m| (m.message_id, m.payload)).collect();
    assert!(b.contains(&(third.message_id.clone(), b"3".to_vec())), "{b:?}");
}

/// A message no consumer group receives yet has not started: it is replaced, and a group
/// subscribing later receives the latest payload.
pub async fn a_message_without_subscribers_is_replaced(s: Store) {
    let first = s.message_send(keyed("k", "1", at(1))).await.unwrap();
    assert_eq!(s.message_send(replace("k", "2", at(2))).await.unwrap(), replaced(&first.message_id));
    assert_eq!(message(&s, &first.message_id).await.payload, serde_json::json!(2));
    subscribe(&s, "t", "a").await;
    let leased = claim(&s, "a", 10, at(3)).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(
        (leased[0].message_id.as_str(), leased[0].payload.as_slice()),
        (first.message_id.as_str(), b"2".as_slice())
    );
}

/// Bulk: against keys already held (pending: replaced; leased: a new message), and two of
/// one key in one batch (the second replaces the first; with skip, dedups as before).
pub async fn send_many_replaces_held_keys_and_earlier_ones_in_the_batch(s: Store) {
    subscribe(&s, "t", "a").await;
    let pending = s.message_send(keyed("p", "0", at(1))).await.unwrap();
    let started = s.message_send(keyed("s", "0", at(1))).await.unwrap();
    let leased = claim(&s, "a", 10, at(1)).await;
    assert_eq!(leased.len(), 2);
    // Make "p" pending again (a retry due at once), "s" stays leased.
    let p_lease = leased.iter().find(|l| l.message_id == pending.message_id).unwrap();
    s.delivery_retry(DeliveryRetryParams { lease: lease(p_lease, at(2)), delay: Default::default(), execution: None })
        .await
        .unwrap();
    let r = s
        .message_send_many(MessageSendManyParams {
            messages: vec![
                replace("p", "1", at(3)),
                replace("s", "1", at(3)),
                replace("n", "1", at(3)),
                replace("n", "2", at(3)),
                keyed("x", "1", at(3)),
                keyed("x", "2", at(3)),
                send_params("t", "plain", at(3)),
            ],
        })
        .await
        .unwrap();
    assert_eq!(r.len(), 7);
    assert_eq!(r[0], replaced(&pending.message_id));
    assert_eq!((r[1].duplicate, r[1].replaced), (false, false));
    assert_ne!(r[1].message_id, started.message_id);
    assert_eq!((r[2].duplicate, r[2].replaced), (false, false));
    assert_eq!(r[3], replaced(&r[2].message_id), "the second of one key replaces the first");
    assert_eq!((r[4].duplicate, r[4].replaced), (false, false));
    assert_eq!(r[5], SendResult { message_id: r[4].message_id.clone(), duplicate: true, replaced: false });
    let due: Vec<(String, Vec<u8>)> =
        claim(&s, "a", 100, at(3)).await.into_iter().map(|m| (m.message_id, m.payload)).collect();
    let due: HashSet<_> = due.into_iter().collect();
    let want: HashSet<_> = [
        (pending.message_id.clone(), b"1".to_vec()),
        (r[1].message_id.clone(), b"1".to_vec()),
        (r[2].message_id.clone(), b"2".to_vec()),
        (r[4].message_id.clone(), b"1".to_vec()),
        (r[6].message_id.clone(), b"plain".to_vec()),
    ]
    .into_iter()
    .collect();
    assert_eq!(due, want);
}

/// Skip (the default) is unchanged: the held message keeps its payload and due time.
pub async fn skip_leaves_the_held_message_alone(s: Store) {
    subscribe(&s, "t", "a").await;
    let first = s.message_send(MessageSendParams { delay_seconds: 10, ..keyed("k", "1", at(1)) }).await.unwrap();
    let again =
        s.message_send(MessageSendParams { on_duplicate: OnDuplicate::Skip, ..keyed("k", "2", at(2)) }).await.unwrap();
    assert_eq!(again, SendResult { message_id: first.message_id.clone(), duplicate: true, replaced: false });
    let m = message(&s, &first.message_id).await;
    assert_eq!((m.payload, m.deliveries[0].visible_at), (serde_json::json!(1), at(11)));
}

/// 16 replaces of one key at once, alone and in bulk sends (separate connections where the
/// backend has them): one live message, every answer naming it as replaced, and its payload
/// one of theirs.
pub async fn sixteen_concurrent_replaces_leave_one_message(s: Store) {
    subscribe(&s, "t", "a").await;
    let first = s.message_send(keyed("k", "0", at(1))).await.unwrap();
    let sends = (1..=16).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let p = replace("k", &i.to_string(), at(2));
            if i % 2 == 0 {
                s.message_send(p).await
            } else {
                s.message_send_many(MessageSendManyParams { messages: vec![p] }).await.map(|mut r| r.remove(0))
            }
        })
    });
    for r in futures::future::join_all(sends).await {
        assert_eq!(r.expect("no panic").expect("replaced"), replaced(&first.message_id));
    }
    let leased = claim(&s, "a", 100, at(3)).await;
    assert_eq!(leased.len(), 1, "one live message");
    let payload: u32 = String::from_utf8_lossy(&leased[0].payload).parse().expect("a number");
    assert!((1..=16).contains(&payload), "the payload of one of the replaces, got {payload}");
}

/// Replaces racing claims: whatever the order, a message that ran ran with the payload it
/// has (no replace changed it after its lease, none was lost before), each answer is
/// consistent (replaced: the message it names was not leased yet; not replaced: a new
/// message), and one message holds the key at the end.
pub async fn replaces_racing_claims_never_run_a_replaced_payload(s: Store) {
    subscribe(&s, "t", "a").await;
    s.message_send(keyed("k", "0", at(1))).await.unwrap();
    let claimer = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut leased = Vec::new();
            for _ in 0..40 {
                leased.extend(claim(&s, "a", 10, at(2)).await);
                tokio::task::yield_now().await;
            }
            leased
        })
    };
    let sends = (1..=16).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let p = replace("k", &i.to_string(), at(2));
            let r = if i % 2 == 0 {
                s.message_send(p).await
            } else {
                s.message_send_many(MessageSendManyParams { messages: vec![p] }).await.map(|mut r| r.remove(0))
            };
            (i, r.expect("sent"))
        })
    });
    let answers: Vec<(u32, SendResult)> =
        futures::future::join_all(sends).await.into_iter().map(|r| r.expect("no panic")).collect();
    let mut leased = claimer.await.expect("no panic");
    leased.extend(claim(&s, "a", 100, at(2)).await);
    let mut seen = HashSet::new();
    for l in &leased {
        assert!(seen.insert(l.message_id.clone()), "{} leased twice", l.message_id);
        let m = message(&s, &l.message_id).await;
        assert_eq!(
            serde_json::json!(String::from_utf8_lossy(&l.payload).parse::<u32>().unwrap()),
            m.payload,
            "message {} ran with a payload it no longer has",
            l.message_id
        );
    }
    for (i, a) in &answers {
        assert!(!a.duplicate, "replace {i}: {a:?}");
        assert!(seen.contains(&a.message_id), "replace {i}: its message {} was never claimed", a.message_id);
    }
    let holders: Vec<_> = {
        let mut h = Vec::new();
        for id in &seen {
            if message(&s, id).await.idempotency_key.as_deref() == Some("k") {
                h.push(id.clone());
            }
        }
        h
    };
    assert_eq!(holders.len(), 1, "one message holds the key: {holders:?}");
}
