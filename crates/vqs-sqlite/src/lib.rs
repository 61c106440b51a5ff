//! The embedded SQLite backend of vqs: nothing to install, one file under `.vqs/`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vqs::StoreError> {
//! let store = vqs_sqlite::SqliteStore::open("sqlite://.vqs/vqs.db").await?;
//! store.migrate().await?;
//! let queue = vqs::Queue::new(std::sync::Arc::new(store), vqs::Clock::system());
//! # Ok(()) }
//! ```
//!
//! Writes go through one connection (SQLite has one writer anyway), reads through a small
//! pool; WAL journal, `synchronous=NORMAL`.

mod sqlite_store;

pub use sqlite_store::SqliteStore;
