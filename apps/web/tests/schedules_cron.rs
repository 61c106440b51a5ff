//! Runtime schedules as Vercel fires them: the per-minute cron route `GET /api/cron/schedules`
//! (once per tick however often called, behind the cron secret; on a queue that publishes
//! to a remote queue service, claimed then published there, a failed publish retried), and
//! their heartbeats in the admin health.
//! Both backends (`VQS_TEST_BACKEND=postgres`); a manual clock, no waiting.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use chrono::{DateTime, Utc};
use common::{CRON_SECRET, TestApp};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vqs::store::{ExecutionFinishParams, LeasedMessage, MessageListParams, MessageSendParams, SendResult};
use vqs::{Clock, DeadLetter, QueueService, ReceiveByIdParams, Schedule, ServiceError, ServiceLease};

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

/// A remote queue service whose first `fail` sends fail (Vercel's API down for a moment);
/// everything else goes to this database's queue service.
struct Flaky {
    inner: vqs::LocalQueueService,
    fail: AtomicU32,
}

#[async_trait]
impl QueueService for Flaky {
    async fn send(&self, p: MessageSendParams) -> Result<SendResult, ServiceError> {
        if self.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(ServiceError::Unavailable("503 from the queue service".into()));
        }
        self.inner.send(p).await
    }
    async fn receive_by_id(&self, p: ReceiveByIdParams) -> Result<LeasedMessage, ServiceError> {
        self.inner.receive_by_id(p).await
    }
    async fn acknowledge(&self, l: &ServiceLease, c: Option<ExecutionFinishParams>) -> Result<(), ServiceError> {
        self.inner.acknowledge(l, c).await
    }
    async fn extend(&self, l: &ServiceLease, seconds: u32) -> Result<(), ServiceError> {
        self.inner.extend(l, seconds).await
    }
    async fn retry_after(
        &self,
        l: &ServiceLease,
        seconds: u32,
        c: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError> {
        self.inner.retry_after(l, seconds, c).await
    }
    async fn dead_letter(
        &self,
        l: &ServiceLease,
        letter: DeadLetter,
        c: Option<ExecutionFinishParams>,
    ) -> Result<(), ServiceError> {
        self.inner.dead_letter(l, letter, c).await
    }
}

/// The schedule's messages (by its fires' idempotency keys), oldest tick first.
async fn fired_keys(app: &TestApp) -> Vec<String> {
    let ids = app.queue().store().message_list(MessageListParams { topic: "probe".into(), limit: 100 }).await.unwrap();
    let mut keys = Vec::new();
    for id in ids {
        let m = app.queue().message(&id).await.unwrap().unwrap();
        keys.push(m.idempotency_key.unwrap_or_default());
    }
    keys.sort();
    keys
}

/// On Vercel the deployment's queue publishes to Vercel's queue service: each due tick is
/// claimed in the database once, then published there under the tick's key; a publish that
/// failed is published again by a later call, and still once.
#[tokio::test]
async fn on_a_queue_publishing_to_a_remote_service_each_tick_is_claimed_then_published_once() {
    let clock = Clock::manual(at("2026-01-05T10:00:30Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    let remote = Arc::new(Flaky { inner: app.queue().local_service(), fail: AtomicU32::new(1) });
    let mut state = app.state.clone();
    state.queue = app.queue().publishing_to(remote);
    let deployed = web::app(state.clone());

    // No schedules: an honest empty report.
    let (status, body) = call(&deployed, cron_get(Some(CRON_SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fired"].as_array().unwrap().len(), 0, "{body}");

    // Set through the deployed queue (the admin API's path on Vercel).
    let s = Schedule::new("pings", "* * * * *", "probe").with_payload(serde_json::json!({"sleep_ms": 1}));
    state.queue.schedules().upsert(s).await.unwrap();

    // 10:01 is due; the queue service fails the publish: claimed and recorded, not lost.
    clock.advance(Duration::from_secs(60));
    let (status, body) = call(&deployed, cron_get(Some(CRON_SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["fired"].as_array().unwrap().len(), body["failed"].as_u64()), (0, Some(1)), "{body}");
    let record = app.queue().schedules().get("pings").await.unwrap().unwrap();
    assert_eq!(record.last_tick, Some(at("2026-01-05T10:01:00Z")), "the tick is claimed");
    assert_eq!(record.next_fire_at, Some(at("2026-01-05T10:02:00Z")));
    assert!(fired_keys(&app).await.is_empty());
    // Called again at once: the failed publish may still be in flight elsewhere; left alone.
    let (_, body) = call(&deployed, cron_get(Some(CRON_SECRET))).await;
    assert_eq!((body["resent"].as_u64(), body["fired"].as_array().unwrap().len()), (Some(0), 0), "{body}");

    // 10:02:05: the failed 10:01 publish is sent again, and 10:02 fires.
    clock.advance(Duration::from_secs(35));
    let (status, body) = call(&deployed, cron_get(Some(CRON_SECRET))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["resent"].as_u64(), body["fired"].as_array().unwrap().len()), (Some(1), 1), "{body}");
    let (_, body) = call(&deployed, cron_get(Some(CRON_SECRET))).await;
    assert_eq!((body["resent"].as_u64(), body["fired"].as_array().unwrap().len()), (Some(0), 0), "{body}");

    // 16 calls at once for 10:03: one claims it.
    clock.advance(Duration::from_secs(60));
    let calls = (0..16).map(|_| call(&deployed, cron_get(Some(CRON_SECRET))));
    let fired: usize =
        futures::future::join_all(calls).await.iter().map(|(_, b)| b["fired"].as_array().unwrap().len()).sum();
    assert_eq!(fired, 1);

    assert_eq!(
        fired_keys(&app).await,
        [
            "schedule:pings:2026-01-05T10:01:00Z",
            "schedule:pings:2026-01-05T10:02:00Z",
            "schedule:pings:2026-01-05T10:03:00Z"
        ],
        "each tick once, the failed one included"
    );
    let record = app.queue().schedules().get("pings").await.unwrap().unwrap();
    assert!(record.last_message_id.is_some(), "the last fire's message is recorded: {record:?}");
    // A trigger on the deployed queue publishes there too.
    let fired = state.queue.schedules().trigger("pings").await.unwrap();
    assert!(matches!(fired, vqs::store::ScheduleFired::Fired { .. }), "{fired:?}");
    assert_eq!(fired_keys(&app).await.len(), 4);
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
