//! `GET /api/cron/sync-patients` — hourly: enqueue the `sync-patient` job for the hour that
//! just started, and return at once. Deduped by window, so a tick delivered twice (Vercel
//! may do that) queues one sync.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use chrono::{DurationRound, SecondsFormat, TimeDelta};
use serde_json::json;

use crate::AppState;

pub fn route() -> MethodRouter<AppState> {
    get(handler)
}

async fn handler(State(state): State<AppState>) -> Response {
    let now = state.queue.clock().now();
    let window = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
    let params = jobs::SyncPatientParams {
        window_start: window.to_rfc3339_opts(SecondsFormat::Secs, true),
        patient_ids: vec![],
    };
    match state.queue.job(jobs::SyncPatient).perform_later(params).await {
        Ok(sent) => (StatusCode::OK, Json(json!({ "enqueued": [sent] }))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "sync-patients could not enqueue");
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": format!("could not enqueue: {e}") })))
                .into_response()
        }
    }
}
