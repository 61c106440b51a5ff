//! The local Vercel Queue Service — the v3 data plane — under `/_vqs`, so an unmodified
//! `@vercel/queue` client (`resolveBaseUrl` → `http://host:port/_vqs`) can send, receive and
//! acknowledge. Every route needs `Authorization: Bearer <VQS_QUEUE_SECRET>`.
//!
//! A duplicate send (same `Vqs-Idempotency-Key` as a message of the topic within that
//! message's retention) answers as Vercel does: `201` with a fresh id of its own, and a
//! receive by that id answers `409 {"originalMessageId"}`. The fresh id names the original
//! (`<original>_dup_<random>`), so nothing is stored for it. One addition: the duplicate's
//! answer also carries `Vqs-Duplicate: true` and `Vqs-Original-Message-Id`.

mod batch;
mod receive_codec;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::json;
use vqs::{
    MAX_PAYLOAD_BYTES, MAX_RETENTION, MAX_VISIBILITY_SECONDS, MIN_RETENTION, ReceiveParams, SendOpts, ServiceLease,
    is_valid_name,
};

pub use receive_codec::{ReceiveFormat, encode};

use crate::api_error::{ApiError, require_bearer};
use crate::state::VqsState;

/// `/_vqs` routes (nested by the app).
pub fn routes(state: &VqsState) -> Router<VqsState> {
    let subscribed = Subscribed::default();
    Router::new()
        .route("/api/v3/topic/{topic}", post(publish))
        .route("/api/v3/topic/{topic}/batch", post(publish_batch))
        .route("/api/v3/topic/{topic}/consumer/{group}", post(receive).layer(axum::Extension(subscribed.clone())))
        .route(
            "/api/v3/topic/{topic}/consumer/{group}/id/{message_id}",
            post(receive_by_id).layer(axum::Extension(subscribed)),
        )
        .route("/api/v3/topic/{topic}/consumer/{group}/lease/{handle}", delete(ack).patch(change_visibility))
        .route(
            "/api/v3/topic/{topic}/consumer/{group}/lease/{handle}/visibility",
            axum::routing::patch(change_visibility),
        )
        .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_queue_secret))
}

async fn require_queue_secret(State(state): State<VqsState>, req: Request, next: Next) -> Response {
    match require_bearer(state.queue_secret.as_ref(), req.headers(), "VQS_QUEUE_SECRET", "the queue service") {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// (topic, group) pairs this process has subscribed, so a receive costs one write per pair
/// per process, not one per call.
#[derive(Clone, Default)]
struct Subscribed(Arc<Mutex<HashSet<(String, String)>>>);

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ApiError::bad_request(format!("header {name} is not visible ASCII"))),
    }
}

fn int_header(headers: &HeaderMap, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
    match header_str(headers, name)? {
        None => Ok(None),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "header {name} must be a whole number from {min} to {max}, got {s:?}"
            ))),
        },
    }
}

fn check_name(kind: &str, name: &str) -> Result<(), ApiError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("invalid {kind} {name:?}: use letters, digits, '-' and '_' only")))
    }
}

/// Request headers that are not the producer's own: HTTP plumbing, the queue's protocol
/// headers and credentials. Everything else a send carries is kept with the message and
/// forwarded on its pushes (SDK `send(…, { headers })`).
fn is_producer_header(name: &str) -> bool {
    const NOT: &[&str] = &[
        "authorization",
        "proxy-authorization",
        "cookie",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "forwarded",
        "via",
        "origin",
        "referer",
        "priority",
        "x-real-ip",
    ];
    !NOT.contains(&name)
        && !name.starts_with("vqs-")
        && !name.starts_with("ce-")
        && !name.starts_with("x-vercel-")
        && !name.starts_with("x-forwarded-")
        && !name.starts_with("proxy-")
        && !name.starts_with("sec-")
}

/// Producer headers (trace context included) as the JSON object stored with a message.
pub fn producer_headers_json(headers: &HeaderMap) -> Option<String> {
    let kept: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(n, _)| is_producer_header(n.as_str()))
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_owned(), json!(v))))
        .collect();
    (!kept.is_empty()).then(|| serde_json::Value::Object(kept).to_string())
}

/// The id a dropped duplicate is answered with: fresh, and naming the original.
fn duplicate_id(original: &str) -> String {
    format!("{original}{DUPLICATE_MARK}{}", uuid::Uuid::new_v4().simple())
}

const DUPLICATE_MARK: &str = "_dup_";

/// One message of a publish, from its headers (the request's, or a batch part's).
fn send_opts(headers: &HeaderMap) -> Result<SendOpts, ApiError> {
    let retention = int_header(headers, "vqs-retention-seconds", MIN_RETENTION.as_secs(), MAX_RETENTION.as_secs())?;
    let delay = int_header(headers, "vqs-delay-seconds", 0, MAX_RETENTION.as_secs())?;
    Ok(SendOpts {
        idempotency_key: header_str(headers, "vqs-idempotency-key")?.map(str::to_owned),
        delay: Duration::from_secs(delay.unwrap_or(0)),
        retention: retention.map(Duration::from_secs),
        content_type: header_str(headers, "content-type")?.filter(|c| !c.is_empty()).map(str::to_owned),
        headers_json: producer_headers_json(headers),
        on_duplicate: on_duplicate(headers)?,
        // `Vqs-Group` (a vqs extension): the message's group key (SPEC.md, "Flow control").
        group: header_str(headers, "vqs-group")?.map(str::to_owned),
        // `Vqs-Priority` (a vqs extension): −100..=100, lower starts first.
        priority: header_str(headers, "vqs-priority")?
            .map(vqs::parse_priority)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("header Vqs-Priority: {e}")))?,
    })
}

/// `Vqs-On-Duplicate` (a vqs extension; Vercel only drops duplicates): `skip`, the default,
/// or `replace` (SPEC.md, "Job outcomes").
fn on_duplicate(headers: &HeaderMap) -> Result<vqs::OnDuplicate, ApiError> {
    match header_str(headers, "vqs-on-duplicate")? {
        None => Ok(vqs::OnDuplicate::Skip),
        Some(v) => vqs::OnDuplicate::parse(v).ok_or_else(|| {
            ApiError::bad_request(
                "Vqs-On-Duplicate must be skip (the default: a duplicate is dropped) or replace (the key's message, \
                 if it has not started, takes this payload and due time)",
            )
        }),
    }
}

/// The id a send answers with: the new message's, or a fresh one for a dropped duplicate.
fn answered_id(sent: &vqs::SendResult) -> String {
    if sent.duplicate { duplicate_id(&sent.message_id) } else { sent.message_id.clone() }
}

async fn publish(
    State(state): State<VqsState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_name("topic", &topic)?;
    let opts = send_opts(&headers)?;
    let sent = state.queue.send(&topic, body.to_vec(), opts).await?;
    let id = answered_id(&sent);
    let mut resp = (StatusCode::CREATED, Json(json!({ "messageId": id }))).into_response();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("vqs-message-id", v);
    }
    if sent.replaced {
        resp.headers_mut().insert("vqs-replaced", HeaderValue::from_static("true"));
    }
    if sent.duplicate {
        resp.headers_mut().insert("vqs-duplicate", HeaderValue::from_static("true"));
        if let Ok(v) = HeaderValue::from_str(&sent.message_id) {
            resp.headers_mut().insert("vqs-original-message-id", v);
        }
    }
    Ok(resp)
}

/// `POST …/topic/{topic}/batch`: each part is a send of its own, answered in input order —
/// `sent` with its id (a duplicate: a fresh id, as a single send), or `failed` with the
/// status a single send would have had. Parts are sent one after another, not in one
/// transaction: a failed part does not undo the others, as on Vercel.
async fn publish_batch(
    State(state): State<VqsState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_name("topic", &topic)?;
    let content_type = header_str(&headers, "content-type")?.unwrap_or("");
    let boundary = batch::boundary(content_type).ok_or_else(|| {
        ApiError::bad_request(format!(
            "a batch is Content-Type: multipart/mixed; boundary=..., one part per message (got {content_type:?})"
        ))
    })?;
    let parts = batch::parse(&body, boundary).map_err(|e| ApiError::bad_request(format!("bad batch body: {e}")))?;
    if parts.is_empty() || parts.len() > batch::MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {} messages, got {}",
            batch::MAX_BATCH,
            parts.len()
        )));
    }
    let mut results = Vec::with_capacity(parts.len());
    for (part_headers, payload) in parts {
        // The request's own producer headers (client headers, trace context) apply to every
        // part; a part's own win.
        let mut merged: HeaderMap = headers
            .iter()
            .filter(|(n, _)| is_producer_header(n.as_str()) && !part_headers.contains_key(*n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        merged.extend(part_headers);
        let outcome = match send_opts(&merged) {
            Ok(opts) => state.queue.send(&topic, payload, opts).await.map_err(ApiError::from),
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(sent) => json!({ "status": "sent", "messageId": answered_id(&sent) }),
            Err(e) => json!({
                "status": "failed",
                "statusCode": e.status.as_u16(),
                "error": e.message,
                "retryable": e.status.is_server_error() || e.status == StatusCode::TOO_MANY_REQUESTS,
            }),
        });
    }
    Ok(Json(json!({ "results": results })).into_response())
}

struct ReceiveOpts {
    format: ReceiveFormat,
    max: u32,
    /// 0: peek — the messages are shown, not leased.
    visibility: u32,
    /// `Vqs-Max-Concurrency`: refuse (429) when the group already holds this many leases.
    max_concurrency: Option<u64>,
}

fn receive_opts(headers: &HeaderMap) -> Result<ReceiveOpts, ApiError> {
    let accept = header_str(headers, "accept")?.unwrap_or("");
    let format = ReceiveFormat::from_accept(accept).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("Accept must be multipart/mixed or application/x-ndjson, got {accept:?}"),
        )
    })?;
    let max = int_header(headers, "vqs-max-messages", 1, 10)?.unwrap_or(1) as u32;
    let visibility = int_header(headers, "vqs-visibility-timeout-seconds", 0, u64::from(MAX_VISIBILITY_SECONDS))?
        .unwrap_or(60) as u32;
    let max_concurrency = int_header(headers, "vqs-max-concurrency", 1, u64::from(u32::MAX))?;
    Ok(ReceiveOpts { format, max, visibility, max_concurrency })
}

async fn ensure_subscribed(
    state: &VqsState,
    subscribed: &Subscribed,
    topic: &str,
    group: &str,
) -> Result<(), ApiError> {
    let key = (topic.to_owned(), group.to_owned());
    if subscribed.0.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
        return Ok(());
    }
    state.queue.local_service().subscribe(topic, group).await?;
    subscribed.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
    Ok(())
}

/// 429 with `Retry-After`, as Vercel answers a receive over `Vqs-Max-Concurrency`.
fn too_many(group: &str, limit: u64) -> Response {
    let body = json!({
        "error": format!(
            "consumer group {group} already holds {limit} leases (Vqs-Max-Concurrency: {limit}): acknowledge or release one, then receive again"
        )
    });
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

async fn claim(
    state: &VqsState,
    topic: String,
    group: String,
    message_id: Option<String>,
    opts: &ReceiveOpts,
) -> Result<Response, ApiError> {
    let service = state.queue.local_service();
    let peek = opts.visibility == 0;
    // `Vqs-Max-Concurrency`: a group already at the limit is told so (429) at once; below it,
    // the store leases only the room left, counted under its lock, so receives racing for
    // the last slots never pass the limit together.
    let max_leased = match (opts.max_concurrency, peek) {
        (Some(n), false) => {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            if service.leased_count(&group).await? >= i64::from(n) {
                return Ok(too_many(&group, u64::from(n)));
            }
            Some(n)
        }
        _ => None,
    };
    let mut leased = service
        .receive(ReceiveParams {
            consumer_group: group.clone(),
            topic: topic.clone(),
            message_id,
            limit: opts.max,
            // A peek leases for the shortest time and gives the leases straight back, so a
            // crash in between hides the messages for a second at most.
            visibility_seconds: opts.visibility.max(1),
            max_leased,
        })
        .await?;
    if leased.is_empty()
        && let Some(n) = max_leased
        && service.leased_count(&group).await? >= i64::from(n)
    {
        // Another receive took the last slot between the check and the claim.
        return Ok(too_many(&group, u64::from(n)));
    }
    if leased.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if peek {
        for m in &mut leased {
            let lease = ServiceLease {
                topic: topic.clone(),
                consumer_group: group.clone(),
                receipt_handle: m.receipt_handle.clone(),
            };
            // Given back uncounted: the delivery is as it was, due now (the dispatchers are woken).
            service.release(&lease).await?;
            m.delivery_count = m.delivery_count.saturating_sub(1);
        }
    }
    let (body, content_type) = encode(opts.format, &leased);
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

async fn receive(
    State(state): State<VqsState>,
    axum::Extension(subscribed): axum::Extension<Subscribed>,
    Path((topic, group)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_name("topic", &topic)?;
    check_name("consumer group", &group)?;
    let opts = receive_opts(&headers)?;
    ensure_subscribed(&state, &subscribed, &topic, &group).await?;
    claim(&state, topic, group, None, &opts).await
}

async fn receive_by_id(
    State(state): State<VqsState>,
    axum::Extension(subscribed): axum::Extension<Subscribed>,
    Path((topic, group, message_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_name("topic", &topic)?;
    check_name("consumer group", &group)?;
    vqs::check_storable("message id", &message_id)?;
    let opts = ReceiveOpts { max: 1, ..receive_opts(&headers)? };
    // The id of a dropped duplicate: 409 naming the message that counts, as Vercel answers.
    if let Some((original, _)) = message_id.split_once(DUPLICATE_MARK) {
        return match state.queue.message(original).await? {
            Some(m) if m.topic == topic => Ok((
                StatusCode::CONFLICT,
                Json(json!({
                    "error": format!("message {message_id} was a duplicate of {original} and was not queued"),
                    "originalMessageId": original,
                })),
            )
                .into_response()),
            _ => Err(ApiError::not_found(format!("no message {message_id} in topic {topic}"))),
        };
    }
    ensure_subscribed(&state, &subscribed, &topic, &group).await?;
    match claim(&state, topic.clone(), group, Some(message_id.clone()), &opts).await {
        // Not leased by anyone: held back because its topic is paused.
        Err(e) if e.status == StatusCode::CONFLICT && state.queue.paused_topics().await?.contains(&topic) => {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "message {message_id} is held: topic {topic} is paused; resume it \
                     (POST /api/admin/queues/{topic}/resume) to receive it"
                ),
            ))
        }
        answer => answer,
    }
}

/// Refuse a lease route whose path names another topic than the lease's message: a client
/// must not settle a message of topic B through topic A's URL (404, as a lease that topic
/// never issued).
async fn check_lease_topic(state: &VqsState, topic: &str, group: &str, handle: &str) -> Result<(), ApiError> {
    let (message_id, _) = vqs::store::split_receipt_handle(handle)?;
    match state.queue.local_service().delivery_topic(message_id, group).await? {
        Some(t) if t == topic => Ok(()),
        Some(_) => Err(ApiError::not_found(format!(
            "receipt handle {handle:?} is not a lease of topic {topic:?}: use the topic its message was received from"
        ))),
        None => Err(ApiError::not_found(format!("no message {message_id} for consumer group {group}"))),
    }
}

async fn ack(
    State(state): State<VqsState>,
    Path((topic, group, handle)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    check_name("consumer group", &group)?;
    vqs::check_storable("receipt handle", &handle)?;
    check_lease_topic(&state, &topic, &group, &handle).await?;
    let lease = ServiceLease { topic, consumer_group: group, receipt_handle: handle };
    state.queue.local_service().ack(&lease).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct VisibilityBody {
    visibility_timeout_seconds: i64,
}

async fn change_visibility(
    State(state): State<VqsState>,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let (group, handle) = (get("group"), get("handle"));
    check_name("consumer group", &group)?;
    vqs::check_storable("receipt handle", &handle)?;
    check_lease_topic(&state, &get("topic"), &group, &handle).await?;
    let parsed: VisibilityBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("send JSON {{\"visibilityTimeoutSeconds\": N}} with N from 0 to 3600 ({e})"))
    })?;
    let n = parsed.visibility_timeout_seconds;
    if !(0..=i64::from(MAX_VISIBILITY_SECONDS)).contains(&n) {
        return Err(ApiError::bad_request(format!("visibilityTimeoutSeconds must be 0 to 3600, got {n}")));
    }
    let lease = ServiceLease { topic: get("topic"), consumer_group: group, receipt_handle: handle };
    // Visible again at once (0) wakes the dispatchers.
    state.queue.local_service().set_visibility(&lease, n as u32).await?;
    Ok(Json(json!({ "success": true })))
}
