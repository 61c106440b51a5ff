//! Health as load balancers and orchestrators read it (SPEC.md, "Operating it"):
//!
//! - `GET /api/health/live` (liveness): 200 while the process can serve; 503 only when a
//!   background task died and could not be restarted (restarting the process would help).
//! - `GET /api/health` (readiness): `{"status": "ok" | "degraded" | "down", "reasons": [...]}`.
//!   `down` (503) when the database is unreachable or a background task (dispatcher,
//!   scheduler, maintenance, a backend's writer) is not working; `degraded` (200, or 503
//!   with `?strict=1`) when a cron is late or failing. Without credentials it shows the
//!   status and reasons only; with the admin token (bearer `VQS_ADMIN_TOKEN`) also the
//!   database, queue depth per topic, each cron's heartbeat, runtime schedules by heartbeat
//!   (`schedule_counts: {total, ok, late, failing, unchecked}`) with the late and failing
//!   ones by name, the most overdue first (`schedules: [{name, state, last_fire, next}]`, at
//!   most [`SCHEDULES_SHOWN`]; the full list is `GET /api/admin/schedules`) and each
//!   background task. A late or failing schedule degrades like a cron; an `unchecked` one
//!   (overdue by one minute to an hour beyond the 100 most overdue, which are examined:
//!   a backlog of thousands sharing a tick) does not, as it may well be within its slack.
//!
//! The counts come from live deliveries only (`Queue::depth`), and schedules are judged
//! without reading them all (`vqs::ScheduleHealth`: three index counts and one bounded
//! read), so polling stays cheap however much history and how many schedules there are.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use vqs::{CronState, TaskState};

use crate::state::VqsState;

/// Late or failing schedules health lists by name (the most overdue first); the counts
/// cover every schedule.
pub const SCHEDULES_SHOWN: usize = 20;

/// `GET /api/health/live`.
pub async fn live(State(state): State<VqsState>) -> Response {
    let failed: Vec<String> = state
        .tasks
        .report()
        .into_iter()
        .filter(|t| t.state == TaskState::Failed)
        .map(|t| format!("background task {} stopped after repeated panics", t.name))
        .collect();
    if failed.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "down", "reasons": failed}))).into_response()
    }
}

#[derive(Debug, Default, Deserialize)]
/// `GET /api/health` query.
pub struct HealthQuery {
    /// `?strict=1`: `degraded` answers 503 too.
    #[serde(default)]
    strict: Option<String>,
}

fn is_admin(state: &VqsState, headers: &HeaderMap) -> bool {
    let Some(token) = state.admin_token.as_ref() else { return false };
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| token.matches(given))
}

/// `GET /api/health`.
pub async fn health(State(state): State<VqsState>, Query(q): Query<HealthQuery>, headers: HeaderMap) -> Response {
    let mut down: Vec<String> = Vec::new();
    let mut degraded: Vec<String> = Vec::new();
    let database = state.queue.ping().await;
    let stats = state.queue.depth().await;
    if database.is_err() || stats.is_err() {
        down.push("database unreachable".to_owned());
    }
    let tasks = state.tasks.report();
    for t in &tasks {
        match t.state {
            TaskState::Failed => down.push(format!("background task {} stopped after repeated panics", t.name)),
            TaskState::Restarting => down.push(format!("background task {} is restarting after a panic", t.name)),
            TaskState::Running | TaskState::Stopped => {}
        }
    }
    let crons = state.queue.cron_statuses(&state.vercel.crons, state.started_at, 1).await.unwrap_or_default();
    let late = crons.iter().filter(|c| c.state == CronState::Late).count();
    let failing = crons.iter().filter(|c| c.state == CronState::Failing).count();
    if late > 0 {
        degraded.push(format!("{late} cron(s) late"));
    }
    if failing > 0 {
        degraded.push(format!("{failing} cron(s) failing"));
    }
    let schedules = state.queue.schedules().health(SCHEDULES_SHOWN).await.unwrap_or_default();
    if schedules.late > 0 {
        degraded.push(format!("{} schedule(s) late", schedules.late));
    }
    if schedules.failing > 0 {
        degraded.push(format!("{} schedule(s) failing", schedules.failing));
    }
    let (status, code) = if !down.is_empty() {
        ("down", StatusCode::SERVICE_UNAVAILABLE)
    } else if !degraded.is_empty() {
        let strict = q.strict.as_deref().is_some_and(|s| s == "1" || s == "true");
        ("degraded", if strict { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK })
    } else {
        ("ok", StatusCode::OK)
    };
    down.extend(degraded);
    let mut body = json!({ "status": status, "reasons": down });
    if is_admin(&state, &headers) {
        let now = state.queue.clock().now();
        let queues: serde_json::Map<String, serde_json::Value> = stats
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let age = s.oldest_due_at.map(|t| (now - t).num_seconds().max(0));
                let counts = json!({
                    "waiting": s.waiting, "delayed": s.delayed, "running": s.running,
                    "oldest_due_age_s": age, "dead": s.dead_letters,
                });
                (s.topic.clone(), counts)
            })
            .collect();
        let crons: Vec<serde_json::Value> = crons
            .into_iter()
            .map(|c| json!({"path": c.path, "schedule": c.schedule, "state": c.state, "next": c.next.first()}))
            .collect();
        body["database"] = json!(if database.is_ok() { "ok" } else { "unreachable" });
        body["queues"] = json!(queues);
        let problems: Vec<serde_json::Value> = schedules
            .problems
            .iter()
            .map(|s| json!({"name": s.name, "state": s.state, "last_fire": s.last_fire, "next": s.next.first()}))
            .collect();
        body["crons"] = json!(crons);
        body["schedules"] = json!(problems);
        body["schedule_counts"] = json!({
            "total": schedules.total, "ok": schedules.ok, "late": schedules.late,
            "failing": schedules.failing, "unchecked": schedules.unchecked,
        });
        body["tasks"] = json!(tasks);
    }
    (code, Json(body)).into_response()
}
