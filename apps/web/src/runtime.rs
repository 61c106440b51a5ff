//! Start-up: pick the backend, read `vercel.json`, start the dispatcher and maintenance.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vqs::{
    Clock, ConsumerConfig, CronScheduler, DispatcherConfig, Queue, RetentionConfig, ScheduledCron, VercelConfig,
};

use crate::config::{Config, redact_url};
use crate::http_pusher::{AppPusher, HttpPusher};
use crate::in_process::{InProcessCronInvoker, InProcessPusher};
use crate::state::AppState;
use auth::Secret;

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
        Ok(Queue::new(Arc::new(store), clock))
    } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        let store = vqs_postgres::PgStore::connect_with(database_url, options.pool)
            .await
            .with_context(|| format!("opening {}", redact_url(database_url)))?;
        store.migrate().await.context("applying migrations")?;
        let queue = Queue::new(Arc::new(store.clone()), clock);
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

/// Refuse a topic nothing consumes (no queue trigger in vercel.json matches it): a message
/// published there from the admin API or the CLI would wait forever, so a typo is an error
/// that lists the topics there are. (The `/_vqs` API, like Vercel's, takes any topic.)
pub fn require_consumed_topic(vercel: &VercelConfig, topic: &str) -> Result<(), String> {
    if !vqs::is_valid_name(topic) {
        return Ok(()); // the queue refuses it, saying what a topic may be
    }
    let matches = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    };
    if vercel.queue_triggers.iter().any(|t| matches(&t.topic)) {
        return Ok(());
    }
    let mut known: Vec<&str> = vercel.queue_triggers.iter().map(|t| t.topic.as_str()).collect();
    known.sort_unstable();
    known.dedup();
    Err(format!(
        "no job or consumer for topic {topic:?}: the topics with a consumer in vercel.json are {}",
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    ))
}

/// Refuse to start when a cron of vercel.json has no route in this app (every tick would be
/// a 404) or a queue trigger's in-process route is missing (every delivery would fail). A
/// route is looked up with `OPTIONS`, which runs no handler: an unknown path is 404.
async fn require_routes(router: &axum::Router, state: &AppState) -> Result<()> {
    use tower::ServiceExt;
    let exists = |path: String| {
        let router = router.clone();
        async move {
            let req = http::Request::options(path.as_str()).body(axum::body::Body::empty())?;
            let status = router.oneshot(req).await?.status();
            anyhow::Ok(status != http::StatusCode::NOT_FOUND)
        }
    };
    for c in &state.vercel.crons {
        if !exists(c.path.clone()).await? {
            bail!(
                "vercel.json: the cron {} has no route in this app: fix the path, or add the cron with \
                 `cargo xtask new-cron <name>` (cron routes are GET /api/cron/<name>)",
                c.path
            );
        }
    }
    for c in consumers(state).iter().filter(|c| c.route_path.starts_with('/')) {
        if !exists(c.route_path.clone()).await? {
            bail!(
                "vercel.json: the queue trigger for topic {} names {}, which has no route in this app: \
                 fix the functions key, or add the job with `cargo xtask new-job <name>`",
                c.topic_pattern,
                c.route_path
            );
        }
    }
    Ok(())
}

/// The state handlers see.
pub fn state(config: &Config, queue: Queue, mut vercel: VercelConfig) -> AppState {
    let queue_now = queue.clock().now();
    // Consumer functions served by another process: the dispatcher pushes to their URL.
    for t in &mut vercel.queue_triggers {
        if let Some(url) = config.vercel.function_urls.get(&t.function_key) {
            t.route_path = url.clone();
        }
    }
    let topics = vercel.queue_triggers.iter().filter(|t| !t.topic.ends_with('*')).map(|t| t.topic.clone());
    let metrics = crate::metrics::Metrics::install(&queue, topics);
    AppState {
        queue,
        vercel: Arc::new(vercel),
        queue_secret: Secret::new(config.queue_secret.clone()),
        admin_token: Secret::new(config.admin_token.clone()),
        metrics_token: Secret::new(config.metrics_token.clone()),
        metrics,
        retention: config.retention.clone(),
        cron_auth: auth::CronAuth::from_values(config.cron_secret.clone(), config.is_local_dev),
        started_at: queue_now,
        lease: Duration::from_secs(u64::from(config.lease_seconds)),
        push_source: crate::state::PushSource::Local,
        retry_policy: config.retry_delay_seconds.map(|s| vqs::RetryPolicy::Fixed(Duration::from_secs(u64::from(s)))),
        tasks: vqs::Supervisor::default(),
        lifeline: config.lifeline,
        login_throttle: Default::default(),
    }
}

/// The background work of a serving process.
#[derive(Debug)]
pub struct Workers {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The push consumers of `vercel.json` as this process's dispatcher runs them: leased for
/// `VQS_LEASE_SECONDS`; a job's consumer route served by this process records each attempt
/// with its lease (one write fewer per job, and never a job running before its row exists).
pub fn consumers(state: &AppState) -> Vec<ConsumerConfig> {
    let job_routes: std::collections::HashSet<String> =
        jobs::handlers().iter().map(|h| format!("/api/queue/{}", h.topic())).collect();
    state
        .vercel
        .queue_triggers
        .iter()
        .map(|t| {
            let c = ConsumerConfig::from(t);
            ConsumerConfig { visibility: state.lease, starts_executions: job_routes.contains(&c.route_path), ..c }
        })
        .collect()
}

impl Workers {
    /// Start the dispatcher (pushing through `router` in process), the cron scheduler
    /// (calling `router` in process), the maintenance loop and the heartbeat, each supervised by
    /// `state.tasks`: a panic is logged and the task restarted (health shows it).
    pub async fn start(state: &AppState, router: axum::Router, mut dispatcher: DispatcherConfig) -> Result<Workers> {
        let (shutdown, rx) = watch::channel(false);
        // Crash rescue: this process beats, and the leases of the jobs it runs name it.
        let lifeline = vqs::Lifeline::new(state.queue.clone(), state.lifeline);
        lifeline.run_once().await.context("registering this process's heartbeat")?;
        dispatcher.lease_holder = Some(lifeline.process_id().to_owned());
        let consumers = consumers(state);
        vqs::register_consumers(&state.queue, &consumers).await.context("registering consumers")?;
        for c in &consumers {
            tracing::info!(topic = %c.topic_pattern, route = %c.route_path, consumer_group = %c.consumer_group, "push consumer");
        }
        let pusher = Arc::new(AppPusher {
            in_process: InProcessPusher::new(router.clone()),
            http: HttpPusher::new(state.queue_secret.clone(), state.lease).context("building the HTTP pusher")?,
        });
        let supervisor = &state.tasks;
        let mut tasks = vec![{
            let (queue, rx) = (state.queue.clone(), rx.clone());
            supervisor.supervise("dispatcher", move || {
                let pusher: Arc<dyn vqs::Pusher> = pusher.clone();
                vqs::run_dispatcher(queue.clone(), consumers.clone(), pusher, dispatcher.clone(), rx.clone())
            })
        }];
        tasks.push({
            let (lifeline, rx) = (lifeline.clone(), rx.clone());
            supervisor.supervise("lifeline", move || lifeline.clone().run(rx.clone()))
        });
        let crons = ScheduledCron::from_config(&state.vercel).context("reading the crons of vercel.json")?;
        if !crons.is_empty() {
            if state.cron_auth.secret().is_none() && !state.cron_auth.is_local_dev() {
                tracing::warn!(
                    "CRON_SECRET is unset and IS_LOCAL_DEV is not true: cron routes refuse every call, the scheduler's too; \
                     set CRON_SECRET (or IS_LOCAL_DEV=true on a developer machine)"
                );
            }
            for c in &crons {
                tracing::info!(cron.path = %c.path, schedule = %c.schedule, "cron scheduled");
            }
            let invoker = Arc::new(InProcessCronInvoker::new(router, state.cron_auth.clone()));
            let (queue, rx) = (state.queue.clone(), rx.clone());
            tasks.push(supervisor.supervise("scheduler", move || {
                let scheduler = CronScheduler::new(queue.clone(), crons.clone(), invoker.clone());
                vqs::run_cron_scheduler(scheduler, rx.clone(), Duration::from_secs(25))
            }));
        }
        let (queue, retention) = (state.queue.clone(), state.retention.clone());
        tasks.push(
            supervisor.supervise("maintenance", move || maintenance_loop(queue.clone(), retention.clone(), rx.clone())),
        );
        Ok(Workers { shutdown, tasks })
    }

    /// Stop taking work; let in-flight deliveries finish (up to the dispatcher's grace period).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Every 15 s, one maintenance pass; while a pass hits its batch limit (a backlog to prune),
/// the next follows after a short pause instead, so a backlog drains in bounded batches
/// with the queue's own work running in between.
async fn maintenance_loop(queue: Queue, retention: RetentionConfig, mut shutdown: watch::Receiver<bool>) {
    loop {
        let more = match queue.maintenance(&retention).await {
            Ok(report) => report.hit_batch_limit(retention.batch),
            Err(e) => {
                tracing::warn!(error = %e, "maintenance failed");
                false
            }
        };
        let pause = if more { Duration::from_millis(250) } else { Duration::from_secs(15) };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
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
    require_routes(&router, &state).await?;
    let grace = config.server.shutdown_grace;
    let dispatcher = DispatcherConfig { shutdown_grace: grace, ..DispatcherConfig::default() };
    let workers = Workers::start(&state, router.clone(), dispatcher).await?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {} (set PORT or HOST)", config.addr))?;
    let addr = listener.local_addr().unwrap_or(config.addr);
    tracing::info!(addr = %addr, database = %redact_url(&config.database_url), "vqs listening");
    println!("vqs listening on http://{addr}");
    // A background task that failed for good (it kept panicking) stops the process, non-zero:
    // an orchestrator restarts it (`/api/health/live` answers 503 meanwhile).
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel();
    let stop = {
        let tasks = state.tasks.clone();
        let workers_stop = workers.shutdown.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                t = tasks.failed() => {
                    let _ = failed_tx.send(t);
                }
            }
            tracing::info!(grace_s = grace.as_secs(), "shutting down: finishing in-flight requests and deliveries");
            // Connections and jobs wind down together, within one grace period.
            let _ = stopping_tx.send(tokio::time::Instant::now());
            let _ = workers_stop.send(true);
        }
    };
    crate::server::run(listener, router, config.server.clone(), stop).await;
    let deadline = stopping.await.unwrap_or_else(|_| tokio::time::Instant::now()) + grace + Duration::from_secs(1);
    if tokio::time::timeout_at(deadline, workers.stop()).await.is_err() {
        tracing::warn!("background work still running after the shutdown grace: exiting anyway");
    }
    if let Ok(t) = failed_rx.await {
        bail!(
            "the background task {} kept panicking and was not restarted (last cause: {}): exiting so it can be restarted",
            t.name,
            t.last_panic.as_deref().unwrap_or("unknown")
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
