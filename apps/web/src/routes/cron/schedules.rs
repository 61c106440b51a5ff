//! `GET /api/cron/schedules`, behind `with_cron_secret` (see `mod.rs`); every minute in
//! vercel.json: on Vercel, where no schedule loop runs, fires the runtime schedules that are
//! due (`vqs_axum::schedules_cron`). Locally the schedule loop fires them too; a tick fires
//! once either way.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use vqs_axum::schedules_cron;

use crate::AppState;

pub fn route() -> MethodRouter<AppState> {
    get(handler)
}

async fn handler(State(state): State<AppState>) -> Response {
    schedules_cron(&state).await
}
