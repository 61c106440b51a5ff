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
//!
//! A function's bundle holds its executable only, so the repository's `vercel.json` is
//! compiled in ([`VERCEL_JSON`]). Each instance keeps a small connection pool
//! (`VQS_DATABASE_POOL_SIZE`, default [`FUNCTION_POOL_SIZE`]) and no LISTEN connection: a
//! function runs no dispatcher.

use anyhow::Context;
use axum::Router;
use tower::ServiceBuilder;
use vqs::{Clock, Queue, QueueHandler, VercelConfig};

use crate::config::Config;
use crate::runtime::{DbOptions, open_queue_with};
use vqs_axum::PushSource;
use vqs_axum::queue_route;
use vqs_axum::vercel_access::{VercelAccess, VercelPublisher, with_request_token};

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(crate::config::log_colours())
        .try_init();
}

/// The repository's `vercel.json`, as built: the deployment's triggers and crons. (Vercel
/// bundles a Rust function's executable and nothing else unless `includeFiles` says so.)
pub const VERCEL_JSON: &str = include_str!("../../../vercel.json");

/// PostgreSQL connections per function instance unless `VQS_DATABASE_POOL_SIZE` says
/// otherwise: 3 for the main pool, 2 for the hot path. Fluid compute runs many requests on
/// one instance, and many instances at once: the database's connection limit is shared by
/// all of them.
pub const FUNCTION_POOL_SIZE: u32 = 5;

/// The deployment's `vercel.json` (compiled in).
pub fn vercel_config() -> anyhow::Result<VercelConfig> {
    VercelConfig::parse(VERCEL_JSON).context("the vercel.json compiled into this function is invalid")
}

async fn open_function_queue(config: &Config) -> anyhow::Result<Queue> {
    let default = vqs_postgres::PgPoolSize::total(FUNCTION_POOL_SIZE).unwrap_or_default();
    let pool = crate::config::database_pool_size(default)?;
    open_queue_with(&config.database_url, Clock::system(), DbOptions { pool, listen: false }).await
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
    let queue = open_function_queue(&config).await?;
    serve(consumer_router(&config, queue, handler)?).await
}

/// The router of the public function: the whole app, publishing to Vercel's queue service.
pub async fn app_router(config: &Config) -> anyhow::Result<Router> {
    let vercel = vercel_config()?;
    let local = open_function_queue(config).await?;
    let access = VercelAccess::new(config.vercel.clone()).context("setting up Vercel's queue service client")?;
    let publisher = VercelPublisher::new(access, local.clone());
    let queue = local.publishing_to(std::sync::Arc::new(publisher));
    let state = crate::runtime::state(config, queue, vercel);
    let app = vqs_axum::vercel_cron::track_cron_runs(crate::app(state.clone()), state);
    Ok(app.layer(axum::middleware::from_fn(with_request_token)))
}

/// `main` of `api/main.rs`.
pub async fn run_app() -> Result<(), vercel_runtime::Error> {
    init_tracing();
    let config = Config::from_env()?;
    serve(app_router(&config).await?).await
}
