//! The example's own test, as an app team writes it with `vqs-testing`: the routes through
//! the router, the job through the real consumer path, on SQLite and on PostgreSQL.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use example_signup::{Email, SendEmail};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use vqs::QueueHandler;
use vqs::testing::DrainOpts;
use vqs_axum::VqsSettings;
use vqs_testing::TestQueue;

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn signup(email: &str) -> Request<Body> {
    Request::post("/signup")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::json!({ "email": email }).to_string()))
        .unwrap()
}

fn welcome(to: &str) -> Email {
    Email { to: to.into(), template: "welcome".into() }
}

async fn signups_send_one_welcome_each_and_a_bounce_is_dead_lettered(tq: TestQueue) {
    let settings = VqsSettings {
        admin_token: auth::Secret::new(Some("admin-token".into())),
        cron_auth: auth::CronAuth::from_values(Some("cron-secret".into()), false),
        ..VqsSettings::default()
    };
    let app = example_signup::app(example_signup::state(tq.queue().clone(), settings).unwrap());

    assert_eq!(call(&app, signup("ada@example.com")).await.0, StatusCode::ACCEPTED);
    assert_eq!(call(&app, signup("ada@example.com")).await.0, StatusCode::ACCEPTED, "a double submit");
    assert_eq!(call(&app, signup("grace@bounce.test")).await.0, StatusCode::ACCEPTED);
    assert_eq!(call(&app, signup("not an address")).await.0, StatusCode::BAD_REQUEST);
    tq.assert_enqueued::<SendEmail>(&welcome("ada@example.com")).await;
    assert_eq!(tq.all_enqueued::<SendEmail>().await.unwrap().len(), 2, "one welcome per address");

    // The cron needs its secret; with it, the day's digest is enqueued once however often it ticks.
    let cron = |secret: &str| {
        Request::get("/api/cron/daily-digest").header("authorization", format!("Bearer {secret}")).body(Body::empty())
    };
    assert_eq!(call(&app, cron("wrong").unwrap()).await.0, StatusCode::UNAUTHORIZED);
    for _ in 0..3 {
        assert_eq!(call(&app, cron("cron-secret").unwrap()).await.0, StatusCode::OK);
    }
    tq.assert_enqueued_where::<SendEmail>("the digest", |e| e.template.starts_with("digest-")).await;

    let report = tq.drain(DrainOpts::default()).await.unwrap();
    assert_eq!((report.succeeded, report.dead), (2, 1), "{report:?}");

    // What the mounted admin API shows an operator: the bounce, with its error.
    let admin = Request::get("/api/admin/dead-letters").header("authorization", "Bearer admin-token");
    let (status, body) = call(&app, admin.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.to_string().contains("grace@bounce.test bounced"), "{body}");
}

#[tokio::test]
async fn on_sqlite() {
    let tq = TestQueue::sqlite(vec![QueueHandler::new(SendEmail)]).await.unwrap();
    signups_send_one_welcome_each_and_a_bounce_is_dead_lettered(tq).await;
}

#[tokio::test]
async fn on_postgres() {
    let server = std::env::var("VQS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let tq = TestQueue::postgres(&server, vec![QueueHandler::new(SendEmail)])
        .await
        .unwrap_or_else(|e| panic!("{e}: start PostgreSQL, or set VQS_TEST_POSTGRES_URL"));
    signups_send_one_welcome_each_and_a_bounce_is_dead_lettered(tq).await;
}
