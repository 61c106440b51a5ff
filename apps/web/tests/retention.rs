//! Retention: pruning removes what it should and nothing else — finished messages, old
//! execution rows and cron runs by age and by count, in bounded batches — while live
//! messages, `running` attempts, dead letters within their retention and each cron's latest
//! run and latest success stay. Both backends (VQS_TEST_BACKEND).

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::TestApp;
use vqs::store::{CronRunFinishParams, CronRunStartParams, DeliveryState, ExecutionListParams};
use vqs::{Clock, PerformOpts, RetentionConfig};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn t0() -> DateTime<Utc> {
    "2026-03-02T09:00:00Z".parse().unwrap()
}

async fn exists(app: &TestApp, id: &str) -> bool {
    app.queue().message(id).await.unwrap().is_some()
}

async fn executions(app: &TestApp) -> Vec<(String, u32, String)> {
    let mut rows = app.queue().executions(ExecutionListParams { limit: 1000, ..Default::default() }).await.unwrap();
    rows.reverse();
    rows.into_iter().map(|e| (e.message_id, e.attempt, e.status.as_str().to_owned())).collect()
}

/// Maintenance passes until one prunes less than a full batch; returns the passes' count.
async fn drain(app: &TestApp, r: &RetentionConfig) -> usize {
    for pass in 1..=100 {
        if !app.queue().maintenance(r).await.unwrap().hit_batch_limit(r.batch) {
            return pass;
        }
    }
    panic!("maintenance never drained");
}

#[tokio::test]
async fn finished_messages_go_after_their_retention_live_ones_stay() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let job = app.queue().job(jobs::Probe);
    let ok = job.perform_later(jobs::ProbeParams::default()).await.unwrap().message_id;
    let dead =
        job.perform_later(jobs::ProbeParams { fatal: Some(true), ..Default::default() }).await.unwrap().message_id;
    let retrying =
        job.perform_later(jobs::ProbeParams { fail_attempts: Some(5), ..Default::default() }).await.unwrap().message_id;
    let delayed = job
        .perform_later_with(
            jobs::ProbeParams::default(),
            PerformOpts { delay: Duration::from_secs(20 * HOUR), ..Default::default() },
        )
        .await
        .unwrap()
        .message_id;
    assert_eq!(app.dispatch("probe").await, 3);
    // Finished messages are kept 12 h (each message also ends at its own retention, 24 h).
    let r = RetentionConfig { messages: Duration::from_secs(12 * HOUR), ..RetentionConfig::default() };

    // Within the retention: nothing goes.
    clock.advance(Duration::from_secs(11 * HOUR));
    let report = app.queue().maintenance(&r).await.unwrap();
    assert_eq!(report.finished_messages_pruned, 0, "{report:?}");
    for id in [&ok, &dead, &retrying, &delayed] {
        assert!(exists(&app, id).await);
    }

    // Past it: the acknowledged and the dead-lettered message go, with their deliveries;
    // the one waiting for its retry and the delayed one stay, and so do the dead letter and
    // every execution row (their own retentions are longer).
    clock.advance(Duration::from_secs(2 * HOUR));
    let report = app.queue().maintenance(&r).await.unwrap();
    assert_eq!(report.finished_messages_pruned, 2, "{report:?}");
    assert!(!exists(&app, &ok).await);
    assert!(!exists(&app, &dead).await);
    let m = app.queue().message(&retrying).await.unwrap().expect("a retrying message is live");
    assert_eq!(m.deliveries[0].state, DeliveryState::Pending);
    assert!(exists(&app, &delayed).await);
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 1);
    assert_eq!(executions(&app).await.len(), 3);
    // A second pass finds nothing more.
    assert!(app.queue().maintenance(&r).await.unwrap().is_empty());

    // Execution rows go after theirs (7 days); the live messages have expired by then
    // (their retention, 24 h) and were dead-lettered, not dropped.
    clock.advance(Duration::from_secs(7 * DAY));
    let report = app.queue().maintenance(&r).await.unwrap();
    assert_eq!(report.executions_pruned, 3, "{report:?}");
    assert_eq!(report.messages_pruned, 2, "{report:?}");
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 3);
    // Dead letters after 30 days.
    clock.advance(Duration::from_secs(31 * DAY));
    assert_eq!(app.queue().maintenance(&r).await.unwrap().dead_letters_pruned, 3);
}

#[tokio::test]
async fn count_limits_keep_the_newest_and_never_a_running_attempt() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let job = app.queue().job(jobs::Probe);
    // A long job, left running: its execution row is `running` under a live lease.
    let running = app.queue().job(jobs::Probe);
    let long = running.perform_later(jobs::ProbeParams::default()).await.unwrap().message_id;
    let leased = app
        .queue()
        .store()
        .delivery_claim(vqs::store::DeliveryClaimParams {
            consumer_group: app.consumer("probe").consumer_group,
            topic: None,
            message_id: Some(long.clone()),
            limit: 1,
            visibility_seconds: 3600,
            start_executions: false,
            lease_holder: None,
            now: clock.now(),
        })
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    app.queue()
        .store()
        .execution_start(vqs::store::ExecutionStartParams {
            topic: "probe".into(),
            message_id: long.clone(),
            consumer_group: leased[0].consumer_group.clone(),
            attempt: 1,
            now: clock.now(),
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        clock.advance(Duration::from_secs(1));
        ids.push(job.perform_later(jobs::ProbeParams::default()).await.unwrap().message_id);
        assert_eq!(app.dispatch("probe").await, 1);
    }
    assert_eq!(executions(&app).await.len(), 6);

    // Keep 3 execution rows and 2 messages; prune 2 rows per pass: several bounded passes.
    let r = RetentionConfig { max_executions: 3, max_messages: 2, batch: 2, ..RetentionConfig::default() };
    assert!(drain(&app, &r).await >= 2, "a batch of 2 cannot prune it all in one pass");
    let left = executions(&app).await;
    let newest: Vec<&String> = ids.iter().rev().take(3).collect();
    assert_eq!(left.len(), 4, "{left:?}");
    assert_eq!(left[0], (long.clone(), 1, "running".to_owned()), "the running row stays, however old");
    assert!(left[1..].iter().all(|(m, _, s)| newest.contains(&m) && s == "success"), "{left:?}");
    // Messages: the newest 2 stay; so does the older running one (only finished messages
    // are deleted to meet the limit).
    assert!(exists(&app, &long).await);
    let kept: Vec<bool> = futures_exists(&app, &ids).await;
    assert_eq!(kept, vec![false, false, false, true, true], "{kept:?}");
}

async fn futures_exists(app: &TestApp, ids: &[String]) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        out.push(exists(app, id).await);
    }
    out
}

#[tokio::test]
async fn cron_runs_keep_each_crons_latest_run_and_latest_success() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let store = app.queue().store().clone();
    let run = |path: &'static str, success: bool| {
        let store = store.clone();
        let clock = clock.clone();
        async move {
            clock.advance(Duration::from_secs(HOUR));
            let now = clock.now();
            let id = store
                .cron_run_start(CronRunStartParams {
                    path: path.into(),
                    schedule: "0 * * * *".into(),
                    scheduled_at: now,
                    now,
                })
                .await
                .unwrap()
                .unwrap();
            let finish = CronRunFinishParams { id, status_code: Some(200), success, error: None, now };
            store.cron_run_finish(finish).await.unwrap();
            id
        }
    };
    let a_success = run("/api/cron/a", true).await;
    let a_failed = run("/api/cron/a", false).await;
    let a_latest = run("/api/cron/a", false).await;
    let mut b = Vec::new();
    for _ in 0..5 {
        b.push(run("/api/cron/b", true).await);
    }
    let ids = |runs: Vec<vqs::store::CronRunRecord>| -> Vec<i64> {
        let mut v: Vec<i64> = runs.into_iter().map(|r| r.id).collect();
        v.sort();
        v
    };

    // Count: 2 runs per cron. b keeps its newest 2; a's third-newest run is its latest
    // success, which the heartbeat needs: it stays over the limit.
    let r = RetentionConfig { max_cron_runs: 2, ..RetentionConfig::default() };
    assert_eq!(app.queue().maintenance(&r).await.unwrap().cron_runs_pruned, 3);
    assert_eq!(
        ids(store
            .cron_run_list(vqs::store::CronRunListParams { path: Some("/api/cron/a".to_owned()), limit: 100 })
            .await
            .unwrap()),
        vec![a_success, a_failed, a_latest]
    );
    assert_eq!(
        ids(store
            .cron_run_list(vqs::store::CronRunListParams { path: Some("/api/cron/b".to_owned()), limit: 100 })
            .await
            .unwrap()),
        b[3..].to_vec()
    );

    // Age: after 30 days everything old goes but the latest run and latest success of each.
    clock.advance(Duration::from_secs(31 * DAY));
    let r = RetentionConfig::default();
    assert_eq!(app.queue().maintenance(&r).await.unwrap().cron_runs_pruned, 2);
    assert_eq!(
        ids(store
            .cron_run_list(vqs::store::CronRunListParams { path: Some("/api/cron/a".to_owned()), limit: 100 })
            .await
            .unwrap()),
        vec![a_success, a_latest]
    );
    assert_eq!(
        ids(store
            .cron_run_list(vqs::store::CronRunListParams { path: Some("/api/cron/b".to_owned()), limit: 100 })
            .await
            .unwrap()),
        vec![b[4]]
    );
}

#[test]
fn a_bad_retention_setting_stops_start_up_and_says_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, want) in [
        ("VQS_RETENTION_EXECUTIONS", "7w", "VQS_RETENTION_EXECUTIONS must be a duration from 1s to 3650d"),
        ("VQS_RETENTION_MESSAGES_MAX", "lots", "VQS_RETENTION_MESSAGES_MAX must be a whole number"),
        ("VQS_PRUNE_BATCH", "0", "VQS_PRUNE_BATCH must be a whole number of rows from 1 to 100000"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
            .arg("migrate")
            .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("x.db").display()))
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{var}={value}: {stderr}");
    }
}

#[tokio::test]
async fn the_prune_command_applies_the_configured_retention() {
    // Messages finished two hours ago (by the queue's clock); the CLI runs on the wall clock.
    let clock = Clock::manual(Utc::now() - chrono::Duration::hours(2));
    let app = TestApp::with_clock(clock).await;
    let job = app.queue().job(jobs::Probe);
    for _ in 0..3 {
        job.perform_later(jobs::ProbeParams::default()).await.unwrap();
    }
    assert_eq!(app.dispatch("probe").await, 3);
    let prune = |keep: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
            .args(["prune", "--json"])
            .env("DATABASE_URL", &app.database_url)
            .env("VQS_RETENTION_MESSAGES", keep)
            .env("VQS_PRUNE_BATCH", "2")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(prune("3h")["finished_messages_pruned"], 0, "kept 3 h: nothing is old enough");
    assert_eq!(prune("1h")["finished_messages_pruned"], 3, "kept 1 h: all three go, in batches of 2");
    assert_eq!(app.queue().executions(Default::default()).await.unwrap().len(), 3, "execution rows stay");
}
