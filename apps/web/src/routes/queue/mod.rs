//! Consumer routes: one file per job, registered here (`cargo xtask new-job` adds a line).

use axum::Router;

use crate::AppState;

mod cleanup;
mod export_records;
mod probe;
mod sync_accounts;
mod sync_patient;
// @xtask:modules — `cargo xtask new-job` adds `mod <job>;` above this line.

/// Every job's `POST /api/queue/<topic>`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/queue/probe", probe::route())
        .route("/api/queue/sync-patient", sync_patient::route())
        .route("/api/queue/sync-accounts", sync_accounts::route())
        .route("/api/queue/export-records", export_records::route())
        .route("/api/queue/cleanup", cleanup::route())
    // @xtask:routes — `cargo xtask new-job` adds `.route(…)` above this line.
}
