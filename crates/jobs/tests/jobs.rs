//! The app's jobs, tested with the helpers app developers use (`vqs-testing`): one attempt
//! with `perform_job`, what was enqueued with `assert_enqueued`, and whole lives — retries,
//! backoff, dead letters, continuations — with `drain` on a manual clock. SQLite by default;
//! PostgreSQL with `VQS_TEST_BACKEND=postgres` (server `VQS_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use jobs::{Cleanup, CleanupParams, ExportRecords, ExportRecordsParams, Probe, ProbeParams, SyncAccounts};
use serde_json::{Value, json};
use vqs::store::ExecutionListParams;
use vqs::testing::{DrainOpts, DrainReport, TestContext};
use vqs::{PerformOpts, RetentionConfig};
use vqs_testing::{TestQueue, epoch};

/// A test queue on the backend under test, subscribed to every job of the app.
async fn test_queue() -> TestQueue {
    match std::env::var("VQS_TEST_BACKEND").as_deref() {
        Ok("postgres") => {
            let server =
                std::env::var("VQS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            TestQueue::postgres(&server, jobs::handlers()).await.expect("VQS_TEST_BACKEND=postgres")
        }
        Ok("sqlite") | Err(_) => TestQueue::sqlite(jobs::handlers()).await.unwrap(),
        Ok(other) => panic!("VQS_TEST_BACKEND={other:?}: use sqlite or postgres"),
    }
}

fn report(succeeded: u32, failed: u32, dead: u32) -> DrainReport {
    let mut r = DrainReport::default();
    (r.succeeded, r.failed, r.dead) = (succeeded, failed, dead);
    r
}

/// A message's attempts, oldest first, as `(attempt, status)`.
async fn attempts(tq: &TestQueue, message_id: &str) -> Vec<(u32, String)> {
    let p = ExecutionListParams { message_id: Some(message_id.into()), limit: 100, ..Default::default() };
    let mut rows = tq.queue().executions(p).await.unwrap();
    rows.reverse();
    rows.into_iter().map(|e| (e.attempt, e.status.as_str().to_owned())).collect()
}

fn failing(n: u32) -> ProbeParams {
    ProbeParams { fail_attempts: Some(n), ..Default::default() }
}

#[tokio::test]
async fn probe_fails_its_first_attempts_and_succeeds_on_the_next() {
    let tq = test_queue().await;
    assert!(tq.perform_job(&Probe, failing(1)).await.is_err(), "attempt 1 fails");
    let second = TestContext { attempt: 2, ..Default::default() };
    tq.perform_job_with(&Probe, failing(1), second).await.unwrap();
    let fatal = tq.perform_job(&Probe, ProbeParams { fatal: Some(true), ..Default::default() }).await.unwrap_err();
    assert!(fatal.is_fatal(), "{fatal}");
}

#[tokio::test]
async fn probe_is_retried_after_100_s_then_400_s_and_succeeds() {
    let tq = test_queue().await;
    let id = tq.queue().job(Probe).perform_later(failing(2)).await.unwrap().message_id;
    tq.assert_enqueued::<Probe>(&failing(2)).await;

    assert_eq!(tq.drain(DrainOpts::with_scheduled()).await.unwrap(), report(1, 2, 0));
    let ran = vec![(1, "failed".to_owned()), (2, "failed".to_owned()), (3, "success".to_owned())];
    assert_eq!(attempts(&tq, &id).await, ran);
    // The default backoff, (10·n)² s: the clock moved 100 s, then 400 s, and no further.
    assert_eq!(tq.clock().now() - epoch(), chrono::Duration::seconds(500));
    tq.refute_enqueued::<Probe>(&failing(2)).await;
}

#[tokio::test]
async fn a_drain_without_scheduled_leaves_the_retry_enqueued() {
    let tq = test_queue().await;
    tq.queue().job(Probe).perform_later(failing(1)).await.unwrap();
    assert_eq!(tq.drain(DrainOpts::default()).await.unwrap(), report(0, 1, 0));
    assert_eq!(tq.all_enqueued::<Probe>().await.unwrap(), vec![failing(1)], "the retry waits 100 s");
    assert_eq!(tq.clock().now(), epoch(), "the clock did not move");
    assert_eq!(tq.drain(DrainOpts::with_scheduled()).await.unwrap(), report(1, 0, 0));
    assert!(tq.all_enqueued::<Probe>().await.unwrap().is_empty());
}

#[tokio::test]
async fn probe_dead_letters_when_its_attempts_are_spent_or_it_fails_fatally() {
    let tq = test_queue().await;
    tq.queue().job(Probe).perform_later(failing(10)).await.unwrap();
    assert_eq!(tq.drain(DrainOpts::with_scheduled()).await.unwrap(), report(0, 2, 1));
    let letters = tq.queue().dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].error.starts_with("gave up after 3 of 3 attempts"), "{}", letters[0].error);

    let moved = tq.clock().now();
    tq.queue().job(Probe).perform_later(ProbeParams { fatal: Some(true), ..Default::default() }).await.unwrap();
    assert_eq!(tq.drain(DrainOpts::with_scheduled()).await.unwrap(), report(0, 0, 1), "no retry after a fatal error");
    assert_eq!(tq.clock().now(), moved);
    assert!(tq.queue().dead_letters(10).await.unwrap().iter().any(|l| l.error.starts_with("fatal: probe asked")));
}

#[tokio::test]
#[should_panic(expected = "enqueued (1):\n  {\"fail_attempts\":1}")]
async fn assert_enqueued_lists_what_was_enqueued_when_it_fails() {
    let tq = test_queue().await;
    tq.queue().job(Probe).perform_later(failing(1)).await.unwrap();
    tq.assert_enqueued::<Probe>(&failing(2)).await;
}

#[tokio::test]
async fn cleanup_hands_a_backlog_to_continuations_until_it_is_pruned() {
    let tq = test_queue().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(tq.queue().job(Probe).perform_later(ProbeParams::default()).await.unwrap().message_id);
    }
    assert_eq!(tq.drain(DrainOpts::default()).await.unwrap(), report(3, 0, 0));
    tq.clock().advance(Duration::from_secs(2 * 3600));

    // One row per pass and one pass per run: the first run prunes one message and enqueues part 1.
    let retention = RetentionConfig { messages: Duration::from_secs(3600), batch: 1, ..RetentionConfig::default() };
    let params = CleanupParams { max_passes: Some(1), ..CleanupParams::new("2026-01-01", &retention) };
    tq.perform_job(&Cleanup, params.clone()).await.unwrap();
    tq.assert_enqueued_where::<Cleanup>("part 1", |p| p.part == 1 && p.day == "2026-01-01").await;

    // The continuations run until a pass finds less than a batch.
    let drained = tq.drain(DrainOpts::with_scheduled()).await.unwrap();
    assert!(drained.succeeded >= 2 && drained.failed == 0 && drained.dead == 0, "{drained:?}");
    for id in &ids {
        assert!(tq.queue().message(id).await.unwrap().is_none(), "message {id} was pruned");
    }
    tq.refute_enqueued_where::<Cleanup>("any part", |_| true).await;
}

/// A small upstream on localhost: paged accounts feeds, and paged records to export.
#[derive(Default)]
struct Upstream {
    accounts: BTreeMap<String, Vec<u64>>,
    /// Accounts that answer 500.
    broken: Vec<String>,
    /// Every feed request: (account, cursor).
    feed_calls: Vec<(String, Option<String>)>,
    records: u64,
    /// Batch numbers whose next PUT answers 503 (once).
    fail_batch_once: Vec<u64>,
    /// Batch number → PUTs received.
    puts: BTreeMap<u64, u32>,
    completed: Option<Value>,
}

type Shared = Arc<Mutex<Upstream>>;

async fn changes(
    State(u): State<Shared>,
    Path(account): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut u = u.lock().unwrap();
    let cursor = q.get("cursor").cloned();
    u.feed_calls.push((account.clone(), cursor.clone()));
    if u.broken.contains(&account) {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
    }
    let feed = u.accounts.get(&account).cloned().unwrap_or_default();
    let from: usize = cursor.map(|c| c.trim_start_matches("pos-").parse().unwrap()).unwrap_or(0);
    let items: Vec<u64> = feed.iter().skip(from).take(2).copied().collect();
    let next = from + items.len();
    (
        StatusCode::OK,
        Json(json!({ "items": items, "next_cursor": format!("pos-{next}"), "has_more": next < feed.len() })),
    )
}

async fn records(State(u): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Json<Value> {
    let u = u.lock().unwrap();
    let limit: u64 = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let ids: Vec<Value> = (after + 1..=u.records).take(limit as usize).map(|i| json!({ "id": i })).collect();
    let last = after + ids.len() as u64;
    Json(json!({ "records": ids, "next": (last < u.records).then(|| last.to_string()), "total": u.records }))
}

async fn put_batch(State(u): State<Shared>, Path((_export, n)): Path<(String, u64)>) -> StatusCode {
    let mut u = u.lock().unwrap();
    if let Some(i) = u.fail_batch_once.iter().position(|b| *b == n) {
        u.fail_batch_once.remove(i);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    *u.puts.entry(n).or_default() += 1;
    StatusCode::NO_CONTENT
}

async fn complete(State(u): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    u.lock().unwrap().completed = Some(body);
    StatusCode::NO_CONTENT
}

async fn upstream() -> (String, Shared) {
    let shared: Shared = Default::default();
    let app = axum::Router::new()
        .route("/accounts/{account}/changes", get(changes))
        .route("/records", get(records))
        .route("/exports/{id}/batches/{n}", put(put_batch))
        .route("/exports/{id}/complete", post(complete))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), shared)
}

#[tokio::test]
async fn sync_accounts_resumes_only_the_failed_account_on_the_next_attempt() {
    let tq = test_queue().await;
    let (api, up) = upstream().await;
    {
        let mut u = up.lock().unwrap();
        u.accounts.insert("acme".into(), (1..=3).collect());
        u.accounts.insert("initech".into(), vec![1]);
        u.broken.push("initech".into());
    }
    let params = jobs::SyncAccountsParams {
        api_base: api,
        accounts: vec!["acme".into(), "initech".into()],
        dry_run: false,
        page_size: None,
    };
    // Two attempts of one message: the second reads the first's checkpoint.
    let first = TestContext::default();
    let e = tq.perform_job_with(&SyncAccounts, params.clone(), first.clone()).await.unwrap_err();
    assert!(!e.is_fatal() && e.message().starts_with("1 of 2 accounts failed: initech"), "{e}");
    {
        let mut u = up.lock().unwrap();
        u.broken.clear();
        u.feed_calls.clear();
    }
    let second = TestContext { attempt: 2, ..first };
    tq.perform_job_with(&SyncAccounts, params, second).await.unwrap();
    let called: Vec<String> = up.lock().unwrap().feed_calls.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(called, vec!["initech".to_owned()], "acme was done: not synced again");
    let log = tq.queue().sync_log(Some("sync-accounts")).await.unwrap();
    let cursors: BTreeMap<String, Option<String>> = log.into_iter().map(|r| (r.key, r.cursor)).collect();
    assert_eq!(cursors["acme"].as_deref(), Some("pos-3"));
    assert_eq!(cursors["initech"].as_deref(), Some("pos-1"));
}

#[tokio::test]
async fn export_records_retries_a_failed_batch_and_resumes_from_its_checkpoint() {
    let tq = test_queue().await;
    let (api, up) = upstream().await;
    {
        let mut u = up.lock().unwrap();
        u.records = 5;
        u.fail_batch_once.push(2);
    }
    let params = ExportRecordsParams { api_base: api, export_id: "exp-1".into(), batch_size: Some(2) };
    let id = tq.queue().job(ExportRecords).perform_later(params).await.unwrap().message_id;

    assert_eq!(tq.drain(DrainOpts::with_scheduled()).await.unwrap(), report(1, 1, 0));
    assert_eq!(attempts(&tq, &id).await, vec![(1, "failed".to_owned()), (2, "success".to_owned())]);
    let u = up.lock().unwrap();
    assert_eq!(u.puts, BTreeMap::from([(1, 1), (2, 1), (3, 1)]), "batch 1 was not sent again");
    assert_eq!(u.completed, Some(json!({ "batches": 3, "records": 5 })));
}

#[tokio::test]
async fn a_snooze_spends_no_attempt_and_the_next_run_keeps_its_number() {
    let tq = test_queue().await;
    let params = ProbeParams { snooze_times: Some(2), fail_attempts: Some(1), ..Default::default() };
    let id = tq.queue().job(Probe).perform_later(params).await.unwrap().message_id;
    let done = tq.drain(DrainOpts::with_scheduled()).await.unwrap();
    assert_eq!((done.snoozed, done.failed, done.succeeded, done.dead), (2, 1, 1, 0), "{done:?}");
    let ran =
        vec![(1, "snoozed".to_owned()), (1, "snoozed".to_owned()), (1, "failed".to_owned()), (2, "success".to_owned())];
    assert_eq!(attempts(&tq, &id).await, ran, "two snoozes, then attempt 1 fails and attempt 2 succeeds");
    // 1 s, 1 s, then the first retry's 100 s: the snoozes used their own delay.
    assert_eq!(tq.clock().now() - epoch(), chrono::Duration::seconds(102));
    let m = tq.queue().message(&id).await.unwrap().unwrap();
    assert_eq!(m.deliveries[0].attempts, 2, "attempts count real runs only");
}

#[tokio::test]
async fn a_snoozing_job_is_never_dead_lettered_for_its_snoozes() {
    let tq = test_queue().await;
    // max_attempts is 3: five snoozes in a row spend none of them.
    let params = ProbeParams { snooze_times: Some(5), ..Default::default() };
    let id = tq.queue().job(Probe).perform_later(params).await.unwrap().message_id;
    let done = tq.drain(DrainOpts::with_scheduled()).await.unwrap();
    assert_eq!((done.snoozed, done.succeeded, done.dead), (5, 1, 0), "{done:?}");
    assert_eq!(attempts(&tq, &id).await.last(), Some(&(1, "success".to_owned())));
}

#[tokio::test]
async fn a_job_that_cancels_itself_ends_cancelled_without_retry_or_dead_letter() {
    let tq = test_queue().await;
    let params = ProbeParams { cancel: Some("order withdrawn".into()), ..Default::default() };
    let id = tq.queue().job(Probe).perform_later(params).await.unwrap().message_id;
    let done = tq.drain(DrainOpts::with_scheduled()).await.unwrap();
    assert_eq!((done.cancelled, done.failed, done.dead), (1, 0, 0), "{done:?}");
    assert_eq!(attempts(&tq, &id).await, vec![(1, "cancelled".to_owned())]);
    let rows =
        tq.queue().executions(ExecutionListParams { message_id: Some(id.clone()), limit: 1, ..Default::default() });
    assert_eq!(rows.await.unwrap()[0].error.as_deref(), Some("order withdrawn"));
    let m = tq.queue().message(&id).await.unwrap().unwrap();
    assert_eq!(m.deliveries[0].state, vqs::store::DeliveryState::Cancelled);
    assert!(tq.queue().dead_letters(10).await.unwrap().is_empty());
    tq.refute_enqueued_where::<Probe>("anything", |_| true).await;
}

#[tokio::test]
async fn a_pending_message_cancelled_by_an_operator_never_runs() {
    let tq = test_queue().await;
    let delayed = PerformOpts { delay: std::time::Duration::from_secs(60), ..Default::default() };
    let id = tq.queue().job(Probe).perform_later_with(ProbeParams::default(), delayed).await.unwrap().message_id;
    let done = tq.queue().cancel(&id).await.unwrap();
    assert_eq!(done.pending.len(), 1);
    assert_eq!(tq.drain(DrainOpts::with_scheduled()).await.unwrap(), report(0, 0, 0));
    assert!(attempts(&tq, &id).await.is_empty(), "it never ran");
    let again = tq.queue().cancel(&id).await.unwrap_err().to_string();
    assert!(again.contains("already finished (cancelled in"), "{again}");
    let unknown = tq.queue().cancel("msg_nope").await.unwrap_err().to_string();
    assert!(unknown.contains("no message msg_nope"), "{unknown}");
}
