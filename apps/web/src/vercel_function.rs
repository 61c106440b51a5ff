//! The web app as Vercel Functions (cargo feature `vercel`, `vercel_runtime` 2 with axum).
//!
//! Two kinds of function, one binary each (`[[bin]]`s of this crate, sources under `api/`):
//!
//! - `api/main.rs` — the public app: health, admin API, cron routes. Its consumer routes
//!   stay locked (`VQS_QUEUE_SECRET`), and `perform_later` publishes to Vercel's queue
//!   service.
//! - `api/queue/<topic>.rs` — one private queue-consumer function per job, carrying the
//!   topic's `queue/v2beta` trigger in vercel.json. Vercel's queue service is the only
//!   caller; the push is settled there (ack, retry-after, lease renewal) while executions
//!   and dead letters go to `DATABASE_URL`.

use anyhow::Context;
use axum::Router;
use tower::ServiceBuilder;
use vqs::{Clock, Queue, QueueHandler, VercelConfig};

use crate::config::Config;
use crate::queue_route::queue_route;
use crate::runtime::{load_vercel_if_present, open_queue};
use crate::state::PushSource;
use crate::vercel_access::{VercelAccess, VercelPublisher, with_request_token};

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

async fn serve(router: Router) -> Result<(), vercel_runtime::Error> {
    let service = ServiceBuilder::new().layer(vercel_runtime::axum::VercelLayer::new()).service(router);
    vercel_runtime::run(service).await
}

/// The router of a queue-consumer function: every `POST` is a push for `handler`'s job —
/// whatever the path, since Vercel does not document the path it pushes to.
pub fn consumer_router(config: &Config, queue: Queue, handler: QueueHandler) -> anyhow::Result<Router> {
    let mut state = crate::runtime::state(config, queue, VercelConfig::default());
    state.push_source = PushSource::Vercel(VercelAccess::new(config.vercel.clone())?);
    Ok(Router::new().fallback(queue_route(handler)).with_state(state))
}

/// `main` of `api/queue/<topic>.rs`.
pub async fn run_consumer(handler: QueueHandler) -> Result<(), vercel_runtime::Error> {
    init_tracing();
    let config = Config::from_env()?;
    let queue = open_queue(&config.database_url, Clock::system()).await?;
    serve(consumer_router(&config, queue, handler)?).await
}

/// The router of the public function: the whole app, publishing to Vercel's queue service.
pub async fn app_router(config: &Config) -> anyhow::Result<Router> {
    let vercel = load_vercel_if_present(&config.vercel_json)?;
    let local = open_queue(&config.database_url, Clock::system()).await?;
    let access = VercelAccess::new(config.vercel.clone()).context("setting up Vercel's queue service client")?;
    let publisher = VercelPublisher::new(access, local.store().clone(), local.clock().clone());
    let queue = Queue::with_publisher(local.store().clone(), local.clock().clone(), std::sync::Arc::new(publisher));
    let state = crate::runtime::state(config, queue, vercel);
    Ok(crate::app(state).layer(axum::middleware::from_fn(with_request_token)))
}

/// `main` of `api/main.rs`.
pub async fn run_app() -> Result<(), vercel_runtime::Error> {
    init_tracing();
    let config = Config::from_env()?;
    serve(app_router(&config).await?).await
}
