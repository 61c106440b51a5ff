//! Heartbeats of runtime schedules, the way crons have theirs (`cron_health`):
//!
//! - `failing`: its stored definition no longer yields fire times (stored by a version with
//!   other rules, a zone since removed): it cannot fire until an operator fixes it;
//! - `late`: enabled, and its due tick has not fired within the slack crons get — up to an
//!   hour, at most one interval (`min(interval, 1 h)`) — after the tick: no process fires
//!   schedules (no schedule loop, no schedules cron), or the store refuses the fires;
//! - `ok` otherwise (a disabled schedule is not expected to fire, so it is `ok`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::ScheduleRecord;
use crate::{CronState, QueueError, Schedules};

/// One runtime schedule as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub topic: String,
    pub enabled: bool,
    /// Its next fire times from now (UTC); empty when it never fires again or is broken.
    pub next: Vec<DateTime<Utc>>,
    /// The tick of its last fire and when that fire happened.
    pub last_tick: Option<DateTime<Utc>>,
    pub last_fire: Option<DateTime<Utc>>,
    pub state: CronState,
}

/// How long after a due tick a schedule may go unfired: `min(interval, 1 h)`, the interval
/// being the longest gap between its next few fire times.
pub fn schedule_slack(next: &[DateTime<Utc>]) -> Duration {
    let gap = next.windows(2).filter_map(|w| (w[1] - w[0]).to_std().ok()).max();
    gap.unwrap_or(Duration::from_secs(3600)).min(Duration::from_secs(3600))
}

/// The state of a stored schedule at `now`; `next` are its next fire times (`None` when its
/// definition no longer validates).
pub fn schedule_state(record: &ScheduleRecord, next: Option<&[DateTime<Utc>]>, now: DateTime<Utc>) -> CronState {
    let Some(next) = next else { return CronState::Failing };
    if !record.enabled {
        return CronState::Ok;
    }
    let Some(due) = record.due_at.or(record.next_fire_at) else { return CronState::Ok };
    let slack = chrono::Duration::from_std(schedule_slack(next)).unwrap_or(chrono::Duration::MAX);
    if now - due > slack { CronState::Late } else { CronState::Ok }
}

/// Fire times looked at to measure a schedule's interval.
const INTERVAL_SAMPLE: usize = 8;

impl Schedules {
    /// Every schedule by name with its next `next` fire times (at least 1), last fire and state.
    pub async fn statuses(&self, next: usize) -> Result<Vec<ScheduleStatus>, QueueError> {
        let records = self.list().await?;
        let now = self.now();
        Ok(records
            .into_iter()
            .map(|r| {
                let times = r.schedule().validate().ok().map(|t| t.next_fires(now, next.max(INTERVAL_SAMPLE)));
                let state = schedule_state(&r, times.as_deref(), now);
                let mut upcoming = times.unwrap_or_default();
                upcoming.truncate(next.max(1));
                ScheduleStatus {
                    name: r.name,
                    cron: r.cron,
                    timezone: r.timezone,
                    topic: r.topic,
                    enabled: r.enabled,
                    next: upcoming,
                    last_tick: r.last_tick,
                    last_fire: r.last_fired_at,
                    state,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(enabled: bool, next_fire_at: &str) -> ScheduleRecord {
        let t: DateTime<Utc> = "2026-01-05T10:00:00Z".parse().unwrap();
        ScheduleRecord {
            name: "s".into(),
            cron: "0 * * * *".into(),
            timezone: "UTC".into(),
            topic: "probe".into(),
            payload: serde_json::json!({}),
            enabled,
            catch_up: true,
            jitter_seconds: 0,
            next_fire_at: Some(next_fire_at.parse().unwrap()),
            due_at: Some(next_fire_at.parse().unwrap()),
            created_at: t,
            updated_at: t,
            last_tick: None,
            last_fired_at: None,
            last_message_id: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_due_tick_unfired_past_its_slack_is_late_unless_disabled() {
        let every_minute: Vec<_> = (0..8).map(|i| at("2026-01-05T11:00:00Z") + chrono::Duration::minutes(i)).collect();
        let r = record(true, "2026-01-05T10:59:00Z");
        // A minute's slack for a per-minute schedule.
        assert_eq!(schedule_state(&r, Some(&every_minute), at("2026-01-05T10:59:59Z")), CronState::Ok);
        assert_eq!(schedule_state(&r, Some(&every_minute), at("2026-01-05T11:00:01Z")), CronState::Late);
        assert_eq!(
            schedule_state(&record(false, "2026-01-05T10:59:00Z"), Some(&every_minute), at("2026-01-06T00:00:00Z")),
            CronState::Ok
        );
        // Broken definitions fail; daily schedules get an hour.
        assert_eq!(schedule_state(&r, None, at("2026-01-05T10:00:00Z")), CronState::Failing);
        let daily: Vec<_> = (0..8).map(|i| at("2026-01-06T00:00:00Z") + chrono::Duration::days(i)).collect();
        assert_eq!(schedule_slack(&daily), Duration::from_secs(3600));
        assert_eq!(schedule_state(&r, Some(&daily), at("2026-01-05T11:58:00Z")), CronState::Ok);
        assert_eq!(schedule_state(&r, Some(&daily), at("2026-01-05T12:00:00Z")), CronState::Late);
    }
}
