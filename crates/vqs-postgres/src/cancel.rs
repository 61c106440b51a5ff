//! Cancelling (SPEC.md, "Job outcomes"): one message in every consumer group, a topic's
//! pending backlog (purge), and the question a process asks about the jobs it runs.
//!
//! A cancelled delivery is finished, like an acknowledged one: it leaves the claim's index,
//! and its lease (if it had one) can no longer settle it — every lease update matches
//! `state = 'leased'` only, so the holder is answered as for a lost lease.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool, Postgres, QueryBuilder, Row};
use vqs::store::*;

use crate::rows::db_err;

/// Messages a purge cancels per transaction, so a backlog of millions never holds one long
/// transaction (nor its row locks).
const PURGE_BATCH: i64 = 5_000;

/// What a purge records as the `error` of an attempt it closes (a pending delivery with an
/// attempt still open: its lease was given back with visibility 0 while the job ran).
const PURGED: &str = "cancelled: the queue was purged";

/// How often a cancel tries to lock the message's deliveries without waiting before it waits.
const NOWAIT_TRIES: u32 = 40;
/// How often a waiting cancel chosen as a deadlock's victim tries again.
const DEADLOCK_TRIES: u32 = 3;

pub(crate) async fn message_cancel(pool: &PgPool, p: MessageCancelParams) -> Result<MessageCancelled, StoreError> {
    // A group commit's statement (acks, retries of many jobs) may lock two deliveries of this
    // message in the other order than ours: were the cancel to hold one while waiting for the
    // other, PostgreSQL could break the deadlock by failing that whole batch. So the cancel
    // takes its locks only when all are free (NOWAIT), and otherwise steps back and tries
    // again shortly; after that it waits, and a deadlock then fails the cancel, which tries again.
    let mut conn = pool.acquire().await.map_err(db_err)?;
    for attempt in 0..NOWAIT_TRIES {
        match cancel_once(&mut conn, &p, LOCK_NOWAIT).await {
            Err(e) if sql_state(&e).as_deref() == Some("55P03") => {
                tokio::time::sleep(std::time::Duration::from_millis(2 + u64::from(attempt) * 2)).await;
            }
            r => return r.map_err(db_err),
        }
    }
    for _ in 0..DEADLOCK_TRIES {
        match cancel_once(&mut conn, &p, LOCK_WAIT).await {
            Err(e) if sql_state(&e).as_deref() == Some("40P01") => continue,
            r => return r.map_err(db_err),
        }
    }
    cancel_once(&mut conn, &p, LOCK_WAIT).await.map_err(db_err)
}

fn sql_state(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned())
}

/// The message's deliveries, locked in one order (by group), failing at once if one is held.
const LOCK_NOWAIT: &str =
    "SELECT consumer_group, state FROM deliveries WHERE message_id = $1 ORDER BY consumer_group FOR UPDATE NOWAIT";
/// The same, waiting for the locks.
const LOCK_WAIT: &str =
    "SELECT consumer_group, state FROM deliveries WHERE message_id = $1 ORDER BY consumer_group FOR UPDATE";

/// One transaction: the message's deliveries locked (`lock`: [`LOCK_NOWAIT`] or
/// [`LOCK_WAIT`]), so a cancel racing an ack, a retry or a claim of the same delivery has one
/// winner — the other waits for the lock and then finds the delivery no longer as it expected.
async fn cancel_once(
    conn: &mut PgConnection,
    p: &MessageCancelParams,
    lock: &str,
) -> Result<MessageCancelled, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // The message row first, shared: a replace holds it exclusively while it deletes and
    // inserts the pending deliveries again, so the cancel waits for the replace to commit and
    // then sees (and cancels) the deliveries it left, never a moment with none.
    let found = sqlx::query("SELECT 1 FROM messages WHERE id = $1 FOR SHARE")
        .bind(&p.message_id)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Ok(MessageCancelled::default());
    }
    let deliveries = sqlx::query(lock).bind(&p.message_id).fetch_all(&mut *tx).await?;
    let mut out = MessageCancelled { found: true, ..MessageCancelled::default() };
    for r in &deliveries {
        let group: String = r.get(0);
        match r.get::<&str, _>(1) {
            "pending" => out.pending.push(group),
            "leased" => out.running.push(group),
            other => out.finished.push((group, DeliveryState::parse(other).unwrap_or(DeliveryState::Acked))),
        }
    }
    let live: Vec<&String> = out.pending.iter().chain(&out.running).collect();
    if !live.is_empty() {
        // The attempts still open in the groups being cancelled end `cancelled`, with the
        // reason; a closed attempt is never rewritten.
        sqlx::query(
            "UPDATE job_executions SET status = 'cancelled', finished_at = $1, \
             duration_ms = (EXTRACT(EPOCH FROM ($1 - started_at)) * 1000)::BIGINT, error = $2 \
             WHERE message_id = $3 AND consumer_group = ANY($4) AND finished_at IS NULL",
        )
        .bind(p.now)
        .bind(&p.reason)
        .bind(&p.message_id)
        .bind(&live)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE deliveries SET state = 'cancelled', lease_token = NULL, visible_at = $1, updated_at = $1 \
             WHERE message_id = $2 AND state IN ('pending', 'leased')",
        )
        .bind(p.now)
        .bind(&p.message_id)
        .execute(&mut *tx)
        .await?;
        // Every process listening learns it on commit; the one running the job drops it.
        sqlx::query("SELECT pg_notify('vqs_control', 'cancel:' || $1)").bind(&p.message_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(out)
}

pub(crate) async fn topic_purge(pool: &PgPool, p: TopicPurgeParams) -> Result<u64, StoreError> {
    if p.dry_run {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT COUNT(DISTINCT message_id) FROM deliveries WHERE state = 'pending' AND topic = ");
        q.push_bind(&p.topic);
        if let Some(g) = &p.consumer_group {
            q.push(" AND consumer_group = ").push_bind(g);
        }
        let n: i64 = q.build().fetch_one(pool).await.map_err(db_err)?.get(0);
        return Ok(n as u64);
    }
    let mut cancelled = 0;
    loop {
        // Each batch is one statement, so one transaction of its own.
        let (picked, n) = purge_batch(pool, &p.topic, p.consumer_group.as_deref(), p.now).await?;
        cancelled += n;
        if picked < PURGE_BATCH {
            return Ok(cancelled);
        }
    }
}

/// Cancel the pending deliveries of up to [`PURGE_BATCH`] messages (all of each message's
/// pending deliveries in the purged groups at once, so a message is counted once). A
/// delivery leased after it was picked is left: the update re-checks `pending` on the row it
/// locks. Returns how many messages were picked and how many were cancelled.
async fn purge_batch(
    pool: &PgPool,
    topic: &str,
    group: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(i64, u64), StoreError> {
    let row = sqlx::query(
        "WITH picked AS MATERIALIZED (
             SELECT DISTINCT message_id FROM deliveries
             WHERE state = 'pending' AND topic = $1 AND ($2::text IS NULL OR consumer_group = $2) LIMIT $3
         ), cancelled AS (
             UPDATE deliveries d SET state = 'cancelled', lease_token = NULL, visible_at = $4, updated_at = $4
             FROM picked WHERE d.message_id = picked.message_id AND d.state = 'pending'
               AND ($2::text IS NULL OR d.consumer_group = $2)
             RETURNING d.message_id, d.consumer_group
         ), closed AS (
             -- An attempt still open on a delivery just cancelled ends with it.
             UPDATE job_executions e SET status = 'cancelled', finished_at = $4,
                    duration_ms = (EXTRACT(EPOCH FROM ($4 - e.started_at)) * 1000)::BIGINT, error = $5
             FROM cancelled c
             WHERE e.message_id = c.message_id AND e.consumer_group = c.consumer_group AND e.finished_at IS NULL
         )
         SELECT (SELECT COUNT(*) FROM picked), (SELECT COUNT(DISTINCT message_id) FROM cancelled)",
    )
    .bind(topic)
    .bind(group)
    .bind(PURGE_BATCH)
    .bind(now)
    .bind(PURGED)
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok((row.get(0), row.get::<i64, _>(1) as u64))
}

pub(crate) async fn delivery_cancelled(
    pool: &PgPool,
    p: DeliveryCancelledParams,
) -> Result<Vec<(String, String)>, StoreError> {
    if p.deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, groups): (Vec<&str>, Vec<&str>) = p.deliveries.iter().map(|(m, g)| (m.as_str(), g.as_str())).unzip();
    let rows = sqlx::query(
        "SELECT d.message_id, d.consumer_group FROM UNNEST($1::text[], $2::text[]) AS v(message_id, consumer_group) \
         JOIN deliveries d ON d.message_id = v.message_id AND d.consumer_group = v.consumer_group \
         WHERE d.state = 'cancelled'",
    )
    .bind(&ids)
    .bind(&groups)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
