//! A topic's limit overrides (SPEC "Flow control"): columns of its `topic_controls` row
//! (migration 0020). Other processes learn of a change by polling.

use futures::FutureExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

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

fn decode(r: &SqliteRow) -> TopicLimitsRow {
    let n = |i: usize| r.get::<Option<i32>, _>(i);
    TopicLimitsRow {
        topic: r.get(0),
        overrides: TopicLimits {
            concurrency: n(1).map(|v| v.max(0) as u32),
            rate_limit: rate(n(2), n(3)),
            group_concurrency: n(4).map(|v| v.max(0) as u32),
            group_rate_limit: rate(n(5), n(6)),
        },
        updated_at: time(r.get(7)),
    }
}

/// Upsert the patched columns (a field the patch leaves out keeps its value; the pause state
/// is untouched), through the one writer: concurrent calls for one topic leave one row.
pub(crate) async fn topic_limits_set(writer: &Writer, p: TopicLimitsSetParams) -> Result<TopicLimitsRow, StoreError> {
    let patch = p.patch;
    let rate_of = |r: Option<Option<RateLimit>>| r.flatten();
    let sql = format!(
        "INSERT INTO topic_controls (topic, paused, updated_at, concurrency, rate_limit, rate_period_seconds, \
         group_concurrency, group_rate_limit, group_rate_period_seconds) \
         VALUES (?1, 0, ?2, ?4, ?6, ?7, ?9, ?11, ?12) \
         ON CONFLICT (topic) DO UPDATE SET \
         concurrency = CASE WHEN ?3 THEN excluded.concurrency ELSE topic_controls.concurrency END, \
         rate_limit = CASE WHEN ?5 THEN excluded.rate_limit ELSE topic_controls.rate_limit END, \
         rate_period_seconds = CASE WHEN ?5 THEN excluded.rate_period_seconds ELSE topic_controls.rate_period_seconds END, \
         group_concurrency = CASE WHEN ?8 THEN excluded.group_concurrency ELSE topic_controls.group_concurrency END, \
         group_rate_limit = CASE WHEN ?10 THEN excluded.group_rate_limit ELSE topic_controls.group_rate_limit END, \
         group_rate_period_seconds = CASE WHEN ?10 THEN excluded.group_rate_period_seconds \
         ELSE topic_controls.group_rate_period_seconds END, \
         updated_at = excluded.updated_at \
         RETURNING {COLUMNS}"
    );
    writer
        .run(move |c| {
            async move {
                let row = sqlx::query(&sql)
                    .bind(&p.topic)
                    .bind(us(p.now))
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
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                Ok(decode(&row))
            }
            .boxed()
        })
        .await
}

pub(crate) async fn topic_limits_list(read: &SqlitePool) -> Result<Vec<TopicLimitsRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM topic_controls WHERE concurrency IS NOT NULL OR rate_limit IS NOT NULL \
         OR group_concurrency IS NOT NULL OR group_rate_limit IS NOT NULL ORDER BY topic"
    );
    let rows = sqlx::query(&sql).fetch_all(read).await.map_err(db_err)?;
    Ok(rows.iter().map(decode).collect())
}

pub(crate) async fn rate_bucket_get(read: &SqlitePool, p: RateBucketGetParams) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("SELECT tat_us FROM rate_buckets WHERE consumer_group = ?1 AND topic = ?2")
        .bind(&p.consumer_group)
        .bind(&p.topic)
        .fetch_optional(read)
        .await
        .map_err(db_err)
}

/// Read and advance the bucket in the one writer (no other write interleaves).
pub(crate) async fn rate_bucket_take(writer: &Writer, p: RateBucketTakeParams) -> Result<Option<i64>, StoreError> {
    writer
        .run(move |c| {
            async move {
                let now = us(p.now);
                let tat: Option<i64> =
                    sqlx::query_scalar("SELECT tat_us FROM rate_buckets WHERE consumer_group = ?1 AND topic = ?2")
                        .bind(&p.consumer_group)
                        .bind(&p.topic)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db_err)?;
                if vqs::store_support::rate_room(p.rate, tat, now) == 0 {
                    let interval = vqs::store_support::rate_interval_us(p.rate);
                    let tolerance = i64::from(p.rate.limit.max(1) - 1) * interval;
                    return Ok(Some(tat.map_or(0, |t| (t - tolerance - now).max(1))));
                }
                sqlx::query(
                    "INSERT INTO rate_buckets (consumer_group, topic, tat_us, interval_us) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (consumer_group, topic) DO UPDATE SET tat_us = excluded.tat_us, \
                     interval_us = excluded.interval_us",
                )
                .bind(&p.consumer_group)
                .bind(&p.topic)
                .bind(vqs::store_support::rate_advance(p.rate, tat, now, 1))
                .bind(vqs::store_support::rate_interval_us(p.rate))
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(None)
            }
            .boxed()
        })
        .await
}

/// Lower the buckets' `tat_us` by one interval each, in the one writer (no take interleaves).
/// The group bucket's row is found by the key given or, for a local lease, by the delivery's.
pub(crate) async fn rate_bucket_credit(writer: &Writer, p: RateBucketCreditParams) -> Result<(), StoreError> {
    if p.rate.is_none() && p.group_rate.is_none() {
        return Ok(());
    }
    writer
        .run(move |c| {
            async move {
                if let Some(rate) = p.rate {
                    sqlx::query(
                        "UPDATE rate_buckets SET tat_us = tat_us - ?3 WHERE consumer_group = ?1 AND topic = ?2",
                    )
                    .bind(&p.consumer_group)
                    .bind(&p.topic)
                    .bind(vqs::store_support::rate_interval_us(rate))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                }
                if let Some(rate) = p.group_rate {
                    let key: Option<String> = match &p.group_key {
                        Some(k) => Some(k.clone()),
                        None => sqlx::query_scalar(
                            "SELECT group_key FROM deliveries WHERE consumer_group = ?1 AND message_id = ?2 \
                             AND group_key <> ''",
                        )
                        .bind(&p.consumer_group)
                        .bind(&p.message_id)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db_err)?
                        .flatten(),
                    };
                    if let Some(key) = key {
                        sqlx::query(
                            "UPDATE flow_groups SET tat_us = tat_us - ?3 WHERE consumer_group = ?1 AND group_key = ?2 \
                             AND tat_us IS NOT NULL",
                        )
                        .bind(&p.consumer_group)
                        .bind(&key)
                        .bind(vqs::store_support::rate_interval_us(rate))
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    }
                }
                Ok(())
            }
            .boxed()
        })
        .await
}
