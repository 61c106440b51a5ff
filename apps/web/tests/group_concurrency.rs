//! Group concurrency is one limit per (consumer group, group key) across every process
//! (SPEC.md, "Flow control"): three real `web serve` processes on one database (SQLite file
//! or PostgreSQL, per VQS_TEST_BACKEND) with the probe topic at group concurrency 1
//! (`VQS_GROUP_CONCURRENCY=probe=1`) never run two probes of one group at once between
//! them, still run different groups side by side, and run every probe once.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::TestApp;
use tokio::process::Child;
use vqs::SendOpts;
use vqs::store::{ExecutionListParams, ExecutionStatus, MessageGetParams};

const GROUPS: usize = 10;

/// One run: when it started and when it finished.
type Run = (DateTime<Utc>, DateTime<Utc>);
const PER_GROUP: usize = 4;

/// The most runs overlapping at one instant, from their recorded start and end.
fn most_at_once(runs: &[Run]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = runs.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
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
async fn three_processes_never_run_two_of_one_group_at_once() {
    let app = TestApp::new().await;
    let env = [("VQS_GROUP_CONCURRENCY", "probe=1")];
    let mut procs: Vec<Child> = (0..3).map(|_| common::serve(&app.database_url, &env)).collect();
    for p in &mut procs {
        common::serving(p).await;
    }
    let jobs = GROUPS * PER_GROUP;
    let probes = (0..jobs).map(|i| {
        let opts = SendOpts { group: Some(format!("tenant-{}", i % GROUPS)), ..SendOpts::default() };
        (br#"{"sleep_ms":150}"#.to_vec(), opts)
    });
    let sent = app.queue().send_many("probe", probes).await.unwrap();
    let mut group_of: HashMap<String, String> = HashMap::new();
    for s in &sent {
        let m = app.queue().store().message_get(MessageGetParams { id: s.message_id.clone() }).await.unwrap();
        group_of.insert(s.message_id.clone(), m.unwrap().group_key.expect("the group is stored"));
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    let runs = loop {
        let p = ExecutionListParams { topic: Some("probe".into()), limit: 1_000, ..Default::default() };
        let rows = app.queue().store().execution_list(p).await.unwrap();
        let done: Vec<_> = rows.iter().filter(|r| r.status == ExecutionStatus::Success).collect();
        if done.len() >= jobs {
            assert_eq!(rows.len(), jobs, "every probe ran once: {rows:?}");
            break done
                .iter()
                .map(|r| (group_of[&r.message_id].clone(), (r.started_at, r.finished_at.unwrap())))
                .collect::<Vec<_>>();
        }
        for p in &mut procs {
            assert!(p.try_wait().unwrap().is_none(), "a serving process exited on its own");
        }
        assert!(Instant::now() < deadline, "only {} of {jobs} probes succeeded", done.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut by_group: HashMap<&str, Vec<Run>> = HashMap::new();
    for (g, run) in &runs {
        by_group.entry(g.as_str()).or_default().push(*run);
    }
    for (g, group_runs) in &by_group {
        let most = most_at_once(group_runs);
        assert_eq!(most, 1, "{most} probes of group {g} ran at once across the processes; the limit is 1");
    }
    let all: Vec<_> = runs.iter().map(|(_, r)| *r).collect();
    assert!(most_at_once(&all) > 1, "groups run side by side, not one probe at a time overall");
}
