//! The admin API under `/api/admin`, behind `VQS_ADMIN_TOKEN`.

use axum::Router;

use crate::state::AppState;

pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
