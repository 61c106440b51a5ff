//! Dead letters: list, get, settle once, restore, insert.

use vqs::store::*;

use crate::support::*;

async fn dead(s: &Store, payload: &str) -> (String, i64) {
    subscribe(s, "t", "a").await;
    let id = s.message_send(send_params("t", payload, at(0))).await.unwrap().message_id;
    let m = claim(s, "a", 1, at(1)).await.remove(0);
    s.delivery_dead_letter(DeliveryDeadLetterParams {
        lease: lease(&m, at(2)),
        reason: "boom".into(),
        execution: None,
    })
    .await
    .unwrap();
    let letter = s
        .dead_letter_list(DeadLetterListParams { limit: 10 })
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.message_id == id)
        .expect("listed");
    (id, letter.id)
}

fn replay(id: i64, now: chrono::DateTime<chrono::Utc>) -> DeadLetterSettleParams {
    DeadLetterSettleParams {
        id,
        action: DeadLetterAction::Replay,
        publish: Some(DeadLetterReplayOpts { retention_seconds: 3600 }),
        now,
    }
}

pub async fn list_and_get_show_the_payload(s: Store) {
    let big = format!("{{\"x\":\"{}\"}}", "y".repeat(PAYLOAD_PREVIEW_BYTES as usize));
    let (_, id) = dead(&s, &big).await;
    let listed = s.dead_letter_list(DeadLetterListParams { limit: 10 }).await.unwrap().remove(0);
    assert!(listed.payload_truncated, "a list shows a preview");
    assert_eq!(listed.payload_bytes, big.len() as u64);
    let whole = s.dead_letter_get(DeadLetterGetParams { id }).await.unwrap().expect("get");
    assert!(!whole.payload_truncated);
    assert_eq!(whole.payload, serde_json::from_str::<serde_json::Value>(&big).unwrap());
    assert!(s.dead_letter_get(DeadLetterGetParams { id: id + 1000 }).await.unwrap().is_none());
}

pub async fn settle_replay_publishes_once(s: Store) {
    subscribe(&s, "t", "other").await;
    let (original, id) = dead(&s, "{\"n\":1}").await;
    let DeadLetterSettled::Settled { letter, payload, sent } = s.dead_letter_settle(replay(id, at(10))).await.unwrap()
    else {
        panic!("the first settle settles")
    };
    assert_eq!((letter.message_id.as_str(), payload.as_slice()), (original.as_str(), b"{\"n\":1}".as_slice()));
    let sent = sent.expect("published in the same transaction");
    let m = s.message_get(MessageGetParams { id: sent.message_id.to_string() }).await.unwrap().unwrap();
    assert_eq!(m.deliveries.len(), 1, "only to the group it died in");
    assert_eq!(m.deliveries[0].consumer_group, "a");
    match s.dead_letter_settle(replay(id, at(11))).await.unwrap() {
        DeadLetterSettled::AlreadySettled { action, message_id, .. } => {
            assert_eq!((action, message_id), (DeadLetterAction::Replay, Some(sent.message_id)));
        }
        other => panic!("a second replay must be refused: {other:?}"),
    }
    assert!(s.dead_letter_list(DeadLetterListParams { limit: 10 }).await.unwrap().is_empty());
    assert!(matches!(s.dead_letter_settle(replay(id + 1000, at(12))).await.unwrap(), DeadLetterSettled::NotFound));
}

pub async fn discard_then_replay_is_already_settled(s: Store) {
    let (_, id) = dead(&s, "{}").await;
    let discard = DeadLetterSettleParams { id, action: DeadLetterAction::Discard, publish: None, now: at(10) };
    assert!(matches!(s.dead_letter_settle(discard).await.unwrap(), DeadLetterSettled::Settled { sent: None, .. }));
    assert!(matches!(
        s.dead_letter_settle(replay(id, at(11))).await.unwrap(),
        DeadLetterSettled::AlreadySettled { action: DeadLetterAction::Discard, .. }
    ));
}

pub async fn restore_puts_it_back(s: Store) {
    let (_, id) = dead(&s, "{\"n\":2}").await;
    let remote = DeadLetterSettleParams { id, action: DeadLetterAction::Replay, publish: None, now: at(10) };
    let DeadLetterSettled::Settled { letter, payload, sent: None } = s.dead_letter_settle(remote).await.unwrap() else {
        panic!("settled without publishing")
    };
    s.dead_letter_restore(DeadLetterRestoreParams { letter: *letter, payload }).await.unwrap();
    let back = s.dead_letter_get(DeadLetterGetParams { id }).await.unwrap().expect("restored");
    assert_eq!(back.payload, serde_json::json!({"n": 2}));
    assert!(matches!(s.dead_letter_settle(replay(id, at(12))).await.unwrap(), DeadLetterSettled::Settled { .. }));
}

pub async fn insert_keeps_a_foreign_message(s: Store) {
    let id = s
        .dead_letter_insert(DeadLetterInsertParams {
            message_id: "msg_remote".into(),
            topic: "t".into(),
            consumer_group: "a".into(),
            content_type: "application/json".into(),
            payload: b"{\"r\":1}".to_vec(),
            error: "remote boom".into(),
            attempts: 4,
            headers_json: None,
            now: at(1),
        })
        .await
        .unwrap();
    let l = s.dead_letter_get(DeadLetterGetParams { id }).await.unwrap().expect("kept");
    assert_eq!((l.message_id.as_str(), l.attempts, l.error.as_str()), ("msg_remote", 4, "remote boom"));
    assert_eq!(l.payload, serde_json::json!({"r": 1}));
    assert!(s.dead_letter_delete(DeadLetterDeleteParams { id }).await.unwrap());
    assert!(!s.dead_letter_delete(DeadLetterDeleteParams { id }).await.unwrap());
}

/// A replay publishes the message with the headers it was sent with (its trace carries on).
/// (Moved from apps/web/tests/hostile_input.rs.)
pub async fn a_replay_keeps_the_message_headers(s: Store) {
    subscribe(&s, "probe", "a").await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let headers = serde_json::json!({ "traceparent": traceparent }).to_string();
    let p = MessageSendParams { headers_json: Some(headers.clone()), ..send_params("probe", "{}", at(0)) };
    s.message_send(p).await.unwrap();
    let m = claim(&s, "a", 1, at(1)).await.remove(0);
    let dl = DeliveryDeadLetterParams { lease: lease(&m, at(2)), reason: "fatal: boom".into(), execution: None };
    s.delivery_dead_letter(dl).await.unwrap();
    let letters = s.dead_letter_list(DeadLetterListParams { limit: 10 }).await.unwrap();
    assert_eq!(letters.len(), 1);
    let settled = s.dead_letter_settle(replay(letters[0].id, at(3))).await.unwrap();
    assert!(matches!(settled, DeadLetterSettled::Settled { sent: Some(_), .. }), "{settled:?}");
    let leased =
        s.delivery_claim(DeliveryClaimParams { topic: Some("probe".into()), ..claim_params("a", 10, at(4)) }).await;
    let leased = leased.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].headers_json.as_deref(), Some(headers.as_str()), "the replay carries the trace on");
}

async fn insert(s: &Store, topic: &str, error: &str, secs: i64) -> i64 {
    let p = DeadLetterInsertParams {
        message_id: format!("msg_{topic}_{secs}"),
        topic: topic.into(),
        consumer_group: "a".into(),
        content_type: "application/json".into(),
        payload: b"{}".to_vec(),
        error: error.into(),
        attempts: 3,
        headers_json: None,
        now: at(secs),
    };
    s.dead_letter_insert(p).await.unwrap()
}

/// Dead letters group by topic and the error's first line (at most 200 characters, counted
/// as characters in both backends), largest group first; a group's ids page by keyset and
/// stop at `through_id`.
pub async fn dead_letters_group_by_topic_and_first_line(s: Store) {
    let long = "é".repeat(250);
    let a1 = insert(&s, "t", "upstream 503\nbody one", 1).await;
    let a2 = insert(&s, "t", "upstream 503\nbody two", 2).await;
    let a3 = insert(&s, "t", "upstream 503", 3).await;
    insert(&s, "u", "upstream 503", 4).await;
    insert(&s, "t", &format!("{long}\nmore"), 5).await;
    let b = insert(&s, "t", &long, 6).await;
    let groups = s.dead_letter_groups(DeadLetterGroupsParams { limit: 10 }).await.unwrap();
    let seen: Vec<(&str, String, u64)> =
        groups.iter().map(|g| (g.topic.as_str(), g.error.chars().take(20).collect::<String>(), g.count)).collect();
    assert_eq!(
        seen,
        vec![("t", "upstream 503".into(), 3), ("t", "é".repeat(20), 2), ("u", "upstream 503".into(), 1)],
        "{groups:?}"
    );
    assert_eq!(groups[1].error, dead_letter_fingerprint(&long));
    assert_eq!(groups[1].error.chars().count(), DEAD_LETTER_FINGERPRINT_CHARS);
    assert_eq!((groups[0].oldest_at, groups[0].newest_at), (at(1), at(3)));
    assert_eq!(s.dead_letter_groups(DeadLetterGroupsParams { limit: 1 }).await.unwrap().len(), 1);

    let ids = |error: &str, after_id, through_id, limit| DeadLetterGroupIdsParams {
        topic: "t".into(),
        error: error.into(),
        after_id,
        through_id,
        limit,
    };
    let page = s.dead_letter_group_ids(ids("upstream 503", 0, b, 2)).await.unwrap();
    assert_eq!(page, vec![a1, a2]);
    let page = s.dead_letter_group_ids(ids("upstream 503", a2, b, 2)).await.unwrap();
    assert_eq!(page, vec![a3]);
    assert_eq!(s.dead_letter_group_ids(ids("upstream 503", 0, a2, 10)).await.unwrap(), vec![a1, a2]);
    assert_eq!(s.dead_letter_group_ids(ids(&groups[1].error, 0, b, 10)).await.unwrap().len(), 2);
    assert!(s.dead_letter_group_ids(ids("upstream", 0, b, 10)).await.unwrap().is_empty(), "a whole line, not a prefix");
}
