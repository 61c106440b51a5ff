//! Crash rescue: each serving process beats (one write per beat, however many jobs it
//! runs), and the leases its dispatcher takes name it. A process that stops beating for
//! [`LifelineConfig::dead_after`] is presumed dead: any other process makes its leases due
//! at once, so its jobs are redelivered within about a minute of a crash instead of when
//! their leases (a job's timeout + 30 s, up to an hour) run out. The shape of Oban's
//! `Lifeline` and River's rescuer, with a heartbeat per process instead of a renewal per
//! job (see ARCHITECTURE.md, "Decisions").

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Queue;
use crate::store::{ProcessBeatParams, ProcessRescueParams, ProcessRescueReport, StoreError};

/// How often a process beats by default: every 10 s.
pub const DEFAULT_BEAT_INTERVAL: Duration = Duration::from_secs(10);
/// How long a process may go without a beat before it is presumed dead, by default: 45 s —
/// four beats missed and a margin for a slow write. With a rescue check at every beat of
/// every other process, a crashed process's jobs are due again at most
/// `dead_after + beat` (55 s) after its last beat.
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(45);

/// The heartbeat's timing. `dead_after` must be longer than two beats (a process is never
/// presumed dead for one late write); [`LifelineConfig::check`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifelineConfig {
    /// Beat (and look for dead processes) this often. Default 10 s.
    pub beat: Duration,
    /// Presume a process dead after this long without a beat. Default 45 s.
    pub dead_after: Duration,
}

impl Default for LifelineConfig {
    fn default() -> Self {
        LifelineConfig { beat: DEFAULT_BEAT_INTERVAL, dead_after: DEFAULT_DEAD_AFTER }
    }
}

impl LifelineConfig {
    /// `Err` with what to change when the timing could presume a live process dead.
    pub fn check(&self) -> Result<(), String> {
        if self.beat.is_zero() {
            return Err("the heartbeat interval must be at least 1 second".into());
        }
        if self.dead_after <= self.beat.saturating_mul(2) {
            return Err(format!(
                "\"dead after\" ({} s) must be longer than two heartbeat intervals ({} s each): \
                 a process must never be presumed dead for one late beat",
                self.dead_after.as_secs_f64(),
                self.beat.as_secs_f64()
            ));
        }
        Ok(())
    }
}

/// One process's heartbeat and the rescue of dead processes' leases.
#[derive(Debug, Clone)]
pub struct Lifeline {
    queue: Queue,
    process_id: String,
    config: LifelineConfig,
}

/// What one [`Lifeline::run_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifelineReport {
    /// False when this beat registered the process: its first, or one after other processes
    /// presumed it dead (its beats had stopped reaching the database for `dead_after`).
    pub was_known: bool,
    /// Dead processes found and the leases they held, now due.
    pub rescued: ProcessRescueReport,
}

impl Lifeline {
    /// A lifeline for this process, with a new process id (`proc_<uuid>`).
    pub fn new(queue: Queue, config: LifelineConfig) -> Lifeline {
        Lifeline { queue, process_id: format!("proc_{}", uuid::Uuid::new_v4().simple()), config }
    }

    /// The id leases of this process name (`DispatcherConfig::lease_holder`).
    pub fn process_id(&self) -> &str {
        &self.process_id
    }

    /// The heartbeat timing this lifeline runs with.
    pub fn config(&self) -> LifelineConfig {
        self.config
    }

    /// Beat, then rescue the leases of processes whose last beat is older than `dead_after`
    /// (never this one's).
    pub async fn run_once(&self) -> Result<LifelineReport, StoreError> {
        let store = self.queue.store();
        let now = self.queue.clock().now();
        let was_known = store.process_beat(ProcessBeatParams { process_id: self.process_id.clone(), now }).await?;
        let dead_after = chrono::Duration::from_std(self.config.dead_after).unwrap_or(chrono::Duration::MAX);
        let dead_before = now.checked_sub_signed(dead_after).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let rescued =
            store.process_rescue(ProcessRescueParams { dead_before, rescuer: self.process_id.clone(), now }).await?;
        Ok(LifelineReport { was_known, rescued })
    }

    /// Beat every `beat` until `shutdown` turns true. Logs only when it did something: a
    /// rescue, or this process found presumed dead (its leases may have been redelivered
    /// while its jobs still ran).
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// The loop [`Lifeline::spawn`] runs, as a future (for a supervisor to restart).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        {
            let mut beaten = false;
            loop {
                match self.run_once().await {
                    Ok(report) => {
                        if beaten && !report.was_known {
                            tracing::warn!(
                                process.id = %self.process_id,
                                "this process was presumed dead (no heartbeat reached the database for {} s): \
                                 other processes may have redelivered the jobs it is running",
                                self.config.dead_after.as_secs()
                            );
                        }
                        beaten = true;
                        if report.rescued.processes > 0 {
                            tracing::warn!(
                                processes = report.rescued.processes,
                                deliveries = report.rescued.deliveries,
                                "processes stopped beating: their leased messages are due again"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying at the next beat"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.config.beat) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}
