//! The background work of a serving process: the dispatcher (pushing to the consumer
//! routes through the app's own router, or over HTTP to a URL), the cron scheduler, the
//! runtime schedule loop, the maintenance loop and the lifeline heartbeat, each under the
//! core's `Supervisor`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use vqs::{ConsumerConfig, CronScheduler, DispatcherConfig, Queue, RetentionConfig, ScheduledCron};

use crate::http_pusher::{AppPusher, HttpPusher};
use crate::in_process::{InProcessCronInvoker, InProcessPusher};
use crate::state::VqsState;

/// Why the workers or the app could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// vercel.json names a cron or an in-process consumer route the router does not serve.
    #[error("{0}")]
    MissingRoute(String),
    /// The store refused a start-up step (heartbeat, consumer registration).
    #[error("{what}: {source}")]
    Queue {
        /// The step that failed.
        what: &'static str,
        /// The store's error.
        #[source]
        source: vqs::StoreError,
    },
    /// A cron of vercel.json could not be scheduled.
    #[error("reading the crons of vercel.json: {0}")]
    Crons(String),
    /// The HTTP client of the pusher could not be built.
    #[error("building the HTTP pusher: {0}")]
    Http(#[from] reqwest::Error),
    /// Routing a probe request through the router failed.
    #[error("probing a route: {0}")]
    Probe(String),
}

/// Refuse to start when a cron of vercel.json has no route in this app (every tick would be
/// a 404) or a queue trigger's in-process route is missing (every delivery would fail). A
/// route is looked up with `OPTIONS`, which runs no handler: an unknown path is 404.
pub async fn require_routes(router: &axum::Router, state: &VqsState) -> Result<(), StartError> {
    use tower::ServiceExt;
    let exists = |path: String| {
        let router = router.clone();
        async move {
            let req = http::Request::options(path.as_str())
                .body(axum::body::Body::empty())
                .map_err(|e| StartError::Probe(e.to_string()))?;
            let status = router.oneshot(req).await.map_err(|e| StartError::Probe(e.to_string()))?.status();
            Ok::<_, StartError>(status != http::StatusCode::NOT_FOUND)
        }
    };
    for c in &state.vercel.crons {
        if !exists(c.path.clone()).await? {
            return Err(StartError::MissingRoute(format!(
                "vercel.json: the cron {} has no route in this app: fix the path, or add the cron with \
                 `cargo xtask new-cron <name>` (cron routes are GET /api/cron/<name>)",
                c.path
            )));
        }
    }
    for c in consumers(state).iter().filter(|c| c.route_path.starts_with('/')) {
        if !exists(c.route_path.clone()).await? {
            return Err(StartError::MissingRoute(format!(
                "vercel.json: the queue trigger for topic {} names {}, which has no route in this app: \
                 fix the functions key, or add the job with `cargo xtask new-job <name>`",
                c.topic_pattern, c.route_path
            )));
        }
    }
    Ok(())
}

/// The background work of a serving process.
#[derive(Debug)]
pub struct Workers {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The push consumers of `vercel.json` as this process's dispatcher runs them: at most
/// `VQS_WORKER_CONCURRENCY` jobs of each at once here when set; leased for
/// `VQS_LEASE_SECONDS`; a job's consumer route served by this process records each attempt
/// with its lease (one write fewer per job, and never a job running before its row exists).
pub fn consumers(state: &VqsState) -> Vec<ConsumerConfig> {
    let job_routes: std::collections::HashSet<String> =
        state.job_topics.iter().map(|topic| format!("/api/queue/{topic}")).collect();
    state
        .vercel
        .queue_triggers
        .iter()
        .map(|t| {
            let c = ConsumerConfig::from(t).with_worker_concurrency(state.worker_concurrency);
            // The job type served by the route gives the group concurrency.
            let group_concurrency = state
                .job_group_concurrency
                .iter()
                .find(|(topic, _)| c.route_path == format!("/api/queue/{topic}"))
                .map(|(_, n)| *n);
            // And its group rate limit (the job type's default, registered when the queue
            // opened; an operator's override wins at each claim).
            let group_rate_limit = c
                .route_path
                .strip_prefix("/api/queue/")
                .filter(|topic| state.job_topics.iter().any(|t| t == topic))
                .and_then(|topic| state.queue.limit_defaults_known(topic).group_rate_limit);
            ConsumerConfig {
                visibility: state.lease,
                starts_executions: job_routes.contains(&c.route_path),
                group_concurrency,
                group_rate_limit,
                ..c
            }
        })
        .collect()
}

impl Workers {
    /// Start the dispatcher (pushing through `router` in process), the cron scheduler
    /// (calling `router` in process), the maintenance loop and the heartbeat, each supervised by
    /// `state.tasks`: a panic is logged and the task restarted (health shows it).
    pub async fn start(
        state: &VqsState,
        router: axum::Router,
        mut dispatcher: DispatcherConfig,
    ) -> Result<Workers, StartError> {
        let (shutdown, rx) = watch::channel(false);
        // Crash rescue: this process beats, and the leases of the jobs it runs name it.
        let lifeline = vqs::Lifeline::new(state.queue.clone(), state.lifeline);
        lifeline
            .run_once()
            .await
            .map_err(|source| StartError::Queue { what: "registering this process's heartbeat", source })?;
        dispatcher.lease_holder = Some(lifeline.process_id().to_owned());
        let consumers = consumers(state);
        vqs::register_consumers(&state.queue, &consumers)
            .await
            .map_err(|source| StartError::Queue { what: "registering consumers", source })?;
        for c in &consumers {
            tracing::info!(topic = %c.topic_pattern, route = %c.route_path, consumer_group = %c.consumer_group, "push consumer");
        }
        let pusher = Arc::new(AppPusher {
            in_process: InProcessPusher::new(router.clone()),
            http: HttpPusher::new(state.queue_secret.clone(), state.lease)?,
        });
        let supervisor = &state.tasks;
        let mut tasks = vec![{
            let (queue, rx) = (state.queue.clone(), rx.clone());
            supervisor.supervise("dispatcher", move || {
                let pusher: Arc<dyn vqs::Pusher> = pusher.clone();
                vqs::run_dispatcher(queue.clone(), consumers.clone(), pusher, dispatcher.clone(), rx.clone())
            })
        }];
        tasks.push({
            let (lifeline, rx) = (lifeline.clone(), rx.clone());
            supervisor.supervise("lifeline", move || lifeline.clone().run(rx.clone()))
        });
        tasks.push({
            // Cancels reach this process's running jobs by NOTIFY where the backend has it,
            // else by this poll (one statement every half second while jobs run).
            let (queue, rx) = (state.queue.clone(), rx.clone());
            supervisor.supervise("cancel-watch", move || vqs::watch_cancellations(queue.clone(), rx.clone()))
        });
        tasks.push({
            // Pauses and resumes of topics reach this process's dispatchers by NOTIFY where
            // the backend has it, else by this poll (one small read a second).
            let (queue, rx) = (state.queue.clone(), rx.clone());
            supervisor.supervise("pause-watch", move || vqs::watch_topic_controls(queue.clone(), rx.clone()))
        });
        tasks.push({
            // Runtime schedules (`queue.schedules()`): every process may fire them, a tick
            // still fires once. A queue that publishes to a remote service cannot (yet).
            let (queue, rx) = (state.queue.clone(), rx.clone());
            supervisor.supervise("schedules", move || vqs::run_schedules(queue.clone(), rx.clone()))
        });
        let crons = ScheduledCron::from_config(&state.vercel).map_err(|e| StartError::Crons(e.to_string()))?;
        if !crons.is_empty() {
            if state.cron_auth.secret().is_none() && !state.cron_auth.is_local_dev() {
                tracing::warn!(
                    "CRON_SECRET is unset and IS_LOCAL_DEV is not true: cron routes refuse every call, the scheduler's too; \
                     set CRON_SECRET (or IS_LOCAL_DEV=true on a developer machine)"
                );
            }
            for c in &crons {
                tracing::info!(cron.path = %c.path, schedule = %c.schedule, "cron scheduled");
            }
            let invoker = Arc::new(InProcessCronInvoker::new(router, state.cron_auth.clone()));
            let (queue, rx) = (state.queue.clone(), rx.clone());
            tasks.push(supervisor.supervise("scheduler", move || {
                let scheduler = CronScheduler::new(queue.clone(), crons.clone(), invoker.clone());
                vqs::run_cron_scheduler(scheduler, rx.clone(), Duration::from_secs(25))
            }));
        }
        tasks.push({
            // The dashboard's per-minute figures: one pass per interval; on PostgreSQL one
            // process at a time does the work, the others' passes skip.
            let (queue, every, rx) = (state.queue.clone(), state.stats_rollup_interval, rx.clone());
            supervisor.supervise("stats-rollup", move || stats_rollup_loop(queue.clone(), every, rx.clone()))
        });
        let (queue, retention) = (state.queue.clone(), state.retention.clone());
        tasks.push(
            supervisor.supervise("maintenance", move || maintenance_loop(queue.clone(), retention.clone(), rx.clone())),
        );
        Ok(Workers { shutdown, tasks })
    }

    /// A handle that stops the workers when sent `true` (as [`Workers::stop`] begins).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Stop taking work; let in-flight deliveries finish (up to the dispatcher's grace period).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Every `every`, one rollup of the executions into the per-minute figures (`vqs::stats`),
/// the first one interval after start: a pass samples each topic's depth, which counts every
/// waiting delivery (0.8 s of a core for a million waiting on SQLite), and a process that
/// starts under a deep backlog — a deploy, a restart — has better use for its first
/// moments (the scaling benchmark ran at half speed with a million waiting, BENCHMARKS.md).
async fn stats_rollup_loop(queue: Queue, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = queue.stats_rollup().await {
            tracing::warn!(error = %e, "stats rollup failed");
        }
    }
}

/// Every 15 s, one maintenance pass, the first one 15 s after start; while a pass hits its
/// batch limit (a backlog to prune), the next follows after a short pause instead, so a
/// backlog drains in bounded batches with the queue's own work running in between.
///
/// Not at start, for the reason the rollup waits (above): with a million messages kept, a
/// pass walks the count limit's million index entries (0.8 s of a PostgreSQL core here,
/// then remembered for a minute: `CountLimitBoundary`), and every process of a deploy starts
/// at once, under the deepest backlog it will see. Nothing in a pass is urgent: an
/// abandoned attempt is closed by the claim that leases its message again.
async fn maintenance_loop(queue: Queue, retention: RetentionConfig, mut shutdown: watch::Receiver<bool>) {
    let mut pause = MAINTENANCE_EVERY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
        let more = match queue.maintenance(&retention).await {
            Ok(report) => report.hit_batch_limit(retention.batch),
            Err(e) => {
                tracing::warn!(error = %e, "maintenance failed");
                false
            }
        };
        pause = if more { Duration::from_millis(250) } else { MAINTENANCE_EVERY };
    }
}

/// The maintenance loop's interval.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(15);
