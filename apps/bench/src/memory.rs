//! A worker process's memory: resident size (VmRSS) and its peak (VmHWM) from
//! `/proc/<pid>/status`, once idle after start-up and 100 warm-up jobs, and again after `n`
//! jobs were bulk-enqueued into it and processed at concurrency C.

use std::time::Duration;

use anyhow::Result;
use jobs::Probe;
use serde_json::json;
use tokio::time::Instant;

use crate::bench_db::Target;
use crate::line::{Emitter, log, r1, r3};
use crate::worker_process::WorkerProcess;
use crate::{bulk, store_reads};

pub async fn memory(target: &Target, out: &Emitter, n: usize, c: u32) -> Result<()> {
    log(&format!("{}: worker memory n={n} c={c}", out.system()));
    let db = target.fresh().await?;
    let worker = WorkerProcess::start(db.url(), c).await?;
    let producer = db.open().await?;
    let job = producer.queue.job(Probe);
    let warmup = 100;
    bulk::enqueue(&job, warmup).await?;
    store_reads::wait_succeeded(
        &producer.queue,
        warmup,
        Instant::now() + Duration::from_secs(30),
        Duration::from_millis(10),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = worker.memory()?;
    let t0 = Instant::now();
    bulk::enqueue(&job, n).await?;
    let done = store_reads::wait_succeeded(
        &producer.queue,
        warmup + n,
        Instant::now() + Duration::from_secs(120),
        Duration::from_millis(20),
    )
    .await?;
    let drain_s = t0.elapsed().as_secs_f64();
    let load = worker.memory()?;
    worker.stop().await;
    producer.close().await;
    db.drop().await?;
    out.emit(
        "memory",
        json!({
            "n": n,
            "concurrency": c,
            "rss_idle_kb": idle.rss_kb,
            "hwm_idle_kb": idle.hwm_kb,
            "rss_after_load_kb": load.rss_kb,
            "hwm_load_kb": load.hwm_kb,
            "enqueue_and_drain_s": r3(drain_s),
            "enqueue_and_drain_per_s": r1(n as f64 / drain_s),
            "timed_out": done < warmup + n,
        }),
    );
    Ok(())
}
