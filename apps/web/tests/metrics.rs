//! `GET /metrics`: Prometheus text, parsed by a Prometheus text parser; the values move as
//! jobs run. Each test app has its own recorder, so the values are exact.

mod common;

use axum::body::Body;
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use prometheus_parse::{Scrape, Value};

const METRICS_TOKEN: &str = "test-metrics-token";

async fn scrape(app: &TestApp, token: &str) -> (StatusCode, String) {
    let req = Request::get("/metrics").header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
    let resp = tower::ServiceExt::oneshot(app.router.clone(), req).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    if status == StatusCode::OK {
        assert!(ct.unwrap().starts_with("text/plain; version=0.0.4"));
    }
    (status, body)
}

struct Metrics(Scrape);

impl Metrics {
    async fn of(app: &TestApp) -> Metrics {
        let (status, body) = scrape(app, ADMIN_TOKEN).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Metrics(Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text"))
    }

    /// The value of `metric` with these labels; 0 when the series does not exist yet.
    fn get(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
                Value::Summary(_) => panic!("{metric} is a summary, expected a histogram"),
            })
            .collect();
        assert!(found.len() <= 1, "{metric} {labels:?}: {} series", found.len());
        found.first().copied().unwrap_or(0.0)
    }

    fn histogram(&self, metric: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .find_map(|s| match &s.value {
                Value::Histogram(b) => Some(b.iter().map(|b| (b.less_than, b.count)).collect()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn counters_gauges_and_histograms_move_as_jobs_run() {
    let app = TestApp::new().await;
    let probe = [("topic", "probe")];
    let m = Metrics::of(&app).await;
    assert_eq!(m.get("vqs_messages_published_total", &probe), 0.0);
    assert_eq!(m.get("vqs_queue_depth", &[("topic", "probe"), ("state", "waiting")]), 0.0);
    // Topics of vercel.json have gauges before any message.
    assert!(m.0.samples.iter().any(|s| s.metric == "vqs_queue_depth" && s.labels.get("topic") == Some("sync-patient")));

    let job = app.queue().job(jobs::Probe);
    job.perform_later(jobs::ProbeParams::default()).await.unwrap();
    job.perform_later(jobs::ProbeParams { fatal: Some(true), ..Default::default() }).await.unwrap();
    job.perform_later(jobs::ProbeParams { fail_attempts: Some(1), ..Default::default() }).await.unwrap();
    let m = Metrics::of(&app).await;
    assert_eq!(m.get("vqs_messages_published_total", &probe), 3.0);
    assert_eq!(m.get("vqs_queue_depth", &[("topic", "probe"), ("state", "waiting")]), 3.0);
    assert!(m.get("vqs_queue_oldest_due_age_seconds", &probe) >= 0.0);
    assert_eq!(m.get("vqs_messages_delivered_total", &probe), 0.0);

    assert_eq!(app.dispatch("probe").await, 3);
    let m = Metrics::of(&app).await;
    assert_eq!(m.get("vqs_messages_delivered_total", &probe), 3.0);
    assert_eq!(m.get("vqs_jobs_succeeded_total", &probe), 1.0);
    assert_eq!(m.get("vqs_jobs_failed_total", &probe), 2.0);
    assert_eq!(m.get("vqs_jobs_retried_total", &probe), 1.0);
    assert_eq!(m.get("vqs_messages_dead_lettered_total", &probe), 1.0);
    assert_eq!(m.get("vqs_queue_depth", &[("topic", "probe"), ("state", "waiting")]), 0.0);
    assert_eq!(m.get("vqs_queue_depth", &[("topic", "probe"), ("state", "delayed")]), 1.0, "the retry waits 100 s");
    assert_eq!(m.get("vqs_queue_oldest_due_age_seconds", &probe), 0.0, "nothing is due");
    assert_eq!(m.get("vqs_dead_letters", &probe), 1.0);
    // Durations: a histogram with buckets, one observation per attempt and outcome.
    let ok = m.histogram("vqs_job_duration_seconds", &[("topic", "probe"), ("outcome", "success")]);
    assert!(ok.len() > 5, "buckets: {ok:?}");
    assert_eq!(ok.last().unwrap(), &(f64::INFINITY, 1.0));
    let failed = m.histogram("vqs_job_duration_seconds", &[("topic", "probe"), ("outcome", "failed")]);
    assert_eq!(failed.last().unwrap().1, 2.0);

    // The dead letter replayed and discarded: the gauge follows.
    let dead = app.queue().dead_letters(10).await.unwrap();
    app.queue().dead_letter_discard(dead[0].id).await.unwrap();
    assert_eq!(Metrics::of(&app).await.get("vqs_dead_letters", &probe), 0.0);
}

#[tokio::test]
async fn metrics_need_a_token_and_never_show_secrets() {
    let mut app = TestApp::new().await;
    let (status, body) = scrape(&app, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("VQS_METRICS_TOKEN"), "{body}");
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    assert_eq!(app.call(req).await.0, StatusCode::UNAUTHORIZED);

    // A dedicated read-only token works; the admin token keeps working.
    app.state.metrics_token = auth::Secret::new(Some(METRICS_TOKEN.into()));
    app.router = web::app(app.state.clone());
    let (status, body) = scrape(&app, METRICS_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    for secret in [METRICS_TOKEN, ADMIN_TOKEN, common::QUEUE_SECRET, common::CRON_SECRET] {
        assert!(!body.contains(secret));
    }
    assert_eq!(scrape(&app, ADMIN_TOKEN).await.0, StatusCode::OK);

    // Neither token configured: closed.
    app.state.metrics_token = None;
    app.state.admin_token = None;
    app.router = web::app(app.state.clone());
    let (status, body) = scrape(&app, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("refuses every request"), "{body}");
}

#[tokio::test]
async fn schedule_fires_are_counted_by_topic_and_kind_and_schedules_by_heartbeat() {
    let clock = vqs::Clock::manual("2026-01-05T09:59:30Z".parse().unwrap());
    let app = TestApp::with_clock(clock.clone()).await;
    let schedules = app.queue().schedules();
    for name in ["tenant-a", "tenant-b"] {
        schedules.upsert(vqs::Schedule::new(name, "* * * * *", "probe")).await.unwrap();
    }
    let m = Metrics::of(&app).await;
    assert_eq!(m.get("vqs_schedules", &[("state", "ok")]), 2.0);
    assert_eq!(m.get("vqs_schedules", &[("state", "late")]), 0.0);
    assert_eq!(m.get("vqs_schedule_fires_total", &[("topic", "probe"), ("kind", "due")]), 0.0);

    // An operator's fire now, then both due ticks.
    schedules.trigger("tenant-a").await.unwrap();
    clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(schedules.fire_due(100).await.unwrap().fired.len(), 2);
    let m = Metrics::of(&app).await;
    assert_eq!(m.get("vqs_schedule_fires_total", &[("topic", "probe"), ("kind", "trigger")]), 1.0);
    assert_eq!(m.get("vqs_schedule_fires_total", &[("topic", "probe"), ("kind", "due")]), 2.0);
    assert_eq!(m.get("vqs_messages_published_total", &[("topic", "probe")]), 3.0);

    // Nothing fires the next ticks: both late after their minute's slack; one disabled is ok.
    clock.advance(std::time::Duration::from_secs(125));
    let off = vqs::Schedule { enabled: false, ..vqs::Schedule::new("tenant-b", "* * * * *", "probe") };
    schedules.upsert(off).await.unwrap();
    let m = Metrics::of(&app).await;
    assert_eq!(m.get("vqs_schedules", &[("state", "late")]), 1.0);
    assert_eq!(m.get("vqs_schedules", &[("state", "ok")]), 1.0);
    assert_eq!(m.get("vqs_schedules", &[("state", "failing")]), 0.0);
    assert_eq!(m.get("vqs_schedules", &[("state", "unchecked")]), 0.0);

    // No series names a schedule: thousands of tenants stay a handful of series.
    for s in m.0.samples.iter().filter(|s| s.metric.starts_with("vqs_schedule")) {
        let labels: Vec<&str> = s.labels.keys().map(|k| k.as_str()).collect();
        assert!(labels.iter().all(|l| ["topic", "kind", "state"].contains(l)), "{} {labels:?}", s.metric);
        assert!(!format!("{:?}", s.labels).contains("tenant-"), "{:?}", s.labels);
    }
}
