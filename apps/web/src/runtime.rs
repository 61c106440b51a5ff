//! Start-up: pick the backend, read `vercel.json`, turn [`Config`] into the library's
//! settings, and `serve` (the library's app, workers and server loop).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use auth::Secret;
use vqs::{Clock, DispatcherConfig, Queue, VercelConfig};
use vqs_axum::{VqsSettings, VqsState, Workers};

use crate::AppState;
use crate::config::{Config, redact_url};

/// How the app uses its database connections (PostgreSQL only; SQLite has one file).
#[derive(Clone, Copy, Debug)]
pub struct DbOptions {
    /// Connections this process may open at most (`VQS_DATABASE_POOL_SIZE`).
    pub pool: vqs_postgres::PgPoolSize,
    /// Hold a LISTEN connection so that every publish wakes this process's dispatchers. A
    /// Vercel Function runs no dispatcher, so it does without.
    pub listen: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { pool: vqs_postgres::PgPoolSize::SERVER, listen: true }
    }
}

/// The jobs' default limits (`Jobbable::concurrency`, `Jobbable::rate_limit`), registered so
/// the dispatcher, the admin API and the CLI merge them with the stored overrides.
fn with_limit_defaults(queue: Queue) -> Queue {
    queue.set_limit_defaults(jobs::handlers().iter().map(|h| (h.topic().to_owned(), h.limits())));
    queue
}

/// Open the database named by `database_url`, apply migrations, and wrap it in a [`Queue`].
pub async fn open_queue(database_url: &str, clock: Clock) -> Result<Queue> {
    open_queue_with(database_url, clock, DbOptions::default()).await
}

/// [`open_queue`] with `options` (pool size, LISTEN).
pub async fn open_queue_with(database_url: &str, clock: Clock, options: DbOptions) -> Result<Queue> {
    if database_url.starts_with("sqlite:") {
        let store = vqs_sqlite::SqliteStore::open(database_url)
            .await
            .with_context(|| format!("opening {}", redact_url(database_url)))?;
        store.migrate().await.context("applying migrations")?;
        Ok(with_limit_defaults(Queue::new(Arc::new(store), clock)))
    } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        let store = vqs_postgres::PgStore::connect_with(database_url, options.pool)
            .await
            .with_context(|| format!("opening {}", redact_url(database_url)))?;
        store.migrate().await.context("applying migrations")?;
        let queue = with_limit_defaults(Queue::new(Arc::new(store.clone()), clock));
        if options.listen {
            // Every process wakes on every publish (LISTEN/NOTIFY), not at its next poll.
            store.forward_wakeups(queue.clone());
        }
        Ok(queue)
    } else {
        bail!("DATABASE_URL must start with sqlite:// (or postgres://), got {}", redact_url(database_url))
    }
}

/// Read and validate `vercel.json`. A missing or invalid file is an error: without it the app
/// would run with no queue triggers and no crons — every job published would wait forever.
pub fn load_vercel(path: &Path) -> Result<VercelConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => VercelConfig::parse(&text).with_context(|| format!("invalid {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no vercel.json at {}: run from the project's root (where vercel.json is), or set \
             VQS_VERCEL_JSON to its path; an app with no crons and no queues needs one holding {{}}",
            absolute(path).display()
        ),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `vercel.json` where the deployment may not ship it (a Vercel Function's bundle holds only
/// the files it includes): a missing file is an empty config, with a warning; an invalid one
/// is still an error.
pub fn load_vercel_if_present(path: &Path) -> Result<VercelConfig> {
    if !path.exists() {
        tracing::warn!(path = %path.display(), "no vercel.json: no queue triggers and no crons");
        return Ok(VercelConfig::default());
    }
    load_vercel(path)
}

fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The state handlers see: the library's settings, from [`Config`].
pub fn state(config: &Config, queue: Queue, vercel: VercelConfig) -> AppState {
    VqsState::new(queue, vercel, settings(config))
}

/// [`Config`] as the library takes it, with this app's jobs.
pub fn settings(config: &Config) -> VqsSettings {
    VqsSettings {
        queue_secret: Secret::new(config.queue_secret.clone()),
        admin_token: Secret::new(config.admin_token.clone()),
        metrics_token: Secret::new(config.metrics_token.clone()),
        cron_auth: auth::CronAuth::from_values(config.cron_secret.clone(), config.is_local_dev),
        retention: config.retention.clone(),
        lease: Duration::from_secs(u64::from(config.lease_seconds)),
        retry_policy: config.retry_delay_seconds.map(|s| vqs::RetryPolicy::Fixed(Duration::from_secs(u64::from(s)))),
        lifeline: config.lifeline,
        function_urls: config.vercel.function_urls.clone(),
        job_topics: jobs::handlers().iter().map(|h| h.topic().to_owned()).collect(),
        job_group_concurrency: jobs::handlers()
            .iter()
            .filter_map(|h| Some((h.topic().to_owned(), h.group_concurrency()?)))
            .chain(config.group_concurrency.clone())
            .collect(),
        stats_rollup_interval: Duration::from_secs(u64::from(config.stats_rollup_seconds)),
        worker_concurrency: config.worker_concurrency,
    }
}

/// `serve`: the web app, the dispatcher and maintenance until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> Result<()> {
    for warning in config.secret_warnings() {
        tracing::warn!("{warning}");
    }
    let vercel = load_vercel(&config.vercel_json)?;
    let pool = crate::config::database_pool_size(vqs_postgres::PgPoolSize::SERVER)?;
    let queue = open_queue_with(&config.database_url, Clock::system(), DbOptions { pool, listen: true }).await?;
    let state = state(&config, queue, vercel);
    let router = crate::app(state.clone());
    vqs_axum::require_routes(&router, &state).await?;
    let dispatcher = DispatcherConfig { shutdown_grace: config.server.shutdown_grace, ..DispatcherConfig::default() };
    let workers = Workers::start(&state, router.clone(), dispatcher).await?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {} (set PORT or HOST)", config.addr))?;
    let addr = listener.local_addr().unwrap_or(config.addr);
    tracing::info!(addr = %addr, database = %redact_url(&config.database_url), "vqs listening");
    println!("vqs listening on http://{addr}");
    // A background task that failed for good (it kept panicking) stops the process, non-zero:
    // an orchestrator restarts it (`/api/health/live` answers 503 meanwhile).
    vqs_axum::serve(listener, router, &state, workers, config.server.clone()).await?;
    Ok(())
}
