//! `GET /api/admin/search?q=` (and `web search`): the messages a message id or an
//! idempotency key names, in any topic — `{"query", "messages": [...]}`, each as
//! `GET /api/admin/messages/{id}` shows it. 400 for an empty query, a NUL or more than 256
//! characters.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{message_json, message_progress};
use crate::api_error::ApiError;
use crate::state::VqsState;

/// The search route (the caller adds the admin token check).
pub fn routes() -> Router<VqsState> {
    Router::new().route("/api/admin/search", get(search))
}

/// `GET /api/admin/search` query.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    /// A message id or an idempotency key.
    pub q: Option<String>,
}

async fn search(State(state): State<VqsState>, Query(query): Query<SearchQuery>) -> Result<Json<Value>, ApiError> {
    let q = query.q.unwrap_or_default();
    Ok(Json(search_json(&state.queue, &q).await?))
}

/// The answer to a search (shared with the CLI).
pub async fn search_json(queue: &vqs::Queue, q: &str) -> Result<Value, ApiError> {
    let mut messages = Vec::new();
    for m in queue.search_messages(q).await? {
        let progress = message_progress(queue, &m.id).await?;
        messages.push(message_json(&m, &progress));
    }
    Ok(json!({ "query": q.trim(), "messages": messages }))
}
