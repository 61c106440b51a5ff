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
    pub cron_auth: auth::CronAuth,
    /// When this process started (a cron that never ran is late counted from here).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The lease a pushed delivery gets (`VQS_LEASE_SECONDS`).
    pub lease: std::time::Duration,
}
