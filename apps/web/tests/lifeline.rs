//! Crash rescue (issue 15): a process that stops beating has its leased jobs redelivered
//! within about a minute, whatever their leases say; a process that beats never does; a
//! lease with no holder (the `/_vqs` receive API) keeps its visibility timeout.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use vqs::store::{DeliveryClaimParams, ExecutionListParams, ExecutionStatus};
use vqs::{Clock, Lifeline, LifelineConfig};

/// Lease the due messages of `probe` for an hour, as a job with a long timeout is leased,
/// naming `holder`.
async fn lease_for_an_hour(app: &TestApp, holder: Option<&str>) -> usize {
    let claim = DeliveryClaimParams {
        group_concurrency: None,
        consumer_group: app.consumer("probe").consumer_group,
        topic: None,
        message_id: None,
        limit: 10,
        visibility_seconds: 3600,
        start_executions: true,
        lease_holder: holder.map(str::to_owned),
        max_leased: None,
        leased_here: 0,
        rate_limit: None,
        group_rate_limit: None,
        now: app.clock.now(),
    };
    app.queue().store().delivery_claim(claim).await.unwrap().len()
}

#[tokio::test]
async fn a_dead_process_s_leases_are_due_again_after_dead_after_and_nobody_else_s() {
    let clock = Clock::manual(chrono::Utc::now());
    let app = TestApp::with_clock(clock.clone()).await;
    let config = LifelineConfig::default();
    let (dead, alive) = (Lifeline::new(app.queue().clone(), config), Lifeline::new(app.queue().clone(), config));
    assert!(!dead.run_once().await.unwrap().was_known, "a first beat registers the process");
    alive.run_once().await.unwrap();

    // The process that will die leases a message for an hour; a remote consumer (no
    // heartbeat) leases another one the same way.
    let mine = app.queue().job(jobs::Probe).perform_later(Default::default()).await.unwrap().message_id;
    assert_eq!(lease_for_an_hour(&app, Some(dead.process_id())).await, 1);
    let remote = app.queue().job(jobs::Probe).perform_later(Default::default()).await.unwrap().message_id;
    assert_eq!(lease_for_an_hour(&app, None).await, 1);

    // Beating, it is never presumed dead, however long its job runs.
    for _ in 0..30 {
        clock.advance(config.beat);
        assert!(dead.run_once().await.unwrap().was_known);
        assert_eq!(alive.run_once().await.unwrap().rescued.processes, 0);
    }
    assert_eq!(app.dispatch("probe").await, 0, "a live process's lease is not redelivered");

    // It stops beating: not yet presumed dead at `dead_after`, then presumed dead once.
    clock.advance(config.dead_after);
    assert_eq!(alive.run_once().await.unwrap().rescued.processes, 0);
    clock.advance(Duration::from_secs(1));
    let report = alive.run_once().await.unwrap();
    assert_eq!((report.rescued.processes, report.rescued.deliveries), (1, 1));
    assert_eq!(alive.run_once().await.unwrap().rescued.processes, 0, "a dead process is rescued once");

    // Its message comes back as attempt 2 and succeeds; attempt 1 is closed with a reason.
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&mine).await, vec![(1, "failed".to_owned()), (2, "success".to_owned())]);
    let rows = app
        .queue()
        .executions(ExecutionListParams { message_id: Some(mine.clone()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    let first = rows.iter().find(|r| r.attempt == 1).unwrap();
    assert_eq!(first.status, ExecutionStatus::Failed);
    assert!(first.error.as_deref().unwrap_or("").starts_with("abandoned"), "{:?}", first.error);
    // The remote consumer's lease still runs to its end.
    assert_eq!(app.attempts(&remote).await, vec![(1, "running".to_owned())]);

    // A process presumed dead that beats again learns it (its first beat after is unknown).
    assert!(!dead.run_once().await.unwrap().was_known);
}

#[tokio::test]
async fn a_process_never_presumes_itself_dead() {
    let clock = Clock::manual(chrono::Utc::now());
    let app = TestApp::with_clock(clock.clone()).await;
    let me = Lifeline::new(app.queue().clone(), LifelineConfig::default());
    me.run_once().await.unwrap();
    app.queue().job(jobs::Probe).perform_later(Default::default()).await.unwrap();
    assert_eq!(lease_for_an_hour(&app, Some(me.process_id())).await, 1);
    // Its own beats were late (a stalled process), but it is the one asking.
    clock.advance(Duration::from_secs(600));
    let report = me.run_once().await.unwrap();
    assert!(report.was_known);
    assert_eq!(report.rescued, Default::default());
    assert_eq!(app.dispatch("probe").await, 0);
}

#[test]
fn dead_after_must_be_longer_than_two_beats() {
    let c = |beat, dead| LifelineConfig { beat: Duration::from_secs(beat), dead_after: Duration::from_secs(dead) };
    assert!(LifelineConfig::default().check().is_ok());
    assert!(c(1, 3).check().is_ok());
    assert!(c(10, 20).check().unwrap_err().contains("two heartbeat intervals"));
    assert!(c(0, 20).check().is_err());
}

/// A `web serve` whose leases last an hour (a job with a long timeout), beating every second.
fn worker(database_url: &str) -> tokio::process::Child {
    common::serve(
        database_url,
        &[("VQS_LEASE_SECONDS", "3600"), ("VQS_HEARTBEAT_SECONDS", "1"), ("VQS_DEAD_AFTER_SECONDS", "3")],
    )
}

/// Wait until the attempts of `id` are `want` (or fail after `limit`, far below the hour's lease).
async fn wait_for_attempts(app: &TestApp, id: &str, want: &[(u32, &str)], limit: Duration) {
    let want: Vec<(u32, String)> = want.iter().map(|(n, s)| (*n, (*s).to_owned())).collect();
    let deadline = Instant::now() + limit;
    loop {
        let rows = app.attempts(id).await;
        if rows == want {
            return;
        }
        assert!(Instant::now() < deadline, "attempts of {id}: {rows:?}, waiting for {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_killed_worker_s_job_is_redelivered_long_before_its_lease_ends() {
    let app = TestApp::new().await;
    let mut first = worker(&app.database_url);
    common::serving(&mut first).await;
    let params = jobs::ProbeParams { sleep_ms: Some(2_000), ..Default::default() };
    let id = app.queue().job(jobs::Probe).perform_later(params).await.unwrap().message_id;
    wait_for_attempts(&app, &id, &[(1, "running")], Duration::from_secs(60)).await;
    first.start_kill().unwrap(); // SIGKILL, mid-job
    first.wait().await.unwrap();

    // Another process redelivers it within seconds, not after the hour its lease says.
    let mut second = worker(&app.database_url);
    common::serving(&mut second).await;
    wait_for_attempts(&app, &id, &[(1, "failed"), (2, "success")], Duration::from_secs(120)).await;
    let m = app.queue().message(&id).await.unwrap().unwrap();
    assert_eq!(m.deliveries[0].delivery_count, 2);
}

#[tokio::test]
async fn a_live_worker_s_long_job_is_never_rescued() {
    let app = TestApp::new().await;
    let (mut a, mut b) = (worker(&app.database_url), worker(&app.database_url));
    common::serving(&mut a).await;
    common::serving(&mut b).await;
    // Runs well past "dead after" (3 s) while both processes look for dead ones every second.
    let params = jobs::ProbeParams { sleep_ms: Some(8_000), ..Default::default() };
    let id = app.queue().job(jobs::Probe).perform_later(params).await.unwrap().message_id;
    wait_for_attempts(&app, &id, &[(1, "success")], Duration::from_secs(120)).await;
    let m = app.queue().message(&id).await.unwrap().unwrap();
    assert_eq!(m.deliveries[0].delivery_count, 1, "delivered once");
}
