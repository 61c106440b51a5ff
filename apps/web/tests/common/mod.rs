//! Shared test harness: a real app on a fresh SQLite file, called through the router.
#![allow(dead_code)]

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use vqs::{Clock, ConsumerConfig, Queue};
use vqs_axum::in_process::InProcessPusher;
use web::AppState;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const QUEUE_SECRET: &str = "test-queue-secret";
pub const CRON_SECRET: &str = "test-cron-secret";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The repository's vercel.json with `maxConcurrency` set to `n` on the probe trigger,
/// written into `dir`.
pub fn vercel_json_with_max_concurrency(dir: &std::path::Path, n: u64) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("vercel.json")).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["functions"]["api/queue/probe.rs"]["experimentalTriggers"][0]["maxConcurrency"] = n.into();
    let path = dir.join("vercel.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    path
}

/// A URL for a new, empty database of the backend under test: SQLite (a file in `dir`) by
/// default; PostgreSQL when `VQS_TEST_BACKEND=postgres` (a fresh `vqs_test_*` database on
/// `VQS_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`). A PostgreSQL run
/// fails loudly when the server is unreachable: it never passes without a database.
pub async fn fresh_database_url(dir: &tempfile::TempDir) -> String {
    match std::env::var("VQS_TEST_BACKEND").as_deref() {
        Ok("postgres") => {
            let base =
                std::env::var("VQS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            vqs_postgres::create_test_database(&base).await.unwrap_or_else(|e| panic!("VQS_TEST_BACKEND=postgres: {e}"))
        }
        Ok("sqlite") | Err(_) => format!("sqlite://{}", dir.path().join("vqs.db").display()),
        Ok(other) => panic!("VQS_TEST_BACKEND={other:?}: use sqlite or postgres"),
    }
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub state: AppState,
    pub router: Router,
    pub clock: Clock,
}

impl TestApp {
    /// The repo's `vercel.json`, a fresh database, the wall clock.
    pub async fn new() -> TestApp {
        TestApp::with_clock(Clock::system()).await
    }

    /// The repo's `vercel.json`, a fresh database, the given clock.
    pub async fn with_clock(clock: Clock) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database_url(&dir).await;
        TestApp::open(dir, database_url, clock).await
    }

    /// An app on an existing database (e.g. one a child process used); `dir` is kept alive.
    pub async fn open(dir: tempfile::TempDir, database_url: String, clock: Clock) -> TestApp {
        TestApp::open_with(dir, database_url, clock, |_| {}).await
    }

    /// A fresh database and the test configuration as `change` leaves it (secrets unset,
    /// `IS_LOCAL_DEV`, …).
    pub async fn with_config(change: impl FnOnce(&mut web::Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database_url(&dir).await;
        TestApp::open_with(dir, database_url, Clock::system(), change).await
    }

    async fn open_with(
        dir: tempfile::TempDir,
        database_url: String,
        clock: Clock,
        change: impl FnOnce(&mut web::Config),
    ) -> TestApp {
        let mut config = web::Config {
            database_url: database_url.clone(),
            addr: "127.0.0.1:0".parse().unwrap(),
            vercel_json: repo_root().join("vercel.json"),
            cron_secret: Some(CRON_SECRET.into()),
            is_local_dev: false,
            queue_secret: Some(QUEUE_SECRET.into()),
            admin_token: Some(ADMIN_TOKEN.into()),
            metrics_token: None,
            retention: vqs::RetentionConfig::default(),
            lease_seconds: 60,
            lifeline: Default::default(),
            retry_delay_seconds: None,
            vercel: Default::default(),
            server: Default::default(),
            group_concurrency: Default::default(),
            stats_rollup_seconds: 60,
            worker_concurrency: None,
        };
        change(&mut config);
        let vercel = web::runtime::load_vercel(&config.vercel_json).unwrap();
        let queue = web::runtime::open_queue(&database_url, clock.clone()).await.unwrap();
        let state = web::runtime::state(&config, queue, vercel);
        let router = web::app(state.clone());
        let consumers = TestApp::consumers_of(&state);
        vqs::register_consumers(&state.queue, &consumers).await.unwrap();
        TestApp { dir, database_url, state, router, clock }
    }

    pub fn queue(&self) -> &Queue {
        &self.state.queue
    }

    /// The consumers as `web serve`'s dispatcher runs them.
    fn consumers_of(state: &AppState) -> Vec<ConsumerConfig> {
        vqs_axum::consumers(state)
    }

    /// The push consumer of `topic` from vercel.json.
    pub fn consumer(&self, topic: &str) -> ConsumerConfig {
        TestApp::consumers_of(&self.state).into_iter().find(|c| c.topic_pattern == topic).expect("no trigger for topic")
    }

    /// Push every due message of `topic` through the router, as the dispatcher does; returns how many.
    pub async fn dispatch(&self, topic: &str) -> usize {
        let pusher = InProcessPusher::new(self.router.clone());
        vqs::dispatch_due(self.queue(), &self.consumer(topic), &pusher, "dev1", 1000).await.unwrap()
    }

    /// Send a request through the router; returns the status and the JSON body (Null if none).
    pub async fn call(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, body)
    }

    /// `GET path` with the admin token.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        self.call(
            Request::get(path).header("authorization", format!("Bearer {ADMIN_TOKEN}")).body(Body::empty()).unwrap(),
        )
        .await
    }

    /// Executions of a message, oldest first, as `(attempt, status)`.
    /// Run the `web` binary on this app's database and `vercel.json`: (succeeded, stdout, stderr).
    pub fn run_cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("VQS_VERCEL_JSON", repo_root().join("vercel.json"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the web binary");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub async fn attempts(&self, message_id: &str) -> Vec<(u32, String)> {
        let mut rows = self
            .queue()
            .executions(vqs::store::ExecutionListParams {
                message_id: Some(message_id.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        rows.reverse();
        rows.into_iter().map(|e| (e.attempt, e.status.as_str().to_owned())).collect()
    }
}

/// A real `web serve` process on `database_url` (PORT=0, quiet logs) with these extra
/// environment variables; killed when dropped.
pub fn serve(database_url: &str, env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_web"));
    cmd.arg("serve")
        .env("DATABASE_URL", database_url)
        .env("VQS_VERCEL_JSON", repo_root().join("vercel.json"))
        .env("VQS_QUEUE_SECRET", QUEUE_SECRET)
        .env("PORT", "0")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start web serve")
}

/// Wait until the process says it is listening: it has migrated, registered its consumers
/// and started its dispatcher (so a kill after this can land on work in flight). Returns
/// its base URL (`http://127.0.0.1:port`).
pub async fn serving(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("vqs listening on ") {
                return Some(url.trim().to_owned());
            }
        }
        None
    });
    let url = ready.await.ok().flatten().expect("a serving process did not start");
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    url
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A size knob from the environment (`name`), or `default`: tests run quick by default and
/// long when asked (RELIABILITY.md gives the commands).
pub fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}

/// A small seeded random number generator (xorshift64*): enough to pick kill moments and
/// job mixes reproducibly; the seed is printed so a failing run can be replayed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `VQS_FAULT_SEED` when set, else from the clock; prints the seed.
    pub fn from_env(test: &str) -> Rng {
        let seed = knob(
            "VQS_FAULT_SEED",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
        );
        eprintln!("{test}: VQS_FAULT_SEED={seed}");
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// What a probe in a fault or load run is asked to do, and so how it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Sleeps a little and succeeds: ends `success`.
    Ok,
    /// Fails its first attempt, then succeeds: one retry, ends `success`.
    FailOnce,
    /// Fails every attempt: `max_attempts` (3) attempts, dead-lettered "gave up after …".
    FailAlways,
    /// Fails fatally: one attempt, dead-lettered "fatal: …".
    Fatal,
}

impl ProbeKind {
    /// The mix of fault and load runs, by the message's index: of every 20, one fatal, one
    /// failing for ever, two failing once, the rest succeeding after up to `sleep_ms`.
    pub fn of(i: u64) -> ProbeKind {
        match i % 20 {
            0 => ProbeKind::Fatal,
            1 => ProbeKind::FailAlways,
            2 | 3 => ProbeKind::FailOnce,
            _ => ProbeKind::Ok,
        }
    }

    pub fn params(self, sleep_ms: u64) -> jobs::ProbeParams {
        let sleep_ms = Some(sleep_ms);
        match self {
            ProbeKind::Ok => jobs::ProbeParams { sleep_ms, ..Default::default() },
            ProbeKind::FailOnce => jobs::ProbeParams { sleep_ms, fail_attempts: Some(1), ..Default::default() },
            ProbeKind::FailAlways => jobs::ProbeParams { sleep_ms, fail_attempts: Some(1000), ..Default::default() },
            ProbeKind::Fatal => jobs::ProbeParams { sleep_ms, fatal: Some(true), ..Default::default() },
        }
    }

    /// Attempts that fail by the probe's own choice (retries plus the last failure), when no
    /// attempt is abandoned.
    pub fn failed_attempts(self) -> i64 {
        match self {
            ProbeKind::Ok => 0,
            ProbeKind::FailOnce | ProbeKind::Fatal => 1,
            ProbeKind::FailAlways => 3,
        }
    }
}

/// Publish probes `first..first + n` of the mix; returns `(message id, kind)` of each.
pub async fn send_probes(queue: &Queue, first: u64, n: u64, max_sleep_ms: u64) -> Vec<(String, ProbeKind)> {
    let kinds: Vec<ProbeKind> = (first..first + n).map(ProbeKind::of).collect();
    let messages = kinds.iter().enumerate().map(|(i, k)| {
        let sleep = if max_sleep_ms == 0 { 0 } else { (first + i as u64) * 7919 % (max_sleep_ms + 1) };
        (serde_json::to_vec(&k.params(sleep)).unwrap(), vqs::SendOpts::default())
    });
    let sent = queue.send_many("probe", messages).await.unwrap();
    sent.into_iter().zip(kinds).map(|(s, k)| (s.message_id, k)).collect()
}

/// The probe topic's counts: `(waiting, delayed, running, succeeded, dead)`.
pub async fn probe_counts(queue: &Queue) -> (i64, i64, i64, i64, i64) {
    // A restarting database may refuse the test's own reads for a moment.
    let mut tries = 0;
    let stats = loop {
        match queue.stats().await {
            Ok(stats) => break stats,
            Err(e) if tries < 100 => {
                tries += 1;
                eprintln!("stats: {e}; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("stats: {e}"),
        }
    };
    let p = stats.iter().find(|t| t.topic == "probe").cloned().unwrap_or_default();
    (p.waiting, p.delayed, p.running, p.succeeded, p.dead)
}

/// Wait until all `total` probes are settled — acknowledged or dead-lettered, none waiting,
/// delayed or leased — while every process in `procs` keeps running. Panics after `limit`
/// (a hang guard, not a timing assertion).
pub async fn wait_settled(queue: &Queue, total: i64, limit: std::time::Duration, procs: &mut [tokio::process::Child]) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        // A restarting database may refuse the test's own reads for a moment.
        if let Ok(stats) = queue.stats().await {
            let p = stats.iter().find(|t| t.topic == "probe").cloned().unwrap_or_default();
            if p.succeeded + p.dead == total && p.waiting + p.delayed + p.running == 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "not settled after {limit:?}: {p:?} of {total}");
        }
        for p in procs.iter_mut() {
            assert!(p.try_wait().unwrap().is_none(), "a serving process exited on its own");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// What the runs of a settled set of probes came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub messages: i64,
    pub succeeded: i64,
    pub dead: i64,
    /// Attempts that failed by the probe's choice (fatal or retryable).
    pub failed_by_job: i64,
    /// Attempts closed as abandoned (a killed process's) or by a failed push.
    pub abandoned: i64,
    /// Messages run more than once because an attempt was abandoned.
    pub redelivered: i64,
    pub executions: i64,
}

/// Check every probe in `sent` ended as its kind says — `success`, or dead-lettered with the
/// reason its kind gives — and nothing else is in the database: none lost, none `running`,
/// no stray messages. With `lease`, a message run again after an abandoned attempt was run
/// again no sooner than the lease allowed.
pub async fn check_outcomes(queue: &Queue, sent: &[(String, ProbeKind)], lease: Option<chrono::Duration>) -> Tally {
    use std::collections::HashMap;
    use vqs::store::{ExecutionListParams, ExecutionStatus};
    let rows = queue
        .executions(ExecutionListParams { topic: Some("probe".into()), limit: u32::MAX, ..Default::default() })
        .await
        .unwrap();
    let letters: HashMap<String, String> =
        queue.dead_letters(u32::MAX).await.unwrap().into_iter().map(|d| (d.message_id, d.error)).collect();
    let mut runs: HashMap<&str, Vec<&vqs::store::ExecutionRecord>> = HashMap::new();
    for r in &rows {
        runs.entry(r.message_id.as_str()).or_default().push(r);
    }
    let expected: HashMap<&str, ProbeKind> = sent.iter().map(|(id, k)| (id.as_str(), *k)).collect();
    assert_eq!(expected.len(), sent.len(), "message ids are unique");
    for id in runs.keys() {
        assert!(expected.contains_key(id), "a run of a message nobody sent: {id}");
    }
    let mut t = Tally { messages: sent.len() as i64, executions: rows.len() as i64, ..Tally::default() };
    for (id, kind) in &expected {
        let mut runs = runs.remove(id).unwrap_or_default();
        runs.sort_by_key(|r| (r.attempt, r.started_at));
        assert!(runs.iter().all(|r| r.status != ExecutionStatus::Running), "{id} left running: {runs:?}");
        let success = runs.iter().any(|r| r.status == ExecutionStatus::Success);
        let letter = letters.get(*id);
        match kind {
            ProbeKind::Ok | ProbeKind::FailOnce => {
                assert!(success && letter.is_none(), "{id} ({kind:?}) did not succeed: {runs:?} {letter:?}");
                t.succeeded += 1;
            }
            ProbeKind::FailAlways | ProbeKind::Fatal => {
                let want = if *kind == ProbeKind::Fatal { "fatal: probe asked" } else { "gave up after" };
                let reason = letter.unwrap_or_else(|| panic!("{id} ({kind:?}) lost: not dead-lettered: {runs:?}"));
                assert!(reason.starts_with(want), "{id} ({kind:?}) dead-lettered for {reason:?}");
                assert!(!success, "{id} ({kind:?}) succeeded: {runs:?}");
                t.dead += 1;
            }
        }
        let mut abandoned_any = false;
        for r in &runs {
            if r.status != ExecutionStatus::Failed {
                continue;
            }
            let error = r.error.as_deref().unwrap_or("");
            if error.starts_with("probe asked to fail") {
                t.failed_by_job += 1;
            } else {
                t.abandoned += 1;
                abandoned_any = true;
            }
        }
        if abandoned_any {
            t.redelivered += 1;
        }
        if let Some(lease) = lease {
            // The lease starts when the message is claimed, a moment before its execution row.
            for pair in runs.windows(2) {
                let abandoned = pair[0].error.as_deref().is_some_and(|e| e.starts_with("abandoned"));
                if abandoned {
                    assert!(
                        pair[1].started_at - pair[0].started_at >= lease - chrono::Duration::seconds(1),
                        "{id} ran again before its lease expired: {runs:?}"
                    );
                }
            }
        }
    }
    assert_eq!(letters.keys().filter(|id| !expected.contains_key(id.as_str())).count(), 0, "stray dead letters");
    t
}
