//! `cleanup`: the daily sweep, enqueued by the `/api/cron/cleanup` cron at 03:00 UTC.
//!
//! It applies the retention policy — finished messages, old execution rows, cron runs and
//! dead letters — in bounded passes, reporting progress as it goes. A self-hosted app also
//! prunes continuously from its maintenance loop; on a platform with no long-running
//! process (Vercel) this job is what keeps the tables bounded. When a backlog needs more
//! than `max_passes` passes, the job hands the rest to a continuation of itself (enqueued
//! from inside the job, so it carries the same trace) instead of running long.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vqs::{JobContext, JobError, Jobbable, PerformOpts, RetentionConfig};

/// Passes per run when the params name none.
pub const DEFAULT_MAX_PASSES: u32 = 50;

/// The sweep's day and the retention to apply (seconds; a `*_max` of 0 = no count limit).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CleanupParams {
    /// The UTC day of the tick (`2026-11-23`): one sweep per day.
    pub day: String,
    /// 0 for the cron's run; n for its n-th continuation.
    #[serde(default)]
    pub part: u32,
    /// Execution rows older than this many seconds (by start time) are deleted.
    pub executions_s: u64,
    /// Execution rows kept at most (the newest).
    pub executions_max: u64,
    /// Finished messages created longer ago than this many seconds are deleted.
    pub messages_s: u64,
    /// Messages kept at most; only finished ones are deleted to get there.
    pub messages_max: u64,
    /// Cron runs older than this many seconds are deleted.
    pub cron_runs_s: u64,
    /// Runs kept per cron at most.
    pub cron_runs_max: u64,
    /// Dead letters older than this many seconds are deleted.
    pub dead_letters_s: u64,
    /// Rows per table per pass.
    pub batch: u32,
    /// Passes before handing over to a continuation (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_passes: Option<u32>,
}

impl CleanupParams {
    /// The params of `day`'s sweep under `r`.
    pub fn new(day: impl Into<String>, r: &RetentionConfig) -> CleanupParams {
        CleanupParams {
            day: day.into(),
            part: 0,
            executions_s: r.executions.as_secs(),
            executions_max: r.max_executions,
            messages_s: r.messages.as_secs(),
            messages_max: r.max_messages,
            cron_runs_s: r.cron_runs.as_secs(),
            cron_runs_max: r.max_cron_runs,
            dead_letters_s: r.dead_letters.as_secs(),
            batch: r.batch,
            max_passes: None,
        }
    }

    fn retention(&self) -> RetentionConfig {
        RetentionConfig {
            executions: Duration::from_secs(self.executions_s),
            max_executions: self.executions_max,
            messages: Duration::from_secs(self.messages_s),
            max_messages: self.messages_max,
            cron_runs: Duration::from_secs(self.cron_runs_s),
            max_cron_runs: self.cron_runs_max,
            dead_letters: Duration::from_secs(self.dead_letters_s),
            batch: self.batch.max(1),
        }
    }
}

/// Applies the retention policy in bounded passes (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cleanup;

impl Jobbable for Cleanup {
    type Params = CleanupParams;
    const TOPIC: &'static str = "cleanup";

    /// 10 minutes.
    fn timeout(&self) -> Duration {
        Duration::from_secs(600)
    }

    /// One sweep (and one of each continuation) per day, however often the tick arrives.
    fn dedup_key(&self, p: &CleanupParams) -> Option<String> {
        Some(format!("cleanup:{}:{}", p.day, p.part))
    }

    async fn perform(&self, p: CleanupParams, ctx: JobContext) -> Result<(), JobError> {
        let retention = p.retention();
        let max_passes = p.max_passes.unwrap_or(DEFAULT_MAX_PASSES).max(1);
        let mut pruned = 0u64;
        for pass in 1..=max_passes {
            let r = ctx.queue().maintenance(&retention).await.map_err(JobError::retryable)?;
            pruned += r.messages_pruned
                + r.finished_messages_pruned
                + r.executions_pruned
                + r.dead_letters_pruned
                + r.cron_runs_pruned
                + r.flow_group_slots_pruned
                + r.flow_groups_pruned;
            ctx.report_progress(u64::from(pass), None, Some(&format!("{pruned} rows pruned in {pass} passes"))).await?;
            if !r.hit_batch_limit(retention.batch) {
                tracing::info!(pruned, passes = pass, "cleanup done");
                return Ok(());
            }
        }
        let next = CleanupParams { part: p.part + 1, ..p };
        let sent = ctx
            .queue()
            .job(Cleanup)
            .perform_later_with(next, PerformOpts::default())
            .await
            .map_err(JobError::retryable)?;
        tracing::info!(pruned, continuation = %sent.message_id, "cleanup continues in another run");
        Ok(())
    }
}
