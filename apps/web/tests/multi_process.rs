//! Three real `web serve` processes on one database (SQLite file or PostgreSQL, per
//! VQS_TEST_BACKEND): 20,000 probes all succeed, none is handled twice unless its lease
//! expired, and one process killed with SIGKILL mid-run loses nothing and leaves nothing
//! `running`. (A job the killed process finished but had not acknowledged runs again after
//! its lease: that is at-least-once delivery, and the test checks it is only those.)

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::TestApp;
use tokio::process::Child;
use vqs::SendOpts;
use vqs::store::{ExecutionListParams, ExecutionStatus};

const JOBS: i64 = 20_000;
/// Shorter than the default so the killed process's leases come back quickly, and still
/// longer than the probe's 30 s timeout (so no lease is extended).
const LEASE_SECONDS: &str = "36";

fn serve(database_url: &str) -> Child {
    common::serve(database_url, &[("VQS_LEASE_SECONDS", LEASE_SECONDS)])
}

async fn serving(child: &mut Child) {
    common::serving(child).await;
}

async fn succeeded(app: &TestApp) -> i64 {
    app.queue().stats().await.unwrap().iter().filter(|t| t.topic == "probe").map(|t| t.succeeded).sum()
}

async fn wait_until(app: &TestApp, at_least: i64, limit: Duration, procs: &mut [Child]) {
    let deadline = Instant::now() + limit;
    loop {
        let done = succeeded(app).await;
        if done >= at_least {
            return;
        }
        for p in procs.iter_mut() {
            assert!(p.try_wait().unwrap().is_none(), "a serving process exited on its own");
        }
        assert!(Instant::now() < deadline, "only {done} of {at_least} succeeded in {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_the_work_and_a_killed_one_loses_nothing() {
    let app = TestApp::new().await;
    // 50 ms of work each: one process (maxConcurrency 100) needs at least 10 s for them all,
    // so jobs are certainly in flight when the kill lands a moment after the others start.
    let probes = (0..JOBS).map(|_| (br#"{"sleep_ms":50}"#.to_vec(), SendOpts::default()));
    app.queue().send_many("probe", probes).await.unwrap();
    // The victim works alone first, so it certainly holds leases when the kill lands (on one
    // SQLite file, a process waiting for the write lock in a claim holds none).
    let mut victim = serve(&app.database_url);
    serving(&mut victim).await;
    wait_until(&app, JOBS / 10, Duration::from_secs(300), std::slice::from_mut(&mut victim)).await;
    let mut procs: Vec<Child> = (0..2).map(|_| serve(&app.database_url)).collect();
    for p in procs.iter_mut() {
        serving(p).await;
    }
    victim.start_kill().unwrap(); // SIGKILL, mid-run
    victim.wait().await.unwrap();
    let at_kill = succeeded(&app).await;
    assert!(at_kill < JOBS, "all {JOBS} jobs were done before the kill: the test showed nothing");

    wait_until(&app, JOBS, Duration::from_secs(600), &mut procs).await;
    for p in procs.iter_mut() {
        p.start_kill().unwrap();
    }

    let rows = app
        .queue()
        .executions(ExecutionListParams { topic: Some("probe".into()), limit: u32::MAX, ..Default::default() })
        .await
        .unwrap();
    let mut per_message: HashMap<&str, Vec<&vqs::store::ExecutionRecord>> = HashMap::new();
    for r in &rows {
        per_message.entry(r.message_id.as_str()).or_default().push(r);
    }
    assert_eq!(per_message.len() as i64, JOBS, "every message ran");
    // The lease starts when the message is claimed, a moment before its execution row: allow
    // that moment (well under a second) between one attempt's start and the next.
    let lease = chrono::Duration::seconds(LEASE_SECONDS.parse::<i64>().unwrap() - 1);
    let mut redelivered = 0;
    for (id, runs) in per_message.iter_mut() {
        assert!(runs.iter().any(|r| r.status == ExecutionStatus::Success), "{id} never succeeded: {runs:?}");
        for r in runs.iter().filter(|r| r.status != ExecutionStatus::Success) {
            // The only other rows: attempts abandoned by the killed process, closed as failed.
            assert_eq!(r.status, ExecutionStatus::Failed, "{id}: {r:?}");
            assert!(r.error.as_deref().unwrap_or("").starts_with("abandoned"), "{id}: {r:?}");
        }
        if runs.len() > 1 {
            // Handled again only because its lease expired: a later attempt, a lease later.
            runs.sort_by_key(|r| r.started_at);
            for pair in runs.windows(2) {
                assert!(pair[1].attempt > pair[0].attempt, "{id}: {runs:?}");
                assert!(
                    pair[1].started_at - pair[0].started_at >= lease,
                    "{id} ran again before its lease expired: {runs:?}"
                );
            }
            redelivered += 1;
        }
    }
    // The killed process held at most maxConcurrency (100) leases of running jobs plus those of
    // jobs whose settlement was being written; at least one was in flight.
    let most = 100 + vqs::DispatcherConfig::default().settling as usize;
    assert!((1..=most).contains(&redelivered), "{redelivered} messages were redelivered");
    assert!(rows.iter().all(|r| r.status != ExecutionStatus::Running), "nothing left running");
    let stats = app.queue().stats().await.unwrap();
    let probe = stats.iter().find(|t| t.topic == "probe").unwrap();
    assert_eq!((probe.succeeded, probe.dead, probe.waiting, probe.running), (JOBS, 0, 0, 0));
    eprintln!("{} executions for {JOBS} messages; {redelivered} redelivered after the kill", rows.len());
}
