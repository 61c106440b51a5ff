use axum::Router;
use axum::routing::get;

use crate::state::AppState;
use crate::{admin, health, routes, vqs_api};

/// The whole HTTP surface. Tests call it with `oneshot`; `serve` binds it to a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/health", get(health::health))
        .merge(routes::queue::routes())
        .merge(routes::cron::routes(&state))
        .merge(admin::routes(&state))
        .nest("/_vqs", vqs_api::routes(&state))
        .with_state(state)
}
