//! Throughput against the backlog: with `backlog` messages waiting, time the processing of
//! the first `n` at concurrency C. The backlog is loaded through the bulk path (timed too,
//! for information) within a time budget: a backend that loads too slowly for it is
//! measured with the backlog it reached, and the line says so. On PostgreSQL the load is
//! followed by `ANALYZE` and a `CHECKPOINT`, both untimed. The end is the moment the consumer route answered the n-th job (after
//! its ack was written), and the store is asked afterwards whether that many were acked —
//! a count over a million rows would not fit inside the timed window.

use std::time::Duration;

use anyhow::Result;
use jobs::Probe;
use serde_json::json;
use tokio::time::Instant;

use crate::bench_db::Target;
use crate::in_process_worker::InProcessWorker;
use crate::line::{Emitter, log, r1, r3};
use crate::{bulk, store_reads};

/// One scaling measurement: `backlog` loaded (within `budget`), then the first `n` processed
/// at concurrency `c`; `round` of `--scaling-rounds`.
pub struct ScalingOpts {
    pub backlog: usize,
    pub n: usize,
    pub c: u32,
    pub budget: Duration,
    pub round: u32,
}

pub async fn scaling(target: &Target, out: &Emitter, o: ScalingOpts) -> Result<()> {
    let ScalingOpts { backlog, n, c, budget, round } = o;
    log(&format!("{}: scaling backlog={backlog} n={n} c={c} round {round} (load budget {budget:?})", out.system()));
    let db = target.fresh().await?;
    let producer = db.open().await?;
    let job = producer.queue.job(Probe);
    let l0 = Instant::now();
    let mut loaded = 0;
    let mut reported = l0;
    while loaded < backlog && (loaded < n || l0.elapsed() < budget) {
        let k = (backlog - loaded).min(10 * bulk::CHUNK);
        bulk::enqueue(&job, k).await?;
        loaded += k;
        if reported.elapsed() >= Duration::from_secs(10) {
            reported = Instant::now();
            log(&format!("  loaded {loaded} of {backlog} in {:.0} s", l0.elapsed().as_secs_f64()));
        }
    }
    let load_s = l0.elapsed().as_secs_f64();
    let n = n.min(loaded);
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
    let finished = worker.completions.wait_for(n, p0 + Duration::from_secs(300)).await;
    let process_s = p0.elapsed().as_secs_f64();
    worker.stop().await;
    let acked = store_reads::succeeded(&consumer.queue).await?;
    consumer.close().await;
    db.drop().await?;
    out.emit(
        "scaling",
        json!({
            "round": round,
            "backlog": loaded,
            "backlog_target": backlog,
            "load_capped": loaded < backlog,
            "n": n,
            "concurrency": c,
            "process_per_s": r1(n as f64 / process_s),
            "process_s": r3(process_s),
            "load_s": r3(load_s),
            "enqueue_per_s": r1(loaded as f64 / load_s),
            "acked_after": acked,
            "timed_out": !finished || acked < n,
        }),
    );
    Ok(())
}
