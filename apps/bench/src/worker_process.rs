//! A worker in a process of its own, as a deployment runs one (and as the peers' latency
//! workload forks one): this binary again, in its worker role, which serves exactly as
//! `web serve` does — `web::runtime::serve` with a `vercel.json` holding one probe consumer.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tracing_subscriber::EnvFilter;

use crate::args::Args;
use crate::in_process_worker::{probe_vercel_json, serving_config};

/// The worker role: serve until SIGTERM, logging as the web binary does (colours only on a
/// terminal).
pub async fn serve(args: &Args) -> Result<()> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let url = args.database_url.as_deref().context("the worker role needs --database-url")?;
    let vercel_json = args.vercel_json.clone().context("the worker role needs --vercel-json")?;
    let config = web::Config { worker_concurrency: args.worker_concurrency, ..serving_config(url, vercel_json) };
    web::runtime::serve(config).await
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kb: u64,
    /// VmHWM: the peak resident size so far.
    pub hwm_kb: u64,
}

pub struct WorkerProcess {
    child: Child,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Start a worker on `database_url` with the probe consumer at `concurrency`; returns
    /// once it serves (it printed its "listening" line, after its dispatcher started).
    pub async fn start(database_url: &str, concurrency: u32) -> Result<WorkerProcess> {
        let dir = tempfile::tempdir()?;
        let vercel_json = dir.path().join("vercel.json");
        std::fs::write(&vercel_json, probe_vercel_json(concurrency))?;
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        let mut command = Command::new(exe);
        if let Some(n) = crate::in_process_worker::worker_concurrency(concurrency) {
            command.arg(format!("--worker-concurrency={n}"));
        }
        let mut child = command
            .arg("--role=worker")
            .arg("--database-url")
            .arg(database_url)
            .arg("--vercel-json")
            .arg(&vercel_json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the worker process")?;
        let pid = child.id().context("the worker process exited at once")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("listening") {
                    return Ok(true);
                }
            }
            Ok::<_, std::io::Error>(false)
        })
        .await;
        match ready {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => bail!("the worker process exited before it served (see its stderr above)"),
            Ok(Err(e)) => return Err(e).context("reading the worker's output"),
            Err(_) => bail!("the worker process did not serve within 30 s"),
        }
        // Keep draining its stdout so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(WorkerProcess { child, pid, _dir: dir })
    }

    pub fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .with_context(|| format!("reading /proc/{}/status", self.pid))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .with_context(|| format!("no {name} in /proc/{}/status", self.pid))
        };
        Ok(Memory { rss_kb: field("VmRSS:")?, hwm_kb: field("VmHWM:")? })
    }

    /// SIGTERM (graceful: in-flight deliveries finish), then SIGKILL after 10 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}
