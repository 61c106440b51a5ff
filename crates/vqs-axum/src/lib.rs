//! vqs for axum apps: everything around a [`vqs::Queue`] that an axum app serves, as a
//! library to mount in a few lines.
//!
//! - [`app`] / [`router`]: health (`/api/health`, `/api/health/live`), the admin API
//!   (`/api/admin/*`), the dashboard (`/admin`), `/metrics` and the local queue service
//!   (`/_vqs`, Vercel's Queue Service API), beside the app's own routes;
//! - [`queue_route`](mod@queue_route): a job's consumer route (`POST /api/queue/<topic>`), the axum adapter
//!   of the core's `QueueHandler`;
//! - [`Workers`]: the in-process dispatcher (pushing through the app's router), the cron
//!   scheduler, maintenance and the crash-rescue heartbeat, each supervised;
//! - [`serve`]: the hardened HTTP/1 server loop (header, body and idle timeouts, a
//!   connection cap, a bounded shutdown grace) with the workers winding down beside it.
//!
//! The library takes its settings as a plain [`VqsSettings`] value (it reads no environment)
//! and its storage as a `vqs::Queue` (it names no database).
//!
//! ```no_run
//! # async fn run(queue: vqs::Queue, vercel: vqs::VercelConfig, probe: vqs::QueueHandler) -> Result<(), Box<dyn std::error::Error>> {
//! use axum::Router;
//! use vqs_axum::{VqsSettings, VqsState, Workers, queue_route};
//!
//! let settings = VqsSettings { job_topics: vec!["probe".into()], ..VqsSettings::default() };
//! let state = VqsState::new(queue, vercel, settings);
//! let routes = Router::new().route("/api/queue/probe", queue_route(probe));
//! let app = vqs_axum::app(state.clone(), routes);
//! let workers = Workers::start(&state, app.clone(), vqs::DispatcherConfig::default()).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! vqs_axum::serve(listener, app, &state, workers, vqs_axum::ServerLimits::default()).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod admin;
pub mod admin_dead_letter_groups;
pub mod admin_limits;
pub mod admin_pause;
pub mod admin_schedules;
pub mod admin_search;
pub mod admin_stats;
pub mod api_error;
mod app;
pub mod dashboard;
pub mod health;
pub mod http_pusher;
pub mod in_process;
mod maintenance_cron;
pub mod metrics;
mod metrics_route;
pub mod queue_route;
mod schedules_cron;
mod serve;
pub mod server;
mod state;
pub mod vercel_access;
pub mod vercel_cron;
pub mod vqs_api;
mod workers;

pub use app::{app, router};
pub use maintenance_cron::{PASSES as MAINTENANCE_CRON_PASSES, maintenance_cron, maintenance_cron_failed};
pub use metrics::Metrics;
pub use queue_route::{InProcessPush, queue_route};
pub use schedules_cron::{ROUNDS as SCHEDULES_CRON_ROUNDS, schedules_cron};
pub use serve::{TaskFailed, serve, shutdown_signal};
pub use server::ServerLimits;
pub use state::{PushSource, VqsSettings, VqsState, VqsStateFields};
pub use vercel_access::VercelEnv;
pub use workers::{StartError, Workers, consumers, require_routes};
