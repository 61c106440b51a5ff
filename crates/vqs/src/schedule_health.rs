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

use crate::store::{ScheduleCountParams, ScheduleOverdueParams, ScheduleRecord};
use crate::{CronState, QueueError, Schedules};

/// One runtime schedule as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    /// The schedule's name.
    pub name: String,
    /// Its cron expression (in `timezone`).
    pub cron: String,
    /// Its IANA time zone.
    pub timezone: String,
    /// The topic each fire publishes to.
    pub topic: String,
    /// Whether it fires.
    pub enabled: bool,
    /// Its next fire times from now (UTC); empty when it never fires again or is broken.
    pub next: Vec<DateTime<Utc>>,
    /// The tick of its last fire and when that fire happened.
    pub last_tick: Option<DateTime<Utc>>,
    /// When its last fire happened.
    pub last_fire: Option<DateTime<Utc>>,
    /// The message its last fire published.
    pub last_message_id: Option<String>,
    /// Its heartbeat state.
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

/// The shortest slack a schedule gets (its interval is at least a minute): one overdue by
/// less is never late, so health looks only at those overdue by more.
const MIN_SLACK: chrono::Duration = chrono::Duration::seconds(60);

/// The longest slack a schedule gets: one overdue by more is late (or failing) whatever its
/// interval, so health counts those without reading them.
const MAX_SLACK: chrono::Duration = chrono::Duration::seconds(3600);

/// How many overdue schedules [`Schedules::health`] reads and examines one by one, the most
/// overdue first; beyond them it counts.
pub const SCHEDULE_HEALTH_EXAMINED: u32 = 100;

/// One page of schedules as operators see them, with the cursor of the next page.
#[derive(Debug, Clone, Serialize)]
pub struct SchedulePageStatus {
    /// The schedules on this page.
    pub schedules: Vec<ScheduleStatus>,
    /// The cursor of the next page (the last name on this one), `None` on the last page.
    pub next_after: Option<String>,
}

/// The heartbeat of every runtime schedule at once, found without reading them all: what
/// health, the dashboard and metrics show.
///
/// A schedule overdue by under a minute is never late (its interval is at least that), so
/// only the enabled ones overdue by more are looked at, through the due index: the
/// [`SCHEDULE_HEALTH_EXAMINED`] most overdue are read and judged one by one; of the rest,
/// those overdue by over an hour are late whatever their interval and are counted as such;
/// any others (overdue by one minute to an hour, beyond the ones examined) are `unchecked`.
/// A disabled schedule is `ok` (it is not expected to fire).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScheduleHealth {
    /// Every schedule (at most [`crate::SCHEDULE_COUNT_CAP`]).
    pub total: u64,
    /// Fired on time, or disabled.
    pub ok: u64,
    /// Overdue: a tick passed with no fire.
    pub late: u64,
    /// Their last fire failed.
    pub failing: u64,
    /// Overdue by one minute to an hour but not examined, because more than
    /// [`SCHEDULE_HEALTH_EXAMINED`] were overdue: late or not, unknown.
    pub unchecked: u64,
    /// The late and failing schedules examined, the most overdue first (at most as many as
    /// asked for), each with its next fire time.
    pub problems: Vec<ScheduleStatus>,
}

fn status_of(r: ScheduleRecord, next: usize, now: DateTime<Utc>) -> ScheduleStatus {
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
        last_message_id: r.last_message_id,
        state,
    }
}

impl Schedules {
    /// One page of schedules by name (see [`Schedules::page`]), each with its next `next`
    /// fire times (at least 1), last fire and state.
    pub async fn page_statuses(
        &self,
        after: Option<&str>,
        limit: u32,
        next: usize,
    ) -> Result<SchedulePageStatus, QueueError> {
        let page = self.page(after, limit).await?;
        let now = self.now();
        let schedules = page.schedules.into_iter().map(|r| status_of(r, next, now)).collect();
        Ok(SchedulePageStatus { schedules, next_after: page.next_after })
    }

    /// How many schedules are ok, late, failing (and unchecked), with up to `shown` of the
    /// late and failing ones: three counts and one read of at most
    /// [`SCHEDULE_HEALTH_EXAMINED`] rows, however many schedules there are (see
    /// [`ScheduleHealth`]).
    pub async fn health(&self, shown: usize) -> Result<ScheduleHealth, QueueError> {
        let store = self.queue().store();
        let now = self.now();
        let count = |overdue_before| {
            store.schedule_count(ScheduleCountParams { overdue_before, cap: crate::SCHEDULE_COUNT_CAP })
        };
        let total = count(None).await?;
        let overdue = count(Some(now - MIN_SLACK)).await?;
        if overdue == 0 {
            return Ok(ScheduleHealth { total, ok: total, ..Default::default() });
        }
        let over_an_hour = count(Some(now - MAX_SLACK)).await?;
        let examined = store
            .schedule_overdue(ScheduleOverdueParams { before: now - MIN_SLACK, limit: SCHEDULE_HEALTH_EXAMINED })
            .await?;
        let examined_over_an_hour =
            examined.iter().filter(|r| r.next_fire_at.is_some_and(|t| t <= now - MAX_SLACK)).count() as u64;
        let rest = overdue.saturating_sub(examined.len() as u64);
        let rest_over_an_hour = over_an_hour.saturating_sub(examined_over_an_hour).min(rest);
        let mut health = ScheduleHealth { total, ..Default::default() };
        for r in examined {
            let s = status_of(r, 1, now);
            match s.state {
                CronState::Ok => continue,
                CronState::Late => health.late += 1,
                CronState::Failing => health.failing += 1,
            }
            if health.problems.len() < shown {
                health.problems.push(s);
            }
        }
        health.late += rest_over_an_hour;
        health.unchecked = rest - rest_over_an_hour;
        health.ok = total.saturating_sub(health.late + health.failing + health.unchecked);
        Ok(health)
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
