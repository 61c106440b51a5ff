//! What the app does on Vercel in place of its in-process loops: the maintenance cron closes
//! attempts a killed function left `running`, and Vercel Cron's calls are tracked once per
//! tick. Both backends (`VQS_TEST_BACKEND=postgres`).

mod common;

use std::time::Duration;

use axum::body::Body;
use common::{CRON_SECRET, TestApp};
use http::{Request, StatusCode};
use vqs::Clock;
use vqs::store::ExecutionStartParams;

fn cron_get(path: &str, schedule: &str, secret: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {secret}"))
        .header("user-agent", "vercel-cron/1.0")
        .header("x-vercel-cron-schedule", schedule)
        .body(Body::empty())
        .unwrap()
}

/// An attempt recorded by a consumer function on Vercel: the message lives in Vercel
/// Queues, so this database holds no delivery of it.
async fn vercel_attempt(app: &TestApp, message_id: &str) -> i64 {
    app.queue()
        .store()
        .execution_start(ExecutionStartParams {
            topic: "probe".into(),
            message_id: message_id.into(),
            consumer_group: "api_Squeue_Sprobe_Drs".into(),
            attempt: 1,
            now: app.clock.now(),
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn the_maintenance_cron_closes_attempts_that_outlived_the_longest_function_run() {
    let clock = Clock::manual(chrono::Utc::now());
    let app = TestApp::with_clock(clock.clone()).await;
    vercel_attempt(&app, "msg_killed").await;
    // Published and pushed here: its delivery is in this database, which owns its rescue.
    let local = app.queue().send("probe", b"{}".to_vec(), Default::default()).await.unwrap();
    app.queue()
        .store()
        .execution_start(ExecutionStartParams {
            topic: "probe".into(),
            message_id: local.message_id.clone(),
            consumer_group: "api_Squeue_Sprobe_Drs".into(),
            attempt: 1,
            now: clock.now(),
        })
        .await
        .unwrap();

    // Within the longest run a function gets (800 s by default) it may still be running.
    clock.advance(Duration::from_secs(799));
    let (status, body) = app.call(cron_get("/api/cron/maintenance", "*/5 * * * *", CRON_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outlived_attempts_closed"], 0, "{body}");
    assert_eq!(app.attempts("msg_killed").await, vec![(1, "running".to_owned())]);

    clock.advance(Duration::from_secs(2));
    let (status, body) = app.call(cron_get("/api/cron/maintenance", "*/5 * * * *", CRON_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outlived_attempts_closed"], 1, "{body}");
    assert_eq!(app.attempts("msg_killed").await, vec![(1, "failed".to_owned())]);
    assert_eq!(app.attempts(&local.message_id).await, vec![(1, "running".to_owned())], "not a Vercel attempt");
    assert!(body["passes"].is_array(), "{body}");

    // Behind the cron secret like every cron route.
    let (status, _) = app.call(cron_get("/api/cron/maintenance", "*/5 * * * *", "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn vercel_cron_calls_run_once_per_tick_and_are_recorded() {
    let app = TestApp::new().await;
    let router = vqs_axum::vercel_cron::track_cron_runs(app.router.clone(), app.state.clone());
    let call = |req: Request<Body>| {
        let router = router.clone();
        async move {
            use http_body_util::BodyExt;
            use tower::ServiceExt;
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default())
        }
    };
    let runs = || async {
        app.queue()
            .store()
            .cron_run_list(vqs::store::CronRunListParams {
                path: Some("/api/cron/sync-patients".to_owned()),
                limit: 10,
            })
            .await
            .unwrap()
    };

    // A caller without the secret is refused and spends no tick.
    let (status, _) = call(cron_get("/api/cron/sync-patients", "0 * * * *", "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(runs().await.is_empty());

    let (status, body) = call(cron_get("/api/cron/sync-patients", "0 * * * *", CRON_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("skipped").is_none(), "{body}");
    let recorded = runs().await;
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].outcome.as_str(), recorded[0].status_code), ("success", Some(200)));
    assert_eq!(recorded[0].schedule, "0 * * * *");

    // Vercel may deliver a tick twice: the second call does not run the route again.
    let (status, body) = call(cron_get("/api/cron/sync-patients", "0 * * * *", CRON_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["skipped"], "this tick already ran", "{body}");
    assert_eq!(runs().await.len(), 1);
}

/// The app function on Vercel publishes to Vercel Queues: the dashboard says the depth is
/// kept there instead of showing this database's zeros.
#[tokio::test]
async fn the_dashboard_says_queue_depth_is_in_vercel_queues_on_vercel() {
    use http::header;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn overview(router: axum::Router) -> String {
        let login = Request::post("/admin/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={}", common::ADMIN_TOKEN)))
            .unwrap();
        let resp = router.clone().oneshot(login).await.unwrap();
        let cookie = resp.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
        let page = Request::get("/admin?fragment=1").header(header::COOKIE, cookie).body(Body::empty()).unwrap();
        let resp = router.oneshot(page).await.unwrap();
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    let app = TestApp::new().await;
    let local = overview(app.router.clone()).await;
    assert!(!local.contains("depth-elsewhere"), "self-hosted, the depth is this database's");

    let access = vqs_axum::vercel_access::VercelAccess::new(Default::default()).unwrap();
    let publisher = vqs_axum::vercel_access::VercelPublisher::new(access, app.queue().clone());
    let mut state = app.state.clone();
    state.queue = app.queue().publishing_to(std::sync::Arc::new(publisher));
    let on_vercel = overview(web::app(state)).await;
    assert!(on_vercel.contains(r#"id="depth-elsewhere""#) && on_vercel.contains("Vercel Queues"), "{on_vercel}");
    let row = on_vercel.split(r#"<tr data-topic="probe">"#).nth(1).unwrap().split("</tr>").next().unwrap();
    let cells: Vec<&str> = row.split("<td").skip(2).take(1).collect();
    assert!(cells[0].contains(">–<"), "waiting is unknown, not 0: {row}");
}
