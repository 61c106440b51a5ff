//! The database restarted under load (PostgreSQL only: `VQS_TEST_BACKEND=postgres`): a
//! `web serve` process working a stream of probes keeps running while PostgreSQL restarts
//! (`pg_ctlcluster <version> main restart`), reconnects, and finishes every probe: each
//! ends `success` or dead-lettered with its reason, none lost, none left `running`.
//!
//! Its own test binary, so no other test of this suite runs while the server is down (cargo
//! runs test binaries one at a time). PostgreSQL is left running even when the test fails.
//! Sizes: `VQS_PG_RESTART_JOBS` (default 3000), `VQS_PG_RESTARTS` (default 2).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestApp, knob};

/// The Debian cluster serving 127.0.0.1:5432: `(version, "main")`, from /etc/postgresql.
fn cluster() -> String {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .expect("PostgreSQL restart test: no /etc/postgresql (it drives a Debian cluster with pg_ctlcluster)")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    versions.sort();
    versions.pop().expect("no cluster under /etc/postgresql")
}

fn pg_ctlcluster(version: &str, action: &str) -> bool {
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", action])
        .status()
        .expect("run pg_ctlcluster")
        .success()
}

fn pg_isready() -> bool {
    Command::new("pg_isready").args(["-h", "127.0.0.1", "-p", "5432", "-q"]).status().is_ok_and(|s| s.success())
}

fn wait_ready(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pg_isready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// On drop — the test passed or failed — PostgreSQL is up again (started if it is down).
struct LeavesPostgresRunning(String);

impl Drop for LeavesPostgresRunning {
    fn drop(&mut self) {
        if !pg_isready() {
            pg_ctlcluster(&self.0, "start");
        }
        if !wait_ready(Duration::from_secs(60)) {
            eprintln!("PostgreSQL {} main is not ready 60 s after the restart test", self.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_carries_on_across_a_postgres_restart() {
    if std::env::var("VQS_TEST_BACKEND").as_deref() != Ok("postgres") {
        eprintln!("skipped: the restart test runs with VQS_TEST_BACKEND=postgres");
        return;
    }
    let jobs = knob("VQS_PG_RESTART_JOBS", 3000);
    let restarts = knob("VQS_PG_RESTARTS", 2);
    let version = cluster();
    let _guard = LeavesPostgresRunning(version.clone());
    let app = TestApp::new().await;
    let sent = common::send_probes(app.queue(), 0, jobs, 20).await;
    let mut server = common::serve(&app.database_url, &[("VQS_LEASE_SECONDS", "36"), ("VQS_RETRY_DELAY_SECONDS", "1")]);
    common::serving(&mut server).await;

    for r in 1..=restarts {
        // Restart while the work is under way: after a share of it is done.
        let share = jobs as i64 * r as i64 / (restarts as i64 + 1);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (_, _, _, succeeded, dead) = common::probe_counts(app.queue()).await;
            if succeeded + dead >= share {
                assert!(succeeded + dead < jobs as i64, "all done before restart {r}: the test showed nothing");
                break;
            }
            assert!(Instant::now() < deadline, "only {} of {share} settled", succeeded + dead);
            assert!(server.try_wait().unwrap().is_none(), "the serving process exited");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(pg_ctlcluster(&version, "restart"), "pg_ctlcluster {version} main restart failed");
        assert!(wait_ready(Duration::from_secs(60)), "PostgreSQL did not come back");
        eprintln!("restart {r} of {restarts} done after {share}+ probes settled");
    }

    common::wait_settled(app.queue(), jobs as i64, Duration::from_secs(600), std::slice::from_mut(&mut server)).await;
    assert!(server.try_wait().unwrap().is_none(), "the serving process exited");
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let tally = common::check_outcomes(app.queue(), &sent, None).await;
    eprintln!("{jobs} probes across {restarts} PostgreSQL restarts: {tally:?}");
}
