//! `GET /api/health`: database reachability, queue depth per topic and each cron's heartbeat
//! state (`ok`, `late`, `failing`). No auth; reveals no params or secrets. The counts come
//! from live deliveries only (`Queue::depth`), so polling it stays cheap however much
//! history the database keeps.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

pub async fn health(State(state): State<AppState>) -> Response {
    let database = state.queue.store().ping().await;
    let stats = state.queue.depth().await;
    let now = state.queue.clock().now();
    let queues: serde_json::Map<String, serde_json::Value> = stats
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let age = s.oldest_due_at.map(|t| (now - t).num_seconds().max(0));
            let counts = json!({
                "waiting": s.waiting, "delayed": s.delayed, "running": s.running,
                "oldest_due_age_s": age, "dead": s.dead_letters,
            });
            (s.topic.clone(), counts)
        })
        .collect();
    let crons: Vec<serde_json::Value> = state
        .queue
        .cron_statuses(&state.vercel.crons, state.started_at, 1)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"path": c.path, "schedule": c.schedule, "state": c.state, "next": c.next.first()}))
        .collect();
    let ok = database.is_ok() && stats.is_ok();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": if database.is_ok() { "ok" } else { "unreachable" },
        "queues": queues,
        "crons": crons,
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
