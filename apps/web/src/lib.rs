//! The vqs web app: queue routes, cron routes, the admin API, the local queue service
//! (`/_vqs`) and the operator CLI. `fn app(state) -> Router` is the whole HTTP surface.

pub mod admin;
pub mod api_error;
mod app;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod health;
pub mod http_pusher;
pub mod in_process;
pub mod metrics;
pub mod queue_route;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod state;
pub mod vercel_access;
pub mod vercel_cron;
#[cfg(feature = "vercel")]
pub mod vercel_function;
pub mod vqs_api;

pub use app::app;
pub use config::Config;
pub use state::AppState;
