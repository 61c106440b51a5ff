//! The benchmark (SQLite by default, `--postgres URL` for PostgreSQL): enqueue N `probe` jobs, drain them through the normal delivery path
//! (dispatcher → consumer route in process → tracked run → ack), then measure
//! enqueue→start latency with one job every ~2 ms into an idle worker.
//!
//! `cargo run --release -p web --bin vqs-bench -- --jobs 20000` (see BENCHMARKS.md).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use vqs::{Clock, DispatcherConfig, VercelConfig};

#[derive(Debug, Parser)]
#[command(about = "vqs SQLite benchmark: throughput and enqueue→start latency")]
struct Args {
    /// Jobs enqueued and drained in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Jobs in the latency run (one every ~2 ms).
    #[arg(long, default_value_t = 2_000)]
    latency_jobs: usize,
    /// maxConcurrency of the probe consumer.
    #[arg(long, default_value_t = 50)]
    concurrency: u32,
    /// Run on PostgreSQL: the server's URL without a database
    /// (`postgres://postgres@127.0.0.1:5432`); a fresh `vqs_bench_*` database is created.
    #[arg(long)]
    postgres: Option<String>,
    /// Print one JSON line per result instead of a table.
    #[arg(long)]
    json: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn succeeded(queue: &vqs::Queue) -> Result<i64> {
    Ok(queue.stats().await?.iter().filter(|s| s.topic == "probe").map(|s| s.succeeded).sum())
}

async fn wait_for(queue: &vqs::Queue, target: i64, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while succeeded(queue).await? < target {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {target} successes");
        // Poll rarely: the stats query scans the table and would compete for the CPU.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (system, url) = match &args.postgres {
        Some(server) => {
            let name = format!("vqs_bench_{}", uuid::Uuid::new_v4().simple());
            ("vqs-postgres", vqs_postgres::create_database(server, &name).await?)
        }
        None => ("vqs-sqlite", format!("sqlite://{}", dir.path().join("bench.db").display())),
    };
    let vercel = VercelConfig::parse(&format!(
        r#"{{"functions":{{"api/queue/probe.rs":{{"experimentalTriggers":[{{"type":"queue/v2beta","topic":"probe","maxConcurrency":{}}}]}}}}}}"#,
        args.concurrency
    ))?;
    let config = web::Config {
        database_url: url.clone(),
        addr: "127.0.0.1:0".parse()?,
        vercel_json: "vercel.json".into(),
        cron_secret: None,
        is_local_dev: false,
        queue_secret: None,
        admin_token: None,
        lease_seconds: 60,
    };
    let queue = web::runtime::open_queue(&url, Clock::system()).await?;
    let state = web::runtime::state(&config, queue.clone(), vercel);
    let router = web::app(state.clone());
    vqs::register_consumers(
        &queue,
        &state.vercel.queue_triggers.iter().map(vqs::ConsumerConfig::from).collect::<Vec<_>>(),
    )
    .await?;
    let job = queue.job(jobs::Probe);

    // 1. Enqueue, one at a time, nothing consuming.
    let n = args.jobs;
    let started = Instant::now();
    for _ in 0..n {
        job.perform_later(jobs::ProbeParams::default()).await?;
    }
    let enqueue_s = started.elapsed().as_secs_f64();
    // PostgreSQL: measure the steady state, with the planner's statistics as fresh as
    // autovacuum keeps them, not the first seconds after a bulk load into empty tables.
    if url.starts_with("postgres") {
        vqs_postgres::PgStore::connect(&url).await?.analyze().await?;
    }

    // 2. Drain through the dispatcher and the consumer route. The end is read from the
    // execution rows (the last `finished_at`), not from when the poll noticed.
    let started_at = chrono::Utc::now();
    let workers = web::runtime::Workers::start(&state, router.clone(), DispatcherConfig::default()).await?;
    wait_for(&queue, n as i64, Duration::from_secs(600)).await.context("draining")?;
    let last = queue
        .executions(vqs::store::ExecutionListParams { limit: 200, ..Default::default() })
        .await?
        .iter()
        .filter_map(|e| e.finished_at)
        .max()
        .context("no executions")?;
    let process_s = (last - started_at).num_microseconds().unwrap_or(1) as f64 / 1e6;

    // 3. Latency: one job every ~2 ms into the idle worker.
    let mut ids = Vec::with_capacity(args.latency_jobs);
    for _ in 0..args.latency_jobs {
        ids.push(job.perform_later(jobs::ProbeParams::default()).await?.message_id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_for(&queue, (n + args.latency_jobs) as i64, Duration::from_secs(120)).await.context("latency run")?;
    workers.stop().await;
    let mut latencies = Vec::with_capacity(ids.len());
    for id in &ids {
        let msg = queue.message(id).await?.context("message vanished")?;
        let exec = queue
            .executions(vqs::store::ExecutionListParams {
                message_id: Some(id.clone()),
                limit: 1,
                ..Default::default()
            })
            .await?;
        let exec = exec.first().context("no execution")?;
        latencies.push((exec.started_at - msg.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p95, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 95.0), percentile(&latencies, 99.0));
    let enqueue_rate = n as f64 / enqueue_s;
    let process_rate = n as f64 / process_s;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"system": system, "workload": "throughput", "jobs": n, "concurrency": args.concurrency,
                "enqueue_per_s": enqueue_rate, "process_per_s": process_rate})
        );
        println!(
            "{}",
            serde_json::json!({"system": system, "workload": "latency", "jobs": args.latency_jobs,
                "p50_ms": p50, "p95_ms": p95, "p99_ms": p99})
        );
    } else {
        println!("{system} — {n} probe jobs, maxConcurrency {}, every attempt tracked", args.concurrency);
        println!("  enqueue (one at a time)   {enqueue_rate:>10.0} jobs/s");
        println!("  processing (tracked)      {process_rate:>10.0} jobs/s");
        println!(
            "  enqueue→start latency     p50 {p50:.2} ms   p95 {p95:.2} ms   p99 {p99:.2} ms   ({} jobs, one every ~2 ms)",
            args.latency_jobs
        );
    }
    Ok(())
}
