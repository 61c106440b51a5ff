//! The seed's job patterns against real storage (both backends) and a real upstream API
//! this test stands up on localhost: an incremental multi-account sync, a batched export
//! with progress, and the cleanup job behind its daily cron.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use common::TestApp;
use serde_json::{Value, json};
use vqs::Clock;
use vqs::store::DeliveryState;

/// The upstream's data and what it was asked.
#[derive(Default)]
struct Upstream {
    /// Account → its change feed (item ids in order).
    accounts: BTreeMap<String, Vec<u64>>,
    /// Accounts that answer 500 (transient) / are unknown (404 comes from absence).
    broken: BTreeSet<String>,
    /// Every feed request: (account, cursor).
    feed_calls: Vec<(String, Option<String>)>,
    records: u64,
    /// Batch numbers whose next PUT fails with 500 (once).
    fail_batch_once: BTreeSet<u64>,
    /// Export id → batch number → how many PUTs it received, and its records.
    batches: BTreeMap<String, BTreeMap<u64, (u32, Vec<Value>)>>,
    completed: BTreeMap<String, Value>,
}

type Shared = Arc<Mutex<Upstream>>;

async fn changes(
    State(u): State<Shared>,
    Path(account): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut u = u.lock().unwrap();
    let cursor = q.get("cursor").cloned();
    u.feed_calls.push((account.clone(), cursor.clone()));
    if u.broken.contains(&account) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream is down for this account").into_response();
    }
    let Some(feed) = u.accounts.get(&account) else {
        return (StatusCode::NOT_FOUND, "no such account").into_response();
    };
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let from: usize = cursor.as_deref().map(|c| c.trim_start_matches("pos-").parse().unwrap()).unwrap_or(0);
    let items: Vec<u64> = feed.iter().skip(from).take(limit).copied().collect();
    let next = from + items.len();
    Json(json!({ "items": items, "next_cursor": format!("pos-{next}"), "has_more": next < feed.len() })).into_response()
}

async fn records(State(u): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Json<Value> {
    let u = u.lock().unwrap();
    let limit: u64 = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let ids: Vec<Value> = (after + 1..=u.records).take(limit as usize).map(|i| json!({ "id": i })).collect();
    let last = after + ids.len() as u64;
    let next = (last < u.records).then(|| last.to_string());
    Json(json!({ "records": ids, "next": next, "total": u.records }))
}

async fn put_batch(
    State(u): State<Shared>,
    Path((export, n)): Path<(String, u64)>,
    Json(body): Json<Value>,
) -> StatusCode {
    let mut u = u.lock().unwrap();
    if u.fail_batch_once.remove(&n) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let entry = u.batches.entry(export).or_default().entry(n).or_default();
    entry.0 += 1;
    entry.1 = body["records"].as_array().cloned().unwrap_or_default();
    StatusCode::NO_CONTENT
}

async fn complete(State(u): State<Shared>, Path(export): Path<String>, Json(body): Json<Value>) -> StatusCode {
    u.lock().unwrap().completed.insert(export, body);
    StatusCode::NO_CONTENT
}

/// Serve the upstream on 127.0.0.1; returns its base URL and its state.
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

fn t0() -> DateTime<Utc> {
    "2026-06-01T08:00:00Z".parse().unwrap()
}

async fn sync_log(app: &TestApp) -> BTreeMap<String, vqs::store::SyncLogRecord> {
    app.queue().sync_log(Some("sync-accounts")).await.unwrap().into_iter().map(|r| (r.key.clone(), r)).collect()
}

fn accounts(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn incremental_sync_isolates_a_failing_account_and_resumes_it_alone() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let (api, up) = upstream().await;
    {
        let mut u = up.lock().unwrap();
        u.accounts.insert("acme".into(), (1..=5).collect());
        u.accounts.insert("globex".into(), (1..=3).collect());
        u.accounts.insert("initech".into(), vec![]);
        u.broken.insert("initech".into());
    }
    let params = jobs::SyncAccountsParams {
        api_base: api.clone(),
        accounts: accounts(&["acme", "initech", "globex"]),
        dry_run: false,
        page_size: Some(2),
    };
    let id = app.queue().job(jobs::SyncAccounts).perform_later(params.clone()).await.unwrap().message_id;
    assert_eq!(app.dispatch("sync-accounts").await, 1);

    // initech failed; acme (after it) and globex (after that) synced anyway.
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".to_owned())]);
    let log = sync_log(&app).await;
    assert_eq!((log["acme"].items_synced, log["acme"].cursor.as_deref()), (5, Some("pos-5")));
    assert_eq!((log["globex"].items_synced, log["globex"].cursor.as_deref()), (3, Some("pos-3")));
    assert_eq!(log["acme"].last_success_at, Some(t0()));
    assert!(log["initech"].last_error.as_deref().unwrap().contains("500"), "{:?}", log["initech"]);
    assert_eq!(log["initech"].last_success_at, None);
    let execution = &app.queue().executions(Default::default()).await.unwrap()[0];
    assert!(execution.error.as_deref().unwrap().starts_with("1 of 3 accounts failed: initech: upstream answered 500"));
    let progress =
        app.queue().progress(vqs::store::ProgressListParams { message_id: Some(id.clone()), limit: 1 }).await.unwrap();
    assert_eq!((progress[0].done, progress[0].total), (3, Some(3)));

    // The upstream recovers; the retry (after 100 s) asks only for initech.
    {
        let mut u = up.lock().unwrap();
        u.broken.clear();
        u.accounts.insert("initech".into(), vec![1, 2]);
        u.feed_calls.clear();
    }
    clock.advance(Duration::from_secs(100));
    assert_eq!(app.dispatch("sync-accounts").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".to_owned()), (2, "success".to_owned())]);
    let calls: BTreeSet<String> = up.lock().unwrap().feed_calls.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(calls, BTreeSet::from(["initech".to_owned()]), "finished accounts are not synced again");
    let log = sync_log(&app).await;
    assert_eq!((log["initech"].items_synced, log["initech"].last_error.as_deref()), (2, None));

    // Incremental: the next run starts at each account's cursor and sees only what is new.
    up.lock().unwrap().accounts.get_mut("acme").unwrap().extend([6, 7]);
    up.lock().unwrap().feed_calls.clear();
    clock.advance(Duration::from_secs(3600));
    app.queue().job(jobs::SyncAccounts).perform_later(params.clone()).await.unwrap();
    assert_eq!(app.dispatch("sync-accounts").await, 1);
    let log = sync_log(&app).await;
    assert_eq!((log["acme"].items_synced, log["acme"].cursor.as_deref()), (2, Some("pos-7")));
    assert_eq!(log["globex"].items_synced, 0, "nothing new for globex");
    let acme_calls: Vec<Option<String>> =
        up.lock().unwrap().feed_calls.iter().filter(|(a, _)| a == "acme").map(|(_, c)| c.clone()).collect();
    assert_eq!(acme_calls[0].as_deref(), Some("pos-5"), "started from the saved cursor");

    // Dry run: reads, writes nothing.
    up.lock().unwrap().accounts.get_mut("globex").unwrap().extend([4, 5, 6]);
    let before = sync_log(&app).await;
    clock.advance(Duration::from_secs(60));
    let dry = jobs::SyncAccountsParams { dry_run: true, ..params.clone() };
    let dry_id = app.queue().job(jobs::SyncAccounts).perform_later(dry).await.unwrap().message_id;
    assert_eq!(app.dispatch("sync-accounts").await, 1);
    assert_eq!(app.attempts(&dry_id).await, vec![(1, "success".to_owned())]);
    assert_eq!(sync_log(&app).await, before, "a dry run changes no cursor and no log entry");
    let progress =
        app.queue().progress(vqs::store::ProgressListParams { message_id: Some(dry_id), limit: 1 }).await.unwrap();
    assert!(
        progress[0].note.as_deref().unwrap().contains("dry run: 3 items would be applied"),
        "{:?}",
        progress[0].note
    );
}

#[tokio::test]
async fn an_account_the_upstream_does_not_know_dead_letters_the_run_and_the_others_still_sync() {
    let app = TestApp::new().await;
    let (api, up) = upstream().await;
    up.lock().unwrap().accounts.insert("acme".into(), vec![1]);
    let params =
        jobs::SyncAccountsParams { api_base: api, accounts: accounts(&["ghost", "acme"]), ..Default::default() };
    let id = app.queue().job(jobs::SyncAccounts).perform_later(params).await.unwrap().message_id;
    app.dispatch("sync-accounts").await;
    let m = app.queue().message(&id).await.unwrap().unwrap();
    assert_eq!(m.deliveries[0].state, DeliveryState::Dead, "a 404 will not fix itself: no retries");
    let dead = app.queue().dead_letters(10).await.unwrap();
    assert!(dead[0].error.contains("ghost: upstream answered 404"), "{}", dead[0].error);
    assert_eq!(sync_log(&app).await["acme"].items_synced, 1);

    // The operator creates the account upstream and replays: it runs and succeeds.
    up.lock().unwrap().accounts.insert("ghost".into(), vec![1, 2]);
    let replayed = app.queue().dead_letter_replay(dead[0].id).await.unwrap().message_id;
    assert_eq!(app.dispatch("sync-accounts").await, 1);
    assert_eq!(app.attempts(&replayed).await, vec![(1, "success".to_owned())]);
    assert_eq!(sync_log(&app).await["ghost"].items_synced, 2);
}

#[tokio::test]
async fn a_batched_export_reports_progress_and_resumes_at_the_failed_batch() {
    let clock = Clock::manual(t0());
    let app = TestApp::with_clock(clock.clone()).await;
    let (api, up) = upstream().await;
    {
        let mut u = up.lock().unwrap();
        u.records = 250;
        u.fail_batch_once.insert(2);
    }
    let params = jobs::ExportRecordsParams { api_base: api, export_id: "exp-1".into(), batch_size: Some(100) };
    let job = app.queue().job(jobs::ExportRecords);
    let id = job.perform_later(params.clone()).await.unwrap().message_id;
    assert!(job.perform_later(params).await.unwrap().duplicate, "one export per id while it runs");
    app.dispatch("export-records").await;

    // Batch 2 failed: attempt 1 failed after delivering batch 1, and said how far it got.
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".to_owned())]);
    let (_, progress) = app.admin_get(&format!("/api/admin/progress?message_id={id}")).await;
    assert_eq!((progress[0]["done"].as_u64(), progress[0]["total"].as_u64()), (Some(100), Some(250)));
    assert_eq!(progress[0]["note"], "batch 1 delivered");

    clock.advance(Duration::from_secs(100));
    app.dispatch("export-records").await;
    assert_eq!(app.attempts(&id).await, vec![(1, "failed".to_owned()), (2, "success".to_owned())]);
    {
        let u = up.lock().unwrap();
        let puts: Vec<(u64, u32, usize)> = u.batches["exp-1"].iter().map(|(n, (c, r))| (*n, *c, r.len())).collect();
        assert_eq!(
            puts,
            vec![(1, 1, 100), (2, 1, 100), (3, 1, 50)],
            "the retry resumed at batch 2; batch 1 was sent once"
        );
        assert_eq!(u.completed["exp-1"], json!({"batches": 3, "records": 250}));
    }
    let (_, m) = app.admin_get(&format!("/api/admin/messages/{id}")).await;
    assert_eq!((m["progress"][0]["done"].as_u64(), m["progress"][0]["total"].as_u64()), (Some(250), Some(250)));
}

#[tokio::test]
async fn the_daily_cleanup_cron_enqueues_one_sweep_that_prunes_and_continues_a_backlog() {
    let clock = Clock::manual(t0());
    let mut app = TestApp::with_clock(clock.clone()).await;
    // Finished messages to prune: 5 probes, kept 1 h, pruned 2 per pass, 2 passes per run.
    app.state.retention =
        vqs::RetentionConfig { messages: Duration::from_secs(3600), batch: 2, ..vqs::RetentionConfig::default() };
    app.router = web::app(app.state.clone());
    let job = app.queue().job(jobs::Probe);
    for _ in 0..5 {
        job.perform_later(jobs::ProbeParams::default()).await.unwrap();
    }
    app.dispatch("probe").await;
    clock.advance(Duration::from_secs(2 * 3600));

    let tick = || {
        http::Request::get("/api/cron/cleanup")
            .header("authorization", format!("Bearer {}", common::CRON_SECRET))
            .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let (status, first) = app.call(tick()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, second) = app.call(tick()).await;
    assert_eq!(second["enqueued"][0]["duplicate"], true, "one sweep per day");
    let unauthorized = http::Request::get("/api/cron/cleanup").body(axum::body::Body::empty()).unwrap();
    assert_eq!(app.call(unauthorized).await.0, StatusCode::UNAUTHORIZED);

    // The sweep's params name the day and the app's retention.
    let id = first["enqueued"][0]["messageId"].as_str().unwrap().to_owned();
    let m = app.queue().message(&id).await.unwrap().unwrap();
    assert_eq!((m.payload["day"].as_str(), m.payload["messages_s"].as_u64()), (Some("2026-06-01"), Some(3600)));
    assert_eq!(m.payload["batch"], 2);

    // The sweep prunes the 5 finished probes in bounded passes of 2 rows.
    assert_eq!(app.dispatch("cleanup").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "success".to_owned())]);
    assert_eq!(succeeded_probes(&app).await, 0, "every finished probe older than an hour is gone");
    let p = app.queue().progress(vqs::store::ProgressListParams { message_id: Some(id), limit: 1 }).await.unwrap();
    assert_eq!(p[0].note.as_deref(), Some("5 rows pruned in 3 passes"));

    // A backlog bigger than a run's passes: the run hands the rest to a continuation.
    for _ in 0..5 {
        job.perform_later(jobs::ProbeParams::default()).await.unwrap();
    }
    app.dispatch("probe").await;
    clock.advance(Duration::from_secs(2 * 3600));
    let mut params: jobs::CleanupParams = serde_json::from_value(m.payload.clone()).unwrap();
    params.max_passes = Some(2);
    params.part = 1;
    let run = app.queue().job(jobs::Cleanup).perform_later(params).await.unwrap().message_id;
    assert_eq!(app.dispatch("cleanup").await, 1);
    assert_eq!(app.attempts(&run).await, vec![(1, "success".to_owned())]);
    // (The earlier sweep's own finished message is older than an hour too: 6 to prune.)
    assert!(succeeded_probes(&app).await > 0, "2 passes of 2 rows cannot prune them all");
    let waiting: i64 =
        app.queue().depth().await.unwrap().iter().filter(|d| d.topic == "cleanup").map(|d| d.waiting).sum();
    assert_eq!(waiting, 1, "a continuation was enqueued");
    assert_eq!(app.dispatch("cleanup").await, 1);
    assert_eq!(succeeded_probes(&app).await, 0);
}

async fn succeeded_probes(app: &TestApp) -> i64 {
    app.queue().stats().await.unwrap().into_iter().find(|t| t.topic == "probe").map(|t| t.succeeded).unwrap_or(0)
}
