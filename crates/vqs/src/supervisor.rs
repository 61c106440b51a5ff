//! Background tasks that are never silent: [`Supervisor::supervise`] runs a task, logs a
//! panic with its cause, restarts the task after a back-off, and gives up (the task is
//! [`TaskState::Failed`], [`Supervisor::failed`] resolves) when it keeps panicking. The web
//! app's health routes read [`Supervisor::report`]; `serve` exits non-zero on a failure.
//!
//! The dispatcher, the cron scheduler and the maintenance loop run under one supervisor;
//! the backends' writer tasks report their death through [`log_panic`] and the store's
//! `ping` (callers get "the writer has stopped", never a hang).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How a supervised task is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within [`RestartPolicy::window`]; one more panic and the task has
    /// failed for good. Default 5.
    pub max_restarts: u32,
    /// The window the restarts are counted in. Default 60 s.
    pub window: Duration,
    /// The pause before the first restart, doubled for each restart in the window (up to
    /// 30 s). Default 500 ms.
    pub backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy { max_restarts: 5, window: Duration::from_secs(60), backoff: Duration::from_millis(500) }
    }
}

/// What a supervised task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Running (or started again after a panic).
    Running,
    /// It panicked; it starts again after the back-off.
    Restarting,
    /// It panicked more often than the policy allows and is not restarted.
    Failed,
    /// It returned (shutdown).
    Stopped,
}

/// One supervised task as health reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskReport {
    /// The task's name (`dispatcher`, `cron-scheduler`, …).
    pub name: String,
    /// Whether it runs, restarts after a panic, or failed for good.
    pub state: TaskState,
    /// Restarts since the process started.
    pub restarts: u32,
    /// The last panic's message (for the admin view and the logs only: it may quote data).
    pub last_panic: Option<String>,
}

#[derive(Default)]
struct Inner {
    tasks: Mutex<BTreeMap<String, TaskReport>>,
    failed: Notify,
}

/// A registry of supervised tasks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Supervisor {
    inner: Arc<Inner>,
    policy: RestartPolicy,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("tasks", &self.report()).field("policy", &self.policy).finish()
    }
}

/// The message a panic carried (`panic!("…")`'s text), or a placeholder.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Run `fut`; when it panics, log `task` and the panic's message at error level and
/// return false. For tasks that cannot be restarted (a backend's writer): its death is
/// logged with its cause, and its callers see a "stopped" error instead of waiting.
pub async fn log_panic(task: &str, fut: impl Future<Output = ()> + Send) -> bool {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(()) => true,
        Err(payload) => {
            tracing::error!(task, cause = %panic_message(payload.as_ref()), "background task panicked");
            false
        }
    }
}

impl Supervisor {
    /// A supervisor with its own restart policy.
    pub fn with_policy(policy: RestartPolicy) -> Supervisor {
        Supervisor { inner: Arc::default(), policy }
    }

    /// The same registry (the same health report) with another restart policy.
    pub fn with_restart_policy(&self, policy: RestartPolicy) -> Supervisor {
        Supervisor { inner: self.inner.clone(), policy }
    }

    /// Run the task `make` builds under supervision, as `name`. A panic is logged with its
    /// message and the task is built and started again after the back-off; past
    /// [`RestartPolicy::max_restarts`] within the window it is marked failed and
    /// [`Supervisor::failed`] resolves. The handle resolves when the task has returned or failed.
    pub fn supervise<F, Fut>(&self, name: &str, mut make: F) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        let name = name.to_owned();
        this.set(&name, TaskState::Running, None);
        tokio::spawn(async move {
            let mut recent: Vec<tokio::time::Instant> = Vec::new();
            loop {
                let outcome = tokio::spawn(make()).await;
                let payload = match outcome {
                    Ok(()) => {
                        this.set(&name, TaskState::Stopped, None);
                        return;
                    }
                    Err(e) if e.is_panic() => e.into_panic(),
                    // Cancelled: the runtime is shutting down.
                    Err(_) => {
                        this.set(&name, TaskState::Stopped, None);
                        return;
                    }
                };
                let cause = panic_message(payload.as_ref());
                let now = tokio::time::Instant::now();
                recent.retain(|t| now.saturating_duration_since(*t) < this.policy.window);
                recent.push(now);
                let restarts = u32::try_from(recent.len()).unwrap_or(u32::MAX);
                if restarts > this.policy.max_restarts {
                    tracing::error!(
                        task = %name, cause = %cause,
                        "background task panicked {restarts} times within {:?}: not restarted",
                        this.policy.window
                    );
                    this.set(&name, TaskState::Failed, Some(cause));
                    this.inner.failed.notify_waiters();
                    this.inner.failed.notify_one();
                    return;
                }
                tracing::error!(task = %name, cause = %cause, restart = restarts, "background task panicked; restarting it");
                this.set(&name, TaskState::Restarting, Some(cause));
                let factor = 1u32.checked_shl(restarts.saturating_sub(1)).unwrap_or(u32::MAX);
                let pause = this.policy.backoff.saturating_mul(factor).min(Duration::from_secs(30));
                tokio::time::sleep(pause).await;
                this.set(&name, TaskState::Running, None);
            }
        })
    }

    fn set(&self, name: &str, state: TaskState, panic: Option<String>) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tasks.entry(name.to_owned()).or_insert_with(|| TaskReport {
            name: name.to_owned(),
            state,
            restarts: 0,
            last_panic: None,
        });
        if panic.is_some() {
            entry.restarts = entry.restarts.saturating_add(u32::from(state == TaskState::Restarting));
            entry.last_panic = panic;
        }
        entry.state = state;
    }

    /// Every supervised task, by name.
    pub fn report(&self) -> Vec<TaskReport> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Resolves when a task has failed for good (it kept panicking); returns its report.
    pub async fn failed(&self) -> TaskReport {
        loop {
            let notified = self.inner.failed.notified();
            if let Some(t) = self.report().into_iter().find(|t| t.state == TaskState::Failed) {
                return t;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast(max_restarts: u32) -> Supervisor {
        Supervisor::with_policy(RestartPolicy {
            max_restarts,
            window: Duration::from_secs(3600),
            backoff: Duration::from_millis(1),
        })
    }

    #[tokio::test]
    async fn a_task_that_panics_once_is_restarted_and_its_cause_kept() {
        let sup = fast(3);
        let runs = Arc::new(AtomicU32::new(0));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let done_tx = Arc::new(Mutex::new(Some(done_tx)));
        let r = runs.clone();
        let _h = sup.supervise("maintenance", move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let done = done_tx.clone();
            async move {
                if n == 0 {
                    panic!("date overflow in run {n}");
                }
                if let Some(tx) = done.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                std::future::pending::<()>().await;
            }
        });
        done_rx.await.unwrap();
        let report = sup.report();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].state, TaskState::Running);
        assert_eq!(report[0].restarts, 1);
        assert_eq!(report[0].last_panic.as_deref(), Some("date overflow in run 0"));
    }

    #[tokio::test]
    async fn a_task_that_keeps_panicking_fails_for_good_and_says_so() {
        let sup = fast(2);
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let h = sup.supervise("writer", move || {
            r.fetch_add(1, Ordering::SeqCst);
            async { panic!("always") }
        });
        let failed = sup.failed().await;
        h.await.unwrap();
        assert_eq!(failed.name, "writer");
        assert_eq!(failed.state, TaskState::Failed);
        assert_eq!(runs.load(Ordering::SeqCst), 3, "the first run and two restarts");
    }

    #[tokio::test]
    async fn a_task_that_returns_is_stopped_not_restarted() {
        let sup = fast(2);
        sup.supervise("dispatcher", || async {}).await.unwrap();
        assert_eq!(sup.report()[0].state, TaskState::Stopped);
    }

    #[tokio::test]
    async fn log_panic_reports_a_panic_instead_of_unwinding() {
        assert!(log_panic("writer", async {}).await);
        assert!(!log_panic("writer", async { panic!("boom") }).await);
    }
}
