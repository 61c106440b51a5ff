//! The PostgreSQL backend of vqs: any number of processes share one database.
//!
//! - a message is leased by one process at a time (`FOR UPDATE SKIP LOCKED`);
//! - every process wakes at once on a publish (`LISTEN vqs_published`, notified by the
//!   insert trigger on commit) — see [`PgStore::forward_wakeups`];
//! - a cron tick fires once (a unique row per tick);
//! - maintenance is safe to run from every process;
//! - [`enqueue_in`] publishes inside the caller's transaction.
//! - the hot path (publishes, execution starts and finishes, acknowledgements) is written
//!   in batches by group-commit writer tasks: one statement per batch, not per job.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vqs::StoreError> {
//! let store = vqs_postgres::PgStore::connect("postgres://postgres@127.0.0.1/app").await?;
//! store.migrate().await?;
//! let queue = vqs::Queue::new(std::sync::Arc::new(store.clone()), vqs::Clock::system());
//! store.forward_wakeups(queue.clone());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod cancel;
mod claim_rooms;
mod claim_statement;
mod cron_runs;
mod dead_letter_groups;
mod dead_letters;
mod executions;
mod flow_groups;
mod group_pauses;
mod grouped_claim;
mod held_connection;
mod keyed_insert;
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
mod server_admin;
mod sessions;
mod split_claim;
mod stats;
mod stats_rollup;
mod store;
mod subscriptions;
mod topic_controls;
mod topic_limits;
mod writer;

pub use publish::enqueue_in;
pub use server_admin::{checkpoint, create_test_database, drop_database, drop_stale_test_databases};
pub use store::{PgPoolSize, PgStore, TLS_AVAILABLE, create_database};
