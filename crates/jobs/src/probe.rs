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
    /// Snooze for 1 s while this message has snoozed fewer than this many times, then go on
    /// with the other params (the count is kept in the message's checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snooze_times: Option<u32>,
    /// Cancel itself (`JobError::cancel`) with this reason: no retry, no dead letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<String>,
}

/// What the probe remembers between its runs of one message.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ProbeCheckpoint {
    snoozed: u32,
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
        if let Some(n) = params.snooze_times.filter(|n| *n > 0) {
            let mut seen: ProbeCheckpoint = ctx.checkpoint().await?.unwrap_or_default();
            if seen.snoozed < n {
                seen.snoozed += 1;
                ctx.save_checkpoint(&seen).await?;
                return Err(JobError::snooze(Duration::from_secs(1)));
            }
        }
        if let Some(ms) = params.sleep_ms.filter(|ms| *ms > 0) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(reason) = params.cancel {
            return Err(JobError::cancel(reason));
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
