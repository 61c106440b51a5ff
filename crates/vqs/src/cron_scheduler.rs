//! The local cron scheduler: what Vercel Cron does on the platform, done in process.
//!
//! Each `vercel.json` cron fires on its schedule (UTC) as a `GET` of its path, made by a
//! [`CronInvoker`] (the web app's calls the router in process with Vercel's headers). Every
//! tick is claimed in the store first — one row per (path, schedule, instant) — so with many
//! processes on one database a tick fires once. Ticks missed while the app was down are
//! not replayed: on start, and after a stall, only the latest due tick fires.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::store::{CronRunFinishParams, CronRunStartParams, StoreError};
use crate::{CronSchedule, CronScheduleError, Queue, VercelConfig};

/// How a cron route answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronResponse {
    /// The HTTP status the route answered with.
    pub status: u16,
    /// The start of the body, kept as the error text of a failed run.
    pub body_excerpt: String,
}

/// Calls a cron route the way Vercel Cron does.
#[async_trait]
pub trait CronInvoker: Send + Sync + 'static {
    /// Call the cron route `path` as Vercel Cron does, with `x-vercel-cron-schedule: schedule`.
    async fn invoke(&self, path: &str, schedule: &str) -> Result<CronResponse, String>;
}

/// A `vercel.json` cron with its parsed schedule.
#[derive(Debug, Clone)]
pub struct ScheduledCron {
    /// The cron's route (`/api/cron/<name>`).
    pub path: String,
    /// Its schedule (UTC).
    pub schedule: CronSchedule,
}

impl ScheduledCron {
    /// The crons of a `vercel.json`.
    pub fn from_config(config: &VercelConfig) -> Result<Vec<ScheduledCron>, CronScheduleError> {
        config
            .crons
            .iter()
            .map(|c| Ok(ScheduledCron { path: c.path.clone(), schedule: CronSchedule::parse(&c.schedule)? }))
            .collect()
    }
}

/// One tick this process fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredTick {
    /// The cron's route.
    pub path: String,
    /// The tick: when the run was due (UTC, whole minutes).
    pub scheduled_at: DateTime<Utc>,
    /// The run's row in `cron_runs`.
    pub run_id: i64,
}

/// Decides which ticks are due and fires them.
pub struct CronScheduler {
    queue: Queue,
    crons: Vec<ScheduledCron>,
    next: Vec<Option<DateTime<Utc>>>,
    invoker: Arc<dyn CronInvoker>,
}

impl std::fmt::Debug for CronScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronScheduler").field("crons", &self.crons).field("next", &self.next).finish_non_exhaustive()
    }
}

impl CronScheduler {
    /// A scheduler whose first ticks are the first fire times after now.
    pub fn new(queue: Queue, crons: Vec<ScheduledCron>, invoker: Arc<dyn CronInvoker>) -> CronScheduler {
        let now = queue.clock().now();
        let next = crons.iter().map(|c| c.schedule.next_after(now)).collect();
        CronScheduler { queue, crons, next, invoker }
    }

    /// The earliest upcoming tick.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.next.iter().flatten().min().copied()
    }

    /// Fire every cron with a tick due now: only its latest due tick (missed ones are
    /// skipped), and only if no other process claimed that tick. Invocations run as tasks
    /// in `tasks`, so one slow cron never holds up another.
    pub async fn fire_due(&mut self, tasks: &mut JoinSet<()>) -> Result<Vec<FiredTick>, StoreError> {
        let now = self.queue.clock().now();
        let mut fired = Vec::new();
        for (i, cron) in self.crons.iter().enumerate() {
            let Some(mut tick) = self.next[i].filter(|t| *t <= now) else { continue };
            while let Some(later) = cron.schedule.next_after(tick).filter(|t| *t <= now) {
                tracing::info!(cron.path = %cron.path, missed = %tick, "skipping a missed tick");
                tick = later;
            }
            self.next[i] = cron.schedule.next_after(tick);
            let claimed = self
                .queue
                .store()
                .cron_run_start(CronRunStartParams {
                    path: cron.path.clone(),
                    schedule: cron.schedule.as_str().to_owned(),
                    scheduled_at: tick,
                    now,
                })
                .await?;
            let Some(run_id) = claimed else {
                tracing::debug!(cron.path = %cron.path, tick = %tick, "tick already fired by another process");
                continue;
            };
            fired.push(FiredTick { path: cron.path.clone(), scheduled_at: tick, run_id });
            let (queue, invoker, path, schedule) =
                (self.queue.clone(), self.invoker.clone(), cron.path.clone(), cron.schedule.as_str().to_owned());
            tasks.spawn(async move {
                let outcome = invoker.invoke(&path, &schedule).await;
                let (status_code, success, error) = match outcome {
                    Ok(r) if (200..300).contains(&r.status) => (Some(r.status), true, None),
                    Ok(r) => (Some(r.status), false, Some(format!("answered {}: {}", r.status, r.body_excerpt))),
                    Err(e) => (None, false, Some(format!("could not call the route: {e}"))),
                };
                if !success {
                    tracing::warn!(cron.path = %path, error = error.as_deref().unwrap_or(""), "cron run failed");
                }
                let error = error.map(|e| crate::escape_unstorable(&e).into_owned());
                let finish = CronRunFinishParams { id: run_id, status_code, success, error, now: queue.clock().now() };
                if let Err(e) = queue.store().cron_run_finish(finish).await {
                    tracing::warn!(cron.path = %path, error = %e, "could not record the end of a cron run");
                }
            });
        }
        Ok(fired)
    }

    /// [`Self::fire_due`], then wait for the invocations it started.
    pub async fn fire_due_and_wait(&mut self) -> Result<Vec<FiredTick>, StoreError> {
        let mut tasks = JoinSet::new();
        let fired = self.fire_due(&mut tasks).await?;
        while tasks.join_next().await.is_some() {}
        Ok(fired)
    }
}

/// Run `scheduler` until `shutdown` turns true; then let running invocations finish (up to
/// `grace`).
pub fn spawn_cron_scheduler(
    scheduler: CronScheduler,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> JoinHandle<()> {
    tokio::spawn(run_cron_scheduler(scheduler, shutdown, grace))
}

/// [`spawn_cron_scheduler`]'s loop, as a future to run under a [`crate::Supervisor`].
pub async fn run_cron_scheduler(mut scheduler: CronScheduler, mut shutdown: watch::Receiver<bool>, grace: Duration) {
    let mut tasks = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = scheduler.fire_due(&mut tasks).await {
            tracing::warn!(error = %e, "cron scheduler could not claim a tick; retrying");
        }
        while tasks.try_join_next().is_some() {}
        let now = scheduler.queue.clock().now();
        let wait = scheduler
            .next_due()
            .and_then(|t| (t - now).to_std().ok())
            .unwrap_or_default()
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
}
