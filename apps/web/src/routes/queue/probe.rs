//! `POST /api/queue/probe` — consumer of the `probe` job.

use axum::routing::MethodRouter;
use vqs::QueueHandler;

use crate::queue_route::queue_route;
use crate::state::AppState;

pub fn route() -> MethodRouter<AppState> {
    queue_route(QueueHandler::new(jobs::Probe))
}
