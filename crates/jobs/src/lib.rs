//! The job definitions of this app: one file per job, listed in [`handlers`].
//!
//! Add one with `cargo xtask new-job <name>`.

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
