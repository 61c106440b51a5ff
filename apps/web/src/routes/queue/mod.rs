//! Consumer routes: one file per job, registered here (`cargo xtask new-job` adds a line).

use axum::Router;

use crate::state::AppState;

mod probe;
mod sync_patient;
// @xtask:modules — `cargo xtask new-job` adds `mod <job>;` above this line.

/// Every job's `POST /api/queue/<topic>`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/queue/probe", probe::route()).route("/api/queue/sync-patient", sync_patient::route())
    // @xtask:routes — `cargo xtask new-job` adds `.route(…)` above this line.
}
