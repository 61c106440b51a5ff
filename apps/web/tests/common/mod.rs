//! Shared test harness: a real app on a fresh SQLite file, called through the router.
#![allow(dead_code)]

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use vqs::{Clock, ConsumerConfig, Queue};
use web::AppState;
use web::in_process::InProcessPusher;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const QUEUE_SECRET: &str = "test-queue-secret";
pub const CRON_SECRET: &str = "test-cron-secret";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A URL for a new, empty database of the backend under test: SQLite (a file in `dir`) by
/// default; PostgreSQL when `VQS_TEST_BACKEND=postgres` (a fresh `vqs_test_*` database on
/// `VQS_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`). A PostgreSQL run
/// fails loudly when the server is unreachable: it never passes without a database.
pub async fn fresh_database_url(dir: &tempfile::TempDir) -> String {
    match std::env::var("VQS_TEST_BACKEND").as_deref() {
        Ok("postgres") => {
            let base =
                std::env::var("VQS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let name = format!("vqs_test_{}", uuid::Uuid::new_v4().simple());
            vqs_postgres::create_database(&base, &name)
                .await
                .unwrap_or_else(|e| panic!("VQS_TEST_BACKEND=postgres: {e}"))
        }
        Ok("sqlite") | Err(_) => format!("sqlite://{}", dir.path().join("vqs.db").display()),
        Ok(other) => panic!("VQS_TEST_BACKEND={other:?}: use sqlite or postgres"),
    }
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub state: AppState,
    pub router: Router,
    pub clock: Clock,
}

impl TestApp {
    /// The repo's `vercel.json`, a fresh database, the wall clock.
    pub async fn new() -> TestApp {
        TestApp::with_clock(Clock::system()).await
    }

    /// The repo's `vercel.json`, a fresh database, the given clock.
    pub async fn with_clock(clock: Clock) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database_url(&dir).await;
        TestApp::open(dir, database_url, clock).await
    }

    /// An app on an existing database (e.g. one a child process used); `dir` is kept alive.
    pub async fn open(dir: tempfile::TempDir, database_url: String, clock: Clock) -> TestApp {
        let config = web::Config {
            database_url: database_url.clone(),
            addr: "127.0.0.1:0".parse().unwrap(),
            vercel_json: repo_root().join("vercel.json"),
            cron_secret: Some(CRON_SECRET.into()),
            is_local_dev: false,
            queue_secret: Some(QUEUE_SECRET.into()),
            admin_token: Some(ADMIN_TOKEN.into()),
            metrics_token: None,
            retention: vqs::RetentionConfig::default(),
            lease_seconds: 60,
            retry_delay_seconds: None,
            vercel: Default::default(),
        };
        let vercel = web::runtime::load_vercel(&config.vercel_json).unwrap();
        let queue = web::runtime::open_queue(&database_url, clock.clone()).await.unwrap();
        let state = web::runtime::state(&config, queue, vercel);
        let router = web::app(state.clone());
        let consumers = TestApp::consumers_of(&state);
        vqs::register_consumers(&state.queue, &consumers).await.unwrap();
        TestApp { dir, database_url, state, router, clock }
    }

    pub fn queue(&self) -> &Queue {
        &self.state.queue
    }

    /// The consumers as `web serve`'s dispatcher runs them.
    fn consumers_of(state: &AppState) -> Vec<ConsumerConfig> {
        web::runtime::consumers(state)
    }

    /// The push consumer of `topic` from vercel.json.
    pub fn consumer(&self, topic: &str) -> ConsumerConfig {
        TestApp::consumers_of(&self.state).into_iter().find(|c| c.topic_pattern == topic).expect("no trigger for topic")
    }

    /// Push every due message of `topic` through the router, as the dispatcher does; returns how many.
    pub async fn dispatch(&self, topic: &str) -> usize {
        let pusher = InProcessPusher::new(self.router.clone());
        vqs::dispatch_due(self.queue(), &self.consumer(topic), &pusher, "dev1", 1000).await.unwrap()
    }

    /// Send a request through the router; returns the status and the JSON body (Null if none).
    pub async fn call(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, body)
    }

    /// `GET path` with the admin token.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        self.call(
            Request::get(path).header("authorization", format!("Bearer {ADMIN_TOKEN}")).body(Body::empty()).unwrap(),
        )
        .await
    }

    /// Executions of a message, oldest first, as `(attempt, status)`.
    pub async fn attempts(&self, message_id: &str) -> Vec<(u32, String)> {
        let mut rows = self
            .queue()
            .executions(vqs::store::ExecutionListParams {
                message_id: Some(message_id.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        rows.reverse();
        rows.into_iter().map(|e| (e.attempt, e.status.as_str().to_owned())).collect()
    }
}
