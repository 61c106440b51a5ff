//! The axum adapter of the queue handler: `POST /api/queue/<topic>` for one job type.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde_json::json;
use vqs::{Delivery, MAX_PAYLOAD_BYTES, QueueHandler};

use crate::state::{PushSource, VqsState};

/// Marks a request made by this process's own dispatcher (`router.oneshot`), and carries
/// its delivery as the dispatcher built it — with the `running` execution recorded with the
/// lease, the attempt number and the execution slot, which never travel in a header. The
/// route takes it as it is: its CloudEvent headers are not built to be parsed again (about
/// a sixth of the app's work per job). A request extension: nothing a client sends over
/// HTTP can set it.
#[derive(Clone, Debug)]
pub struct InProcessPush(pub Delivery);

/// The consumer route of `handler`'s job.
pub fn queue_route(handler: QueueHandler) -> MethodRouter<VqsState> {
    post(move |state: State<VqsState>, req: axum::extract::Request| {
        let handler = handler.clone();
        async move { consume(state, handler, req).await }
    })
}

async fn consume(State(state): State<VqsState>, handler: QueueHandler, req: axum::extract::Request) -> Response {
    // On Vercel a queue-consumer function is private: only the platform's queue can call it.
    let (mut parts, body) = req.into_parts();
    let in_process = parts.extensions.remove::<InProcessPush>();
    let trusted = in_process.is_some() || matches!(state.push_source, PushSource::Vercel(_));
    if !trusted && !has_queue_proof(&state, &parts.headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "error": "this consumer route only accepts deliveries from the queue: send Authorization: Bearer <VQS_QUEUE_SECRET>"
            })),
        )
            .into_response();
    }
    let parsed = match in_process {
        Some(InProcessPush(delivery)) => Ok(delivery),
        None => {
            let body: Bytes = match axum::body::to_bytes(body, MAX_PAYLOAD_BYTES).await {
                Ok(b) => b,
                Err(_) => {
                    return (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Json(json!({"error": format!("delivery body over {MAX_PAYLOAD_BYTES} bytes")})),
                    )
                        .into_response();
                }
            };
            Delivery::parse(&parts.headers, body)
        }
    };
    let handler = match state.retry_policy {
        Some(policy) => handler.with_retry_policy(policy),
        None => handler,
    };
    let outcome = match &state.push_source {
        PushSource::Local => handler.handle(&state.queue, parsed).await,
        PushSource::Vercel(access) => {
            let Some(token) = access.token(&parts.headers) else {
                // Vercel retries the delivery; an operator sees why in the log.
                tracing::error!(
                    "no OIDC token: the request has no x-vercel-oidc-token header and VERCEL_OIDC_TOKEN is unset"
                );
                let error = "no OIDC token for the queue service: the request has no x-vercel-oidc-token header and \
                             VERCEL_OIDC_TOKEN is unset (enable OIDC for the project)";
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": error }))).into_response();
            };
            let region = parsed.as_ref().ok().and_then(|d| d.region.clone());
            match access.service(&state.queue, token, region.as_deref()) {
                Ok(service) => handler.handle_with(&state.queue, &service, parsed).await,
                Err(e) => vqs::ConsumerOutcome::Unavailable { error: e.to_string() },
            }
        }
    };
    if let vqs::ConsumerOutcome::Unavailable { error } = &outcome {
        // The platform (or the local dispatcher) redelivers it; say why at the consumer.
        tracing::warn!(error, "answered 500: the delivery will be retried");
    }
    let status = StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(outcome.body())).into_response()
}

fn has_queue_proof(state: &VqsState, headers: &HeaderMap) -> bool {
    state.queue_secret.as_ref().is_some_and(|s| s.matches_bearer(headers))
}
