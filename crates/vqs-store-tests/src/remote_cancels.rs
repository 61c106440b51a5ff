//! Cancels of messages that live in another queue service (Vercel's).

use vqs::store::*;

use crate::support::*;

pub async fn a_remote_cancel_is_recorded_once_and_expires(s: Store) {
    let record = |id: &str, now, expires_at| RemoteCancelParams {
        message_id: id.into(),
        reason: "cancelled by an operator".into(),
        expires_at,
        now,
    };
    let get = |id: &str| RemoteCancelGetParams { message_id: id.into() };
    assert_eq!(s.remote_cancel_get(get("msg_r")).await.unwrap(), None);
    assert!(s.remote_cancel_record(record("msg_r", at(0), at(100))).await.unwrap());
    assert!(!s.remote_cancel_record(record("msg_r", at(1), at(101))).await.unwrap(), "recorded once");
    assert_eq!(s.remote_cancel_get(get("msg_r")).await.unwrap().as_deref(), Some("cancelled by an operator"));
    // The next cancel after it expired removes it.
    assert!(s.remote_cancel_record(record("msg_other", at(100), at(200))).await.unwrap());
    assert_eq!(s.remote_cancel_get(get("msg_r")).await.unwrap(), None);
    assert!(s.remote_cancel_get(get("msg_other")).await.unwrap().is_some());
}
