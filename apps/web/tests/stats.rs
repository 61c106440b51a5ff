//! The per-minute figures behind the dashboard's charts: rolled up from the executions, read
//! through `GET /api/admin/stats/timeseries` and drawn on the overview.

mod common;

use axum::body::Body;
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// One rollup pass as the serving process's loop runs it, with the clock moved past
/// PostgreSQL's grace for ids committed out of order.
async fn roll_up(app: &TestApp) -> u64 {
    let now = app.clock.now() + chrono::Duration::seconds(30);
    let p = vqs::store::StatsRollupParams {
        now,
        batch: vqs::stats::STATS_ROLLUP_BATCH,
        depth: vec![("probe".into(), 4)],
        prune_before: now - chrono::Duration::days(7),
    };
    app.queue().store().stats_rollup(p).await.unwrap().counted
}

#[tokio::test]
async fn finished_and_failed_jobs_appear_in_the_timeseries_once() {
    let app = TestApp::new().await;
    let job = app.queue().job(jobs::Probe);
    for i in 0..9 {
        job.perform_later(jobs::ProbeParams { fatal: Some(i % 3 == 0), ..Default::default() }).await.unwrap();
    }
    assert_eq!(app.dispatch("probe").await, 9);
    assert_eq!(roll_up(&app).await, 9);
    assert_eq!(roll_up(&app).await, 0, "counted once");
    // The facade's pass (what `serve` runs each minute) works too.
    app.queue().stats_rollup().await.unwrap();

    let (status, series) = app.admin_get("/api/admin/stats/timeseries?topic=probe&minutes=5").await;
    assert_eq!(status, StatusCode::OK, "{series}");
    assert_eq!(series.as_array().unwrap().len(), 1);
    let points = series[0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 5, "every minute of the window");
    let sum = |k: &str| points.iter().map(|p| p[k].as_i64().unwrap()).sum::<i64>();
    assert_eq!((sum("finished"), sum("failed")), (9, 3));
    let busy = points.iter().find(|p| p["finished"].as_i64() > Some(0)).unwrap();
    for k in ["p50_ms", "p95_ms", "p99_ms"] {
        assert!(busy[k].as_i64().is_some(), "{k}: {busy}");
    }
    assert!(points.iter().any(|p| p["depth"].as_i64().is_some()), "the depth was sampled");

    let (_, all) = app.admin_get("/api/admin/stats/timeseries").await;
    assert_eq!(all[0]["points"].as_array().unwrap().len(), 60, "an hour by default");
    for bad in ["minutes=0", "minutes=99999", "minutes=soon", "topc=probe"] {
        let (status, body) = app.admin_get(&format!("/api/admin/stats/timeseries?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].as_str().unwrap().contains("minutes"), "{body}");
    }
}

#[tokio::test]
async fn the_overview_draws_charts_per_topic() {
    let app = TestApp::new().await;
    let job = app.queue().job(jobs::Probe);
    let login = Request::post("/admin/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={ADMIN_TOKEN}")))
        .unwrap();
    let resp = app.router.clone().oneshot(login).await.unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = || async {
        let req = Request::get("/admin").header("cookie", &cookie).body(Body::empty()).unwrap();
        let resp = app.router.clone().oneshot(req).await.unwrap();
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    assert!(page().await.contains("No figures yet"));
    for _ in 0..3 {
        // Long enough for a latency above zero.
        job.perform_later(jobs::ProbeParams { sleep_ms: Some(12), ..Default::default() }).await.unwrap();
    }
    app.dispatch("probe").await;
    roll_up(&app).await;
    let page = page().await;
    assert!(page.contains(r#"data-chart="depth" data-topic="probe""#), "the depth chart");
    for kind in ["throughput", "latency"] {
        let at = page.find(&format!(r#"data-chart="{kind}" data-topic="probe" data-points=""#)).expect(kind);
        let points: usize =
            page[at..].split("data-points=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(points > 0, "{kind} has points");
    }
    assert!(page.contains("<polyline points=\""), "drawn as SVG");
}
