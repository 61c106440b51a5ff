//! The routes the library serves, and an app built around them.

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use vqs::TraceContext;

use crate::state::VqsState;
use crate::{admin, dashboard, health, metrics_route, vqs_api};

/// The library's routes: health (`/api/health`, `/api/health/live`), the admin API
/// (`/api/admin/*`), `/metrics`, the dashboard (`/admin`) and the local queue service
/// (`/_vqs`). `merge` it into an app's router of the same state; [`app`] does that and more.
pub fn router(state: &VqsState) -> Router<VqsState> {
    Router::new()
        .route("/api/health", get(health::health))
        .route("/api/health/live", get(health::live))
        .merge(admin::routes(state))
        .merge(metrics_route::routes(state))
        .merge(dashboard::routes())
        .nest("/_vqs", vqs_api::routes(state))
}

/// A whole app: the library's [`router`], `routes` (the app's consumer and cron routes, and
/// anything else it serves with [`VqsState`]), and the trace layer (a request with a W3C
/// `traceparent` is handled in that trace: jobs it enqueues carry it). Tests call it with
/// `oneshot`; [`crate::serve`] binds it to a socket; [`crate::Workers`] push through it.
pub fn app(state: VqsState, routes: Router<VqsState>) -> Router {
    router(&state).merge(routes).layer(middleware::from_fn(continue_trace)).with_state(state)
}

/// A request with a W3C `traceparent` is handled in that trace: jobs it enqueues carry it.
/// An in-process push carries its producer's in its delivery, not in a header.
async fn continue_trace(req: Request, next: Next) -> Response {
    let trace = match req.extensions().get::<crate::InProcessPush>() {
        Some(push) => push.0.traceparent.as_deref(),
        None => req.headers().get("traceparent").and_then(|v| v.to_str().ok()),
    }
    .and_then(TraceContext::parse);
    match trace {
        Some(t) => t.child().scope(next.run(req)).await,
        None => next.run(req).await,
    }
}
