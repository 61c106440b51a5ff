//! `GET /metrics`, behind `Authorization: Bearer <metrics token>` (or the admin token): the
//! app's [`Metrics`](crate::Metrics) rendered in the Prometheus text format.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api_error::ApiError;
use crate::state::VqsState;

/// `GET /metrics`.
pub fn routes(state: &VqsState) -> Router<VqsState> {
    Router::new()
        .route("/metrics", get(scrape))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_metrics_token))
}

async fn require_metrics_token(State(state): State<VqsState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let ok = [&state.metrics_token, &state.admin_token]
        .iter()
        .any(|s| s.as_ref().is_some_and(|s| s.matches_bearer(headers)));
    if ok {
        return next.run(req).await;
    }
    let message = if state.metrics_token.is_none() && state.admin_token.is_none() {
        "this server has neither VQS_METRICS_TOKEN nor VQS_ADMIN_TOKEN configured, so /metrics refuses every request: set VQS_METRICS_TOKEN"
    } else {
        "missing or wrong Authorization: send Authorization: Bearer <VQS_METRICS_TOKEN>"
    };
    ApiError::unauthorized(message).into_response()
}

async fn scrape(State(state): State<VqsState>) -> Result<Response, ApiError> {
    let body = state.metrics.render(&state.queue).await?;
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(resp)
}
