//! Job progress, the sync log and checkpoints.

use vqs::store::*;

use crate::support::*;

pub async fn progress_is_kept_latest(s: Store) {
    let put = |done, now| ProgressPutParams {
        message_id: "msg_p".into(),
        consumer_group: "a".into(),
        topic: "t".into(),
        done,
        total: Some(10),
        note: Some(format!("{done}")),
        now,
    };
    s.progress_put(put(3, at(1))).await.unwrap();
    s.progress_put(put(7, at(2))).await.unwrap();
    let got = s.progress_list(ProgressListParams { message_id: Some("msg_p".into()), limit: 10 }).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].done, got[0].total, got[0].note.as_deref(), got[0].updated_at), (7, Some(10), Some("7"), at(2)));
}

pub async fn sync_log_records_success_and_failure(s: Store) {
    let put = |outcome, now| SyncLogPutParams { topic: "t".into(), key: "k".into(), outcome, now };
    s.sync_log_put(put(SyncOutcome::Success { cursor: Some("c1".into()), items_synced: 5 }, at(1))).await.unwrap();
    s.sync_log_put(put(SyncOutcome::Failure { error: "down".into() }, at(2))).await.unwrap();
    let r = s
        .sync_log_get(SyncLogGetParams { topic: "t".to_owned(), key: "k".to_owned() })
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(r.cursor.as_deref(), Some("c1"), "a failure keeps the cursor");
    assert_eq!((r.last_attempt_at, r.last_success_at), (at(2), Some(at(1))));
    assert_eq!(r.last_error.as_deref(), Some("down"));
    assert_eq!(s.sync_log_list(SyncLogListParams { topic: Some("t".to_owned()) }).await.unwrap(), [r]);
    assert!(
        s.sync_log_get(SyncLogGetParams { topic: "t".to_owned(), key: "other".to_owned() }).await.unwrap().is_none()
    );
}

pub async fn checkpoints_round_trip(s: Store) {
    assert_eq!(
        s.checkpoint_get(CheckpointGetParams { message_id: "msg_c".to_owned(), consumer_group: "a".to_owned() })
            .await
            .unwrap(),
        None
    );
    for v in [serde_json::json!({"page": 1}), serde_json::json!({"page": 2})] {
        s.checkpoint_put(CheckpointPutParams {
            message_id: "msg_c".into(),
            consumer_group: "a".into(),
            value: v,
            now: at(1),
        })
        .await
        .unwrap();
    }
    assert_eq!(
        s.checkpoint_get(CheckpointGetParams { message_id: "msg_c".to_owned(), consumer_group: "a".to_owned() })
            .await
            .unwrap(),
        Some(serde_json::json!({"page": 2}))
    );
    assert_eq!(
        s.checkpoint_get(CheckpointGetParams { message_id: "msg_c".to_owned(), consumer_group: "b".to_owned() })
            .await
            .unwrap(),
        None
    );
}
