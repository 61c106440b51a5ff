//! Cron routes: one file per cron, each a `GET` behind `with_cron_secret`
//! (`cargo xtask new-cron` adds a line).

use axum::Router;

use crate::state::AppState;

mod sync_patients;

/// Every `GET /api/cron/<name>`.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/cron/sync-patients", auth::with_cron_secret(sync_patients::route(), state.cron_auth.clone()))
}
