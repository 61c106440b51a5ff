//! The store conformance suite (`vqs-store-tests`) on SQLite: a fresh file per case.

use std::sync::Arc;

use vqs_store_tests::Fresh;

async fn fresh() -> Fresh {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("vqs.db").display());
    let store = vqs_sqlite::SqliteStore::open(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    Fresh { store: Arc::new(store), keep: Box::new(dir), teardown: None, reset: None }
}

vqs_store_tests::conformance!(fresh);
