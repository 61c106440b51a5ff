//! A signup service that sends its welcome emails in the background and a digest every
//! morning — vqs mounted into an axum app of its own, in a few lines.
//!
//! - `POST /signup {"email"}` enqueues [`SendEmail`] (deduped by address) and answers at once;
//! - `GET /api/cron/daily-digest` (08:00 UTC, `Authorization: Bearer <CRON_SECRET>`) enqueues
//!   the day's digest, once per day however often the tick is delivered;
//! - `POST /api/queue/send-email` runs the job: retried with backoff, every attempt recorded;
//! - the library's routes beside them: `/admin` (dashboard), `/api/admin/*`, `/api/health`,
//!   `/metrics`, `/_vqs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vqs::{JobContext, JobError, Jobbable, Queue, QueueHandler, VercelConfig};
use vqs_axum::{VqsSettings, VqsState, queue_route};

/// What runs where: the job's queue trigger and the cron, as in a `vercel.json` (the same
/// file deploys it to Vercel).
pub const VERCEL_JSON: &str = r#"{
  "crons": [{ "path": "/api/cron/daily-digest", "schedule": "0 8 * * *" }],
  "functions": { "api/queue/send-email.rs": {
    "experimentalTriggers": [{ "type": "queue/v2beta", "topic": "send-email" }] } }
}"#;

/// One email to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Email {
    pub to: String,
    pub template: String,
}

/// The job: send one email. Addresses at `bounce.test` fail for good (dead-lettered).
pub struct SendEmail;

impl Jobbable for SendEmail {
    type Params = Email;
    const TOPIC: &'static str = "send-email";

    fn max_attempts(&self) -> u32 {
        5
    }

    /// One welcome per address, one digest per day.
    fn dedup_key(&self, e: &Email) -> Option<String> {
        Some(format!("{}:{}", e.template, e.to))
    }

    async fn perform(&self, e: Email, ctx: JobContext) -> Result<(), JobError> {
        if e.to.ends_with("@bounce.test") {
            return Err(JobError::fatal(format!("{} bounced", e.to)));
        }
        tracing::info!(to = %e.to, template = %e.template, attempt = ctx.attempt(), "email sent");
        Ok(())
    }
}

/// The app's state around `queue`: the triggers and crons of [`VERCEL_JSON`].
pub fn state(queue: Queue, settings: VqsSettings) -> anyhow::Result<VqsState> {
    let settings = VqsSettings { job_topics: vec![SendEmail::TOPIC.into()], ..settings };
    Ok(VqsState::new(queue, VercelConfig::parse(VERCEL_JSON)?, settings))
}

/// The whole app: this service's routes and the library's.
pub fn app(state: VqsState) -> Router {
    let routes = Router::new()
        .route("/signup", post(signup))
        .route("/api/cron/daily-digest", auth::with_cron_secret(get(daily_digest), state.cron_auth.clone()))
        .route("/api/queue/send-email", queue_route(QueueHandler::new(SendEmail)));
    vqs_axum::app(state, routes)
}

#[derive(Deserialize)]
struct Signup {
    email: String,
}

async fn signup(State(state): State<VqsState>, Json(s): Json<Signup>) -> (StatusCode, Json<Value>) {
    if !s.email.contains('@') || s.email.len() > 254 {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "email must be an address like ada@example.com" })));
    }
    let welcome = Email { to: s.email, template: "welcome".into() };
    match state.queue.job(SendEmail).perform_later(welcome).await {
        Ok(sent) => (StatusCode::ACCEPTED, Json(json!({ "queued": sent }))),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": format!("try again: {e}") }))),
    }
}

async fn daily_digest(State(state): State<VqsState>) -> (StatusCode, Json<Value>) {
    let day = state.queue.clock().now().format("%Y-%m-%d");
    let digest = Email { to: "team@example.com".into(), template: format!("digest-{day}") };
    match state.queue.job(SendEmail).perform_later(digest).await {
        Ok(sent) => (StatusCode::OK, Json(json!({ "enqueued": [sent] }))),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": format!("could not enqueue: {e}") }))),
    }
}

/// A queue on `database_url`: `sqlite://…` (one file, nothing to install) or `postgres://…`
/// (many processes), migrated.
pub async fn open_queue(database_url: &str) -> anyhow::Result<Queue> {
    let clock = vqs::Clock::system();
    if database_url.starts_with("postgres") {
        let store = vqs_postgres::PgStore::connect(database_url).await?;
        store.migrate().await?;
        let queue = Queue::new(std::sync::Arc::new(store.clone()), clock);
        store.forward_wakeups(queue.clone());
        Ok(queue)
    } else {
        let store = vqs_sqlite::SqliteStore::open(database_url).await?;
        store.migrate().await?;
        Ok(Queue::new(std::sync::Arc::new(store), clock))
    }
}
