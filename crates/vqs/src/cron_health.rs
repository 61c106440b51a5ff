//! Heartbeats: is each cron running as scheduled?
//!
//! - `failing`: its last run failed;
//! - `late`: no success within its expected window — one interval plus up to an hour of
//!   slack (an hourly cron after 2 hours, a daily one after 25), counted from its last
//!   success, or from when this process started if it never succeeded;
//! - `ok` otherwise.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{CronRunRecord, CronRunSummary};
use crate::{CronEntry, CronSchedule, Queue, QueueError};

/// A cron's heartbeat state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CronState {
    /// Fired on schedule, and its last run succeeded (or it has not been due yet).
    Ok,
    /// A tick is overdue: no run recorded since it was due.
    Late,
    /// Its last run failed (the route answered non-2xx or could not be called).
    Failing,
}

/// One cron as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct CronStatus {
    /// The cron's route (`/api/cron/<name>`).
    pub path: String,
    /// Its schedule as written in `vercel.json` (UTC).
    pub schedule: String,
    /// Its next ticks from now (UTC).
    pub next: Vec<DateTime<Utc>>,
    /// Its most recent run, if any.
    pub last_run: Option<CronRunRecord>,
    /// When a run last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Its heartbeat state.
    pub state: CronState,
}

/// How long a cron may go without a success: one interval plus `min(interval, 1 h)`.
pub fn expected_window(schedule: &CronSchedule, now: DateTime<Utc>) -> Duration {
    let gap = schedule.longest_gap(now);
    gap + gap.min(Duration::from_secs(3600))
}

/// The state of a cron from its latest run and last success.
pub fn cron_state(
    schedule: &CronSchedule,
    last_run: Option<&CronRunRecord>,
    last_success_at: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> CronState {
    if last_run.is_some_and(|r| r.outcome == "failed") {
        return CronState::Failing;
    }
    let reference = last_success_at.unwrap_or(since);
    let window = chrono::Duration::from_std(expected_window(schedule, now)).unwrap_or(chrono::Duration::MAX);
    if now - reference > window { CronState::Late } else { CronState::Ok }
}

impl Queue {
    /// Each cron's next fire times, last run and state. `since` is when the scheduler started.
    pub async fn cron_statuses(
        &self,
        crons: &[CronEntry],
        since: DateTime<Utc>,
        next: usize,
    ) -> Result<Vec<CronStatus>, QueueError> {
        let summaries: Vec<CronRunSummary> =
            self.store().cron_run_summary(crate::store::CronRunSummaryParams::default()).await?;
        let now = self.clock().now();
        Ok(crons
            .iter()
            .filter_map(|c| {
                let schedule = CronSchedule::parse(&c.schedule).ok()?;
                let summary = summaries.iter().find(|s| s.path == c.path && s.schedule == c.schedule);
                let last_run = summary.and_then(|s| s.last_run.clone());
                let last_success_at = summary.and_then(|s| s.last_success_at);
                Some(CronStatus {
                    path: c.path.clone(),
                    schedule: c.schedule.clone(),
                    next: schedule.upcoming(now, next),
                    state: cron_state(&schedule, last_run.as_ref(), last_success_at, since, now),
                    last_run,
                    last_success_at,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: &str) -> CronRunRecord {
        let t = "2026-01-05T11:00:00Z".parse().unwrap();
        CronRunRecord {
            id: 1,
            path: "/api/cron/x".into(),
            schedule: "0 * * * *".into(),
            scheduled_at: t,
            started_at: t,
            finished_at: Some(t),
            duration_ms: Some(1),
            status_code: Some(200),
            outcome: outcome.into(),
            error: None,
        }
    }

    #[test]
    fn windows_match_the_spec_examples() {
        let now = "2026-01-05T10:30:00Z".parse().unwrap();
        let hourly = CronSchedule::parse("0 * * * *").unwrap();
        let daily = CronSchedule::parse("0 0 * * *").unwrap();
        assert_eq!(expected_window(&hourly, now), Duration::from_secs(2 * 3600));
        assert_eq!(expected_window(&daily, now), Duration::from_secs(25 * 3600));
    }

    #[test]
    fn a_cron_that_stops_succeeding_turns_late_then_ok_after_a_success() {
        let hourly = CronSchedule::parse("0 * * * *").unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let since = at("2026-01-05T09:00:00Z");
        let ok = run("success");
        let success_at = Some(at("2026-01-05T11:00:00Z"));
        assert_eq!(cron_state(&hourly, Some(&ok), success_at, since, at("2026-01-05T12:59:00Z")), CronState::Ok);
        assert_eq!(cron_state(&hourly, Some(&ok), success_at, since, at("2026-01-05T13:01:00Z")), CronState::Late);
        let later = Some(at("2026-01-05T13:05:00Z"));
        assert_eq!(cron_state(&hourly, Some(&ok), later, since, at("2026-01-05T13:06:00Z")), CronState::Ok);
        assert_eq!(
            cron_state(&hourly, Some(&run("failed")), later, since, at("2026-01-05T13:06:00Z")),
            CronState::Failing
        );
        // Never ran: counted from when the scheduler started.
        assert_eq!(cron_state(&hourly, None, None, since, at("2026-01-05T10:59:00Z")), CronState::Ok);
        assert_eq!(cron_state(&hourly, None, None, since, at("2026-01-05T11:01:00Z")), CronState::Late);
    }
}
