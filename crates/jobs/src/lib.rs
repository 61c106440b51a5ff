//! The job definitions of this app: one file per job, listed in [`handlers`].
//!
//! Add one with `cargo xtask new-job <name>`.
//!
//! Each job is a [`vqs::Jobbable`]: enqueue it through a [`vqs::Queue`] with its params, and
//! [`handlers`] runs it. Here the `probe` job fails its first attempt and succeeds on the
//! retry, on a real queue (a temporary SQLite file: `vqs-testing`'s `TestQueue`):
//!
//! ```
//! use jobs::{Probe, ProbeParams};
//! use vqs::testing::DrainOpts;
//! use vqs_testing::TestQueue;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tq = TestQueue::sqlite(jobs::handlers()).await?;
//! let params = ProbeParams { fail_attempts: Some(1), ..ProbeParams::default() };
//! tq.queue().job(Probe).perform_later(params).await?;
//! tq.assert_enqueued::<Probe>(&ProbeParams { fail_attempts: Some(1), ..ProbeParams::default() }).await;
//!
//! // Attempt 1 fails, the test clock jumps over the backoff, attempt 2 succeeds.
//! let report = tq.drain(DrainOpts::with_scheduled()).await?;
//! assert_eq!((report.succeeded, report.failed, report.dead), (1, 1, 0));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

/// The HTTP client of the jobs that call an upstream API (not a job).
mod upstream;

mod cleanup;
mod export_records;
mod probe;
mod sync_accounts;
mod sync_patient;
// @xtask:modules — `cargo xtask new-job` adds `mod <job>;` above this line.

pub use cleanup::{Cleanup, CleanupParams};
pub use export_records::{ExportRecords, ExportRecordsParams};
pub use probe::{Probe, ProbeParams};
pub use sync_accounts::{SyncAccounts, SyncAccountsParams};
pub use sync_patient::{SyncPatient, SyncPatientParams};
// @xtask:exports — `cargo xtask new-job` adds `pub use <job>::{…};` above this line.

/// The consumer of every job (the web app mounts one route each, and a test checks that
/// each has its route and its `vercel.json` trigger).
pub fn handlers() -> Vec<vqs::QueueHandler> {
    vec![
        vqs::QueueHandler::new(Probe),
        vqs::QueueHandler::new(SyncPatient),
        vqs::QueueHandler::new(SyncAccounts),
        vqs::QueueHandler::new(ExportRecords),
        vqs::QueueHandler::new(Cleanup),
        // @xtask:handlers — `cargo xtask new-job` adds a line above this one.
    ]
}
