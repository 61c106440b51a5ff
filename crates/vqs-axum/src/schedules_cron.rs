//! The body of the schedules cron route (the web app's `GET /api/cron/schedules`, every
//! minute in its vercel.json). On Vercel no schedule loop runs in the app (functions only
//! answer requests), so Vercel Cron calls this to fire the runtime schedules that are due
//! (`queue.schedules().fire_due`). A tick fires once however often the route is called:
//! each fire is claimed by compare-and-set in the store. Locally the in-process cron
//! scheduler calls it too, every minute, next to the schedule loop; that is harmless.
//!
//! Runtime schedules publish through the local store. A queue that publishes to Vercel's
//! queue service cannot fire them yet: the route answers 501 saying so while schedules
//! exist (and an empty report while none do, so a deployment without schedules stays green).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vqs::{QueueError, SCHEDULE_FIRE_BATCH, ScheduleFireReport};

use crate::state::VqsState;

/// Batches of [`SCHEDULE_FIRE_BATCH`] due schedules fired per call at most, so a call stays
/// well inside a function's duration; a larger backlog drains over the next calls.
pub const ROUNDS: u32 = 10;

/// Fire the runtime schedules due now; answers the merged [`ScheduleFireReport`], or an
/// error saying why not (501 on a queue that publishes to a remote queue service).
pub async fn schedules_cron(state: &VqsState) -> Response {
    let schedules = state.queue.schedules();
    if state.queue.publishes_elsewhere() {
        return match schedules.count().await {
            Ok(0) => (StatusCode::OK, Json(ScheduleFireReport::default())).into_response(),
            Ok(n) => schedules_cron_failed(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "{} runtime schedule(s) exist but cannot fire: this deployment publishes to Vercel's queue \
                     service, and runtime schedules publish through the local store only; run the app as a \
                     long-running process to use them, or use a vercel.json cron instead",
                    n
                ),
            ),
            Err(e) => {
                schedules_cron_failed(StatusCode::INTERNAL_SERVER_ERROR, format!("could not list schedules: {e}"))
            }
        };
    }
    let mut total = ScheduleFireReport::default();
    for _ in 0..ROUNDS {
        match schedules.fire_due(SCHEDULE_FIRE_BATCH).await {
            Ok(report) => {
                // A full batch that fired something may hide more due schedules.
                let more = report.due >= SCHEDULE_FIRE_BATCH && !report.fired.is_empty();
                total.fired.extend(report.fired);
                total.skipped += report.skipped;
                total.failed += report.failed;
                total.due += report.due;
                if !more {
                    break;
                }
            }
            Err(QueueError::Invalid(e)) => return schedules_cron_failed(StatusCode::NOT_IMPLEMENTED, e),
            Err(e) => {
                return schedules_cron_failed(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("could not fire schedules: {e}"),
                );
            }
        }
    }
    (StatusCode::OK, Json(total)).into_response()
}

/// A schedules cron that could not run: `code` with why, logged.
fn schedules_cron_failed(code: StatusCode, error: String) -> Response {
    tracing::error!(error = %error, "schedules cron failed");
    (code, Json(json!({ "error": error }))).into_response()
}
