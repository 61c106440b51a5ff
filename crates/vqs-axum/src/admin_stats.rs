//! `GET /api/admin/stats/timeseries?topic=&minutes=`: each topic's per-minute figures (or
//! one topic's) for the last `minutes` minutes (default 60, at most 7 days: what the rollup
//! keeps), every minute present, oldest first:
//! `[{"topic", "points": [{"minute", "finished", "failed", "p50_ms", "p95_ms", "p99_ms", "depth"}]}]`.
//! Read from the per-minute rollup (`vqs::stats`), never from the executions.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::state::VqsState;

/// The longest window: what the rollup keeps.
pub const MAX_MINUTES: u32 = (vqs::stats::STATS_RETENTION.as_secs() / 60) as u32;

pub(crate) fn routes() -> Router<VqsState> {
    Router::new().route("/api/admin/stats/timeseries", get(timeseries))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    topic: Option<String>,
    minutes: Option<String>,
}

async fn timeseries(
    State(state): State<VqsState>,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}: the parameters are topic (optional) and minutes (1 to {MAX_MINUTES}, default 60)",
            e.body_text()
        ))
    })?;
    let minutes = match q.minutes.as_deref() {
        None => 60,
        Some(m) => m.trim().parse::<u32>().ok().filter(|m| (1..=MAX_MINUTES).contains(m)).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid minutes {m:?}: a whole number from 1 to {MAX_MINUTES} (the rollup keeps 7 days)"
            ))
        })?,
    };
    let topic = q.topic.filter(|t| !t.is_empty());
    Ok(Json(json!(state.queue.stats_timeseries(topic.as_deref(), minutes).await?)))
}
