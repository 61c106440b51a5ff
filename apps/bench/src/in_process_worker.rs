//! The worker of the throughput workloads, in the benchmark's own process (as the peers'
//! harness starts its worker): the app's router and `vqs_axum::Workers` — dispatcher,
//! consumer route in process, tracked run, ack, and the maintenance loop — exactly as
//! `web serve` starts them, with a probe consumer of the given maxConcurrency.

use anyhow::Result;
use vqs::{DispatcherConfig, Queue, VercelConfig};
use vqs_axum::Workers;

use crate::completions::Completions;

static GLOBAL_LIMIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--global-limit`: the workers' concurrency is the trigger's `maxConcurrency` (one limit
/// across processes), not each worker's own (`VQS_WORKER_CONCURRENCY`).
pub fn set_global_limit(global: bool) {
    GLOBAL_LIMIT.store(global, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the workers' concurrency is one limit across processes (`--global-limit`).
pub fn global_limit() -> bool {
    GLOBAL_LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// A `vercel.json` with one trigger, the probe consumer route: with `--global-limit`, at
/// `maxConcurrency` = `max_concurrency`; else without one (the worker's own limit is
/// `VQS_WORKER_CONCURRENCY`).
pub fn probe_vercel_json(max_concurrency: u32) -> String {
    let limit = if global_limit() { format!(r#","maxConcurrency":{max_concurrency}"#) } else { String::new() };
    format!(
        r#"{{"functions":{{"api/queue/probe.rs":{{"experimentalTriggers":[{{"type":"queue/v2beta","topic":"probe"{limit}}}]}}}}}}"#
    )
}

/// The worker's own concurrency setting for a worker at `concurrency`: `None` under
/// `--global-limit` (the trigger's `maxConcurrency` is the limit).
pub fn worker_concurrency(concurrency: u32) -> Option<u32> {
    (!global_limit()).then_some(concurrency)
}

pub fn probe_vercel(max_concurrency: u32) -> Result<VercelConfig> {
    Ok(VercelConfig::parse(&probe_vercel_json(max_concurrency))?)
}

/// The configuration of a serving process with no secrets and the default lease.
pub fn serving_config(database_url: &str, vercel_json: std::path::PathBuf) -> web::Config {
    web::Config {
        database_url: database_url.to_owned(),
        addr: ([127, 0, 0, 1], 0).into(),
        vercel_json,
        cron_secret: None,
        is_local_dev: false,
        queue_secret: None,
        admin_token: None,
        metrics_token: None,
        retention: vqs::RetentionConfig::default(),
        lease_seconds: 60,
        lifeline: Default::default(),
        retry_delay_seconds: None,
        vercel: Default::default(),
        server: Default::default(),
        group_concurrency: Default::default(),
        stats_rollup_seconds: 60,
        worker_concurrency: None,
    }
}

pub struct InProcessWorker {
    workers: Workers,
    pub completions: Completions,
}

impl InProcessWorker {
    /// Start a worker on `queue` with the probe consumer at `concurrency`.
    pub async fn start(queue: &Queue, concurrency: u32) -> Result<InProcessWorker> {
        InProcessWorker::start_grouped(queue, concurrency, None).await
    }

    /// [`InProcessWorker::start`] with the probe job at this group concurrency.
    pub async fn start_grouped(
        queue: &Queue,
        concurrency: u32,
        group_concurrency: Option<u32>,
    ) -> Result<InProcessWorker> {
        let config = serving_config("", "vercel.json".into());
        let mut settings = web::runtime::settings(&config);
        if let Some(n) = group_concurrency {
            settings.job_group_concurrency.insert("probe".into(), n);
        }
        settings.worker_concurrency = worker_concurrency(concurrency);
        let state = vqs_axum::VqsState::new(queue.clone(), probe_vercel(concurrency)?, settings);
        let completions = Completions::default();
        let router = completions.layer(web::app(state.clone()));
        let workers = Workers::start(&state, router, DispatcherConfig::default()).await?;
        Ok(InProcessWorker { workers, completions })
    }

    /// Stop taking work and let in-flight deliveries finish.
    pub async fn stop(self) {
        self.workers.stop().await;
    }
}
