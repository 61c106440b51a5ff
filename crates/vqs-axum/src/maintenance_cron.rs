//! The body of a maintenance cron route (the web app's `GET /api/cron/maintenance`, every 5
//! minutes in its vercel.json). On Vercel no maintenance loop runs in the app (functions
//! only answer requests), so Vercel Cron calls this instead:
//!
//! - attempts of pushed jobs still `running` longer than a function can run
//!   (`max_run`; the web app: `VQS_FUNCTION_MAX_DURATION`, default 800 s) are
//!   closed as failed: their function was killed or its instance reclaimed, and Vercel
//!   Queues redelivers the message by itself;
//! - one maintenance pass as the local loop runs it (rescue, retention), repeated while a
//!   table still has a full batch to prune, at most [`PASSES`] times;
//! - one rollup of the executions into the dashboard's per-minute figures (`vqs::stats`).
//!
//! Each step is bounded, so a run fits well inside a function's duration. Locally the
//! in-process loop does the same work; this route running too is harmless.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::VqsState;

/// Maintenance passes per call at most.
pub const PASSES: u32 = 10;

/// Close the attempts still `running` after `max_run` (the longest a function can run),
/// then run up to [`PASSES`] maintenance passes; answers what was done, or 500 saying why not.
pub async fn maintenance_cron(state: &VqsState, max_run: Duration) -> Response {
    let outlived = match state.queue.close_outlived_executions(max_run, state.retention.batch).await {
        Ok(n) => n,
        Err(e) => return maintenance_cron_failed(format!("could not close outlived attempts: {e}")),
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
            Err(e) => return maintenance_cron_failed(format!("maintenance failed: {e}")),
        }
    }
    // The dashboard's per-minute figures (no loop runs them in a function): every 5 minutes.
    let rolled = match state.queue.stats_rollup().await {
        Ok(r) => r.counted,
        Err(e) => return maintenance_cron_failed(format!("stats rollup failed: {e}")),
    };
    let body = json!({ "outlived_attempts_closed": outlived, "passes": passes, "stats_rolled_up": rolled });
    (StatusCode::OK, Json(body)).into_response()
}

/// A maintenance cron that could not run: 500 with why, logged.
pub fn maintenance_cron_failed(error: String) -> Response {
    tracing::error!(error = %error, "maintenance cron failed");
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": error }))).into_response()
}
