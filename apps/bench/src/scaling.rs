//! Throughput against the backlog: time the processing of `n` jobs at concurrency C with
//! `backlog` more waiting behind them for the whole window — so a small backlog is not
//! drained inside the window (its last claims smaller than the rest) while a large one is
//! not. The jobs are loaded through the bulk path (timed too,
//! for information) within a time budget: a backend that loads too slowly for it is
//! measured with the backlog it reached, and the line says so. On PostgreSQL the load is
//! followed by `ANALYZE` and a `CHECKPOINT`, both untimed.
//!
//! The worker first processes `warmup` jobs, loaded first of all: what the figure
//! varies is the backlog, not the worker's start — the store opened, caches cold after the
//! load, the first maintenance pass (whose count-limit reads walk up to a million index
//! entries) — which took 6–25% of a half-second window with a million loaded and almost
//! nothing with 10,000. The start is reported beside, as `start_per_s`. The end is the moment
//! the consumer route answered the last job (after its ack was written), and the store is
//! asked afterwards whether that many were acked — a count over a million rows would not
//! fit inside the timed window.

use std::time::Duration;

use anyhow::Result;
use jobs::Probe;
use serde_json::json;
use tokio::time::Instant;

use crate::bench_db::Target;
use crate::in_process_worker::InProcessWorker;
use crate::line::{Emitter, log, r1, r3};
use crate::{bulk, store_reads};

/// One scaling measurement: `warmup`, `n` and `backlog` loaded in that order (within
/// `budget`), then `warmup` processed at concurrency `c`, then the next `n` timed with the
/// backlog still waiting behind them; `round` of `--scaling-rounds`.
pub struct ScalingOpts {
    pub backlog: usize,
    pub n: usize,
    pub warmup: usize,
    pub c: u32,
    pub budget: Duration,
    pub round: u32,
}

pub async fn scaling(target: &Target, out: &Emitter, o: ScalingOpts) -> Result<()> {
    let ScalingOpts { backlog, n, warmup, c, budget, round } = o;
    log(&format!(
        "{}: scaling backlog={backlog} n={n} warmup={warmup} c={c} round {round} (load budget {budget:?})",
        out.system()
    ));
    let db = target.fresh().await?;
    let producer = db.open().await?;
    let job = producer.queue.job(Probe);
    let l0 = Instant::now();
    let mut loaded = 0;
    let mut reported = l0;
    let target_load = backlog + warmup + n;
    while loaded < target_load && (loaded < n + warmup || l0.elapsed() < budget) {
        let k = (target_load - loaded).min(10 * bulk::CHUNK);
        bulk::enqueue(&job, k).await?;
        loaded += k;
        if reported.elapsed() >= Duration::from_secs(10) {
            reported = Instant::now();
            log(&format!("  loaded {loaded} of {target_load} in {:.0} s", l0.elapsed().as_secs_f64()));
        }
    }
    let load_s = l0.elapsed().as_secs_f64();
    let warmup = warmup.min(loaded.saturating_sub(n));
    let n = n.min(loaded - warmup);
    // Waiting behind the timed jobs, all through the timed window.
    let waiting = loaded - warmup - n;
    producer.analyze().await?;
    producer.close().await;
    // PostgreSQL: write the load out now, so that the checkpoint of a million inserts does
    // not run during the measurement (a backlog built up over time has long been
    // checkpointed); the backlog's size is what is being varied, not the load's aftermath.
    if let Some(server) = target.server() {
        vqs_postgres::checkpoint(server).await?;
    }

    let p0 = Instant::now();
    let consumer = db.open().await?;
    let worker = InProcessWorker::start(&consumer.queue, c).await?;
    let deadline = p0 + Duration::from_secs(300);
    let warm = worker.completions.wait_for(warmup, deadline).await;
    let w1 = Instant::now();
    let start_s = (w1 - p0).as_secs_f64();
    let finished = warm && worker.completions.wait_for(warmup + n, deadline).await;
    let process_s = w1.elapsed().as_secs_f64();
    worker.stop().await;
    let acked = store_reads::succeeded(&consumer.queue).await?;
    consumer.close().await;
    db.drop().await?;
    out.emit(
        "scaling",
        json!({
            "round": round,
            "backlog": waiting,
            "backlog_target": backlog,
            "load_capped": waiting < backlog,
            "n": n,
            "warmup": warmup,
            "start_per_s": (warmup > 0).then(|| r1(warmup as f64 / start_s)),
            "concurrency": c,
            "process_per_s": r1(n as f64 / process_s),
            "process_s": r3(process_s),
            "load_s": r3(load_s),
            "enqueue_per_s": r1(loaded as f64 / load_s),
            "acked_after": acked,
            "timed_out": !finished || acked < warmup + n,
        }),
    );
    Ok(())
}
