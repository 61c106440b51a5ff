//! The WAL is checkpointed while the store is open, without a commit doing it (the store's
//! writer's automatic checkpoint is only a backstop, far out; `checkpointer.rs` runs them
//! beside it), and it stays bounded under a stream of writes with no pause.

use std::time::Duration;

use std::sync::Arc;

use vqs::{Clock, Queue, SendOpts};

/// Megabytes written through the store reach the database file while the store stays open
/// and idle: the WAL does not keep them for good (and grow without end).
#[tokio::test]
async fn the_wal_is_checkpointed_into_the_database_file_while_the_store_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vqs.db");
    let store = vqs_sqlite::SqliteStore::open(&format!("sqlite://{}", file.display())).await.unwrap();
    store.migrate().await.unwrap();
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = size(&file);
    let queue = Queue::new(Arc::new(store.clone()), Clock::system());
    // About 8 MiB of payloads (2,000 pages and more), in many commits.
    let payload = serde_json::json!({ "blob": "x".repeat(4000) }).to_string();
    for _ in 0..2_000 {
        queue.send("t", payload.clone().into_bytes(), SendOpts::default()).await.unwrap();
    }
    let mut grown = size(&file);
    for _ in 0..300 {
        if grown >= before + 8_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        grown = size(&file);
    }
    assert!(
        grown >= before + 8_000_000,
        "the database file grew from {before} to {grown} bytes only: the WAL was not checkpointed"
    );
}

/// A stream of bulk writes with no pause, well past the writer's backstop (about 40 MiB):
/// the WAL file stays near the backstop's size instead of holding everything written (a
/// checkpoint beside the writer never reaches the WAL's end while the writer appends).
#[tokio::test]
async fn the_wal_stays_bounded_under_writes_that_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vqs.db");
    let wal = dir.path().join("vqs.db-wal");
    let store = vqs_sqlite::SqliteStore::open(&format!("sqlite://{}", file.display())).await.unwrap();
    store.migrate().await.unwrap();
    let queue = Queue::new(Arc::new(store.clone()), Clock::system());
    // About 160 MiB: 40 batches of 1,000 messages of 4 KB.
    let payload = serde_json::json!({ "blob": "x".repeat(4000) }).to_string();
    let mut largest = 0;
    for _ in 0..40 {
        let batch = (0..1_000).map(|_| (payload.clone().into_bytes(), SendOpts::default()));
        queue.send_many("t", batch).await.unwrap();
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    assert!(largest < 100_000_000, "the WAL reached {largest} bytes: nothing started it over");
}
