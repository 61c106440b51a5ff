//! Several worker processes on one database (issue 22: "three worker processes on one
//! database at least as fast as one"): bulk-enqueue N probes, start K worker processes at
//! once (each this binary in its worker role, serving as `web serve` does, each at
//! concurrency C of its own), and wait until the store reports all N acknowledged. Each K
//! gets a fresh database; K = 1 and K = 3 in one run make the ratio.
//!
//! Two figures per K, both ending at the last attempt's end as its execution record says
//! (the workers' wall clock, this machine's; the store is polled only to know when to
//! look): `process_per_s` from the moment the processes are spawned (their start-up
//! included, as the throughput workload includes its worker's), and
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
    let spawned_at = chrono::Utc::now();
    let deadline = p0 + timeout;
    // A process that fails to start is killed with the others when they drop; the run's
    // databases are dropped by `Target::drop_all`.
    let workers = futures::future::try_join_all((0..k).map(|_| WorkerProcess::start(db.url(), c))).await?;
    let started_ms = p0.elapsed().as_secs_f64() * 1000.0;
    let done = store_reads::wait_succeeded(&producer.queue, n, deadline, Duration::from_millis(200)).await;
    let polled_s = p0.elapsed().as_secs_f64();
    futures::future::join_all(workers.into_iter().map(WorkerProcess::stop)).await;
    let done = done?;
    // Not timed: when the attempts ran, from their execution records.
    let times = store_reads::execution_times(&producer.queue, n + 10).await?;
    let first_start = times.values().map(|(s, _)| *s).min();
    let last_end = times.values().filter_map(|(_, f)| *f).max();
    let secs = |d: chrono::TimeDelta| d.num_microseconds().map(|us| us as f64 / 1e6);
    let window_s = first_start.zip(last_end).and_then(|(a, b)| secs(b - a));
    // Timed out: what was done by the last poll.
    let process_s = last_end.filter(|_| done >= n).and_then(|b| secs(b - spawned_at)).unwrap_or(polled_s);
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
