//! The facade for runtime schedules ([`Queue::schedules`]) and the loop that fires them
//! ([`run_schedules`]).
//!
//! Firing is cheap with thousands of schedules: the due query reads an index on the next
//! fire time, and each due schedule is claimed by compare-and-set and published in one
//! transaction ([`QueueStore::schedule_fire`]), so every process may run the loop and a
//! tick still fires once. Missed ticks are not replayed: a schedule found due fires its one
//! overdue tick, and its next tick is counted from now.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::queue_metrics::METRIC_PUBLISHED;
use crate::store::{
    ScheduleDeleteParams, ScheduleDueParams, ScheduleFireKind, ScheduleFireParams, ScheduleFired, ScheduleGetParams,
    ScheduleRecord, ScheduleUpsertParams,
};
use crate::{DEFAULT_RETENTION, Queue, QueueError, Schedule, validate_schedule_name};

/// How many next fire times [`Schedules::upsert`] answers.
pub const SCHEDULE_NEXT_SHOWN: usize = 5;

/// How often [`run_schedules`] looks for due schedules.
pub const SCHEDULE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Due schedules [`run_schedules`] fires per query; it queries again at once while full.
pub const SCHEDULE_FIRE_BATCH: u32 = 100;

/// Runtime schedules of a queue: `queue.schedules()`.
#[derive(Debug, Clone)]
pub struct Schedules {
    queue: Queue,
}

/// A fire [`Schedules::fire_due`] made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleFire {
    pub name: String,
    pub tick: DateTime<Utc>,
    #[serde(rename = "messageId")]
    pub message_id: String,
}

/// What one [`Schedules::fire_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScheduleFireReport {
    /// Ticks this call fired.
    pub fired: Vec<ScheduleFire>,
    /// Due schedules another process fired first, or that were edited, disabled or deleted
    /// in the meantime: nothing published by this call.
    pub skipped: u32,
    /// Due schedules that could not be fired (the error is logged); tried again next time.
    pub failed: u32,
    /// How many due schedules the query returned (equal to the limit: there may be more).
    pub due: u32,
}

impl Queue {
    /// Runtime schedules (SPEC.md, "Runtime schedules").
    pub fn schedules(&self) -> Schedules {
        Schedules { queue: self.clone() }
    }
}

impl Schedules {
    /// Insert or replace a schedule by name; refused with the field named when invalid,
    /// nothing written. Answers the stored schedule and its next fire times (UTC) from now.
    /// Its next tick is counted from now on every upsert: an edit or a re-enable does not
    /// replay ticks missed before it.
    pub async fn upsert(&self, schedule: Schedule) -> Result<(ScheduleRecord, Vec<DateTime<Utc>>), QueueError> {
        self.refuse_remote()?;
        let times = schedule.validate()?;
        let now = self.queue.clock().now();
        let next = times.next_fires(now, SCHEDULE_NEXT_SHOWN);
        let p = ScheduleUpsertParams { next_fire_at: next.first().copied(), schedule, now };
        let record = self.queue.store().schedule_upsert(p).await?;
        Ok((record, next))
    }

    /// One schedule by name.
    pub async fn get(&self, name: &str) -> Result<Option<ScheduleRecord>, QueueError> {
        validate_schedule_name(name)?;
        Ok(self.queue.store().schedule_get(ScheduleGetParams { name: name.to_owned() }).await?)
    }

    /// Every schedule, by name, read a page of 1000 at a time: for a handful (tests, a
    /// listing of everything); with thousands, read [`Schedules::page`] by page.
    pub async fn list(&self) -> Result<Vec<ScheduleRecord>, QueueError> {
        self.read_all().await
    }

    /// Delete a schedule; true when it existed. Its fire records are kept.
    pub async fn delete(&self, name: &str) -> Result<bool, QueueError> {
        validate_schedule_name(name)?;
        Ok(self.queue.store().schedule_delete(ScheduleDeleteParams { name: name.to_owned() }).await?)
    }

    /// The next `n` fire times of a stored schedule from now (UTC).
    pub fn next_fires(&self, record: &ScheduleRecord, n: usize) -> Result<Vec<DateTime<Utc>>, QueueError> {
        Ok(record.schedule().validate()?.next_fires(self.queue.clock().now(), n))
    }

    /// Fire a schedule now (tick = now), enabled or not, leaving its next tick alone.
    /// [`ScheduleFired::NotFound`] when there is no such schedule.
    pub async fn trigger(&self, name: &str) -> Result<ScheduleFired, QueueError> {
        self.refuse_remote()?;
        validate_schedule_name(name)?;
        let now = self.queue.clock().now();
        let p = ScheduleFireParams {
            name: name.to_owned(),
            tick: now,
            kind: ScheduleFireKind::Trigger,
            retention_seconds: DEFAULT_RETENTION.as_secs() as u32,
            now,
        };
        let fired = self.queue.store().schedule_fire(p).await?;
        if let ScheduleFired::Fired { .. } = &fired {
            self.published(name).await;
        }
        Ok(fired)
    }

    /// Fire the schedules due now, at most `limit`: each fires its due tick once (of
    /// processes racing, one publishes) and moves on to its next tick after the later of
    /// that tick and now — so a schedule overdue by many ticks fires one of them, not all.
    pub async fn fire_due(&self, limit: u32) -> Result<ScheduleFireReport, QueueError> {
        self.refuse_remote()?;
        let now = self.queue.clock().now();
        let due = self.queue.store().schedule_due(ScheduleDueParams { now, limit }).await?;
        let mut report = ScheduleFireReport { due: due.len() as u32, ..Default::default() };
        for record in due {
            let Some(tick) = record.next_fire_at else { continue };
            let times = match record.schedule().validate() {
                Ok(times) => times,
                Err(e) => {
                    // Stored by an older version with other rules (a zone since removed):
                    // left as it is for an operator to fix, and said so.
                    tracing::warn!(schedule = %record.name, error = %e, "cannot compute the schedule's next tick");
                    report.failed += 1;
                    continue;
                }
            };
            // Missed ticks are not replayed: after the overdue one, the next is from now.
            let next = times.next_fire_after(tick.max(now));
            let p = ScheduleFireParams {
                name: record.name.clone(),
                tick,
                kind: ScheduleFireKind::Due { updated_at: record.updated_at, next_fire_at: next },
                retention_seconds: DEFAULT_RETENTION.as_secs() as u32,
                now,
            };
            match self.queue.store().schedule_fire(p).await {
                Ok(ScheduleFired::Fired { message_id, .. }) => {
                    tracing::debug!(schedule = %record.name, %tick, message.id = %message_id, "schedule fired");
                    self.queue.count(METRIC_PUBLISHED, &record.topic);
                    self.queue.count_schedule_fire(&record.topic, "due");
                    report.fired.push(ScheduleFire { name: record.name, tick, message_id });
                }
                Ok(_) => report.skipped += 1,
                Err(e) => {
                    tracing::warn!(schedule = %record.name, %tick, error = %e, "could not fire the schedule; trying again shortly");
                    report.failed += 1;
                }
            }
        }
        if !report.fired.is_empty() {
            self.queue.wake();
        }
        Ok(report)
    }

    /// The queue these schedules belong to.
    pub(crate) fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Now, by the queue's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.queue.clock().now()
    }

    async fn published(&self, name: &str) {
        if let Ok(Some(r)) = self.get(name).await {
            self.queue.count(METRIC_PUBLISHED, &r.topic);
            self.queue.count_schedule_fire(&r.topic, "trigger");
        }
        self.queue.wake();
    }

    /// Schedules publish in the store's transaction; a queue that publishes to a remote
    /// queue service (Vercel's) cannot do that yet.
    fn refuse_remote(&self) -> Result<(), QueueError> {
        if self.queue.publishes_elsewhere() {
            return Err(QueueError::Invalid(
                "runtime schedules publish through the local store; this queue publishes to a remote queue service, \
                 which schedules do not support yet"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Fire due runtime schedules every [`SCHEDULE_POLL_INTERVAL`] until `shutdown` changes;
/// errors are logged and the next round tries again. Every process may run it: a tick
/// fires once across them.
pub async fn run_schedules(queue: Queue, mut shutdown: watch::Receiver<bool>) {
    let schedules = queue.schedules();
    let mut tick = tokio::time::interval(SCHEDULE_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        // Query again at once while a batch comes back full, so a backlog drains.
        loop {
            match schedules.fire_due(SCHEDULE_FIRE_BATCH).await {
                Ok(report) if report.due >= SCHEDULE_FIRE_BATCH && !report.fired.is_empty() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not fire due schedules; trying again shortly");
                    break;
                }
            }
        }
    }
}
