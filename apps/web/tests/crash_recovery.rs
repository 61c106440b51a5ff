//! At-least-once across a crash: a real `web serve` process is killed with SIGKILL while a
//! job runs; the message is redelivered once its lease expires and succeeds, and the
//! abandoned `running` row is closed as `failed` with a reason. (Maintenance's rescue of
//! attempts whose lease or message ran out is the store conformance suite's, maintenance area.)

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
