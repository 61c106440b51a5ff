//! The axum adapter of the queue handler: `POST /api/queue/<topic>` for one job type.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde_json::json;
use vqs::{Delivery, QueueHandler};

use crate::state::AppState;

/// Marks a request made by this process's own dispatcher (`router.oneshot`). A request
/// extension: nothing a client sends over HTTP can set it.
#[derive(Clone, Copy, Debug)]
pub struct InProcessPush;

/// The consumer route of `handler`'s job.
pub fn queue_route(handler: QueueHandler) -> MethodRouter<AppState> {
    post(move |state: State<AppState>, req: axum::extract::Request| {
        let handler = handler.clone();
        async move { consume(state, handler, req).await }
    })
}

async fn consume(State(state): State<AppState>, handler: QueueHandler, req: axum::extract::Request) -> Response {
    let trusted = req.extensions().get::<InProcessPush>().is_some();
    let (parts, body) = req.into_parts();
    if !trusted && !has_queue_proof(&state, &parts.headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "error": "this consumer route only accepts deliveries from the queue: send Authorization: Bearer <VQS_QUEUE_SECRET>"
            })),
        )
            .into_response();
    }
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({"error": format!("delivery body over {MAX_BODY} bytes")})),
            )
                .into_response();
        }
    };
    let outcome = handler.handle(&state.queue, Delivery::parse(&parts.headers, body)).await;
    let status = StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(outcome.body())).into_response()
}

/// The largest delivery body accepted: 100 MB, Vercel's payload limit.
pub const MAX_BODY: usize = 100 * 1024 * 1024;

fn has_queue_proof(state: &AppState, headers: &HeaderMap) -> bool {
    state.queue_secret.as_ref().is_some_and(|s| s.matches_bearer(headers))
}
