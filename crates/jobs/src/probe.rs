use std::time::Duration;

use serde::{Deserialize, Serialize};
use vqs::{JobContext, JobError, Jobbable};

/// The `probe` job's params: every field is optional; `{}` succeeds at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProbeParams {
    /// Sleep this long before deciding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
    /// Fail (retryably) while the attempt number is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_attempts: Option<u32>,
    /// Fail fatally: no more attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<bool>,
}

/// A job for smoke tests and benchmarks: sleeps, fails or succeeds as its params say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe;

impl Jobbable for Probe {
    type Params = ProbeParams;
    const TOPIC: &'static str = "probe";

    /// 30 seconds.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    async fn perform(&self, params: ProbeParams, ctx: JobContext) -> Result<(), JobError> {
        if let Some(ms) = params.sleep_ms.filter(|ms| *ms > 0) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if params.fatal == Some(true) {
            return Err(JobError::fatal("probe asked to fail fatally"));
        }
        let attempt = ctx.attempt();
        if let Some(n) = params.fail_attempts
            && attempt <= n
        {
            return Err(JobError::retryable(format!("probe asked to fail attempt {attempt} of the first {n}")));
        }
        Ok(())
    }
}
