//! `GET /api/cron/maintenance`, behind `with_cron_secret` (see `mod.rs`); every 5 minutes in
//! vercel.json. On Vercel no maintenance loop runs in the app (functions only answer
//! requests), so Vercel Cron calls this instead:
//!
//! - attempts of pushed jobs still `running` longer than a function can run
//!   (`VQS_FUNCTION_MAX_DURATION`, default 800 s — the most a Rust function gets) are
//!   closed as failed: their function was killed or its instance reclaimed, and Vercel
//!   Queues redelivers the message by itself;
//! - one maintenance pass as the local loop runs it (rescue, retention), repeated while a
//!   table still has a full batch to prune, at most [`PASSES`] times.
//!
//! Each step is bounded, so a run fits well inside a function's duration. Locally the
//! in-process loop does the same work; this route running too is harmless.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::json;

use crate::AppState;

/// Maintenance passes per call at most.
pub const PASSES: u32 = 10;

pub fn route() -> MethodRouter<AppState> {
    get(handler)
}

async fn handler(State(state): State<AppState>) -> Response {
    let max_run = match crate::config::function_max_duration() {
        Ok(d) => d,
        Err(e) => return fail(format!("{e:#}")),
    };
    let outlived = match state.queue.close_outlived_executions(max_run, state.retention.batch).await {
        Ok(n) => n,
        Err(e) => return fail(format!("could not close outlived attempts: {e}")),
    };
    let mut passes = Vec::new();
    for _ in 0..PASSES {
        match state.queue.maintenance(&state.retention).await {
            Ok(report) => {
                let more = report.hit_batch_limit(state.retention.batch);
                passes.push(report);
                if !more {
                    break;
                }
            }
            Err(e) => return fail(format!("maintenance failed: {e}")),
        }
    }
    (StatusCode::OK, Json(json!({ "outlived_attempts_closed": outlived, "passes": passes }))).into_response()
}

fn fail(error: String) -> Response {
    tracing::error!(error = %error, "maintenance cron failed");
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": error }))).into_response()
}
