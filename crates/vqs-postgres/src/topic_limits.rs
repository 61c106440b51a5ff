//! A topic's limit overrides (SPEC "Flow control"): columns of its `topic_controls` row
//! (migration 0020), announced to every process on `vqs_control` as `limits:<topic>`.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use vqs::store::*;

use crate::rows::*;

const COLUMNS: &str = "topic, concurrency, rate_limit, rate_period_seconds, group_concurrency, group_rate_limit, \
                       group_rate_period_seconds, updated_at";

fn int(v: Option<u32>) -> Option<i32> {
    v.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

fn rate(limit: Option<i32>, period: Option<i32>) -> Option<RateLimit> {
    match (limit, period) {
        (Some(l), Some(p)) => Some(RateLimit { limit: l.max(0) as u32, period_seconds: p.max(0) as u32 }),
        _ => None,
    }
}

fn decode(r: &PgRow) -> TopicLimitsRow {
    let n = |i: usize| r.get::<Option<i32>, _>(i);
    TopicLimitsRow {
        topic: r.get(0),
        overrides: TopicLimits {
            concurrency: n(1).map(|v| v.max(0) as u32),
            rate_limit: rate(n(2), n(3)),
            group_concurrency: n(4).map(|v| v.max(0) as u32),
            group_rate_limit: rate(n(5), n(6)),
        },
        updated_at: r.get(7),
    }
}

/// Upsert the patched columns (a field the patch leaves out keeps its value; the pause state
/// is untouched) and announce `limits:<topic>` in the same transaction, so a listener that
/// hears it reads the new limits. Concurrent calls for one topic leave one row (`ON
/// CONFLICT DO UPDATE` serialises them).
pub(crate) async fn topic_limits_set(pool: &PgPool, p: TopicLimitsSetParams) -> Result<TopicLimitsRow, StoreError> {
    let patch = p.patch;
    let rate_of = |r: Option<Option<RateLimit>>| r.flatten();
    let sql = format!(
        "INSERT INTO topic_controls (topic, paused, updated_at, concurrency, rate_limit, rate_period_seconds, \
         group_concurrency, group_rate_limit, group_rate_period_seconds) \
         VALUES ($1, FALSE, $2, $4, $6, $7, $9, $11, $12) \
         ON CONFLICT (topic) DO UPDATE SET \
         concurrency = CASE WHEN $3 THEN EXCLUDED.concurrency ELSE topic_controls.concurrency END, \
         rate_limit = CASE WHEN $5 THEN EXCLUDED.rate_limit ELSE topic_controls.rate_limit END, \
         rate_period_seconds = CASE WHEN $5 THEN EXCLUDED.rate_period_seconds ELSE topic_controls.rate_period_seconds END, \
         group_concurrency = CASE WHEN $8 THEN EXCLUDED.group_concurrency ELSE topic_controls.group_concurrency END, \
         group_rate_limit = CASE WHEN $10 THEN EXCLUDED.group_rate_limit ELSE topic_controls.group_rate_limit END, \
         group_rate_period_seconds = CASE WHEN $10 THEN EXCLUDED.group_rate_period_seconds \
         ELSE topic_controls.group_rate_period_seconds END, \
         updated_at = EXCLUDED.updated_at \
         RETURNING {COLUMNS}"
    );
    let mut tx = pool.begin().await.map_err(db_err)?;
    let row = sqlx::query(&sql)
        .bind(&p.topic)
        .bind(p.now)
        .bind(patch.concurrency.is_some())
        .bind(int(patch.concurrency.flatten()))
        .bind(patch.rate_limit.is_some())
        .bind(int(rate_of(patch.rate_limit).map(|r| r.limit)))
        .bind(int(rate_of(patch.rate_limit).map(|r| r.period_seconds)))
        .bind(patch.group_concurrency.is_some())
        .bind(int(patch.group_concurrency.flatten()))
        .bind(patch.group_rate_limit.is_some())
        .bind(int(rate_of(patch.group_rate_limit).map(|r| r.limit)))
        .bind(int(rate_of(patch.group_rate_limit).map(|r| r.period_seconds)))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    sqlx::query("SELECT pg_notify('vqs_control', 'limits:' || $1)")
        .bind(&p.topic)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(decode(&row))
}

pub(crate) async fn topic_limits_list(pool: &PgPool) -> Result<Vec<TopicLimitsRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM topic_controls WHERE concurrency IS NOT NULL OR rate_limit IS NOT NULL \
         OR group_concurrency IS NOT NULL OR group_rate_limit IS NOT NULL ORDER BY topic"
    );
    let rows = sqlx::query(&sql).fetch_all(pool).await.map_err(db_err)?;
    Ok(rows.iter().map(decode).collect())
}

pub(crate) async fn rate_bucket_get(pool: &PgPool, p: RateBucketGetParams) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("SELECT tat_us FROM rate_buckets WHERE consumer_group = $1 AND topic = $2")
        .bind(&p.consumer_group)
        .bind(&p.topic)
        .fetch_optional(pool)
        .await
        .map_err(db_err)
}

/// One statement: the bucket row is upserted only when a start is allowed (`ON CONFLICT DO
/// UPDATE ... WHERE` locks the row, so concurrent takers queue on it and each sees the
/// last one's advance); when nothing was returned, the bucket is read for the wait.
pub(crate) async fn rate_bucket_take(pool: &PgPool, p: RateBucketTakeParams) -> Result<Option<i64>, StoreError> {
    let now = p.now.timestamp_micros();
    let interval = vqs::store_support::rate_interval_us(p.rate);
    let tolerance = i64::from(p.rate.limit.max(1) - 1) * interval;
    let taken = sqlx::query(
        "INSERT INTO rate_buckets (consumer_group, topic, tat_us, interval_us) VALUES ($1, $2, $3 + $4, $4) \
         ON CONFLICT (consumer_group, topic) DO UPDATE SET tat_us = GREATEST(rate_buckets.tat_us, $3) + $4, \
         interval_us = $4 WHERE GREATEST(rate_buckets.tat_us, $3) <= $3 + $5 RETURNING tat_us",
    )
    .bind(&p.consumer_group)
    .bind(&p.topic)
    .bind(now)
    .bind(interval)
    .bind(tolerance)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    if taken.is_some() {
        return Ok(None);
    }
    let tat = rate_bucket_get(pool, RateBucketGetParams { consumer_group: p.consumer_group, topic: p.topic }).await?;
    Ok(Some(tat.map_or(0, |t| (t - tolerance - now).max(1))))
}

/// Lower the buckets' `tat_us` by one interval each, in one transaction; each `UPDATE` takes
/// the row lock, so a concurrent take or credit is applied after it, never lost. The group
/// bucket's row is found by the key given or, for a local lease, by the delivery's key.
pub(crate) async fn rate_bucket_credit(pool: &PgPool, p: RateBucketCreditParams) -> Result<(), StoreError> {
    if p.rate.is_none() && p.group_rate.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(db_err)?;
    if let Some(rate) = p.rate {
        sqlx::query("UPDATE rate_buckets SET tat_us = tat_us - $3 WHERE consumer_group = $1 AND topic = $2")
            .bind(&p.consumer_group)
            .bind(&p.topic)
            .bind(vqs::store_support::rate_interval_us(rate))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    if let Some(rate) = p.group_rate {
        let key = match p.group_key {
            Some(k) => Some(k),
            None => sqlx::query_scalar(
                "SELECT group_key FROM deliveries WHERE consumer_group = $1 AND message_id = $2 AND group_key <> ''",
            )
            .bind(&p.consumer_group)
            .bind(&p.message_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .flatten(),
        };
        if let Some(key) = key {
            sqlx::query(
                "UPDATE flow_groups SET tat_us = tat_us - $3 WHERE consumer_group = $1 AND group_key = $2 \
                 AND tat_us IS NOT NULL",
            )
            .bind(&p.consumer_group)
            .bind(&key)
            .bind(vqs::store_support::rate_interval_us(rate))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
    }
    tx.commit().await.map_err(db_err)
}
