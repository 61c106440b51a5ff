//! Small helpers the cases share.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use vqs::QueueStore;
use vqs::store::*;

pub type Store = Arc<dyn QueueStore>;

pub fn at(secs: i64) -> DateTime<Utc> {
    crate::t0() + Duration::seconds(secs)
}

/// Subscribe `group` to `topic` as a grouped consumer group (claims under group limits).
pub async fn subscribe_grouped(s: &Store, topic: &str, group: &str) {
    s.subscription_ensure(SubscriptionEnsureParams {
        topic_pattern: topic.into(),
        consumer_group: group.into(),
        initial_delay_seconds: 0,
        grouped: true,
        now: at(0),
    })
    .await
    .expect("subscribe");
}

pub async fn subscribe(s: &Store, topic: &str, group: &str) {
    s.subscription_ensure(SubscriptionEnsureParams {
        grouped: false,
        topic_pattern: topic.into(),
        consumer_group: group.into(),
        initial_delay_seconds: 0,
        now: at(0),
    })
    .await
    .expect("subscribe");
}

pub fn send_params(topic: &str, payload: &str, now: DateTime<Utc>) -> MessageSendParams {
    MessageSendParams {
        group_key: None,
        priority: 0,
        topic: topic.into(),
        payload: payload.as_bytes().to_vec(),
        content_type: "application/json".into(),
        idempotency_key: None,
        delay_seconds: 0,
        retention_seconds: 7 * 24 * 3600,
        headers_json: None,
        only_group: None,
        on_duplicate: Default::default(),
        now,
    }
}

pub async fn send(s: &Store, topic: &str, now: DateTime<Utc>) -> String {
    s.message_send(send_params(topic, "{}", now)).await.expect("send").message_id
}

pub fn claim_params(group: &str, limit: u32, now: DateTime<Utc>) -> DeliveryClaimParams {
    DeliveryClaimParams {
        group_concurrency: None,
        consumer_group: group.into(),
        topic: None,
        message_id: None,
        limit,
        visibility_seconds: 30,
        start_executions: false,
        lease_holder: None,
        max_leased: None,
        leased_here: 0,
        rate_limit: None,
        group_rate_limit: None,
        now,
    }
}

pub async fn claim(s: &Store, group: &str, limit: u32, now: DateTime<Utc>) -> Vec<LeasedMessage> {
    s.delivery_claim(claim_params(group, limit, now)).await.expect("claim")
}

pub fn lease(m: &LeasedMessage, now: DateTime<Utc>) -> LeaseParams {
    LeaseParams { consumer_group: m.consumer_group.clone(), receipt_handle: m.receipt_handle.clone(), now }
}

pub async fn ack(s: &Store, m: &LeasedMessage, now: DateTime<Utc>) -> Result<(), StoreError> {
    s.delivery_ack(DeliveryAckParams { lease: lease(m, now), execution: None }).await
}

pub async fn state(s: &Store, id: &str, group: &str) -> Option<DeliveryRecord> {
    let m = s.message_get(MessageGetParams { id: id.to_string() }).await.expect("message_get")?;
    m.deliveries.into_iter().find(|d| d.consumer_group == group)
}

pub fn finish(id: Option<i64>, status: ExecutionStatus, now: DateTime<Utc>) -> Option<ExecutionFinishParams> {
    id.map(|id| ExecutionFinishParams { id, status, error: None, began_at: None, now })
}

pub async fn executions(s: &Store, message_id: &str) -> Vec<ExecutionRecord> {
    s.execution_list(ExecutionListParams { message_id: Some(message_id.into()), limit: 1000, ..Default::default() })
        .await
        .expect("execution_list")
}

/// A maintenance pass that changes nothing but what a case sets.
pub fn keep_everything(now: DateTime<Utc>) -> MaintenanceParams {
    let long = 10 * 365 * 24 * 3600;
    MaintenanceParams {
        now,
        execution_retention_seconds: long,
        max_executions: 0,
        message_retention_seconds: long,
        max_messages: 0,
        cron_run_retention_seconds: long,
        max_cron_runs: 0,
        dead_letter_retention_seconds: long,
        batch: 1000,
    }
}

/// A maintenance pass with the core's default retention (`vqs::RetentionConfig::default()`:
/// executions 7 days, finished messages a day, cron runs and dead letters 30 days).
pub fn default_retention(now: DateTime<Utc>) -> MaintenanceParams {
    let r = vqs::RetentionConfig::default();
    MaintenanceParams {
        now,
        execution_retention_seconds: r.executions.as_secs(),
        max_executions: r.max_executions,
        message_retention_seconds: r.messages.as_secs(),
        max_messages: r.max_messages,
        cron_run_retention_seconds: r.cron_runs.as_secs(),
        max_cron_runs: r.max_cron_runs,
        dead_letter_retention_seconds: r.dead_letters.as_secs(),
        batch: r.batch,
    }
}
