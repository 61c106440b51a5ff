//! Subscriptions: a consumer group's topic pattern, and the deliveries of the messages
//! already kept that it matches.

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use vqs::store::*;

use crate::rows::{US_PER_S, db_err, us};

pub(crate) async fn subscribe(conn: &mut SqliteConnection, p: SubscriptionEnsureParams) -> Result<(), StoreError> {
    let pattern = vqs::store_support::TopicPattern::parse(&p.topic_pattern);
    let (prefix, is_prefix) = (pattern.prefix, i64::from(pattern.is_prefix));
    let now = us(p.now);
    let initial = i64::from(p.initial_delay_seconds) * US_PER_S;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let was_grouped: Option<bool> =
        sqlx::query_scalar("SELECT grouped FROM subscriptions WHERE consumer_group = ? AND topic_pattern = ?")
            .bind(&p.consumer_group)
            .bind(&p.topic_pattern)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    let existed = was_grouped.is_some();
    sqlx::query(
        "INSERT INTO subscriptions (consumer_group, topic_pattern, prefix, is_prefix, initial_delay_us, created_at, grouped) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (consumer_group, topic_pattern) \
         DO UPDATE SET initial_delay_us = excluded.initial_delay_us, grouped = excluded.grouped",
    )
    .bind(&p.consumer_group)
    .bind(&p.topic_pattern)
    .bind(&prefix)
    .bind(is_prefix)
    .bind(initial)
    .bind(now)
    .bind(p.grouped)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if !existed {
        // A new group starts at the beginning of the topic: every live message — but not one
        // that was cancelled (nothing of it left to run, and some of it cancelled): a
        // cancelled message never runs.
        sqlx::query(
            "INSERT OR IGNORE INTO deliveries \
               (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at, group_key, \
                priority) \
             SELECT id, ?1, topic, 'pending', MAX(deliver_at, created_at + ?2), 0, idempotency_key IS NOT NULL, ?3, \
                    CASE WHEN ?6 THEN COALESCE(m.group_key, '') END, m.priority \
             FROM messages m \
             WHERE expires_at > ?3 AND only_group IS NULL \
               AND ((?4 = 0 AND topic = ?5) OR (?4 = 1 AND substr(topic, 1, length(?5)) = ?5)) \
               AND NOT (EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state = 'cancelled') \
                        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
                                        AND d.state IN ('pending', 'leased')))",
        )
        .bind(&p.consumer_group)
        .bind(initial)
        .bind(now)
        .bind(is_prefix)
        .bind(&prefix)
        .bind(p.grouped)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    if was_grouped.is_some_and(|g| g != p.grouped) {
        crate::flow_groups::rekey(&mut tx, &p.consumer_group, p.grouped, now).await?;
    }
    tx.commit().await.map_err(db_err)
}

/// Every ungrouped subscription to exactly `p.topic` becomes grouped, its live deliveries
/// re-keyed, in one write transaction.
pub(crate) async fn group_topic(
    conn: &mut SqliteConnection,
    p: SubscriptionGroupTopicParams,
) -> Result<u64, StoreError> {
    let mut tx = conn.begin().await.map_err(db_err)?;
    let groups: Vec<String> = sqlx::query_scalar(
        "UPDATE subscriptions SET grouped = 1 WHERE topic_pattern = ?1 AND grouped = 0 RETURNING consumer_group",
    )
    .bind(&p.topic)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    for group in &groups {
        crate::flow_groups::rekey(&mut tx, group, true, us(p.now)).await?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(groups.len() as u64)
}
