//! The local Vercel Queue Service — the v3 data plane — under `/_vqs`, so an unmodified
//! `@vercel/queue` client (`resolveBaseUrl` → `http://host:port/_vqs`) can send, receive and
//! acknowledge. Every route needs `Authorization: Bearer <VQS_QUEUE_SECRET>`.
//!
//! One deviation: a duplicate send (same `Vqs-Idempotency-Key` while the original is pending
//! or running) answers `201` with the *original's* id and `Vqs-Duplicate: true`; Vercel
//! answers `201` with an id of its own for the dropped duplicate.

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
use vqs::store::{
    DeliveryAckParams, DeliveryClaimParams, LeaseParams, LeaseVisibilityParams, SubscriptionEnsureParams,
};
use vqs::{MAX_PAYLOAD_BYTES, MAX_RETENTION, MAX_VISIBILITY_SECONDS, MIN_RETENTION, SendOpts, is_valid_name};

pub use receive_codec::{ReceiveFormat, encode};

use crate::api_error::{ApiError, require_bearer};
use crate::state::AppState;

/// `/_vqs` routes (nested by the app).
pub fn routes(state: &AppState) -> Router<AppState> {
    let subscribed = Subscribed::default();
    Router::new()
        .route("/api/v3/topic/{topic}", post(publish))
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

async fn require_queue_secret(State(state): State<AppState>, req: Request, next: Next) -> Response {
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

async fn publish(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_name("topic", &topic)?;
    let retention = int_header(&headers, "vqs-retention-seconds", MIN_RETENTION.as_secs(), MAX_RETENTION.as_secs())?;
    let delay = int_header(&headers, "vqs-delay-seconds", 0, MAX_RETENTION.as_secs())?;
    let trace: serde_json::Map<String, serde_json::Value> = ["traceparent", "tracestate", "baggage"]
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()).map(|v| (h.to_string(), json!(v))))
        .collect();
    let opts = SendOpts {
        idempotency_key: header_str(&headers, "vqs-idempotency-key")?.map(str::to_owned),
        delay: Duration::from_secs(delay.unwrap_or(0)),
        retention: retention.map(Duration::from_secs),
        content_type: header_str(&headers, "content-type")?.filter(|c| !c.is_empty()).map(str::to_owned),
        headers_json: (!trace.is_empty()).then(|| serde_json::Value::Object(trace).to_string()),
    };
    let sent = state.queue.send(&topic, body.to_vec(), opts).await?;
    let mut resp = (StatusCode::CREATED, Json(json!({ "messageId": sent.message_id }))).into_response();
    if let Ok(v) = HeaderValue::from_str(&sent.message_id) {
        resp.headers_mut().insert("vqs-message-id", v);
    }
    if sent.duplicate {
        resp.headers_mut().insert("vqs-duplicate", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

struct ReceiveOpts {
    format: ReceiveFormat,
    max: u32,
    visibility: u32,
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
    if visibility == 0 {
        return Err(ApiError::bad_request(
            "Vqs-Visibility-Timeout-Seconds 0 (peek) is not supported by the local queue service: use 1 to 3600",
        ));
    }
    Ok(ReceiveOpts { format, max, visibility })
}

async fn ensure_subscribed(
    state: &AppState,
    subscribed: &Subscribed,
    topic: &str,
    group: &str,
) -> Result<(), ApiError> {
    let key = (topic.to_owned(), group.to_owned());
    if subscribed.0.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
        return Ok(());
    }
    state
        .queue
        .store()
        .subscription_ensure(SubscriptionEnsureParams {
            topic_pattern: topic.to_owned(),
            consumer_group: group.to_owned(),
            initial_delay_seconds: 0,
            now: state.queue.clock().now(),
        })
        .await?;
    subscribed.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
    Ok(())
}

async fn claim(
    state: &AppState,
    topic: String,
    group: String,
    message_id: Option<String>,
    opts: &ReceiveOpts,
) -> Result<Response, ApiError> {
    let leased = state
        .queue
        .store()
        .delivery_claim(DeliveryClaimParams {
            consumer_group: group,
            topic: Some(topic),
            message_id,
            limit: opts.max,
            visibility_seconds: opts.visibility,
            start_executions: false,
            lease_holder: None,
            now: state.queue.clock().now(),
        })
        .await?;
    if leased.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (body, content_type) = encode(opts.format, &leased);
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

async fn receive(
    State(state): State<AppState>,
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
    State(state): State<AppState>,
    axum::Extension(subscribed): axum::Extension<Subscribed>,
    Path((topic, group, message_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_name("topic", &topic)?;
    check_name("consumer group", &group)?;
    let opts = ReceiveOpts { max: 1, ..receive_opts(&headers)? };
    ensure_subscribed(&state, &subscribed, &topic, &group).await?;
    claim(&state, topic, group, Some(message_id), &opts).await
}

/// Refuse a lease route whose path names another topic than the lease's message: a client
/// must not settle a message of topic B through topic A's URL (404, as a lease that topic
/// never issued).
async fn check_lease_topic(state: &AppState, topic: &str, group: &str, handle: &str) -> Result<(), ApiError> {
    let (message_id, _) = vqs::store::split_receipt_handle(handle)?;
    match state.queue.store().delivery_topic(message_id, group).await? {
        Some(t) if t == topic => Ok(()),
        Some(_) => Err(ApiError::not_found(format!(
            "receipt handle {handle:?} is not a lease of topic {topic:?}: use the topic its message was received from"
        ))),
        None => Err(ApiError::not_found(format!("no message {message_id} for consumer group {group}"))),
    }
}

async fn ack(
    State(state): State<AppState>,
    Path((topic, group, handle)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    check_lease_topic(&state, &topic, &group, &handle).await?;
    let now = state.queue.clock().now();
    let lease = LeaseParams { consumer_group: group, receipt_handle: handle, now };
    state.queue.store().delivery_ack(DeliveryAckParams { lease, execution: None }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct VisibilityBody {
    visibility_timeout_seconds: i64,
}

async fn change_visibility(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let (group, handle) = (get("group"), get("handle"));
    check_lease_topic(&state, &get("topic"), &group, &handle).await?;
    let parsed: VisibilityBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("send JSON {{\"visibilityTimeoutSeconds\": N}} with N from 0 to 3600 ({e})"))
    })?;
    let n = parsed.visibility_timeout_seconds;
    if !(0..=i64::from(MAX_VISIBILITY_SECONDS)).contains(&n) {
        return Err(ApiError::bad_request(format!("visibilityTimeoutSeconds must be 0 to 3600, got {n}")));
    }
    let now = state.queue.clock().now();
    state
        .queue
        .store()
        .delivery_set_visibility(LeaseVisibilityParams {
            lease: LeaseParams { consumer_group: group, receipt_handle: handle, now },
            visibility_seconds: n as u32,
        })
        .await?;
    if n == 0 {
        state.queue.wake();
    }
    Ok(Json(json!({ "success": true })))
}
