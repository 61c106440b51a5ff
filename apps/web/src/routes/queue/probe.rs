//! `POST /api/queue/probe` — consumer of the `probe` job.

use axum::routing::MethodRouter;
use vqs::QueueHandler;
use vqs_axum::queue_route;

use crate::AppState;

pub fn route() -> MethodRouter<AppState> {
    queue_route(QueueHandler::new(jobs::Probe))
}
