//! What every handler of the library (and the app's own routes) can reach, and the settings
//! it is built from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use vqs::{Queue, VercelConfig};

use auth::Secret;

/// What the library's routes and workers need to know, as plain values: an app reads them
/// from wherever it keeps its configuration (the web app: environment variables) and hands
/// them over. Secrets are [`Secret`]s, so the settings print no secret.
#[derive(Clone, Debug)]
pub struct VqsSettings {
    /// The proof a push over HTTP must carry (`Authorization: Bearer <secret>`). `None`:
    /// only pushes from this process's own dispatcher are accepted.
    pub queue_secret: Option<Secret>,
    /// The bearer token of the admin API and dashboard. `None`: both refuse every request.
    pub admin_token: Option<Secret>,
    /// A read-only bearer token for `/metrics` (the admin token works too).
    pub metrics_token: Option<Secret>,
    /// How cron routes are guarded (`CRON_SECRET`, `IS_LOCAL_DEV`), and what the scheduler sends.
    pub cron_auth: auth::CronAuth,
    /// What retention keeps; the maintenance loop (and an app's cleanup cron) use it.
    pub retention: vqs::RetentionConfig,
    /// The lease a pushed delivery gets. Default 300 s.
    pub lease: Duration,
    /// A fixed retry delay that replaces every job's own policy (tests, demos).
    pub retry_policy: Option<vqs::RetryPolicy>,
    /// Crash rescue's heartbeat timing.
    pub lifeline: vqs::LifelineConfig,
    /// Consumer functions served by another process: a `vercel.json` functions key → the URL
    /// the dispatcher pushes to instead of a route of this app.
    pub function_urls: BTreeMap<String, String>,
    /// The topics whose consumer route (`/api/queue/<topic>`) this app serves with a job's
    /// `QueueHandler`: the dispatcher records each such attempt with its lease.
    pub job_topics: Vec<String>,
    /// Each job topic's [`vqs::Jobbable::group_concurrency`] where it has one: the default
    /// group concurrency of the consumer route that serves it.
    pub job_group_concurrency: BTreeMap<String, u32>,
    /// How often a serving process rolls finished executions into the per-minute figures
    /// of the dashboard's charts (`vqs::stats`). Default 60 s.
    pub stats_rollup_interval: Duration,
    /// Jobs of each queue trigger this process runs at once, at most (never more than the
    /// trigger's `maxConcurrency`): [`vqs::ConsumerConfig::with_worker_concurrency`].
    /// `None`: the trigger's `maxConcurrency`, else 100.
    pub worker_concurrency: Option<u32>,
}

impl Default for VqsSettings {
    fn default() -> Self {
        VqsSettings {
            queue_secret: None,
            admin_token: None,
            metrics_token: None,
            cron_auth: auth::CronAuth::from_values(None, false),
            retention: vqs::RetentionConfig::default(),
            lease: Duration::from_secs(300),
            retry_policy: None,
            lifeline: vqs::LifelineConfig::default(),
            function_urls: BTreeMap::new(),
            job_topics: Vec::new(),
            job_group_concurrency: BTreeMap::new(),
            stats_rollup_interval: Duration::from_secs(60),
            worker_concurrency: None,
        }
    }
}

/// What every handler can reach: [`VqsStateFields`] behind one `Arc`, read through `Deref`
/// (`state.queue`). axum clones a router's state into the services a request passes
/// through, several times a request: one reference count each, not a count per field.
/// Writing a field (`DerefMut`, a test or a Vercel function setting itself up) copies the
/// fields first if another clone shares them.
#[derive(Clone, Debug)]
pub struct VqsState(Arc<VqsStateFields>);

impl std::ops::Deref for VqsState {
    type Target = VqsStateFields;
    fn deref(&self) -> &VqsStateFields {
        &self.0
    }
}

impl std::ops::DerefMut for VqsState {
    fn deref_mut(&mut self) -> &mut VqsStateFields {
        Arc::make_mut(&mut self.0)
    }
}

/// The fields of [`VqsState`].
#[derive(Clone, Debug)]
pub struct VqsStateFields {
    /// The queue every route reads and writes.
    pub queue: Queue,
    /// The app's `vercel.json` as parsed: its queue triggers (the consumers) and crons.
    pub vercel: Arc<VercelConfig>,
    /// `VQS_QUEUE_SECRET`: the proof a push over HTTP must carry.
    pub queue_secret: Option<Secret>,
    /// `VQS_ADMIN_TOKEN`: the bearer token of the admin API and dashboard.
    pub admin_token: Option<Secret>,
    /// `VQS_METRICS_TOKEN`: the read-only bearer token of `/metrics`.
    pub metrics_token: Option<Secret>,
    /// This app's Prometheus recorder (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// What retention keeps; the maintenance loop and the cleanup cron use it.
    pub retention: vqs::RetentionConfig,
    /// The cron-secret guard of the cron routes (`CRON_SECRET`).
    pub cron_auth: auth::CronAuth,
    /// When this process started (a cron that never ran is late counted from here).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The lease a pushed delivery gets (`VQS_LEASE_SECONDS`).
    pub lease: std::time::Duration,
    /// Where pushes to the consumer routes come from, and so who settles them.
    pub push_source: PushSource,
    /// `VQS_RETRY_DELAY_SECONDS`: a fixed retry delay that replaces every job's own policy.
    pub retry_policy: Option<vqs::RetryPolicy>,
    /// The background tasks of a serving process (dispatcher, scheduler, maintenance), as
    /// health reports them. Empty where none run (tests, Vercel functions).
    pub tasks: vqs::Supervisor,
    /// Failed dashboard sign-ins, per client IP and in all (they are slowed down).
    pub login_throttle: std::sync::Arc<crate::dashboard::login_throttle::LoginThrottle>,
    /// Crash rescue's heartbeat timing (`VQS_HEARTBEAT_SECONDS`, `VQS_DEAD_AFTER_SECONDS`).
    pub lifeline: vqs::LifelineConfig,
    /// [`VqsSettings::job_topics`].
    pub job_topics: Arc<Vec<String>>,
    /// [`VqsSettings::job_group_concurrency`].
    pub job_group_concurrency: Arc<BTreeMap<String, u32>>,
    /// [`VqsSettings::stats_rollup_interval`].
    pub stats_rollup_interval: Duration,
    /// [`VqsSettings::worker_concurrency`].
    pub worker_concurrency: Option<u32>,
}

/// Where the consumer routes' pushes come from. Chosen when the process starts (by which
/// binary runs), never by anything in a request.
#[derive(Clone, Debug)]
pub enum PushSource {
    /// This database's own queue: pushes from this process's dispatcher (a request
    /// extension) or over HTTP with `Authorization: Bearer <VQS_QUEUE_SECRET>`, settled in
    /// this database.
    Local,
    /// Vercel's queue service, in a queue-consumer function on Vercel. Such a function is
    /// private — only Vercel's queue infrastructure can invoke it — so every push is
    /// accepted, and settled on Vercel's queue service over HTTP.
    Vercel(crate::vercel_access::VercelAccess),
}

impl VqsState {
    /// The state of an app serving `queue` with the queue triggers and crons of `vercel`:
    /// installs this app's Prometheus recorder on `queue`.
    pub fn new(queue: Queue, mut vercel: VercelConfig, settings: VqsSettings) -> VqsState {
        let queue_now = queue.clock().now();
        // Consumer functions served by another process: the dispatcher pushes to their URL.
        for t in &mut vercel.queue_triggers {
            if let Some(url) = settings.function_urls.get(&t.function_key) {
                t.route_path = url.clone();
            }
        }
        let topics = vercel.queue_triggers.iter().filter(|t| !t.topic.ends_with('*')).map(|t| t.topic.clone());
        let metrics = crate::metrics::Metrics::install(&queue, topics);
        VqsState(Arc::new(VqsStateFields {
            queue,
            vercel: Arc::new(vercel),
            queue_secret: settings.queue_secret,
            admin_token: settings.admin_token,
            metrics_token: settings.metrics_token,
            metrics,
            retention: settings.retention,
            cron_auth: settings.cron_auth,
            started_at: queue_now,
            lease: settings.lease,
            push_source: PushSource::Local,
            retry_policy: settings.retry_policy,
            tasks: vqs::Supervisor::default(),
            lifeline: settings.lifeline,
            login_throttle: Default::default(),
            job_topics: Arc::new(settings.job_topics),
            job_group_concurrency: Arc::new(settings.job_group_concurrency),
            stats_rollup_interval: settings.stats_rollup_interval,
            worker_concurrency: settings.worker_concurrency,
        }))
    }
}
