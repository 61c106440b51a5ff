//! At-least-once across a crash: a real `web serve` process is killed with SIGKILL while a
//! job runs; the message is redelivered once its lease expires and succeeds, and the
//! abandoned `running` row is closed as `failed` with a reason.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestApp;
use vqs::Clock;
use vqs::store::ExecutionStatus;

#[tokio::test]
async fn a_process_killed_mid_job_loses_nothing() {
    let clock = Clock::manual(chrono::Utc::now());
    let app = TestApp::with_clock(clock.clone()).await;
    let params = jobs::ProbeParams { sleep_ms: Some(3_000), ..Default::default() };
    let id = app.queue().job(jobs::Probe).perform_later(params).await.unwrap().message_id;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .arg("serve")
        .env("DATABASE_URL", &app.database_url)
        .env("VQS_VERCEL_JSON", common::repo_root().join("vercel.json"))
        .env("PORT", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start web serve");

    // Wait until the child has started the job (its execution row says `running`).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = app.attempts(&id).await;
        if rows == vec![(1, "running".to_owned())] {
            break;
        }
        assert!(Instant::now() < deadline, "the child never started the job: {rows:?}");
        assert!(child.try_wait().unwrap().is_none(), "the child exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();

    // Nothing is redelivered while the dead process's lease still holds.
    assert_eq!(app.dispatch("probe").await, 0);

    // After the lease expires the message comes back as attempt 2 and succeeds; leasing it
    // again closes the abandoned `running` row of attempt 1.
    clock.advance(Duration::from_secs(10 * 60));
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".to_owned()), (2, "success".to_owned())]);
    let rows = app
        .queue()
        .executions(vqs::store::ExecutionListParams { message_id: Some(id.clone()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    let first = rows.iter().find(|r| r.attempt == 1).unwrap();
    assert_eq!(first.status, ExecutionStatus::Failed);
    assert!(first.error.as_deref().unwrap_or("").starts_with("abandoned"), "{:?}", first.error);
    assert!(first.finished_at.is_some());
}

#[tokio::test]
async fn maintenance_closes_running_rows_whose_lease_expired() {
    let clock = Clock::manual(chrono::Utc::now());
    let app = TestApp::with_clock(clock.clone()).await;
    let id = app.queue().job(jobs::Probe).perform_later(Default::default()).await.unwrap().message_id;
    // A worker leases the message and starts an execution, then vanishes.
    let group = app.consumer("probe").consumer_group;
    let leased = app
        .queue()
        .store()
        .delivery_claim(vqs::store::DeliveryClaimParams {
            consumer_group: group.clone(),
            topic: None,
            message_id: None,
            limit: 1,
            visibility_seconds: 60,
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
            message_id: id.clone(),
            consumer_group: group,
            attempt: 1,
            now: clock.now(),
        })
        .await
        .unwrap();
    let report = app.queue().maintenance(&vqs::RetentionConfig::default()).await.unwrap();
    assert_eq!(report.executions_rescued, 0, "the lease still holds");
    clock.advance(Duration::from_secs(61));
    let report = app.queue().maintenance(&vqs::RetentionConfig::default()).await.unwrap();
    assert_eq!(report.executions_rescued, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".to_owned())]);
}

#[tokio::test]
async fn maintenance_closes_an_attempt_whose_message_expired_and_leaves_other_queues_attempts_alone() {
    let clock = Clock::manual(chrono::Utc::now());
    let app = TestApp::with_clock(clock.clone()).await;
    let group = app.consumer("probe").consumer_group;
    let start = |message_id: &str| vqs::store::ExecutionStartParams {
        topic: "probe".into(),
        message_id: message_id.into(),
        consumer_group: group.clone(),
        attempt: 1,
        now: clock.now(),
    };
    // A message with a short retention, leased for a long job that never comes back.
    let opts = vqs::SendOpts { retention: Some(Duration::from_secs(60)), ..Default::default() };
    let id = app.queue().send("probe", b"{}".to_vec(), opts).await.unwrap().message_id;
    let claim = vqs::store::DeliveryClaimParams {
        consumer_group: group.clone(),
        topic: None,
        message_id: None,
        limit: 1,
        visibility_seconds: 600,
        start_executions: true,
        lease_holder: None,
        now: clock.now(),
    };
    assert_eq!(app.queue().store().delivery_claim(claim).await.unwrap().len(), 1);
    // An attempt of a message delivered by another queue service (Vercel's): its delivery is
    // not in this database, and nothing here can tell that it is over.
    let elsewhere = app.queue().store().execution_start(start("msg_delivered_by_vercel")).await.unwrap();

    clock.advance(Duration::from_secs(120));
    let report = app.queue().maintenance(&vqs::RetentionConfig::default()).await.unwrap();
    assert_eq!(report.messages_pruned, 1);
    let rows =
        app.queue().executions(vqs::store::ExecutionListParams { limit: 10, ..Default::default() }).await.unwrap();
    let of = |id: &str| rows.iter().find(|r| r.message_id == id).unwrap();
    assert_eq!(of(&id).status, ExecutionStatus::Failed, "closed with its expired message");
    assert!(of(&id).error.as_deref().unwrap().starts_with("abandoned"));
    let other = of("msg_delivered_by_vercel");
    assert_eq!((other.id, other.status), (elsewhere, ExecutionStatus::Running), "still running, as far as we know");
}
