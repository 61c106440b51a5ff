//! Limits per topic in the admin API (SPEC.md, "Flow control"): `GET /api/admin/limits`,
//! `PUT /api/admin/limits/{topic}` (a JSON object with any of `concurrency`, `rate_limit`,
//! `group_concurrency`, `group_rate_limit`; `null` clears one) and `DELETE
//! /api/admin/limits/{topic}`, each answering the topic's limits now in force (the job
//! type's defaults merged with the overrides, saying which is which). Merged into
//! [`crate::admin::routes`], behind its token. The CLI (`web limits …`) calls the same
//! functions, so both answer alike.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use vqs::store::{RateLimit, TopicLimits, TopicLimitsPatch};
use vqs::{LimitsInForce, Queue, TopicLimitsView, VercelConfig};

use crate::admin::require_consumed_topic;
use crate::api_error::ApiError;
use crate::state::VqsState;

/// The limits routes (the caller adds the admin token check).
pub fn routes() -> Router<VqsState> {
    Router::new()
        .route("/api/admin/limits", get(list))
        .route("/api/admin/limits/{topic}", get(one).put(put).delete(delete))
}

const FIELDS: [&str; 4] = ["concurrency", "rate_limit", "group_concurrency", "group_rate_limit"];

/// Parse a PUT body: a JSON object naming at least one of the four fields, each a whole
/// number (`concurrency`, `group_concurrency`), an object `{"limit", "period_seconds"}`
/// (`rate_limit`, `group_rate_limit`) or `null` (clear it). Anything else is refused with
/// what to send instead; the values' ranges are the queue's ([`vqs::check_patch`]).
pub fn parse_patch(body: &[u8]) -> Result<TopicLimitsPatch, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be a JSON object such as {{\"concurrency\": 5, \"rate_limit\": {{\"limit\": 10, \"period_seconds\": 60}}}}: {e}"
        ))
    })?;
    let Value::Object(map) = v else {
        return Err(ApiError::bad_request(format!("the body must be a JSON object with any of {}", FIELDS.join(", "))));
    };
    if let Some(k) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown field {k:?}: a limits object has only {}",
            FIELDS.join(", ")
        )));
    }
    if map.is_empty() {
        return Err(ApiError::bad_request(format!(
            "name at least one of {} (null clears one; DELETE clears all)",
            FIELDS.join(", ")
        )));
    }
    Ok(TopicLimitsPatch {
        concurrency: field(&map, "concurrency", count)?,
        rate_limit: field(&map, "rate_limit", rate)?,
        group_concurrency: field(&map, "group_concurrency", count)?,
        group_rate_limit: field(&map, "group_rate_limit", rate)?,
    })
}

fn field<T>(
    map: &Map<String, Value>,
    name: &str,
    parse: fn(&str, &Value) -> Result<T, String>,
) -> Result<Option<Option<T>>, ApiError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => parse(name, v).map(|t| Some(Some(t))).map_err(ApiError::bad_request),
    }
}

fn count(name: &str, v: &Value) -> Result<u32, String> {
    let n = v.as_u64().filter(|_| v.is_u64()).ok_or_else(|| {
        format!("{name} must be a whole number from 1 to {} (or null to clear it), not {v}", vqs::MAX_LIMIT)
    })?;
    let n =
        u32::try_from(n).map_err(|_| format!("{name} must be a whole number from 1 to {}, not {n}", vqs::MAX_LIMIT))?;
    vqs::check_limit(name, n)
}

fn rate(name: &str, v: &Value) -> Result<RateLimit, String> {
    let shape =
        || format!("{name} must be an object {{\"limit\": N, \"period_seconds\": S}} (or null to clear it), not {v}");
    let Value::Object(m) = v else { return Err(shape()) };
    if m.len() != 2 || !m.contains_key("limit") || !m.contains_key("period_seconds") {
        return Err(shape());
    }
    let r = RateLimit {
        limit: count(&format!("{name}.limit"), &m["limit"])?,
        period_seconds: {
            let p = &m["period_seconds"];
            let s = p.as_u64().filter(|_| p.is_u64()).ok_or_else(|| {
                format!(
                    "{name}.period_seconds must be a whole number of seconds from 1 to {}, not {p}",
                    vqs::MAX_RATE_PERIOD_SECONDS
                )
            })?;
            u32::try_from(s).unwrap_or(u32::MAX)
        },
    };
    vqs::check_rate_limit(name, r)
}

fn rate_json(r: &RateLimit) -> Value {
    json!({ "limit": r.limit, "period_seconds": r.period_seconds })
}

fn limits_json(l: &TopicLimits) -> Value {
    json!({
        "concurrency": l.concurrency,
        "rate_limit": l.rate_limit.as_ref().map(rate_json),
        "group_concurrency": l.group_concurrency,
        "group_rate_limit": l.group_rate_limit.as_ref().map(rate_json),
    })
}

/// The limits in force, each with its `source` (`"default"` or `"override"`).
pub fn in_force_json(f: &LimitsInForce) -> Value {
    let with_source = |mut v: Value, source: vqs::LimitSource| {
        v["source"] = json!(source);
        v
    };
    json!({
        "concurrency": f.concurrency.map(|c| json!({ "value": c.value, "source": c.source })),
        "rate_limit": f.rate_limit.map(|r| with_source(rate_json(&r.value), r.source)),
        "group_concurrency": f.group_concurrency.map(|c| json!({ "value": c.value, "source": c.source })),
        "group_rate_limit": f.group_rate_limit.map(|r| with_source(rate_json(&r.value), r.source)),
    })
}

/// One topic's limits: `{"topic", "in_force", "defaults", "overrides"}`.
pub fn view_json(v: &TopicLimitsView) -> Value {
    json!({
        "topic": v.topic,
        "in_force": in_force_json(&v.in_force),
        "defaults": limits_json(&v.defaults),
        "overrides": limits_json(&v.overrides),
    })
}

/// `GET /api/admin/limits`: `{"limits": [...]}`, every topic with a default or an override.
pub async fn limits_json_all(queue: &Queue) -> Result<Value, ApiError> {
    let all = queue.limits().await?;
    Ok(json!({ "limits": all.iter().map(view_json).collect::<Vec<_>>() }))
}

/// Apply a patch to a topic a consumer of `vercel.json` consumes (404 otherwise).
pub async fn set_limits(
    queue: &Queue,
    vercel: &VercelConfig,
    topic: &str,
    patch: TopicLimitsPatch,
) -> Result<Value, ApiError> {
    require_consumed_topic(vercel, topic).map_err(ApiError::not_found)?;
    Ok(view_json(&queue.set_limits(topic, patch).await?))
}

/// Clear every override of a topic (its defaults apply again).
pub async fn clear_limits(queue: &Queue, vercel: &VercelConfig, topic: &str) -> Result<Value, ApiError> {
    require_consumed_topic(vercel, topic).map_err(ApiError::not_found)?;
    Ok(view_json(&queue.clear_limits(topic).await?))
}

async fn list(State(state): State<VqsState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(limits_json_all(&state.queue).await?))
}

async fn one(State(state): State<VqsState>, Path(topic): Path<String>) -> Result<Json<Value>, ApiError> {
    require_consumed_topic(&state.vercel, &topic).map_err(ApiError::not_found)?;
    Ok(Json(view_json(&state.queue.topic_limits(&topic).await?)))
}

async fn put(State(state): State<VqsState>, Path(topic): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let patch = parse_patch(&body)?;
    Ok(Json(set_limits(&state.queue, &state.vercel, &topic, patch).await?))
}

async fn delete(State(state): State<VqsState>, Path(topic): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(clear_limits(&state.queue, &state.vercel, &topic).await?))
}
