//! The peers' workload B (`latency` in `node/harness.js`): an idle worker at concurrency C
//! in its own process; the producer sends untimed warm-up jobs, then N jobs one at a time
//! on an open-loop schedule `gap` apart, each call awaited. Latency = handler start − the
//! wall-clock time taken just before the enqueue call.
//!
//! The probe's params have no room for a timestamp, so the producer keeps each message's
//! send time and the worker's side is read back from the store: the execution row's
//! `finished_at`. For a no-op probe that is the handler's start plus the microseconds the
//! handler takes, so the figure errs on the slow side; the row's `started_at` (taken before
//! the `running` row is written, so before the handler starts) is reported beside it.
//! Both processes read CLOCK_REALTIME (`Utc::now`), which, like the peers' CLOCK_MONOTONIC,
//! is one clock for the whole machine.

use std::time::Duration;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use jobs::{Probe, ProbeParams};
use serde_json::json;
use tokio::time::Instant;

use crate::bench_db::{OpenQueue, Target};
use crate::in_process_worker::InProcessWorker;
use crate::line::{Emitter, log, percentile, r1, r3};
use crate::store_reads;
use crate::worker_process::WorkerProcess;

#[derive(Debug, Clone, Copy)]
pub struct LatencyOpts {
    pub n: usize,
    pub gap: Duration,
    pub concurrency: u32,
    pub warmup: usize,
    pub timeout: Duration,
}

/// Where the worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In a process of its own (the peers' definition).
    SeparateProcess,
    /// In the producer's process, sharing its queue (SQLite's one-process deployment).
    SameProcess,
}

enum Worker {
    Process(WorkerProcess),
    InProcess(InProcessWorker),
}

pub async fn latency(target: &Target, out: &Emitter, o: LatencyOpts, placement: Placement) -> Result<()> {
    let gap_ms = o.gap.as_secs_f64() * 1000.0;
    log(&format!("{}: latency n={} gap={gap_ms}ms c={} ({placement:?})", out.system(), o.n, o.concurrency));
    let db = target.fresh().await?;
    let (worker, producer) = match placement {
        Placement::SeparateProcess => {
            let w = WorkerProcess::start(db.url(), o.concurrency).await?;
            (Worker::Process(w), db.open().await?)
        }
        Placement::SameProcess => {
            let p = db.open().await?;
            (Worker::InProcess(InProcessWorker::start(&p.queue, o.concurrency).await?), p)
        }
    };
    let result = measure(&producer, o).await;
    let memory = match &worker {
        Worker::Process(w) => w.memory().ok(),
        Worker::InProcess(_) => None,
    };
    match worker {
        Worker::Process(w) => w.stop().await,
        Worker::InProcess(w) => w.stop().await,
    }
    let sent = result?;
    let recorded = store_reads::execution_times(&producer.queue, o.warmup + o.n + 10).await?;
    producer.close().await;
    db.drop().await?;

    let mut to_start = Vec::with_capacity(sent.sent.len());
    let mut to_tracked = Vec::with_capacity(sent.sent.len());
    for (id, t) in &sent.sent {
        if let Some((started, Some(finished))) = recorded.get(id) {
            to_start.push(ms(*finished - *t));
            to_tracked.push(ms(*started - *t));
        }
    }
    to_start.sort_by(f64::total_cmp);
    to_tracked.sort_by(f64::total_cmp);
    let received = to_start.len();
    let mean = to_start.iter().sum::<f64>() / received.max(1) as f64;
    out.emit(
        "latency",
        json!({
            "n": o.n,
            "received": received,
            "concurrency": o.concurrency,
            "gap_ms": gap_ms,
            "p50_ms": r3(percentile(&to_start, 50.0)),
            "p95_ms": r3(percentile(&to_start, 95.0)),
            "p99_ms": r3(percentile(&to_start, 99.0)),
            "max_ms": r3(to_start.last().copied().unwrap_or(f64::NAN)),
            "mean_ms": r3(mean),
            "send_rate_per_s": r1(o.n as f64 / sent.send_s),
            "late_sends": sent.late,
            "timed_out": received < o.n,
            "worker": match placement {
                Placement::SeparateProcess => "separate process (web::runtime::serve)",
                Placement::SameProcess => "producer's process, same queue",
            },
            "handler_start": "execution row finished_at of the no-op probe (upper bound)",
            "tracked_start_p50_ms": r3(percentile(&to_tracked, 50.0)),
            "tracked_start_p99_ms": r3(percentile(&to_tracked, 99.0)),
            "worker_rss_kb": memory.map(|m| m.rss_kb),
            "worker_hwm_kb": memory.map(|m| m.hwm_kb),
        }),
    );
    Ok(())
}

fn ms(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

struct Sent {
    sent: Vec<(String, DateTime<Utc>)>,
    send_s: f64,
    late: usize,
}

async fn measure(producer: &OpenQueue, o: LatencyOpts) -> Result<Sent> {
    let queue = &producer.queue;
    let job = queue.job(Probe);
    // Warm-up (not measured).
    for _ in 0..o.warmup {
        job.perform_later(ProbeParams::default()).await?;
        tokio::time::sleep(o.gap).await;
    }
    let seen = store_reads::wait_succeeded(
        queue,
        o.warmup,
        Instant::now() + Duration::from_secs(30),
        Duration::from_millis(10),
    )
    .await?;
    if seen < o.warmup {
        bail!("warm-up jobs not all seen in 30s ({seen} of {})", o.warmup);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Measured: job i is due at t0 + i·gap; each call is awaited, so a slow enqueue delays
    // the following ones.
    let mut sent = Vec::with_capacity(o.n);
    let mut late = 0;
    let t0 = Instant::now();
    for i in 0..o.n {
        let due = t0 + o.gap * i as u32;
        let now = Instant::now();
        if due > now && due - now >= Duration::from_millis(1) {
            tokio::time::sleep(Duration::from_millis((due - now).as_millis() as u64)).await;
        }
        if Instant::now().saturating_duration_since(due) > o.gap {
            late += 1;
        }
        let t = Utc::now();
        let r = job.perform_later(ProbeParams::default()).await?;
        sent.push((r.message_id, t));
    }
    let send_s = t0.elapsed().as_secs_f64();
    store_reads::wait_succeeded(queue, o.warmup + o.n, Instant::now() + o.timeout, Duration::from_millis(20)).await?;
    Ok(Sent { sent, send_s, late })
}
