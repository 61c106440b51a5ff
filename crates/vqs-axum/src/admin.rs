//! The admin API under `/api/admin`, behind `Authorization: Bearer <VQS_ADMIN_TOKEN>`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use vqs::store::{
    ExecutionListParams, ExecutionStatus, MessageCancelled, MessageRecord, ProgressListParams, ProgressRecord,
};
use vqs::{OnDuplicate, SendOpts, VercelConfig};

use crate::api_error::{ApiError, require_bearer};
use crate::state::VqsState;

/// Every `/api/admin/*` route; unknown paths stay 404.
pub fn routes(state: &VqsState) -> Router<VqsState> {
    Router::new()
        .route("/api/admin/executions", get(executions))
        .route("/api/admin/messages", post(enqueue))
        .route("/api/admin/messages/{id}", get(message))
        .route("/api/admin/messages/{id}/run-now", post(run_now))
        .route("/api/admin/messages/{id}/cancel", post(cancel))
        .route("/api/admin/queues", get(queues))
        .route("/api/admin/queues/{topic}/purge", post(purge))
        .route("/api/admin/dead-letters", get(dead_letters))
        .route("/api/admin/dead-letters/{id}/replay", post(replay))
        .route("/api/admin/dead-letters/{id}", get(dead_letter).delete(discard))
        .route("/api/admin/crons", get(crons))
        .route("/api/admin/progress", get(progress))
        .route("/api/admin/sync-log", get(sync_log))
        .merge(crate::admin_dead_letter_groups::routes())
        .merge(crate::admin_stats::routes())
        .merge(crate::admin_schedules::routes())
        .merge(crate::admin_pause::routes())
        .merge(crate::admin_search::routes())
        .merge(crate::admin_limits::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin_token))
}

async fn require_admin_token(State(state): State<VqsState>, req: Request, next: Next) -> Response {
    match require_bearer(state.admin_token.as_ref(), req.headers(), "VQS_ADMIN_TOKEN", "the admin API") {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Refuse a topic nothing consumes (no queue trigger in vercel.json matches it): a message
/// published there from the admin API or the CLI would wait forever, so a typo is an error
/// that lists the topics there are. (The `/_vqs` API, like Vercel's, takes any topic.)
pub fn require_consumed_topic(vercel: &VercelConfig, topic: &str) -> Result<(), String> {
    if !vqs::is_valid_name(topic) {
        return Ok(()); // the queue refuses it, saying what a topic may be
    }
    let matches = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    };
    if vercel.queue_triggers.iter().any(|t| matches(&t.topic)) {
        return Ok(());
    }
    let mut known: Vec<&str> = vercel.queue_triggers.iter().map(|t| t.topic.as_str()).collect();
    known.sort_unstable();
    known.dedup();
    Err(format!(
        "no job or consumer for topic {topic:?}: the topics with a consumer in vercel.json are {}",
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    ))
}

/// The largest `limit` a list returns.
pub const MAX_LIMIT: u32 = 1000;

/// The query of `GET /api/admin/executions` (and the CLI's `executions`): filters and a page.
/// An empty value counts as absent.
#[derive(Debug, Deserialize)]
pub struct ExecutionsQuery {
    /// One topic's executions only.
    pub topic: Option<String>,
    /// One status only (`running`, `success`, `failed`, `snoozed`, `cancelled`); another
    /// value is refused.
    pub status: Option<String>,
    /// One message's executions only.
    pub message_id: Option<String>,
    /// Rows per page: 100 when absent, clamped to 1..=[`MAX_LIMIT`].
    pub limit: Option<u32>,
    /// The keyset cursor: executions with an id below this one (the `next` of the previous
    /// page).
    pub before: Option<i64>,
}

/// Every execution status, in the order filters list them and refusals name them (the API,
/// the CLI and the dashboard's filter all read this list).
pub const EXECUTION_STATUSES: [ExecutionStatus; 5] = [
    ExecutionStatus::Running,
    ExecutionStatus::Success,
    ExecutionStatus::Failed,
    ExecutionStatus::Snoozed,
    ExecutionStatus::Cancelled,
];

/// A status added to the core without being added to [`EXECUTION_STATUSES`] stops the build
/// here, rather than being refused by every filter.
const _: fn(ExecutionStatus) = |s| match s {
    ExecutionStatus::Running
    | ExecutionStatus::Success
    | ExecutionStatus::Failed
    | ExecutionStatus::Snoozed
    | ExecutionStatus::Cancelled => {}
};

/// A status filter's value, or a refusal naming every status there is.
pub fn parse_execution_status(s: &str) -> Result<ExecutionStatus, String> {
    ExecutionStatus::parse(s).ok_or_else(|| {
        let names: Vec<&str> = EXECUTION_STATUSES.iter().map(|s| s.as_str()).collect();
        let (last, rest) = names.split_last().expect("the list is not empty");
        format!("unknown status {s:?}: use {} or {last}", rest.join(", "))
    })
}

/// Parse the `executions` filters (shared with the CLI).
pub fn execution_filter(q: ExecutionsQuery) -> Result<ExecutionListParams, ApiError> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_execution_status(s).map_err(ApiError::bad_request)?),
    };
    Ok(ExecutionListParams {
        topic: q.topic.filter(|t| !t.is_empty()),
        status,
        message_id: q.message_id.filter(|m| !m.is_empty()),
        consumer_group: None,
        before_id: q.before,
        limit: q.limit.unwrap_or(100).clamp(1, MAX_LIMIT),
    })
}

/// A page of executions, newest first, and the cursor of the next (older) page when there
/// is one (shared with the CLI): one row more than the page is read to know.
pub async fn executions_page(
    queue: &vqs::Queue,
    mut filter: ExecutionListParams,
) -> Result<(Vec<vqs::store::ExecutionRecord>, Option<i64>), ApiError> {
    let limit = filter.limit as usize;
    filter.limit += 1;
    let mut rows = queue.executions(filter).await?;
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map_or(0, |r| r.id)
    });
    Ok((rows, next))
}

/// The executions as a JSON list (SPEC.md); when there are older ones, a `Link: <…&before=ID>;
/// rel="next"` header and `x-next-before: ID` name the next page.
async fn executions(
    State(state): State<VqsState>,
    query: Result<Query<ExecutionsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}: the parameters are topic, status, message_id, limit (1 to {MAX_LIMIT}) and before (an execution id, \
             from the previous page's x-next-before)",
            e.body_text()
        ))
    })?;
    let mut link = String::from("/api/admin/executions?");
    for (k, v) in [("topic", &q.topic), ("status", &q.status), ("message_id", &q.message_id)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            link += &format!("{k}={}&", crate::dashboard::url_component(v));
        }
    }
    if let Some(l) = q.limit {
        link += &format!("limit={l}&");
    }
    let (rows, next) = executions_page(&state.queue, execution_filter(q)?).await?;
    let mut resp = Json(json!(rows)).into_response();
    if let Some(next) = next {
        let h = resp.headers_mut();
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("<{link}before={next}>; rel=\"next\"")) {
            h.insert(axum::http::header::LINK, v);
        }
        h.insert("x-next-before", axum::http::HeaderValue::from(next));
    }
    Ok(resp)
}

/// A message as the admin API shows it: the first consumer group's delivery on top, and
/// the progress its job last reported (if it reports any).
pub fn message_json(m: &MessageRecord, progress: &[ProgressRecord]) -> Value {
    let first = m.deliveries.first();
    json!({
        "id": m.id,
        "topic": m.topic,
        "state": first.map(|d| d.state.as_str()).unwrap_or("unrouted"),
        "delivery_count": first.map(|d| d.delivery_count).unwrap_or(0),
        "attempts": first.map(|d| d.attempts).unwrap_or(0),
        "visible_at": first.map(|d| d.visible_at),
        "created_at": m.created_at,
        "expires_at": m.expires_at,
        "idempotency_key": m.idempotency_key,
        "group": m.group_key,
        "priority": m.priority,
        "content_type": m.content_type,
        "payload": m.payload,
        "deliveries": m.deliveries,
        "progress": progress,
    })
}

/// The progress reports of one message.
pub async fn message_progress(queue: &vqs::Queue, id: &str) -> Result<Vec<ProgressRecord>, ApiError> {
    Ok(queue.progress(ProgressListParams { message_id: Some(id.to_owned()), limit: 100 }).await?)
}

async fn message(State(state): State<VqsState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let m = state.queue.message(&id).await?.ok_or_else(|| ApiError::not_found(format!("no message {id}")))?;
    let progress = message_progress(&state.queue, &id).await?;
    let mut v = message_json(&m, &progress);
    if let Some(why) = crate::admin_pause::held(&state, &m).await? {
        // Why it is not running (SPEC.md, "Flow control").
        v["held"] = json!(why);
    }
    Ok(Json(v))
}

/// A delayed message, or one waiting for its retry, due now: `{"messageId", "madeDue": n}`
/// (0: it was due already); 404 unknown; 409 running or finished.
async fn run_now(State(state): State<VqsState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let made_due = state.queue.run_now(&id).await?;
    Ok(Json(json!({ "messageId": id, "madeDue": made_due })))
}

/// The answer to a cancel (shared with the CLI): the consumer groups whose pending delivery
/// will never run, and those whose running job was told to stop.
pub fn cancelled_json(id: &str, done: &MessageCancelled) -> Value {
    // `remote`: the message lives in Vercel's queue service; the cancel is recorded and each
    // delivery of it that arrives is acknowledged unrun (the groups are unknown here).
    json!({ "messageId": id, "state": "cancelled", "pending": done.pending, "running": done.running, "remote": done.remote })
}

/// Cancel a message in every consumer group: 200 [`cancelled_json`]; 409 when it had already
/// finished (saying how, e.g. "succeeded in …") or another cancel got there first; 404 unknown.
async fn cancel(State(state): State<VqsState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let done = state.queue.cancel(&id).await?;
    Ok(Json(cancelled_json(&id, &done)))
}

/// `?group=&dry_run=` of a purge. Unknown parameters are refused rather than ignored: a
/// misspelt `dry_run` must not purge for real.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeQuery {
    /// Purge one consumer group's pending deliveries only; absent: every group's.
    pub group: Option<String>,
    /// `true`: count what would be cancelled and change nothing ([`parse_dry_run`]).
    pub dry_run: Option<String>,
}

/// Parse a purge's `dry_run` (shared with the dashboard): `true` or `false`, absent = false.
pub fn parse_dry_run(v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid dry_run {other:?}: use dry_run=true (count only) or dry_run=false (cancel), or leave it out"
        ))),
    }
}

/// The answer to a purge (shared with the CLI): `{"cancelled": n}`, with `"dryRun": true`
/// when nothing was changed.
pub fn purged_json(cancelled: u64, dry_run: bool) -> Value {
    if dry_run { json!({ "cancelled": cancelled, "dryRun": true }) } else { json!({ "cancelled": cancelled }) }
}

/// Cancel every pending message of a topic (of one consumer group with `?group=`); with
/// `?dry_run=true` only count them. Running messages are left to finish.
async fn purge(
    State(state): State<VqsState>,
    Path(topic): Path<String>,
    query: Result<Query<PurgeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}: the parameters are group=<consumer group> (optional) and dry_run=true|false (optional)",
            e.body_text()
        ))
    })?;
    let dry_run = parse_dry_run(q.dry_run.as_deref())?;
    if q.group.as_deref() == Some("") {
        return Err(ApiError::bad_request(
            "empty group: name a consumer group, or leave group out to purge every consumer group of the topic",
        ));
    }
    let n = state.queue.purge(&topic, q.group.as_deref(), dry_run).await?;
    Ok(Json(purged_json(n, dry_run)))
}

async fn queues(State(state): State<VqsState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(crate::admin_pause::queues_json(&state.queue).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueBody {
    topic: String,
    #[serde(default)]
    payload: Value,
    idempotency_key: Option<String>,
    delay_seconds: Option<u64>,
    /// `"skip"` (the default) or `"replace"` (SPEC.md, "Job outcomes"); read as text so
    /// that anything else gets an answer naming the allowed values.
    on_duplicate: Option<String>,
    /// The message's group key (SPEC.md, "Flow control"): 1–256 characters, no control
    /// characters.
    group: Option<String>,
    /// The message's priority (SPEC.md, "Flow control"): an integer −100..=100, lower starts
    /// first. Read as any JSON value so that a string or a fraction gets an answer naming
    /// the range.
    priority: Option<Value>,
}

/// The `"priority"` of a send body: an integer −100..=100 (`None`: the default, 0).
pub fn priority_field(v: Option<&Value>) -> Result<Option<i16>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) => Ok(Some(vqs::check_priority(n)?)),
            None => Err(ApiError::bad_request(format!(
                "invalid priority {v}: it must be an integer from {} to {} (lower starts first, 0 is the default)",
                vqs::MIN_PRIORITY,
                vqs::MAX_PRIORITY
            ))),
        },
    }
}

async fn enqueue(
    State(state): State<VqsState>,
    body: Result<Json<EnqueueBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "{}: send JSON {{\"topic\": \"probe\", \"payload\": {{}}, \"idempotency_key\"?: \"…\", \"delay_seconds\"?: 0, \
             \"on_duplicate\"?: \"skip\" | \"replace\", \"group\"?: \"tenant-1\", \"priority\"?: 0}}",
            e.body_text()
        ))
    })?;
    require_consumed_topic(&state.vercel, &body.topic).map_err(ApiError::not_found)?;
    let payload = serde_json::to_vec(&body.payload).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let on_duplicate = match body.on_duplicate.as_deref() {
        None => OnDuplicate::Skip,
        Some(s) => OnDuplicate::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "on_duplicate must be \"skip\" (the default: a duplicate is dropped) or \"replace\" (the key's \
                 message, if it has not started, takes this payload and due time)",
            )
        })?,
    };
    let priority = priority_field(body.priority.as_ref())?;
    let opts = SendOpts {
        idempotency_key: body.idempotency_key,
        delay: std::time::Duration::from_secs(body.delay_seconds.unwrap_or(0)),
        on_duplicate,
        group: body.group,
        priority,
        ..SendOpts::default()
    };
    let sent = state.queue.send(&body.topic, payload, opts).await?;
    Ok((StatusCode::CREATED, Json(json!(sent))).into_response())
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<u32>,
}

async fn dead_letters(State(state): State<VqsState>, Query(q): Query<LimitQuery>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.queue.dead_letters(q.limit.unwrap_or(100).clamp(1, MAX_LIMIT)).await?)))
}

/// One dead letter with its whole payload (the list has previews).
async fn dead_letter(State(state): State<VqsState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    match state.queue.dead_letter(id).await? {
        Some(d) => Ok(Json(json!(d))),
        None => Err(ApiError::not_found(format!("no dead letter {id}"))),
    }
}

async fn replay(State(state): State<VqsState>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let sent = state.queue.dead_letter_replay(id).await?;
    Ok((StatusCode::CREATED, Json(json!(sent))).into_response())
}

/// 404 when there is no such dead letter; 409 when another call replayed or discarded it first.
async fn discard(State(state): State<VqsState>, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    state.queue.dead_letter_discard(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Each `vercel.json` cron with its next fire times, last run and heartbeat state (shared
/// with the CLI).
pub async fn crons_json(state: &VqsState, next: usize) -> Result<Value, ApiError> {
    Ok(json!(state.queue.cron_statuses(&state.vercel.crons, state.started_at, next).await?))
}

#[derive(Debug, Deserialize)]
struct CronsQuery {
    next: Option<usize>,
}

/// Fire times listed per cron at most (`?next=`, `web crons --next`).
pub const MAX_CRON_NEXT: usize = 100;

async fn crons(State(state): State<VqsState>, Query(q): Query<CronsQuery>) -> Result<Json<Value>, ApiError> {
    Ok(Json(crons_json(&state, q.next.unwrap_or(3).min(MAX_CRON_NEXT)).await?))
}

#[derive(Debug, Deserialize)]
struct ProgressQuery {
    message_id: Option<String>,
    limit: Option<u32>,
}

/// Progress reports of jobs, most recently updated first (`?message_id=` for one message).
async fn progress(State(state): State<VqsState>, Query(q): Query<ProgressQuery>) -> Result<Json<Value>, ApiError> {
    let p = ProgressListParams {
        message_id: q.message_id.filter(|m| !m.is_empty()),
        limit: q.limit.unwrap_or(100).clamp(1, MAX_LIMIT),
    };
    Ok(Json(json!(state.queue.progress(p).await?)))
}

#[derive(Debug, Deserialize)]
struct SyncLogQuery {
    topic: Option<String>,
}

/// The sync log: per job topic and key (account), the cursor, last attempt, last success
/// and last error.
async fn sync_log(State(state): State<VqsState>, Query(q): Query<SyncLogQuery>) -> Result<Json<Value>, ApiError> {
    let topic = q.topic.filter(|t| !t.is_empty());
    Ok(Json(json!(state.queue.sync_log(topic.as_deref()).await?)))
}
