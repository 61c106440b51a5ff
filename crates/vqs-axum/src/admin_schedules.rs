//! Runtime schedules in the admin API (SPEC.md, "Runtime schedules"): `PUT`, `GET` and
//! `DELETE /api/admin/schedules/{name}`, `GET /api/admin/schedules?after=&limit=` (a page by
//! name with the cursor of the next: thousands of schedules are read a page at a time) and `POST
//! /api/admin/schedules/{name}/trigger`. Merged into [`crate::admin::routes`], behind its
//! token. The CLI (`web schedules`) calls the same functions, so both answer alike.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use vqs::store::{ScheduleFired, ScheduleRecord};
use vqs::{Queue, SCHEDULE_NEXT_SHOWN, SCHEDULE_PAGE_DEFAULT, SCHEDULE_PAGE_MAX, Schedule, VercelConfig};

use crate::admin::require_consumed_topic;
use crate::api_error::ApiError;
use crate::state::VqsState;

/// The schedule routes (the caller adds the admin token check).
pub fn routes() -> Router<VqsState> {
    Router::new()
        .route("/api/admin/schedules", get(list))
        .route("/api/admin/schedules/{name}", get(show).put(put).delete(delete))
        .route("/api/admin/schedules/{name}/trigger", post(trigger))
}

/// The body of a `PUT`: the schedule without its name (the path names it). Unknown fields
/// are refused: a misspelt `timezone` must not silently schedule in UTC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// Five-field cron expression, read in `timezone`.
    pub cron: String,
    /// IANA time zone (default `UTC`).
    pub timezone: Option<String>,
    /// The topic each fire publishes to.
    pub topic: String,
    #[serde(default)]
    /// The JSON payload of each fire's message (default `null`).
    pub payload: Value,
    /// Whether it fires (default true).
    pub enabled: Option<bool>,
    /// After downtime, fire the most recent missed tick once (default true) or record it missed.
    pub catch_up: Option<bool>,
    /// Spread each tick's fire over up to this many seconds after it (default 0).
    pub jitter_seconds: Option<u32>,
}

impl ScheduleBody {
    /// The schedule this body defines under `name`.
    pub fn into_schedule(self, name: &str) -> Schedule {
        Schedule {
            name: name.to_owned(),
            cron: self.cron,
            timezone: self.timezone.unwrap_or_else(|| vqs::DEFAULT_TIMEZONE.to_owned()),
            topic: self.topic,
            payload: self.payload,
            enabled: self.enabled.unwrap_or(true),
            catch_up: self.catch_up.unwrap_or(true),
            jitter_seconds: self.jitter_seconds.unwrap_or(0),
        }
    }
}

/// A schedule as the API shows it: its stored fields and `next`, its next fire times in
/// RFC 3339 UTC (none while it is disabled: it does not fire).
pub fn schedule_json(record: &ScheduleRecord, next: &[chrono::DateTime<chrono::Utc>]) -> Value {
    let mut v = json!(record);
    let next: Vec<String> = if record.enabled {
        next.iter().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)).collect()
    } else {
        Vec::new()
    };
    v["next"] = json!(next);
    v
}

/// A stored schedule with its next [`SCHEDULE_NEXT_SHOWN`] fire times.
pub fn stored_schedule_json(queue: &Queue, record: &ScheduleRecord) -> Value {
    // A row stored under older rules (a zone since removed) is still listed, without times.
    let next = queue.schedules().next_fires(record, SCHEDULE_NEXT_SHOWN).unwrap_or_default();
    schedule_json(record, &next)
}

/// Create or replace a schedule (shared with the CLI): every field checked, and the topic
/// must be one this app consumes, before anything is written.
pub async fn upsert_schedule(queue: &Queue, vercel: &VercelConfig, schedule: Schedule) -> Result<Value, ApiError> {
    schedule.validate()?;
    require_consumed_topic(vercel, &schedule.topic).map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; schedule {:?} would publish where nothing consumes: use one of those topics, or add a job for {:?}",
            schedule.name, schedule.topic
        ))
    })?;
    let (record, next) = queue.schedules().upsert(schedule).await?;
    Ok(schedule_json(&record, &next))
}

/// The query of `GET /api/admin/schedules`: `?after=<name>&limit=N`. Both are read as text
/// so that a bad value gets a refusal that says what to send, not a parser's message.
#[derive(Debug, Default, Deserialize)]
pub struct SchedulePageQuery {
    /// The `next_after` of the previous page; absent or empty for the first.
    pub after: Option<String>,
    /// 1 to [`SCHEDULE_PAGE_MAX`]; [`SCHEDULE_PAGE_DEFAULT`] when absent or empty.
    pub limit: Option<String>,
}

impl SchedulePageQuery {
    /// The page's cursor and size, checked; a 400 naming the bad value otherwise.
    pub fn parse(&self) -> Result<(Option<String>, u32), ApiError> {
        let limit = match self.limit.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            None => SCHEDULE_PAGE_DEFAULT,
            Some(l) => l.parse::<u32>().ok().filter(|n| (1..=SCHEDULE_PAGE_MAX).contains(n)).ok_or_else(|| {
                let shown: String = l.chars().take(24).collect();
                ApiError::bad_request(format!(
                    "invalid limit {shown:?}: send a whole number from 1 to {SCHEDULE_PAGE_MAX} (default {SCHEDULE_PAGE_DEFAULT})"
                ))
            })?,
        };
        let after = vqs::check_schedule_page(self.after.as_deref(), limit)?;
        Ok((after, limit))
    }
}

/// One page of schedules by name, each with its next fire times (shared with the CLI):
/// `{"schedules": [...], "next_after": <name> | null, "limit": N, "total": N}`. `next_after`
/// is the `after` of the next page, `null` on the last; `total` counts every schedule.
pub async fn list_schedules(queue: &Queue, after: Option<&str>, limit: u32) -> Result<Value, ApiError> {
    let schedules = queue.schedules();
    let page = schedules.page(after, limit).await?;
    let total = schedules.count().await?;
    let rows: Vec<Value> = page.schedules.iter().map(|r| stored_schedule_json(queue, r)).collect();
    Ok(json!({ "schedules": rows, "next_after": page.next_after, "limit": limit, "total": total }))
}

/// Delete a schedule (shared with the CLI): `{"deleted": true}`, or 404.
pub async fn delete_schedule(queue: &Queue, name: &str) -> Result<Value, ApiError> {
    if queue.schedules().delete(name).await? {
        Ok(json!({ "deleted": true }))
    } else {
        Err(ApiError::not_found(format!("no schedule {name:?}: `GET /api/admin/schedules` lists them")))
    }
}

/// Fire a schedule now (shared with the CLI): `{"name", "messageId", "duplicate"}`; 404 for
/// no such schedule; 409 when another fire of the same instant got there first.
pub async fn trigger_schedule(queue: &Queue, name: &str) -> Result<Value, ApiError> {
    match queue.schedules().trigger(name).await? {
        ScheduleFired::Fired { message_id, duplicate } => {
            Ok(json!({ "name": name, "messageId": message_id, "duplicate": duplicate }))
        }
        ScheduleFired::NotFound => {
            Err(ApiError::not_found(format!("no schedule {name:?}: `GET /api/admin/schedules` lists them")))
        }
        // `Claimed` and `Skipped` are the store's answers to other modes; a trigger turns
        // `Claimed` into `Fired` itself.
        ScheduleFired::AlreadyFired
        | ScheduleFired::Changed
        | ScheduleFired::Claimed { .. }
        | ScheduleFired::Skipped => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("schedule {name:?} was fired or changed by another call at the same moment: read it and try again"),
        )),
    }
}

async fn list(
    State(state): State<VqsState>,
    query: Result<Query<SchedulePageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}: send ?after=<the next_after of the previous page>&limit=<1 to {SCHEDULE_PAGE_MAX}>",
            e.body_text()
        ))
    })?;
    let (after, limit) = q.parse()?;
    Ok(Json(list_schedules(&state.queue, after.as_deref(), limit).await?))
}

async fn show(State(state): State<VqsState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let record =
        state.queue.schedules().get(&name).await?.ok_or_else(|| {
            ApiError::not_found(format!("no schedule {name:?}: `GET /api/admin/schedules` lists them"))
        })?;
    Ok(Json(stored_schedule_json(&state.queue, &record)))
}

async fn put(
    State(state): State<VqsState>,
    Path(name): Path<String>,
    body: Result<Json<ScheduleBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "{}: send JSON {{\"cron\": \"0 9 * * *\", \"timezone\"?: \"Europe/Berlin\", \"topic\": \"probe\", \
             \"payload\"?: {{}}, \"enabled\"?: true, \"catch_up\"?: true, \"jitter_seconds\"?: 0}} (the name is in the path)",
            e.body_text()
        ))
    })?;
    Ok(Json(upsert_schedule(&state.queue, &state.vercel, body.into_schedule(&name)).await?))
}

async fn delete(State(state): State<VqsState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(delete_schedule(&state.queue, &name).await?))
}

async fn trigger(State(state): State<VqsState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(trigger_schedule(&state.queue, &name).await?))
}
