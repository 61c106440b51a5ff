//! `POST /api/queue/sync-patient` — consumer of the `sync-patient` job.

use axum::routing::MethodRouter;
use vqs::QueueHandler;

use crate::queue_route::queue_route;
use crate::state::AppState;

pub fn route() -> MethodRouter<AppState> {
    queue_route(QueueHandler::new(jobs::SyncPatient))
}
