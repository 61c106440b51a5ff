//! The peers' workloads A and A' (`throughputBulk` and `throughputSingle` in
//! `node/harness.js`), step for step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use jobs::{Probe, ProbeParams};
use serde_json::json;
use tokio::time::Instant;

use crate::bench_db::Target;
use crate::in_process_worker::InProcessWorker;
use crate::line::{Emitter, log, r1, r3};
use crate::{bulk, store_reads};

/// Workload A: bulk-enqueue `n` probes (timed), then start a worker at concurrency `c` and
/// time from its start until the store reports all `n` completed.
pub async fn bulk(target: &Target, out: &Emitter, n: usize, c: u32, timeout: Duration) -> Result<()> {
    log(&format!("{}: throughput bulk n={n} c={c}", out.system()));
    // Warm-up (not timed): one bulk chunk through a fresh producer, then a fresh database.
    {
        let db = target.fresh().await?;
        let producer = db.open().await?;
        bulk::enqueue_chunk(&producer.queue.job(Probe), bulk::CHUNK).await?;
        producer.close().await;
        db.drop().await?;
    }
    let db = target.fresh().await?;
    let producer = db.open().await?;
    let job = producer.queue.job(Probe);
    let e0 = Instant::now();
    bulk::enqueue(&job, n).await?;
    let enqueue_s = e0.elapsed().as_secs_f64();
    // Not timed: planner statistics in a steady state, as the peers ANALYZE their job table.
    producer.analyze().await?;
    producer.close().await;

    log(&format!("  enqueued in {enqueue_s:.2} s; processing"));
    let p0 = Instant::now();
    let deadline = p0 + timeout;
    // The worker opens its own connections inside the timed window, as the peers' do.
    let consumer = db.open().await?;
    let worker = InProcessWorker::start(&consumer.queue, c).await?;
    // The route's answers say when to look; the store says whether it is done.
    worker.completions.wait_for(n, deadline).await;
    let done = store_reads::wait_succeeded(&consumer.queue, n, deadline, Duration::from_millis(2)).await?;
    let process_s = p0.elapsed().as_secs_f64();
    let first_push = worker.completions.first_push();
    worker.stop().await;
    // Not timed: every attempt was recorded.
    let executions = store_reads::successful_executions(&consumer.queue, n + 1).await?;
    consumer.close().await;
    db.drop().await?;
    out.emit(
        "throughput",
        json!({
            "enqueue_mode": "bulk",
            "n": n,
            "concurrency": c,
            "enqueue_per_s": r1(n as f64 / enqueue_s),
            "process_per_s": r1(done as f64 / process_s),
            "enqueue_s": r3(enqueue_s),
            "process_s": r3(process_s),
            "worker_start_ms": first_push.map(|t| r1((t - p0).as_secs_f64() * 1000.0)),
            "completed": done,
            "executions_success": executions,
            "timed_out": done < n,
            "bulk_chunk": bulk::CHUNK,
        }),
    );
    Ok(())
}

/// Workload A': `perform_later` one job at a time from `inflight` concurrent callers, until
/// `n` jobs or `timeout`, after 50 untimed warm-up calls. Nothing consumes meanwhile.
pub async fn single(target: &Target, out: &Emitter, n: usize, inflight: usize, timeout: Duration) -> Result<()> {
    log(&format!("{}: single enqueue n<={n} inflight={inflight}", out.system()));
    let db = target.fresh().await?;
    let producer = db.open().await?;
    let job = producer.queue.job(Probe);
    for _ in 0..50 {
        job.perform_later(ProbeParams::default()).await?;
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let e0 = Instant::now();
    let deadline = e0 + timeout;
    let lane = || async {
        while next.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            next.fetch_add(1, Ordering::Relaxed);
            job.perform_later(ProbeParams::default()).await?;
            done.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>(())
    };
    futures::future::try_join_all((0..inflight.max(1)).map(|_| lane())).await?;
    let enqueue_s = e0.elapsed().as_secs_f64();
    producer.close().await;
    db.drop().await?;
    let done = done.load(Ordering::Relaxed);
    out.emit(
        "throughput",
        json!({
            "enqueue_mode": "single",
            "n": done,
            "n_target": n,
            "enqueue_inflight": inflight,
            "concurrency": null,
            "enqueue_per_s": r1(done as f64 / enqueue_s),
            "process_per_s": null,
            "enqueue_s": r3(enqueue_s),
            "timed_out": done < n,
        }),
    );
    Ok(())
}
