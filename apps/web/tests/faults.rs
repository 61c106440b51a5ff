//! Fault tests with real processes on a real database (SQLite file or PostgreSQL, per
//! VQS_TEST_BACKEND):
//!
//! - a worker killed with SIGKILL at random moments (seeded; the seed is printed) while a
//!   stream of probes arrives, restarted after each kill: every probe ends `success` or
//!   dead-lettered with its reason, none lost, none left `running`, and a message runs again
//!   after an abandoned attempt only once that attempt's lease expired;
//! - (SQLite) the process writing the file killed mid-write while it accepts publishes over
//!   HTTP and works them: the file passes `PRAGMA integrity_check` and every publish it
//!   answered 201 is in it.
//!
//! Sizes: `VQS_FAULT_KILLS` (default 10; the long run 100), `VQS_FAULT_JOBS_PER_KILL`
//! (default 100), `VQS_FAULT_SQLITE_KILLS` (default 3). `VQS_FAULT_SEED` replays a run.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ProbeKind, Rng, TestApp, knob};

/// Shorter than the default so a killed worker's leases come back soon, and longer than the
/// probe's 30 s timeout plus the consumer's 5 s settle margin, so no lease is extended: an
/// abandoned attempt's message is redelivered exactly this long after it was claimed.
const LEASE_SECONDS: i64 = 36;

fn worker(database_url: &str) -> tokio::process::Child {
    let lease = LEASE_SECONDS.to_string();
    common::serve(database_url, &[("VQS_LEASE_SECONDS", &lease), ("VQS_RETRY_DELAY_SECONDS", "1")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_moments_lose_nothing() {
    let kills = knob("VQS_FAULT_KILLS", 10);
    let per_kill = knob("VQS_FAULT_JOBS_PER_KILL", 100);
    let mut rng = Rng::from_env("workers_killed_at_random_moments_lose_nothing");
    let app = TestApp::new().await;
    let mut sent = Vec::new();
    let (mut before_serving, mut mid_run) = (0, 0);
    for k in 0..kills {
        // The stream: a batch of new probes before each worker starts.
        sent.extend(common::send_probes(app.queue(), k * per_kill, per_kill, 40).await);
        let mut victim = worker(&app.database_url);
        if rng.below(5) == 0 {
            // Now and then while it starts: migrating, registering, leasing its first batch.
            tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
            before_serving += 1;
        } else {
            common::serving(&mut victim).await;
            tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
            mid_run += 1;
        }
        victim.start_kill().unwrap(); // SIGKILL
        victim.wait().await.unwrap();
    }
    let (_, _, running, _, _) = common::probe_counts(app.queue()).await;
    eprintln!("{kills} kills ({before_serving} while starting, {mid_run} mid-run); {running} leases held by the dead");

    // One last worker finishes the work, including what the dead held once their leases expire.
    let mut last = worker(&app.database_url);
    common::serving(&mut last).await;
    let total = sent.len() as i64;
    common::wait_settled(app.queue(), total, Duration::from_secs(900), std::slice::from_mut(&mut last)).await;
    last.start_kill().unwrap();
    last.wait().await.unwrap();

    let tally = common::check_outcomes(app.queue(), &sent, Some(chrono::Duration::seconds(LEASE_SECONDS))).await;
    let dead = sent.iter().filter(|(_, k)| matches!(k, ProbeKind::Fatal | ProbeKind::FailAlways)).count() as i64;
    assert_eq!((tally.succeeded, tally.dead), (total - dead, dead));
    eprintln!("{total} probes, {kills} kills: {tally:?}");
}

/// The SQLite file after its writer was killed mid-write: it opens, it is intact, and
/// nothing a publisher was told was stored is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_killed_mid_write_is_intact_and_keeps_every_acknowledged_publish() {
    if std::env::var("VQS_TEST_BACKEND").as_deref() == Ok("postgres") {
        eprintln!("skipped: the SQLite file test runs on the SQLite backend");
        return;
    }
    let rounds = knob("VQS_FAULT_SQLITE_KILLS", 3);
    let mut rng = Rng::from_env("a_sqlite_file_killed_mid_write");
    let app = TestApp::new().await;
    let path = app.dir.path().join("vqs.db");
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = reqwest::Client::new();
    for round in 0..rounds {
        let mut victim = common::serve(&app.database_url, &[]);
        let url = common::serving(&mut victim).await;
        // Publishers at full speed; the process works every probe at once as it arrives.
        let publishers: Vec<_> = (0..8)
            .map(|_| {
                let (client, acknowledged) = (client.clone(), acknowledged.clone());
                let endpoint = format!("{url}/_vqs/api/v3/topic/probe");
                tokio::spawn(async move {
                    loop {
                        let sent = client
                            .post(&endpoint)
                            .bearer_auth(common::QUEUE_SECRET)
                            .header("content-type", "application/json")
                            .body("{}")
                            .send()
                            .await;
                        let Ok(resp) = sent else { return };
                        if resp.status() != reqwest::StatusCode::CREATED {
                            return;
                        }
                        let Ok(body) = resp.json::<serde_json::Value>().await else { return };
                        let id = body["messageId"].as_str().expect("a messageId").to_owned();
                        acknowledged.lock().unwrap().push(id);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1500))).await;
        victim.start_kill().unwrap(); // SIGKILL, mid-write
        victim.wait().await.unwrap();
        for p in publishers {
            p.await.unwrap();
        }
        let n = acknowledged.lock().unwrap().len();
        assert!(n > 0, "round {round}: nothing was published before the kill: the test showed nothing");

        // A fresh connection to the file: it opens and passes the integrity check.
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await.unwrap();
        let check: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check").fetch_all(&mut conn).await.unwrap();
        assert_eq!(check, vec![("ok".to_owned(),)], "round {round}: integrity_check");
        sqlx::Connection::close(conn).await.unwrap();
        eprintln!("round {round}: {n} publishes acknowledged so far; integrity_check ok");
    }

    // Every acknowledged publish is there, through a queue opened afresh on the file.
    let queue = web::runtime::open_queue(&app.database_url, vqs::Clock::system()).await.unwrap();
    let ids = acknowledged.lock().unwrap().clone();
    for id in &ids {
        let m = queue.store().message_get(vqs::store::MessageGetParams { id: id.to_string() }).await.unwrap();
        assert!(m.is_some_and(|m| m.topic == "probe"), "acknowledged publish {id} is missing");
    }
    eprintln!("{} acknowledged publishes over {rounds} kills, all present", ids.len());
}
