//! Bulk enqueue (`perform_later_many`, `Queue::send_many`) on both backends: one message per
//! params, dedup per message, all or nothing.

mod common;

use std::collections::HashSet;

use common::TestApp;
use vqs::{QueueError, SendOpts};

#[tokio::test]
async fn many_probes_are_queued_in_order_and_all_run() {
    let app = TestApp::new().await;
    let params = (0..1200).map(|i| jobs::ProbeParams { sleep_ms: Some(i % 2), ..Default::default() });
    let sent = app.queue().job(jobs::Probe).perform_later_many(params).await.unwrap();
    assert_eq!(sent.len(), 1200);
    assert!(sent.iter().all(|s| !s.duplicate));
    assert_eq!(sent.iter().map(|s| &s.message_id).collect::<HashSet<_>>().len(), 1200, "distinct ids");
    // Results are in input order: the payload of the n-th id is the n-th params.
    let m = app.queue().message(&sent[7].message_id).await.unwrap().unwrap();
    assert_eq!(m.payload, serde_json::json!({"sleep_ms": 1}));

    let mut ran = 0;
    loop {
        let n = app.dispatch("probe").await;
        if n == 0 {
            break;
        }
        ran += n;
    }
    assert_eq!(ran, 1200);
    let probe = app.queue().stats().await.unwrap().into_iter().find(|t| t.topic == "probe").unwrap();
    assert_eq!((probe.succeeded, probe.waiting), (1200, 0));
}

#[tokio::test]
async fn dedup_keys_apply_within_the_batch_and_against_pending_messages() {
    let app = TestApp::new().await;
    let window = |w: &str| jobs::SyncPatientParams { window_start: w.into(), patient_ids: vec![] };
    let pending = app.queue().job(jobs::SyncPatient).perform_later(window("2026-01-01T10:00:00Z")).await.unwrap();

    let sent = app
        .queue()
        .job(jobs::SyncPatient)
        .perform_later_many([
            window("2026-01-01T10:00:00Z"),
            window("2026-01-01T11:00:00Z"),
            window("2026-01-01T11:00:00Z"),
        ])
        .await
        .unwrap();
    assert_eq!((sent[0].duplicate, &sent[0].message_id), (true, &pending.message_id), "matches the pending one");
    assert!(!sent[1].duplicate);
    assert_eq!((sent[2].duplicate, &sent[2].message_id), (true, &sent[1].message_id), "matches one of the same batch");
    let waiting: i64 = app.queue().stats().await.unwrap().iter().map(|t| t.waiting).sum();
    assert_eq!(waiting, 2);
}

#[tokio::test]
async fn one_invalid_message_refuses_the_batch_and_writes_nothing() {
    let app = TestApp::new().await;
    let ok = || (b"{}".to_vec(), SendOpts::default());
    let bad = (b"{}".to_vec(), SendOpts { idempotency_key: Some("k".repeat(300)), ..SendOpts::default() });
    let err = app.queue().send_many("probe", [ok(), ok(), bad, ok()]).await.unwrap_err();
    let QueueError::Invalid(text) = err else { panic!("expected Invalid, got {err:?}") };
    assert!(text.starts_with("message 2: invalid idempotency key"), "{text}");
    assert!(app.queue().stats().await.unwrap().iter().all(|t| t.waiting == 0), "nothing was queued");
    assert!(app.queue().send_many("probe", []).await.unwrap().is_empty());
}
