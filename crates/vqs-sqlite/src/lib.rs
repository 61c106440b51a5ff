//! The embedded SQLite backend of vqs: nothing to install, one file under `.vqs/`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let url = format!("sqlite://{}", dir.path().join(".vqs/vqs.db").display());
//! // An app's `url` is `sqlite://.vqs/vqs.db`: the file (and its directory) is created
//! // when missing.
//! let store = vqs_sqlite::SqliteStore::open(&url).await?;
//! store.migrate().await?;
//! let queue = vqs::Queue::new(std::sync::Arc::new(store), vqs::Clock::system());
//! queue.store().ping().await?;
//! # Ok(()) }
//! ```
//!
//! Every write goes through one connection owned by a writer task that commits whatever is
//! queued together (group commit, multi-row statements); reads use a small pool beside it
//! (WAL journal, `synchronous=NORMAL`).

#![warn(missing_docs)]

mod cancel;
mod checkpointer;
mod cron_runs;
mod dead_letter_groups;
mod dead_letters;
mod due;
mod executions;
mod flow_groups;
mod group_pauses;
mod lease;
mod lease_failure;
mod maintenance;
mod processes;
mod progress;
mod publish;
mod remote_cancels;
mod replace;
mod rows;
mod schedules;
mod sessions;
mod statements;
mod stats;
mod stats_rollup;
mod store;
mod subscriptions;
mod topic_controls;
mod topic_limits;
mod writer;

pub use store::{SqliteStore, database_file};
