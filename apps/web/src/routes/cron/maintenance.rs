//! `GET /api/cron/maintenance`, behind `with_cron_secret` (see `mod.rs`); every 5 minutes in
//! vercel.json: on Vercel, where no maintenance loop runs, closes the attempts of killed
//! functions and runs maintenance (`vqs_axum::maintenance_cron`). The longest a function
//! can run is `VQS_FUNCTION_MAX_DURATION` (default 800 s), read at each call.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use vqs_axum::{maintenance_cron, maintenance_cron_failed};

use crate::AppState;

pub fn route() -> MethodRouter<AppState> {
    get(handler)
}

async fn handler(State(state): State<AppState>) -> Response {
    match crate::config::function_max_duration() {
        Ok(max_run) => maintenance_cron(&state, max_run).await,
        Err(e) => maintenance_cron_failed(format!("{e:#}")),
    }
}
