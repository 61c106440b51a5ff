//! `maxConcurrency` in a `vercel.json` trigger is one limit for its consumer group across
//! every process, as on Vercel (SPEC.md, "Flow control"): three real `web serve` processes
//! on one database (SQLite file or PostgreSQL, per VQS_TEST_BACKEND) with `maxConcurrency:
//! 2` on the probe trigger never run more than two probes at once between them, and every
//! probe still runs once.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::TestApp;
use tokio::process::Child;
use vqs::SendOpts;
use vqs::store::{ExecutionListParams, ExecutionStatus};

const JOBS: usize = 24;
const LIMIT: u64 = 2;
/// How long each probe runs.
const RUN_MS: i64 = 300;
/// How much earlier than the job's real start its attempt's recorded start may be: the
/// attempt is stamped with the claim's time, taken before the claim waits for the database's
/// writer, while the limit is counted once it has it. So a claim that waited behind another
/// process's acknowledgement records a start before that job's end, though its own job starts
/// after it. A third job really running beside two others for more than this still fails.
const CLAIM_WAIT_MS: i64 = 100;

/// The most attempts running at one instant, from their recorded start (moved later by the
/// claim's wait, see [`CLAIM_WAIT_MS`]) and end.
fn most_at_once(runs: &[(DateTime<Utc>, DateTime<Utc>)]) -> usize {
    let wait = chrono::Duration::milliseconds(CLAIM_WAIT_MS);
    let mut edges: Vec<(DateTime<Utc>, i32)> =
        runs.iter().flat_map(|(s, e)| [((*s + wait).min(*e), 1), (*e, -1)]).collect();
    // An end before a start at the same instant: back-to-back runs do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_never_run_more_than_max_concurrency_between_them() {
    let app = TestApp::new().await;
    let dir = tempfile::tempdir().unwrap();
    let vercel_json = common::vercel_json_with_max_concurrency(dir.path(), LIMIT);
    let vercel_json = vercel_json.to_str().unwrap();
    let mut procs: Vec<Child> =
        (0..3).map(|_| common::serve(&app.database_url, &[("VQS_VERCEL_JSON", vercel_json)])).collect();
    for p in &mut procs {
        common::serving(p).await;
    }
    let probes = (0..JOBS).map(|_| (format!(r#"{{"sleep_ms":{RUN_MS}}}"#).into_bytes(), SendOpts::default()));
    app.queue().send_many("probe", probes).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    let runs = loop {
        let p = ExecutionListParams { topic: Some("probe".into()), limit: 1_000, ..Default::default() };
        let rows = app.queue().store().execution_list(p).await.unwrap();
        let done: Vec<_> = rows.iter().filter(|r| r.status == ExecutionStatus::Success).collect();
        if done.len() >= JOBS {
            assert_eq!(rows.len(), JOBS, "every probe ran once: {rows:?}");
            break done.iter().map(|r| (r.started_at, r.finished_at.unwrap())).collect::<Vec<_>>();
        }
        for p in &mut procs {
            assert!(p.try_wait().unwrap().is_none(), "a serving process exited on its own");
        }
        assert!(Instant::now() < deadline, "only {} of {JOBS} probes succeeded", done.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let most = most_at_once(&runs);
    assert!(most <= LIMIT as usize, "{most} probes ran at once across the processes; the limit is {LIMIT}");
    assert_eq!(most, LIMIT as usize, "the limit is used, not undershot to one at a time");
}
