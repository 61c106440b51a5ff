//! Runtime schedules as Vercel fires them: the per-minute cron route `GET /api/cron/schedules`
//! (once per tick however often called, behind the cron secret, refused clearly on a queue
//! that publishes to a remote queue service), and their heartbeats in the admin health.
//! Both backends (`VQS_TEST_BACKEND=postgres`); a manual clock, no waiting.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use chrono::{DateTime, Utc};
use common::{CRON_SECRET, TestApp};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vqs::{Clock, Schedule};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn cron_get(secret: Option<&str>) -> Request<Body> {
    let mut r = Request::get("/api/cron/schedules")
        .header("user-agent", "vercel-cron/1.0")
        .header("x-vercel-cron-schedule", "* * * * *");
    if let Some(s) = secret {
        r = r.header("authorization", format!("Bearer {s}"));
    }
    r.body(Body::empty()).unwrap()
}

/// A request through another router than the test app's; the status and JSON body.
async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn every_minute(app: &TestApp, name: &str) {
    let s = Schedule::new(name, "* * * * *", "probe").with_payload(serde_json::json!({"sleep_ms": 1}));
    app.queue().schedules().upsert(s).await.unwrap();
}

#[tokio::test]
async fn the_schedules_cron_fires_a_due_tick_once_however_often_it_is_called() {
    let clock = Clock::manual(at("2026-01-05T10:00:30Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    every_minute(&app, "pings").await;

    // Not due yet: an empty report.
    let (status, body) = app.call(cron_get(Some(CRON_SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fired"].as_array().unwrap().len(), 0, "{body}");
    assert_eq!(body["due"], 0, "{body}");

    // Due: the first call fires the 10:01 tick, the second finds nothing due.
    clock.advance(Duration::from_secs(35));
    let (status, body) = app.call(cron_get(Some(CRON_SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fired = body["fired"].as_array().unwrap();
    assert_eq!(fired.len(), 1, "{body}");
    assert_eq!(fired[0]["name"], "pings");
    assert_eq!(fired[0]["tick"], "2026-01-05T10:01:00Z");
    assert!(fired[0]["messageId"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!((body["skipped"].as_u64(), body["failed"].as_u64()), (Some(0), Some(0)), "{body}");
    let (status, body) = app.call(cron_get(Some(CRON_SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fired"].as_array().unwrap().len(), 0, "the same tick fires once: {body}");

    // 16 calls at once for the next tick: one of them fires it.
    clock.advance(Duration::from_secs(60));
    let calls = (0..16).map(|_| {
        let app = &app;
        async move { app.call(cron_get(Some(CRON_SECRET))).await }
    });
    let answers = futures::future::join_all(calls).await;
    let mut fired = 0;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        fired += body["fired"].as_array().unwrap().len();
    }
    assert_eq!(fired, 1, "{answers:?}");
    let record = app.queue().schedules().get("pings").await.unwrap().unwrap();
    assert_eq!(record.last_tick, Some(at("2026-01-05T10:02:00Z")));

    // Behind the cron secret like every cron route: nothing fired without it.
    clock.advance(Duration::from_secs(60));
    for secret in [None, Some("wrong")] {
        let (status, _) = app.call(cron_get(secret)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let record = app.queue().schedules().get("pings").await.unwrap().unwrap();
    assert_eq!(record.last_tick, Some(at("2026-01-05T10:02:00Z")), "a refused call fires nothing");
}

#[tokio::test]
async fn on_a_queue_publishing_to_a_remote_service_the_schedules_cron_says_it_cannot_fire() {
    let clock = Clock::manual(at("2026-01-05T10:00:30Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    // The deployment's queue as a Vercel function has it: publishing to another service.
    let mut state = app.state.clone();
    state.queue = app.queue().publishing_to(Arc::new(app.queue().local_service()));
    let deployed = web::app(state);

    // No schedules: nothing to fire, an honest empty report (a deployment without schedules stays green).
    let (status, body) = call(&deployed, cron_get(Some(CRON_SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fired"].as_array().unwrap().len(), 0, "{body}");

    every_minute(&app, "pings").await;
    clock.advance(Duration::from_secs(60));
    let (status, body) = call(&deployed, cron_get(Some(CRON_SECRET))).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("1 runtime schedule(s)") && error.contains("Vercel"), "{error}");
    let record = app.queue().schedules().get("pings").await.unwrap().unwrap();
    assert_eq!(record.last_tick, None, "nothing fired");
}

#[tokio::test]
async fn health_counts_schedules_by_heartbeat_and_names_the_late_ones() {
    let clock = Clock::manual(at("2026-01-05T10:00:30Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    let (_, health) = app.admin_get("/api/health").await;
    assert_eq!(health["schedules"], serde_json::json!([]), "{health}");
    assert_eq!(health["schedule_counts"]["total"], 0, "{health}");

    every_minute(&app, "pings").await;
    let (status, health) = app.admin_get("/api/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["schedules"], serde_json::json!([]), "only late and failing ones are named: {health}");
    assert_eq!(
        health["schedule_counts"],
        serde_json::json!({"total": 1, "ok": 1, "late": 0, "failing": 0, "unchecked": 0}),
        "{health}"
    );

    // Nothing fires its 10:01 tick: after a minute's slack it is late, and health degraded.
    clock.advance(Duration::from_secs(95));
    let (status, health) = app.admin_get("/api/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let s = &health["schedules"][0];
    assert_eq!((s["name"].as_str(), s["state"].as_str()), (Some("pings"), Some("late")), "{health}");
    assert_eq!(s["last_fire"], serde_json::Value::Null);
    assert_eq!(s["next"], "2026-01-05T10:03:00Z");
    assert_eq!(health["schedule_counts"]["late"], 1, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["reasons"].to_string().contains("1 schedule(s) late"), "{health}");
    // Without the admin token: the status and reasons only.
    let (_, public) = app.call(Request::get("/api/health").body(Body::empty()).unwrap()).await;
    assert!(public.get("schedules").is_none(), "{public}");

    // The cron route fires the overdue tick: ok again, with its last fire.
    let (status, body) = app.call(cron_get(Some(CRON_SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, health) = app.admin_get("/api/health").await;
    assert_eq!(health["schedules"], serde_json::json!([]), "{health}");
    assert_eq!(health["schedule_counts"]["ok"], 1, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    let record = app.queue().schedules().get("pings").await.unwrap().unwrap();
    assert_eq!(record.last_fired_at, Some(at("2026-01-05T10:02:05Z")));
}
