//! Pausing a topic in the admin API (SPEC.md, "Flow control"): `POST
//! /api/admin/queues/{topic}/pause` and `/resume` → 200 `{"topic", "paused"}`, and the
//! `paused` flag of each topic in `GET /api/admin/queues`. With `?group=G` the same routes
//! pause or resume one message group of the topic → 200 `{"topic", "group", "paused"}`, and
//! each topic in the list carries its `paused_groups` and its busiest message `groups`
//! (running, waiting and why held, [`Queue::busiest_groups`]). Merged into
//! [`crate::admin::routes`], behind its token. The CLI (`web pause`, `web resume`, `web
//! queues`) and the dashboard call the same functions, so all three answer alike.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use vqs::store::{DeliveryState, MessageRecord, TopicControl, TopicStats};
use vqs::{Queue, VercelConfig};

use crate::admin::require_consumed_topic;
use crate::api_error::ApiError;
use crate::state::VqsState;

/// The pause routes (the caller adds the admin token check).
pub fn routes() -> Router<VqsState> {
    Router::new()
        .route("/api/admin/queues/{topic}/pause", post(pause))
        .route("/api/admin/queues/{topic}/resume", post(resume))
}

/// Pause (`paused`) or resume a topic a consumer of `vercel.json` consumes: 404 for one
/// nothing consumes (naming those that are), 400 for an invalid name.
pub async fn set_paused(queue: &Queue, vercel: &VercelConfig, topic: &str, paused: bool) -> Result<Value, ApiError> {
    require_consumed_topic(vercel, topic).map_err(ApiError::not_found)?;
    let control = if paused { queue.pause(topic).await? } else { queue.resume(topic).await? };
    Ok(paused_json(&control))
}

/// The answer to a pause or a resume: `{"topic", "paused"}`.
pub fn paused_json(control: &TopicControl) -> Value {
    json!({ "topic": control.topic, "paused": control.paused })
}

/// `?group=G`: the pause or resume is of that message group of the topic only.
#[derive(Debug, Deserialize)]
struct PauseQuery {
    group: Option<String>,
}

async fn pause(
    State(state): State<VqsState>,
    Path(topic): Path<String>,
    Query(q): Query<PauseQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(match q.group {
        Some(group) => set_group_paused(&state.queue, &state.vercel, &topic, &group, true).await?,
        None => set_paused(&state.queue, &state.vercel, &topic, true).await?,
    }))
}

async fn resume(
    State(state): State<VqsState>,
    Path(topic): Path<String>,
    Query(q): Query<PauseQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(match q.group {
        Some(group) => set_group_paused(&state.queue, &state.vercel, &topic, &group, false).await?,
        None => set_paused(&state.queue, &state.vercel, &topic, false).await?,
    }))
}

/// Pause or resume one message group of a consumed topic: `{"topic", "group", "paused"}`
/// (404 for a topic nothing consumes, 400 for an invalid topic or group).
pub async fn set_group_paused(
    queue: &Queue,
    vercel: &VercelConfig,
    topic: &str,
    group: &str,
    paused: bool,
) -> Result<Value, ApiError> {
    require_consumed_topic(vercel, topic).map_err(ApiError::not_found)?;
    if paused {
        queue.pause_group(topic, group).await?;
    } else {
        queue.resume_group(topic, group).await?;
    }
    Ok(json!({ "topic": topic, "group": group, "paused": paused }))
}

/// Per-topic counts with `"paused": true|false` (as stored, not this process's view); a
/// paused topic with no messages is listed too, with zero counts. Each topic also carries
/// its limits in force, its `paused_groups`, and `groups`: its busiest message groups
/// (at most [`vqs::BUSIEST_GROUPS_LISTED`]), `{"group", "consumer_group", "running",
/// "waiting", "waiting_more", "held"}`.
pub async fn queues_json(queue: &Queue) -> Result<Value, ApiError> {
    let stats = queue.stats().await?;
    let paused: BTreeSet<String> =
        queue.topic_controls().await?.into_iter().filter(|c| c.paused).map(|c| c.topic).collect();
    let limits = queue.limits().await?;
    let groups = queue.paused_groups(None).await?;
    let mut list = with_paused(stats, &paused);
    // The limits in force per topic (as stored; the job types' defaults merged in).
    for v in &mut list {
        let topic = v["topic"].as_str().unwrap_or_default().to_owned();
        v["limits"] = match limits.iter().find(|l| l.topic == topic) {
            Some(l) => crate::admin_limits::in_force_json(&l.in_force),
            None => crate::admin_limits::in_force_json(&Default::default()),
        };
        v["paused_groups"] =
            json!(groups.iter().filter(|g| g.topic == topic).map(|g| &g.group_key).collect::<Vec<_>>());
        // The busiest message groups of its grouped consumer groups (empty for a topic none
        // claims grouped), read through indexes at every refresh.
        v["groups"] = if vqs::is_valid_name(&topic) { json!(queue.busiest_groups(&topic).await?) } else { json!([]) };
    }
    Ok(Value::Array(list))
}

fn with_paused(mut stats: Vec<TopicStats>, paused: &BTreeSet<String>) -> Vec<Value> {
    for t in paused {
        if !stats.iter().any(|s| &s.topic == t) {
            stats.push(TopicStats { topic: t.clone(), ..TopicStats::default() });
        }
    }
    stats.sort_by(|a, b| a.topic.cmp(&b.topic));
    stats
        .into_iter()
        .map(|s| {
            let is_paused = paused.contains(&s.topic);
            let mut v = json!(s);
            v["paused"] = json!(is_paused);
            v
        })
        .collect()
}

/// Why a message is not running, for the admin API's message view: `Some("paused")` when
/// its topic or its message group is paused and a delivery of it is waiting (pending); `Some("group_concurrency")`
/// when a delivery is due but its group is full; else, for a delivery that is due,
/// `"concurrency"` or `"rate_limit"` when a limit in force holds it back
/// ([`Queue::limit_held`], with the app's trigger that consumes it: its `maxConcurrency`
/// counts too). SPEC.md, "Flow control".
pub async fn held(state: &crate::VqsState, m: &MessageRecord) -> Result<Option<&'static str>, ApiError> {
    let queue = &state.queue;
    if !m.deliveries.iter().any(|d| d.state == DeliveryState::Pending) {
        return Ok(None);
    }
    if queue.paused_topics().await?.contains(&m.topic) {
        return Ok(Some("paused"));
    }
    if let Some(group) = &m.group_key
        && queue.group_paused(&m.topic, group).await?
    {
        return Ok(Some("paused"));
    }
    if m.group_key.is_some()
        && let Some(why) = queue.group_held(&m.id, &m.topic).await?
    {
        return Ok(Some(why));
    }
    let now = queue.clock().now();
    let consumers = crate::consumers(state);
    for d in m.deliveries.iter().filter(|d| d.state == DeliveryState::Pending && d.visible_at <= now) {
        let consumer = consumers.iter().find(|c| c.consumer_group == d.consumer_group && c.consumes(&m.topic));
        if let Some(why) = queue.limit_held(&m.topic, &d.consumer_group, consumer).await? {
            return Ok(Some(why));
        }
    }
    Ok(None)
}
