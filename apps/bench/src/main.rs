//! The vqs benchmark. It runs the peers' workloads (`../shared/bench/peers`, defined in its
//! `node/harness.js`) on vqs — SQLite and PostgreSQL, `probe` jobs through the normal
//! delivery path (dispatcher → consumer route in process → tracked run → ack) — and prints
//! the peers' JSON lines, so that `run.sh` can run it as its `BENCH_EXTRA_CMD` and one table
//! can hold every system. It also measures what the peers do not: throughput with a large
//! backlog, a worker's memory, and database round trips per job. BENCHMARKS.md has the
//! method and the figures; `cargo xtask bench` runs it all.
//!
//! ```text
//! cargo run --release -p vqs-bench -- --postgres postgres://postgres@127.0.0.1:5432
//! cargo run --release -p vqs-bench -- --workload scaling,memory,roundtrips --backlog 10000,1000000
//! ```

mod args;
mod bench_db;
mod bulk;
mod completions;
mod flow;
mod in_process_worker;
mod latency;
mod line;
mod memory;
mod pg_wire_counter;
mod processes;
mod round_trips;
mod scaling;
mod statement_counter;
mod store_reads;
mod throughput;
mod worker_process;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use crate::args::{Args, Backend, Role, Workload};
use crate::bench_db::Target;
use crate::latency::{LatencyOpts, Placement};
use crate::line::Emitter;

/// mimalloc rather than glibc's malloc: a job's push allocates a few hundred small objects
/// across threads (headers, strings, futures), and glibc's arenas spent a third of the app's
/// CPU on them (`malloc_consolidate`, `_int_free`; perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    in_process_worker::set_global_limit(args.global_limit);
    let result = match args.role {
        Role::Worker => worker_process::serve(&args).await,
        Role::Main => run(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    statement_counter::init_tracing(args.workloads.contains(&Workload::Roundtrips));
    let sqlite_dir = tempfile::Builder::new()
        .prefix("vqs-bench-")
        .tempdir_in(args.sqlite_dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let mut targets = Vec::new();
    for backend in args.backends() {
        targets.push(match backend {
            Backend::Sqlite => Target::sqlite(sqlite_dir.path().to_owned()),
            Backend::Postgres => Target::postgres(args.postgres.as_deref().ok_or_else(|| {
                anyhow::anyhow!("--backends postgres needs --postgres URL (e.g. postgres://postgres@127.0.0.1:5432)")
            })?),
        });
    }
    for target in &targets {
        // Drop this backend's databases even when a workload fails or the run is stopped
        // (run.sh's `timeout` sends SIGTERM).
        let outcome = tokio::select! {
            r = run_backend(args, target) => r,
            s = stop_signal() => Err(anyhow::anyhow!("stopped by {s}")),
        };
        target.drop_all().await;
        outcome?;
    }
    Ok(())
}

async fn run_backend(args: &Args, target: &Target) -> Result<()> {
    let out = Emitter::new(target, args.run.clone());
    let secs = Duration::from_secs_f64;
    for workload in &args.workloads {
        match workload {
            Workload::Throughput => {
                for &c in &args.concurrency {
                    throughput::bulk(target, &out, args.n, c, secs(args.process_timeout_s)).await?;
                }
            }
            Workload::Single => {
                for &p in &args.single_inflight {
                    throughput::single(target, &out, args.single_n, p, secs(args.single_timeout_s)).await?;
                }
            }
            Workload::Latency => {
                let o = LatencyOpts {
                    n: args.latency_n,
                    gap: secs(args.latency_gap_ms / 1000.0),
                    concurrency: args.latency_concurrency,
                    warmup: args.latency_warmup,
                    timeout: secs(args.latency_timeout_s),
                };
                latency::latency(target, &out, o, Placement::SeparateProcess).await?;
                if target.backend() == Backend::Sqlite {
                    // SQLite's own deployment: the app that enqueues is the worker.
                    latency::latency(target, &out.renamed("vqs-sqlite-inproc"), o, Placement::SameProcess).await?;
                }
            }
            Workload::Scaling => {
                let budget = secs(args.load_budget_s);
                for round in 1..=args.scaling_rounds {
                    for &backlog in &args.backlog {
                        let o = scaling::ScalingOpts {
                            backlog,
                            n: args.scaling_n,
                            warmup: args.scaling_warmup,
                            c: args.extra_concurrency,
                            budget,
                            round,
                        };
                        scaling::scaling(target, &out, o).await?;
                    }
                }
            }
            Workload::Memory => memory::memory(target, &out, args.n, args.extra_concurrency).await?,
            Workload::Roundtrips => {
                round_trips::round_trips(target, &out, args.roundtrip_n, args.extra_concurrency).await?
            }
            Workload::Flow => {
                let timeout = secs(args.process_timeout_s);
                flow::flow(target, &out, args.n, args.flow_groups, args.extra_concurrency, timeout).await?
            }
            Workload::Hostile => {
                let timeout = secs(args.process_timeout_s);
                flow::hostile(target, &out, args.n, args.hostile_big, args.extra_concurrency, timeout).await?
            }
            Workload::Processes if target.backend() == Backend::Sqlite => {
                line::log("vqs-sqlite: processes skipped (SQLite is served by one process)");
            }
            Workload::Processes => {
                let timeout = secs(args.process_timeout_s);
                for &k in &args.processes {
                    processes::processes(target, &out, args.n, k, args.extra_concurrency, timeout).await?;
                }
            }
        }
    }
    Ok(())
}

async fn stop_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}
