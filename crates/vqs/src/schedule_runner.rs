//! The facade for runtime schedules ([`Queue::schedules`]) and the loop that fires them
//! ([`run_schedules`]).
//!
//! Firing is cheap with thousands of schedules: the due query reads an index on the next
//! fire time, and each due schedule is claimed by compare-and-set and published in one
//! transaction ([`QueueStore::schedule_fire`]), so every process may run the loop and a
//! tick still fires once. Missed ticks are not replayed: a schedule found due fires its one
//! overdue tick (or, without `catch_up`, records it `missed` when it is more than
//! [`SCHEDULE_MISSED_AFTER`] late), and its next tick is counted from now.
//!
//! A queue that publishes to a remote queue service (Vercel's) cannot publish in the
//! store's transaction: there a fire is claimed and recorded first, then published under
//! the tick's idempotency key and reported ([`ScheduleFireMode::Claim`]). A publish that
//! failed is tried again by later rounds for [`SCHEDULE_UNSENT_RETRY_FOR`]; the service's
//! deduplication by key keeps a retried tick to one message.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::queue_metrics::METRIC_PUBLISHED;
use crate::store::{
    ScheduleDeleteParams, ScheduleDueParams, ScheduleFireKind, ScheduleFireMode, ScheduleFireParams,
    ScheduleFireSentParams, ScheduleFired, ScheduleGetParams, ScheduleRecord, ScheduleUnsentParams,
    ScheduleUpsertParams,
};
use crate::{DEFAULT_RETENTION, Queue, QueueError, Schedule, SendOpts, validate_schedule_name};

/// How many next fire times [`Schedules::upsert`] answers.
pub const SCHEDULE_NEXT_SHOWN: usize = 5;

/// How often [`run_schedules`] looks for due schedules.
pub const SCHEDULE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Due schedules [`run_schedules`] fires per query; it queries again at once while full.
pub const SCHEDULE_FIRE_BATCH: u32 = 100;

/// A tick found due later than this after its due time was missed (no process fired
/// schedules then): a schedule without `catch_up` skips it.
pub const SCHEDULE_MISSED_AFTER: Duration = Duration::from_secs(120);

/// How long a claimed fire whose remote publish failed is tried again.
pub const SCHEDULE_UNSENT_RETRY_FOR: Duration = Duration::from_secs(3600);

/// How old a claimed, unpublished fire must be before another round publishes it: the
/// claiming call may still be publishing it.
const SCHEDULE_UNSENT_AFTER: Duration = Duration::from_secs(30);

/// Runtime schedules of a queue: `queue.schedules()`.
#[derive(Debug, Clone)]
pub struct Schedules {
    queue: Queue,
}

/// A fire [`Schedules::fire_due`] made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleFire {
    /// The schedule that fired.
    pub name: String,
    /// The tick it fired for (the key of its message).
    pub tick: DateTime<Utc>,
    #[serde(rename = "messageId")]
    /// The message the fire published.
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
    /// Missed ticks of schedules without `catch_up`: recorded `missed`, nothing published.
    pub missed: u32,
    /// Earlier claimed fires whose remote publish had failed, published now.
    pub resent: u32,
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
        let times = schedule.validate()?;
        let now = self.queue.clock().now();
        let next = times.next_fires(now, SCHEDULE_NEXT_SHOWN);
        let next_fire_at = next.first().copied();
        let due_at = next_fire_at.map(|t| schedule.due_at(t));
        let p = ScheduleUpsertParams { next_fire_at, due_at, schedule, now };
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

    /// Delete a schedule and its fire records; true when it existed.
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
        validate_schedule_name(name)?;
        let now = self.queue.clock().now();
        let p = ScheduleFireParams {
            name: name.to_owned(),
            tick: now,
            kind: ScheduleFireKind::Trigger,
            mode: self.fire_mode(),
            retention_seconds: DEFAULT_RETENTION.as_secs() as u32,
            now,
        };
        match self.queue.store().schedule_fire(p).await? {
            ScheduleFired::Claimed { topic, payload } => {
                let message_id = self.send_claimed(name, now, &topic, payload).await?;
                self.queue.count_schedule_fire(&topic, "trigger");
                Ok(ScheduleFired::Fired { message_id, duplicate: false })
            }
            fired => {
                if let ScheduleFired::Fired { .. } = &fired {
                    self.published(name).await;
                }
                Ok(fired)
            }
        }
    }

    /// Fire the schedules due now, at most `limit`: each fires its due tick once (of
    /// processes racing, one publishes) and moves on to its next tick after the later of
    /// that tick and now — so a schedule overdue by many ticks fires one of them, not all.
    pub async fn fire_due(&self, limit: u32) -> Result<ScheduleFireReport, QueueError> {
        let now = self.queue.clock().now();
        let mut report = ScheduleFireReport::default();
        if self.queue.publishes_elsewhere() {
            self.resend_unsent(now, limit, &mut report).await?;
        }
        let due = self.queue.store().schedule_due(ScheduleDueParams { now, limit }).await?;
        report.due = due.len() as u32;
        for record in due {
            self.fire_one(record, now, &mut report).await;
        }
        if !report.fired.is_empty() {
            self.queue.wake();
        }
        Ok(report)
    }

    /// Fire (or, without catch-up, skip) one due schedule's tick; the outcome goes to `report`.
    async fn fire_one(&self, record: ScheduleRecord, now: DateTime<Utc>, report: &mut ScheduleFireReport) {
        let Some(tick) = record.next_fire_at else { return };
        let schedule = record.schedule();
        let times = match schedule.validate() {
            Ok(times) => times,
            Err(e) => {
                // Stored by an older version with other rules (a zone since removed):
                // left as it is for an operator to fix, and said so.
                tracing::warn!(schedule = %record.name, error = %e, "cannot compute the schedule's next tick");
                report.failed += 1;
                return;
            }
        };
        // Missed ticks are not replayed: after the overdue one, the next is from now.
        let next = times.next_fire_after(tick.max(now));
        let due_at = record.due_at.unwrap_or(tick);
        let missed =
            !record.catch_up && now - due_at > chrono::Duration::from_std(SCHEDULE_MISSED_AFTER).unwrap_or_default();
        let p = ScheduleFireParams {
            name: record.name.clone(),
            tick,
            kind: ScheduleFireKind::Due {
                updated_at: record.updated_at,
                next_fire_at: next,
                next_due_at: next.map(|t| schedule.due_at(t)),
            },
            mode: if missed { ScheduleFireMode::Skip } else { self.fire_mode() },
            retention_seconds: DEFAULT_RETENTION.as_secs() as u32,
            now,
        };
        let fired = match self.queue.store().schedule_fire(p).await {
            Ok(ScheduleFired::Claimed { topic, payload }) => {
                self.send_claimed(&record.name, tick, &topic, payload).await.map(|message_id| (message_id, false))
            }
            Ok(ScheduleFired::Fired { message_id, .. }) => Ok((message_id, true)),
            Ok(ScheduleFired::Skipped) => {
                tracing::info!(schedule = %record.name, %tick, "missed tick skipped (catch_up is off)");
                report.missed += 1;
                return;
            }
            Ok(_) => {
                report.skipped += 1;
                return;
            }
            Err(e) => Err(QueueError::Store(e)),
        };
        match fired {
            Ok((message_id, local)) => {
                tracing::debug!(schedule = %record.name, %tick, message.id = %message_id, "schedule fired");
                if local {
                    self.queue.count(METRIC_PUBLISHED, &record.topic);
                }
                self.queue.count_schedule_fire(&record.topic, "due");
                report.fired.push(ScheduleFire { name: record.name, tick, message_id });
            }
            Err(e) => {
                tracing::warn!(schedule = %record.name, %tick, error = %e, "could not fire the schedule; trying again shortly");
                report.failed += 1;
            }
        }
    }

    /// Publish again the claimed fires whose remote publish failed (a queue that publishes
    /// elsewhere), oldest first, at most `limit`.
    async fn resend_unsent(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        report: &mut ScheduleFireReport,
    ) -> Result<(), QueueError> {
        let ago = |d: Duration| now - chrono::Duration::from_std(d).unwrap_or_default();
        let p =
            ScheduleUnsentParams { since: ago(SCHEDULE_UNSENT_RETRY_FOR), until: ago(SCHEDULE_UNSENT_AFTER), limit };
        for unsent in self.queue.store().schedule_unsent(p).await? {
            match self.send_claimed(&unsent.name, unsent.tick, &unsent.topic, unsent.payload).await {
                Ok(_) => report.resent += 1,
                Err(e) => {
                    tracing::warn!(schedule = %unsent.name, tick = %unsent.tick, error = %e, "could not publish the schedule's fire; trying again shortly");
                    report.failed += 1;
                }
            }
        }
        Ok(())
    }

    /// Publish a claimed fire to the remote queue service under the tick's idempotency
    /// key, and record its message.
    async fn send_claimed(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        topic: &str,
        payload: String,
    ) -> Result<String, QueueError> {
        let opts = SendOpts {
            idempotency_key: Some(crate::schedule_idempotency_key(name, tick)),
            content_type: Some("application/json".to_owned()),
            retention: Some(DEFAULT_RETENTION),
            ..SendOpts::default()
        };
        let sent = self.queue.send(topic, payload.into_bytes(), opts).await?;
        let p = ScheduleFireSentParams { name: name.to_owned(), tick, message_id: sent.message_id.clone() };
        self.queue.store().schedule_fire_sent(p).await?;
        Ok(sent.message_id)
    }

    /// Publish in the store's transaction, or claim first when the queue publishes to a
    /// remote service.
    fn fire_mode(&self) -> ScheduleFireMode {
        if self.queue.publishes_elsewhere() { ScheduleFireMode::Claim } else { ScheduleFireMode::Publish }
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
