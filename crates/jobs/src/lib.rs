//! The job definitions of this app: one file per job, listed in [`handlers`].
//!
//! Add one with `cargo xtask new-job <name>`.

mod probe;
mod sync_patient;

pub use probe::{Probe, ProbeParams};
pub use sync_patient::{SyncPatient, SyncPatientParams};

/// The consumer of every job, keyed by topic (the web app mounts one route each).
pub fn handlers() -> Vec<vqs::QueueHandler> {
    vec![vqs::QueueHandler::new(Probe), vqs::QueueHandler::new(SyncPatient)]
}
