//! Several worker processes on one database (issue 22: "three worker processes on one
//! database at least as fast as one"): bulk-enqueue N probes, start K worker processes at
//! once (each this binary in its worker role, serving as `web serve` does, each at
//! concurrency C of its own), and time until the store reports all N acknowledged. Each K
//! gets a fresh database; K = 1 and K = 3 in one run make the ratio.
//!
//! Two figures per K: `process_per_s` from the moment the processes are spawned (their
//! start-up included, as the throughput workload includes its worker's), and
//! `window_per_s` over the window the execution records span (the first attempt's start to
//! the last one's end), which leaves out start-up — K processes start slower than one on a
//! small machine, and that is not what is compared.

use std::time::Duration;

use anyhow::Result;
use jobs::Probe;
use serde_json::json;
use tokio::time::Instant;

use crate::bench_db::Target;
use crate::line::{Emitter, log, r1, r3};
use crate::worker_process::WorkerProcess;
use crate::{bulk, store_reads};

pub async fn processes(target: &Target, out: &Emitter, n: usize, k: usize, c: u32, timeout: Duration) -> Result<()> {
    log(&format!("{}: processes k={k} n={n} c={c} per process", out.system()));
    let db = target.fresh().await?;
    let producer = db.open().await?;
    bulk::enqueue(&producer.queue.job(Probe), n).await?;
    producer.analyze().await?;
    if let Some(server) = target.server() {
        // The load's checkpoint is not part of what is measured (as in the scaling workload).
        vqs_postgres::checkpoint(server).await?;
    }

    let p0 = Instant::now();
    let deadline = p0 + timeout;
    // A process that fails to start is killed with the others when they drop; the run's
    // databases are dropped by `Target::drop_all`.
    let workers = futures::future::try_join_all((0..k).map(|_| WorkerProcess::start(db.url(), c))).await?;
    let started_ms = p0.elapsed().as_secs_f64() * 1000.0;
    let done = store_reads::wait_succeeded(&producer.queue, n, deadline, Duration::from_millis(200)).await;
    let process_s = p0.elapsed().as_secs_f64();
    futures::future::join_all(workers.into_iter().map(WorkerProcess::stop)).await;
    let done = done?;
    // Not timed: the window the attempts span, from their execution records.
    let times = store_reads::execution_times(&producer.queue, n + 10).await?;
    let first_start = times.values().map(|(s, _)| *s).min();
    let last_end = times.values().filter_map(|(_, f)| *f).max();
    let window_s = match (first_start, last_end) {
        (Some(a), Some(b)) => (b - a).num_microseconds().map(|us| us as f64 / 1e6),
        _ => None,
    };
    producer.close().await;
    db.drop().await?;
    out.emit(
        "processes",
        json!({
            "enqueue_mode": "bulk",
            "n": n,
            "concurrency": c,
            "processes": k,
            "process_per_s": r1(done as f64 / process_s),
            "window_per_s": window_s.map(|w| r1(times.len() as f64 / w)),
            "process_s": r3(process_s),
            "window_s": window_s.map(r3),
            "started_ms": r1(started_ms),
            "completed": done,
            "executions": times.len(),
            "timed_out": done < n,
        }),
    );
    Ok(())
}
