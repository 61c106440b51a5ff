//! The command line. The workload knobs read the same `BENCH_*` variables as the peers'
//! `node/harness.js` (so `run.sh` can run this binary as its `BENCH_EXTRA_CMD`), with the
//! same defaults as `run.sh`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// The peers' workload A: bulk enqueue N, then process at each concurrency.
    Throughput,
    /// The peers' workload A': one-at-a-time enqueue with `inflight` concurrent callers.
    Single,
    /// The peers' workload B: enqueue→start latency into an idle worker in another process.
    Latency,
    /// Processing throughput with each `--backlog` of waiting messages.
    Scaling,
    /// Peak RSS of a worker process, idle and under load.
    Memory,
    /// Database statements, round trips and commits per job.
    Roundtrips,
    /// Group concurrency: `--n` jobs over `--flow-groups` groups at group concurrency 1,
    /// against the same jobs ungrouped in the same run.
    Flow,
    /// A head-of-line attack: one group with `--hostile-big` waiting (group concurrency 1)
    /// beside 100 small groups of `--n` jobs in all, against those jobs alone ungrouped.
    Hostile,
    /// `--n` jobs processed by each count of `--processes` worker processes on one
    /// database (PostgreSQL only), each at `--extra-concurrency` of its own.
    Processes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Run the workloads and print one JSON line per result.
    Main,
    /// Serve as `web serve` does (the separate worker process of the latency and memory workloads).
    Worker,
}

/// vqs benchmark: the peers' workloads (BullMQ, graphile-worker, pg-boss — see
/// ../shared/bench/peers) on vqs, one JSON line per result on stdout, progress on stderr.
#[derive(Debug, Parser)]
#[command(name = "vqs-bench")]
pub struct Args {
    #[arg(long, value_enum, default_value = "main", hide = true)]
    pub role: Role,
    /// Also run on PostgreSQL: the server's URL without a database
    /// (`postgres://postgres@127.0.0.1:5432`). Every measurement gets a fresh `vqs_bench_*`
    /// database, dropped afterwards.
    #[arg(long, env = "VQS_BENCH_POSTGRES")]
    pub postgres: Option<String>,
    /// Backends to run (default: sqlite, and postgres when --postgres is given).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub backends: Vec<Backend>,
    /// Workloads to run, in this order.
    #[arg(long = "workload", value_enum, value_delimiter = ',', default_value = "throughput,single,latency")]
    pub workloads: Vec<Workload>,
    /// Jobs per throughput measurement.
    #[arg(long, alias = "jobs", env = "BENCH_N", default_value_t = 20_000)]
    pub n: usize,
    /// Worker concurrencies of the throughput workload (the consumer's maxConcurrency).
    #[arg(long, env = "BENCH_CONCURRENCY", value_delimiter = ',', default_value = "10,50")]
    pub concurrency: Vec<u32>,
    /// Jobs at most per one-at-a-time enqueue measurement.
    #[arg(long, env = "BENCH_SINGLE_N", default_value_t = 20_000)]
    pub single_n: usize,
    /// Concurrent callers of the one-at-a-time enqueue measurements.
    #[arg(long, env = "BENCH_SINGLE_INFLIGHT", value_delimiter = ',', default_value = "1,10")]
    pub single_inflight: Vec<usize>,
    /// Time limit of one one-at-a-time enqueue measurement.
    #[arg(long, env = "BENCH_SINGLE_TIMEOUT_S", default_value_t = 6.0)]
    pub single_timeout_s: f64,
    /// Time limit of one processing measurement.
    #[arg(long, env = "BENCH_PROCESS_TIMEOUT_S", default_value_t = 60.0)]
    pub process_timeout_s: f64,
    /// Measured jobs of the latency workload.
    #[arg(long, alias = "latency-jobs", env = "BENCH_LATENCY_N", default_value_t = 2_000)]
    pub latency_n: usize,
    /// Gap between two latency jobs (open-loop schedule).
    #[arg(long, env = "BENCH_LATENCY_GAP_MS", default_value_t = 2.0)]
    pub latency_gap_ms: f64,
    /// Concurrency of the idle latency worker.
    #[arg(long, env = "BENCH_LATENCY_CONCURRENCY", default_value_t = 10)]
    pub latency_concurrency: u32,
    /// Untimed warm-up jobs before the latency run.
    #[arg(long, default_value_t = 100)]
    pub latency_warmup: usize,
    /// Time limit for the latency worker to finish every job.
    #[arg(long, env = "BENCH_LATENCY_TIMEOUT_S", default_value_t = 30.0)]
    pub latency_timeout_s: f64,
    /// Messages waiting behind the timed jobs of each scaling measurement, all through its
    /// window (e.g. 10000,1000000).
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    pub backlog: Vec<usize>,
    /// Time allowed to load one scaling backlog; a slower backend is measured with the
    /// backlog it reached (the output line says so).
    #[arg(long, default_value_t = 120.0)]
    pub load_budget_s: f64,
    /// Jobs timed in each scaling measurement, loaded before the backlog (processed first).
    #[arg(long, default_value_t = 10_000)]
    pub scaling_n: usize,
    /// Jobs each scaling measurement processes before its timed `--scaling-n`, loaded first,
    /// so that the timed window starts with the worker warm: the worker's
    /// start (store opened, caches cold, the first maintenance pass) is not what is varied.
    /// Their rate, start included, is reported beside (`start_per_s`).
    #[arg(long, default_value_t = 5_000)]
    pub scaling_warmup: usize,
    /// Times each scaling backlog is loaded and measured, the backlogs taken in turn
    /// (10,000, 1,000,000, 10,000, …); `cargo xtask bench` judges the median. One measurement
    /// is half a second, and the same one ranged over 10–15% across runs on a 2-core host.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub scaling_rounds: u32,
    /// Worker concurrency of the scaling, memory and round-trip workloads.
    #[arg(long, default_value_t = 50)]
    pub extra_concurrency: u32,
    /// Groups of the flow workload.
    #[arg(long, default_value_t = 1_000)]
    pub flow_groups: usize,
    /// Waiting messages of the hostile workload's big group (1,000,000 supported; loading
    /// them takes a while, so the default is smaller).
    #[arg(long, default_value_t = 100_000)]
    pub hostile_big: usize,
    /// Worker process counts of the processes workload, each measured on a fresh database.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub processes: Vec<usize>,
    /// Jobs of the round-trip workload.
    #[arg(long, default_value_t = 5_000)]
    pub roundtrip_n: usize,
    /// Run id echoed into every line (run.sh sets BENCH_RUN_ID).
    #[arg(long, env = "BENCH_RUN_ID")]
    pub run: Option<String>,
    /// Directory of the SQLite files (default: the system's temporary directory).
    #[arg(long)]
    pub sqlite_dir: Option<PathBuf>,
    /// Worker role: the database to serve.
    #[arg(long, hide = true)]
    pub database_url: Option<String>,
    /// Worker role: its vercel.json.
    #[arg(long, hide = true)]
    pub vercel_json: Option<PathBuf>,
    /// Worker role: `VQS_WORKER_CONCURRENCY`.
    #[arg(long, hide = true)]
    pub worker_concurrency: Option<u32>,
    /// Run each worker's concurrency C as the probe trigger's `maxConcurrency`: one limit
    /// for the consumer group across every process, counted in the database at each claim
    /// (no prefetch). Default: C is each worker process's own limit
    /// (`VQS_WORKER_CONCURRENCY`), as the peers' C is (BullMQ's, graphile-worker's and
    /// pg-boss's worker concurrency limit one worker).
    #[arg(long)]
    pub global_limit: bool,
}

impl Args {
    /// The backends to run, in order.
    pub fn backends(&self) -> Vec<Backend> {
        if !self.backends.is_empty() {
            return self.backends.clone();
        }
        let mut b = vec![Backend::Sqlite];
        if self.postgres.is_some() {
            b.push(Backend::Postgres);
        }
        b
    }
}
