use axum::Router;

use crate::{AppState, routes};

/// The whole HTTP surface: the library's routes and this app's consumer and cron routes.
/// Tests call it with `oneshot`; `serve` binds it to a socket.
pub fn app(state: AppState) -> Router {
    let routes = routes::queue::routes().merge(routes::cron::routes(&state));
    vqs_axum::app(state, routes)
}
