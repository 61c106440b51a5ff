//! Retention as the app applies it: a bad setting stops start-up and says what to write, and
//! `web prune` applies the configured retention. What pruning keeps and removes is the store
//! conformance suite's (`crates/vqs-store-tests`, maintenance area), on both backends.

mod common;

use chrono::Utc;
use common::TestApp;
use vqs::Clock;

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
