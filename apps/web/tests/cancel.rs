//! Cancelling a running job (SPEC.md, "Job outcomes"): two real `web serve` processes on one
//! database, a long probe running on one of them, and a cancel sent from outside both (this
//! test's own process, as an operator's CLI would). On PostgreSQL the running process hears
//! it over NOTIFY; on one SQLite file, by its one-a-second poll. Either way the job's future
//! is dropped within a second or two — not after its 25 s of work — and its attempt is
//! recorded `cancelled`.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, TestApp};
use tokio::process::Child;
use vqs::SendOpts;
use vqs::store::{DeliveryState, ExecutionListParams, ExecutionStatus};

/// The processes' `vqs_jobs_cancelled_total{topic="probe"}`, summed.
async fn cancelled_total(urls: &[String]) -> f64 {
    let client = reqwest::Client::new();
    let mut total = 0.0;
    for url in urls {
        let text =
            client.get(format!("{url}/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().text().await.unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        for s in scrape.samples {
            if s.metric == "vqs_jobs_cancelled_total"
                && s.labels.get("topic") == Some("probe")
                && let prometheus_parse::Value::Counter(v) = s.value
            {
                total += v;
            }
        }
    }
    total
}

async fn running(app: &TestApp, id: &str) -> bool {
    let p = ExecutionListParams { message_id: Some(id.into()), limit: 10, ..Default::default() };
    app.queue().executions(p).await.unwrap().iter().any(|e| e.status == ExecutionStatus::Running)
}

fn serve(database_url: &str) -> Child {
    common::serve(database_url, &[("VQS_ADMIN_TOKEN", ADMIN_TOKEN)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_cancelled_from_another_process_is_stopped_within_seconds() {
    let app = TestApp::new().await;
    let mut procs = [serve(&app.database_url), serve(&app.database_url)];
    let mut urls = Vec::new();
    for p in procs.iter_mut() {
        urls.push(common::serving(p).await);
    }
    let sent = app.queue().send("probe", br#"{"sleep_ms":25000}"#.to_vec(), SendOpts::default()).await.unwrap();
    let id = sent.message_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !running(&app, &id).await {
        assert!(Instant::now() < deadline, "the probe did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let done = app.queue().cancel(&id).await.unwrap();
    assert_eq!(done.running.len(), 1, "{done:?}");
    let cancelled_at = Instant::now();
    // The attempt is closed by the cancel itself, and the delivery ended.
    let rows = app
        .queue()
        .executions(ExecutionListParams { message_id: Some(id.clone()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, ExecutionStatus::Cancelled);
    assert_eq!(rows[0].error.as_deref(), Some("cancelled by an operator"));
    let m = app.queue().message(&id).await.unwrap().unwrap();
    assert_eq!(m.deliveries[0].state, DeliveryState::Cancelled);

    // The process running it drops the job: its consumer reports the cancel. Without the
    // news it would run its full 25 s.
    while cancelled_total(&urls).await < 1.0 {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(10),
            "the running job was not stopped 10 s after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = cancelled_at.elapsed();
    eprintln!("stopped {took:?} after the cancel");
    assert_eq!(cancelled_total(&urls).await, 1.0, "exactly one process ran it");

    // Nothing else happened to it: no retry, no dead letter, the row stays cancelled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = app
        .queue()
        .executions(ExecutionListParams { message_id: Some(id.clone()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, ExecutionStatus::Cancelled);
    assert!(app.queue().dead_letters(10).await.unwrap().is_empty());
    for p in procs.iter_mut() {
        p.start_kill().unwrap();
    }
}
