use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use vqs::TraceContext;

use crate::state::AppState;
use crate::{admin, dashboard, health, metrics, routes, vqs_api};

/// The whole HTTP surface. Tests call it with `oneshot`; `serve` binds it to a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/health", get(health::health))
        .route("/api/health/live", get(health::live))
        .merge(routes::queue::routes())
        .merge(routes::cron::routes(&state))
        .merge(admin::routes(&state))
        .merge(metrics::routes(&state))
        .merge(dashboard::routes())
        .nest("/_vqs", vqs_api::routes(&state))
        .layer(middleware::from_fn(continue_trace))
        .with_state(state)
}

/// A request with a W3C `traceparent` is handled in that trace: jobs it enqueues carry it.
async fn continue_trace(req: Request, next: Next) -> Response {
    let trace = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
    match trace {
        Some(t) => t.child().scope(next.run(req)).await,
        None => next.run(req).await,
    }
}
