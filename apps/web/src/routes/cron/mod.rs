//! Cron routes: one file per cron, each a `GET` behind `with_cron_secret`
//! (`cargo xtask new-cron` adds a line).

use auth::with_cron_secret;
use axum::Router;

use crate::AppState;

mod cleanup;
mod maintenance;
mod schedules;
mod sync_patients;
// @xtask:modules — `cargo xtask new-cron` adds `mod <cron>;` above this line.

/// Every `GET /api/cron/<name>`.
pub fn routes(state: &AppState) -> Router<AppState> {
    let guard = || state.cron_auth.clone();
    Router::new()
        .route("/api/cron/sync-patients", with_cron_secret(sync_patients::route(), guard()))
        .route("/api/cron/cleanup", with_cron_secret(cleanup::route(), guard()))
        .route("/api/cron/maintenance", with_cron_secret(maintenance::route(), guard()))
        .route("/api/cron/schedules", with_cron_secret(schedules::route(), guard()))
    // @xtask:routes — `cargo xtask new-cron` adds `.route(…)` above this line.
}
