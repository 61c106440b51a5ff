//! Dead letters by group (topic + error fingerprint: the error's first line, at most 200
//! characters — `vqs::store::dead_letter_fingerprint`), and the bulk actions on a group:
//!
//! - `GET /api/admin/dead-letters/groups?limit=` → `[{"topic", "error", "count", "oldest_at",
//!   "newest_at"}]`, the largest groups first;
//! - `POST /api/admin/dead-letters/groups/retry` `{"topic", "error"}` → `{"replayed": n}`;
//! - `POST /api/admin/dead-letters/groups/discard` `{"topic", "error"}` → `{"discarded": n}`.
//!
//! A bulk action takes the group's dead letters that exist when it begins, 100 at a time,
//! each settled once however many actions run at once; `n` is how many this call acted on.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use vqs::DeadLetterGroupAction;

use crate::admin::MAX_LIMIT;
use crate::api_error::ApiError;
use crate::state::VqsState;

pub(crate) fn routes() -> Router<VqsState> {
    Router::new()
        .route("/api/admin/dead-letters/groups", get(groups))
        .route("/api/admin/dead-letters/groups/retry", post(retry))
        .route("/api/admin/dead-letters/groups/discard", post(discard))
}

#[derive(Debug, Deserialize)]
struct GroupsQuery {
    limit: Option<u32>,
}

async fn groups(State(state): State<VqsState>, Query(q): Query<GroupsQuery>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.queue.dead_letter_groups(q.limit.unwrap_or(100).clamp(1, MAX_LIMIT)).await?)))
}

/// The group a bulk action names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    /// The group's topic.
    pub topic: String,
    /// The group's `error` as `GET /api/admin/dead-letters/groups` lists it.
    pub error: String,
}

fn body(b: Result<Json<GroupBody>, JsonRejection>) -> Result<GroupBody, ApiError> {
    b.map(|Json(b)| b).map_err(|e| {
        ApiError::bad_request(format!(
            "{}: send JSON {{\"topic\": \"…\", \"error\": \"…\"}} with a group as GET /api/admin/dead-letters/groups \
             lists it",
            e.body_text()
        ))
    })
}

/// Replay (or discard) one group (shared with the dashboard and the CLI): how many this
/// call acted on, as the API answers it.
pub async fn act(queue: &vqs::Queue, g: &GroupBody, action: DeadLetterGroupAction) -> Result<Value, vqs::QueueError> {
    let n = queue.dead_letter_group_act(&g.topic, &g.error, action).await?;
    Ok(match action {
        DeadLetterGroupAction::Replay => json!({ "replayed": n }),
        DeadLetterGroupAction::Discard => json!({ "discarded": n }),
    })
}

async fn retry(
    State(state): State<VqsState>,
    b: Result<Json<GroupBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(act(&state.queue, &body(b)?, DeadLetterGroupAction::Replay).await?))
}

async fn discard(
    State(state): State<VqsState>,
    b: Result<Json<GroupBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(act(&state.queue, &body(b)?, DeadLetterGroupAction::Discard).await?))
}
