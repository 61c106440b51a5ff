use std::sync::Arc;

use vqs::{Queue, VercelConfig};

use auth::Secret;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub queue: Queue,
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
