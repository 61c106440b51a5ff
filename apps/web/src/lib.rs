//! The vqs web app: its jobs' consumer routes, its cron routes and the operator CLI, around
//! the `vqs-axum` library (admin API, dashboard, `/_vqs`, `/metrics`, health, workers,
//! server loop). `fn app(state) -> Router` is the whole HTTP surface.

mod app;
pub mod cli;
mod cli_dead_letters;
mod cli_limits;
pub mod config;
pub mod routes;
pub mod runtime;
#[cfg(feature = "vercel")]
pub mod vercel_function;

pub use app::app;
pub use config::Config;
/// The state every handler reaches: the library's.
pub use vqs_axum::VqsState as AppState;
