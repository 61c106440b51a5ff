//! Subscriptions: a consumer group's topic pattern and the deliveries it adds.

use sqlx::{PgPool, Row};
use vqs::store::*;

use crate::rows::*;

pub(crate) async fn subscription_ensure(pool: &PgPool, p: SubscriptionEnsureParams) -> Result<(), StoreError> {
    let vqs::store_support::TopicPattern { prefix, is_prefix } =
        vqs::store_support::TopicPattern::parse(&p.topic_pattern);
    let initial = i32::try_from(p.initial_delay_seconds).unwrap_or(i32::MAX);
    let mut tx = pool.begin().await.map_err(db_err)?;
    let was_grouped: Option<bool> = sqlx::query_scalar(
        "SELECT grouped FROM subscriptions WHERE consumer_group = $1 AND topic_pattern = $2 FOR UPDATE",
    )
    .bind(&p.consumer_group)
    .bind(&p.topic_pattern)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    // (xmax = 0) is true only for a freshly inserted row.
    let fresh: bool = sqlx::query(
        "INSERT INTO subscriptions (consumer_group, topic_pattern, prefix, is_prefix, initial_delay_s, created_at, grouped) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (consumer_group, topic_pattern) \
         DO UPDATE SET initial_delay_s = EXCLUDED.initial_delay_s, grouped = EXCLUDED.grouped \
         RETURNING (xmax = 0)",
    )
    .bind(&p.consumer_group)
    .bind(&p.topic_pattern)
    .bind(&prefix)
    .bind(is_prefix)
    .bind(initial)
    .bind(p.now)
    .bind(p.grouped)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?
    .get(0);
    if fresh {
        // A new group starts at the beginning of the topic: every live message — but not one
        // that was cancelled (nothing of it left to run, and some of it cancelled): a
        // cancelled message never runs.
        sqlx::query(
            "INSERT INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at, group_key, priority) \
             SELECT id, $1, topic, 'pending', GREATEST(deliver_at, created_at + make_interval(secs => $2)), 0, \
                    idempotency_key IS NOT NULL, $3, CASE WHEN $6 THEN COALESCE(m.group_key, '') END, m.priority \
             FROM messages m WHERE expires_at > $3 AND only_group IS NULL \
               AND ((NOT $4 AND topic = $5) OR ($4 AND starts_with(topic, $5))) \
               AND NOT (EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state = 'cancelled') \
                        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
                                        AND d.state IN ('pending', 'leased'))) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&p.consumer_group)
        .bind(f64::from(initial))
        .bind(p.now)
        .bind(is_prefix)
        .bind(&prefix)
        .bind(p.grouped)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    if fresh || was_grouped.is_some_and(|g| g != p.grouped) {
        crate::flow_groups::rekey(&mut tx, &p.consumer_group, p.grouped, p.now).await?;
    }
    tx.commit().await.map_err(db_err)
}

/// Every ungrouped subscription to exactly `p.topic` becomes grouped, its live deliveries
/// re-keyed, in one transaction (the rows locked, so two calls at once re-key each once).
pub(crate) async fn group_topic(pool: &PgPool, p: SubscriptionGroupTopicParams) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let groups: Vec<String> = sqlx::query_scalar(
        "UPDATE subscriptions SET grouped = TRUE WHERE topic_pattern = $1 AND NOT grouped RETURNING consumer_group",
    )
    .bind(&p.topic)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    for group in &groups {
        crate::flow_groups::rekey(&mut tx, group, true, p.now).await?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(groups.len() as u64)
}
