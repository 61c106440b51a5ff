//! Load and soak with real processes on a real database (SQLite file or PostgreSQL, per
//! VQS_TEST_BACKEND), loopback only, bounded: both stop by themselves.
//!
//! - `VQS_LOAD_PROCS` `web serve` processes (default 2) work `VQS_LOAD_JOBS` probes (default
//!   2000; the long run 100000 on PostgreSQL) of a mix of sleeping, failing-once,
//!   failing-always and fatal probes: the counts of successes, retries and dead letters are
//!   exactly those the mix implies.
//! - One process fed a steady stream for `VQS_SOAK_SECS` (default 30; the long run 600):
//!   its resident memory after the warm-up does not grow (last ≤ 1.5 × warm-up + 16 MiB),
//!   and every probe ends as its kind says.
//!
//! Failed attempts are retried after 1 s (`VQS_RETRY_DELAY_SECONDS`), not the default
//! `(10 · n)²` s, so the retries happen within the run.

mod common;

use std::time::{Duration, Instant};

use common::{ProbeKind, TestApp, knob};

const ENV: &[(&str, &str)] = &[("VQS_RETRY_DELAY_SECONDS", "1")];

/// What the mix of `sent` must come to when no attempt is abandoned:
/// `(succeeded, dead, failed attempts, retries)`.
fn expected(sent: &[(String, ProbeKind)]) -> (i64, i64, i64, i64) {
    let dead = sent.iter().filter(|(_, k)| matches!(k, ProbeKind::Fatal | ProbeKind::FailAlways)).count() as i64;
    let failed: i64 = sent.iter().map(|(_, k)| k.failed_attempts()).sum();
    // Every failed attempt but a dead letter's last one is retried.
    (sent.len() as i64 - dead, dead, failed, failed - dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_work_a_mixed_load_to_exact_counts() {
    let procs = knob("VQS_LOAD_PROCS", 2);
    let jobs = knob("VQS_LOAD_JOBS", 2000);
    let app = TestApp::new().await;
    let mut sent = Vec::with_capacity(jobs as usize);
    let mut first = 0;
    while first < jobs {
        let n = (jobs - first).min(5000);
        sent.extend(common::send_probes(app.queue(), first, n, 10).await);
        first += n;
    }
    let started = Instant::now();
    let mut servers: Vec<_> = (0..procs).map(|_| common::serve(&app.database_url, ENV)).collect();
    for s in servers.iter_mut() {
        common::serving(s).await;
    }
    common::wait_settled(app.queue(), jobs as i64, Duration::from_secs(4 * 3600), &mut servers).await;
    let elapsed = started.elapsed();
    let peak_rss: Vec<u64> = servers.iter().filter_map(|s| s.id().and_then(common::rss_kib)).collect();
    for s in servers.iter_mut() {
        s.start_kill().unwrap();
        s.wait().await.unwrap();
    }

    let tally = common::check_outcomes(app.queue(), &sent, None).await;
    let (succeeded, dead, failed, retries) = expected(&sent);
    assert_eq!(tally.abandoned, 0, "no attempt abandoned without a fault: {tally:?}");
    assert_eq!((tally.succeeded, tally.dead, tally.failed_by_job), (succeeded, dead, failed), "{tally:?}");
    assert_eq!(tally.executions, jobs as i64 + retries, "one execution per attempt: {tally:?}");
    eprintln!(
        "{procs} processes, {jobs} probes: {succeeded} succeeded, {retries} retries, {dead} dead-lettered, \
         {} executions in {elapsed:.1?} (not asserted); RSS at the end {peak_rss:?} KiB",
        tally.executions
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_under_a_steady_stream() {
    let secs = knob("VQS_SOAK_SECS", 30);
    let app = TestApp::new().await;
    let mut server = common::serve(&app.database_url, ENV);
    common::serving(&mut server).await;
    let pid = server.id().expect("the server runs");
    let warm_up = Duration::from_secs((secs / 5).max(5));

    // A closed loop: a batch of probes whenever fewer than a few hundred wait, so the
    // process works all the time and the backlog stays bounded.
    let mut sent = Vec::new();
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let started = Instant::now();
    let mut next_sample = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(secs) {
        let (waiting, _, _, _, _) = common::probe_counts(app.queue()).await;
        if waiting < 300 {
            sent.extend(common::send_probes(app.queue(), sent.len() as u64, 200, 5).await);
        }
        if started.elapsed() >= next_sample {
            samples.push((started.elapsed(), common::rss_kib(pid).expect("the server's VmRSS")));
            next_sample += Duration::from_secs(1);
        }
        assert!(server.try_wait().unwrap().is_none(), "the serving process exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::wait_settled(app.queue(), sent.len() as i64, Duration::from_secs(600), std::slice::from_mut(&mut server))
        .await;
    samples.push((started.elapsed(), common::rss_kib(pid).expect("the server's VmRSS")));
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    let warm = samples.iter().find(|(t, _)| *t >= warm_up).expect("a sample after the warm-up").1;
    let last = samples.last().unwrap().1;
    let max = samples.iter().map(|s| s.1).max().unwrap();
    let first = samples[0].1;
    eprintln!(
        "soak {secs} s, {} probes: VmRSS first {first} KiB, after warm-up ({warm_up:?}) {warm} KiB, \
         last {last} KiB, max {max} KiB ({} samples)",
        sent.len(),
        samples.len()
    );
    // The trajectory: a sample every tenth of the run, the highest, and the one after settling.
    let tenth = (secs / 10).max(1);
    let mut shown = 0;
    let mut trend = Vec::new();
    for (t, kib) in &samples {
        if t.as_secs() >= shown {
            trend.push(format!("{}s:{kib}", t.as_secs()));
            shown = t.as_secs() / tenth * tenth + tenth;
        }
    }
    let (max_at, _) = samples.iter().max_by_key(|s| s.1).unwrap();
    eprintln!(
        "VmRSS KiB over time: {} | max at {}s | after settling {}s:{last}",
        trend.join(" "),
        max_at.as_secs(),
        samples.last().unwrap().0.as_secs()
    );
    assert!(last <= warm * 3 / 2 + 16 * 1024, "memory grew: {warm} KiB after the warm-up, {last} KiB at the end");

    // Every probe ends as its kind says. The exact attempt counts are the load test's; here
    // attempts lost to a starved machine (RELIABILITY.md) are reported, not asserted.
    let tally = common::check_outcomes(app.queue(), &sent, None).await;
    let (succeeded, dead, _, _) = expected(&sent);
    assert_eq!((tally.succeeded, tally.dead), (succeeded, dead));
    eprintln!("soak outcomes: {tally:?}");
}
