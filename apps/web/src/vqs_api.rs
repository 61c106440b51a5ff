//! The local Vercel Queue Service (v3 data plane) under `/_vqs`.

use axum::Router;

use crate::state::AppState;

pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
