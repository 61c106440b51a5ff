//! The local cron scheduler on an injected clock: fires at the right instants through the
//! real (guarded) route, records every run, never replays missed ticks, fires a tick once
//! across processes; cron locks; heartbeats.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use chrono::{DateTime, Utc};
use common::TestApp;
use vqs::{Clock, CronScheduler, ScheduledCron};
use vqs_axum::in_process::InProcessCronInvoker;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn scheduler(app: &TestApp, auth: auth::CronAuth) -> CronScheduler {
    // The repo's hourly and daily crons; the 5-minute maintenance cron and the per-minute
    // schedules cron (both for Vercel) would fire at every tick these tests look at.
    let crons = ScheduledCron::from_config(&app.state.vercel)
        .unwrap()
        .into_iter()
        .filter(|c| c.path != "/api/cron/maintenance" && c.path != "/api/cron/schedules")
        .collect();
    CronScheduler::new(app.queue().clone(), crons, Arc::new(InProcessCronInvoker::new(app.router.clone(), auth)))
}

#[tokio::test]
async fn fires_on_schedule_through_the_guarded_route_and_records_each_run() {
    let clock = Clock::manual(at("2026-01-05T10:59:30Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    let mut s = scheduler(&app, app.state.cron_auth.clone());
    assert_eq!(s.next_due(), Some(at("2026-01-05T11:00:00Z")));

    clock.advance(Duration::from_secs(29));
    assert!(s.fire_due_and_wait().await.unwrap().is_empty(), "not before 11:00");
    clock.advance(Duration::from_secs(1));
    let fired = s.fire_due_and_wait().await.unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(
        (fired[0].path.as_str(), fired[0].scheduled_at),
        ("/api/cron/sync-patients", at("2026-01-05T11:00:00Z"))
    );
    assert!(s.fire_due_and_wait().await.unwrap().is_empty(), "a tick fires once");

    let runs =
        app.queue().store().cron_run_list(vqs::store::CronRunListParams { path: None, limit: 10 }).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].outcome.as_str(), runs[0].status_code), ("success", Some(200)));
    assert!(runs[0].finished_at.is_some() && runs[0].duration_ms.is_some());
    // The cron is a dispatcher: it enqueued the sync for the 11:00 window.
    let stats = app.queue().stats().await.unwrap();
    assert_eq!(stats.iter().find(|t| t.topic == "sync-patient").unwrap().waiting, 1);

    // Three hours down: 12:00, 13:00 and 14:00 were missed; only 14:00 fires, no burst.
    clock.advance(Duration::from_secs(3 * 3600 + 10));
    let fired = s.fire_due_and_wait().await.unwrap();
    assert_eq!(fired.iter().map(|f| f.scheduled_at).collect::<Vec<_>>(), vec![at("2026-01-05T14:00:00Z")]);
    assert_eq!(s.next_due(), Some(at("2026-01-05T15:00:00Z")));
    assert_eq!(
        app.queue().store().cron_run_list(vqs::store::CronRunListParams { path: None, limit: 10 }).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn a_tick_fires_once_across_processes() {
    let clock = Clock::manual(at("2026-01-05T10:59:59Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    let mut a = scheduler(&app, app.state.cron_auth.clone());
    let mut b = scheduler(&app, app.state.cron_auth.clone());
    let mut c = scheduler(&app, app.state.cron_auth.clone());
    for _ in 0..2 {
        clock.advance(Duration::from_secs(3600));
        let fired = a.fire_due_and_wait().await.unwrap().len()
            + b.fire_due_and_wait().await.unwrap().len()
            + c.fire_due_and_wait().await.unwrap().len();
        assert_eq!(fired, 1, "one of three schedulers fires each tick");
    }
    assert_eq!(
        app.queue().store().cron_run_list(vqs::store::CronRunListParams { path: None, limit: 10 }).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn the_scheduler_calls_routes_the_way_vercel_cron_does() {
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let record = seen.clone();
    let router = Router::new().route(
        "/api/cron/echo",
        get(move |headers: HeaderMap| {
            record.lock().unwrap().push(headers);
            async { "ok" }
        }),
    );
    let invoker = InProcessCronInvoker::new(router, auth::CronAuth::from_values(Some("the-cron-secret".into()), false));
    let resp = vqs::CronInvoker::invoke(&invoker, "/api/cron/echo", "*/5 * * * *").await.unwrap();
    assert_eq!(resp.status, 200);
    let h = seen.lock().unwrap().pop().unwrap();
    assert_eq!(h["user-agent"], "vercel-cron/1.0");
    assert_eq!(h["x-vercel-cron-schedule"], "*/5 * * * *");
    assert_eq!(h["authorization"], "Bearer the-cron-secret");
}

#[tokio::test]
async fn a_refused_run_is_recorded_as_failed_and_the_cron_is_failing() {
    let clock = Clock::manual(at("2026-01-05T10:59:59Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    // A scheduler without the secret (and not in local dev): the guard refuses it.
    let mut s = scheduler(&app, auth::CronAuth::from_values(None, false));
    clock.advance(Duration::from_secs(1));
    s.fire_due_and_wait().await.unwrap();
    let run =
        &app.queue().store().cron_run_list(vqs::store::CronRunListParams { path: None, limit: 1 }).await.unwrap()[0];
    assert_eq!((run.outcome.as_str(), run.status_code), ("failed", Some(401)));
    assert!(run.error.as_deref().unwrap().contains("answered 401"), "{:?}", run.error);
    assert!(!run.error.as_deref().unwrap().contains(common::CRON_SECRET));
    let (_, crons) = app.admin_get("/api/admin/crons").await;
    assert_eq!(crons[0]["state"], "failing");
}

/// The cron's heartbeat state as admin health shows it (public health shows only reasons).
async fn state(app: &TestApp) -> String {
    app.admin_get("/api/health").await.1["crons"][0]["state"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_cron_that_stops_succeeding_turns_late_then_ok_after_a_success() {
    let clock = Clock::manual(at("2026-01-05T10:59:59Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    let mut s = scheduler(&app, app.state.cron_auth.clone());
    clock.advance(Duration::from_secs(1));
    s.fire_due_and_wait().await.unwrap(); // 11:00 succeeds
    assert_eq!(state(&app).await, "ok");
    clock.advance(Duration::from_secs(2 * 3600 + 60)); // 13:01, the 12:00 and 13:00 ticks never ran
    assert_eq!(state(&app).await, "late");
    let (_, crons) = app.admin_get("/api/admin/crons").await;
    assert_eq!(crons[0]["state"], "late");
    assert_eq!(crons[0]["last_run"]["outcome"], "success");
    s.fire_due_and_wait().await.unwrap(); // the 13:00 tick fires now and succeeds
    assert_eq!(state(&app).await, "ok");
}

#[tokio::test]
async fn overlapping_runs_skip_while_the_lock_is_held_and_a_dead_holders_lock_expires() {
    let clock = Clock::manual(at("2026-01-05T10:00:00Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    let ttl = Duration::from_secs(60);
    let first = app.queue().cron_lock("nightly", ttl).await.unwrap().expect("free");
    assert!(app.queue().cron_lock("nightly", ttl).await.unwrap().is_none(), "the second run skips");
    assert!(app.queue().cron_lock("other", ttl).await.unwrap().is_some(), "locks are per name");
    first.release().await.unwrap();
    let second = app.queue().cron_lock("nightly", ttl).await.unwrap().expect("released on completion");

    // The holder dies without releasing: the lock stays until its TTL runs out.
    std::mem::forget(second);
    clock.advance(Duration::from_secs(59));
    assert!(app.queue().cron_lock("nightly", ttl).await.unwrap().is_none());
    clock.advance(Duration::from_secs(1));
    assert!(app.queue().cron_lock("nightly", ttl).await.unwrap().is_some(), "expired by itself");
}

#[tokio::test]
async fn a_held_cron_lock_can_be_extended_and_a_lost_one_is_reported() {
    let clock = Clock::manual(at("2026-01-05T10:00:00Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    let ttl = Duration::from_secs(60);
    let first = app.queue().cron_lock("nightly", ttl).await.unwrap().expect("free");
    clock.advance(Duration::from_secs(50));
    assert!(first.extend(Duration::from_secs(120)).await.unwrap(), "held: extended");
    clock.advance(Duration::from_secs(119));
    assert!(app.queue().cron_lock("nightly", ttl).await.unwrap().is_none(), "the extension holds it");
    // The holder could not extend in time: the lock expires and another run takes it.
    clock.advance(Duration::from_secs(1));
    let _second = app.queue().cron_lock("nightly", ttl).await.unwrap().expect("expired: another run takes it");
    assert!(!first.extend(ttl).await.unwrap(), "lost: not extended");
    assert!(first.is_lost());
}

#[tokio::test]
async fn a_cron_lock_is_extended_while_its_guard_lives() {
    let app = TestApp::new().await;
    let ttl = Duration::from_secs(2);
    let lock = app.queue().cron_lock("long-run", ttl).await.unwrap().expect("free");
    // The run outlives its TTL more than twice over: other runs keep skipping.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        assert!(app.queue().cron_lock("long-run", ttl).await.unwrap().is_none(), "extended while held");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!lock.is_lost());
    lock.release().await.unwrap();
    assert!(app.queue().cron_lock("long-run", ttl).await.unwrap().is_some(), "free once released");
}
