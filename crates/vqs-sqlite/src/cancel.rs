//! Cancelling (SPEC.md, "Job outcomes"): one message in every consumer group, a topic's
//! pending backlog (purge), and the question a process asks about the jobs it runs.
//!
//! A cancelled delivery is finished, like an acknowledged one: it leaves the claim's index,
//! and its lease (if it had one) can no longer settle it — every lease update matches
//! `state = 'leased'` only, so the holder is answered as for a lost lease.

use futures::FutureExt;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqlitePool};
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

/// Messages a purge cancels per transaction: every write waits behind the writer while a
/// batch runs, so a backlog of millions is cancelled in steps of a few milliseconds each.
const PURGE_BATCH: i64 = 5_000;

/// What a purge records as the `error` of an attempt it closes (a pending delivery with an
/// attempt still open: its lease was given back with visibility 0 while the job ran).
const PURGED: &str = "cancelled: the queue was purged";

pub(crate) async fn message_cancel(writer: &Writer, p: MessageCancelParams) -> Result<MessageCancelled, StoreError> {
    writer
        .run(move |c| {
            async move {
                // One transaction (BEGIN IMMEDIATE: processes sharing the file take turns, and
                // this process's acks, retries and claims go through the same writer): the
                // cancel and a settlement of the same delivery never interleave, so exactly
                // one of them wins.
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                let r = cancel_in(&mut tx, &p).await?;
                tx.commit().await.map_err(db_err)?;
                Ok(r)
            }
            .boxed()
        })
        .await
}

async fn cancel_in(conn: &mut SqliteConnection, p: &MessageCancelParams) -> Result<MessageCancelled, StoreError> {
    let found = sqlx::query("SELECT 1 FROM messages WHERE id = ?")
        .bind(&p.message_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?
        .is_some();
    if !found {
        return Ok(MessageCancelled::default());
    }
    let deliveries =
        sqlx::query("SELECT consumer_group, state FROM deliveries WHERE message_id = ? ORDER BY consumer_group")
            .bind(&p.message_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
    let now = us(p.now);
    // The attempts still open in the groups being cancelled end `cancelled`, with the reason;
    // a closed attempt is never rewritten.
    sqlx::query(
        "UPDATE job_executions SET status = 'cancelled', finished_at = ?1, duration_ms = (?1 - started_at) / 1000, \
         error = ?2 WHERE message_id = ?3 AND status = 'running' AND consumer_group IN \
         (SELECT consumer_group FROM deliveries WHERE message_id = ?3 AND state IN ('pending', 'leased'))",
    )
    .bind(now)
    .bind(&p.reason)
    .bind(&p.message_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', lease_token = NULL, visible_at = ?1, updated_at = ?1 \
         WHERE message_id = ?2 AND state IN ('pending', 'leased')",
    )
    .bind(now)
    .bind(&p.message_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    let mut out = MessageCancelled { found: true, ..MessageCancelled::default() };
    for r in &deliveries {
        let group: String = r.get(0);
        match r.get::<&str, _>(1) {
            "pending" => out.pending.push(group),
            "leased" => out.running.push(group),
            other => out.finished.push((group, DeliveryState::parse(other).unwrap_or(DeliveryState::Acked))),
        }
    }
    Ok(out)
}

pub(crate) async fn topic_purge(read: &SqlitePool, writer: &Writer, p: TopicPurgeParams) -> Result<u64, StoreError> {
    if p.dry_run {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            // `state IN (…)` lets SQLite read the partial index of live deliveries.
            "SELECT COUNT(DISTINCT message_id) FROM deliveries \
             WHERE state IN ('pending', 'leased') AND state = 'pending' AND topic = ",
        );
        q.push_bind(&p.topic);
        if let Some(g) = &p.consumer_group {
            q.push(" AND consumer_group = ").push_bind(g);
        }
        let n: i64 = q.build().fetch_one(read).await.map_err(db_err)?.get(0);
        return Ok(n as u64);
    }
    let mut cancelled = 0;
    loop {
        let p = p.clone();
        // A batch of its own on the writer each time: the writes queued meanwhile (acks,
        // claims) go between two batches.
        let (picked, n) = writer.run(move |c| purge_batch(c, p).boxed()).await?;
        cancelled += n;
        if picked < PURGE_BATCH {
            return Ok(cancelled);
        }
    }
}

/// Cancel the pending deliveries of up to [`PURGE_BATCH`] messages (all of each message's
/// pending deliveries in the purged groups at once, so a message is counted once). Returns
/// how many messages were picked and how many were cancelled.
async fn purge_batch(conn: &mut SqliteConnection, p: TopicPurgeParams) -> Result<(i64, u64), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let mut pick: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT DISTINCT message_id FROM deliveries WHERE state IN ('pending', 'leased') AND state = 'pending' AND topic = ",
    );
    pick.push_bind(&p.topic);
    if let Some(g) = &p.consumer_group {
        pick.push(" AND consumer_group = ").push_bind(g);
    }
    pick.push(" LIMIT ").push_bind(PURGE_BATCH);
    let ids: Vec<String> = pick.build().fetch_all(&mut *tx).await.map_err(db_err)?.iter().map(|r| r.get(0)).collect();
    if ids.is_empty() {
        return Ok((0, 0));
    }
    // The ids as one JSON parameter: a batch is far past SQLite's limit of bound parameters.
    let ids_json = serde_json::to_string(&ids).map_err(|e| StoreError::Database(e.to_string()))?;
    let now = us(p.now);
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new("UPDATE deliveries SET state = 'cancelled', lease_token = NULL, visible_at = ");
    q.push_bind(now)
        .push(", updated_at = ")
        .push_bind(now)
        .push(" WHERE message_id IN (SELECT value FROM json_each(")
        .push_bind(&ids_json)
        .push(")) AND state = 'pending'");
    if let Some(g) = &p.consumer_group {
        q.push(" AND consumer_group = ").push_bind(g);
    }
    q.push(" RETURNING message_id");
    let rows = q.build().fetch_all(&mut *tx).await.map_err(db_err)?;
    let cancelled: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    // An attempt still open on a delivery just cancelled ends with it (never left `running`).
    sqlx::query(
        "UPDATE job_executions SET status = 'cancelled', finished_at = ?1, duration_ms = (?1 - started_at) / 1000, \
         error = ?2 WHERE status = 'running' AND message_id IN (SELECT value FROM json_each(?3)) \
         AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = job_executions.message_id \
                     AND d.consumer_group = job_executions.consumer_group AND d.state = 'cancelled')",
    )
    .bind(now)
    .bind(PURGED)
    .bind(&ids_json)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok((ids.len() as i64, cancelled.len() as u64))
}

pub(crate) async fn delivery_cancelled(
    read: &SqlitePool,
    p: DeliveryCancelledParams,
) -> Result<Vec<(String, String)>, StoreError> {
    if p.deliveries.is_empty() {
        return Ok(Vec::new());
    }
    // The whole list as one JSON parameter ([[message id, group], …]): one statement,
    // whatever its length, looked up by primary key.
    let list = serde_json::to_string(&p.deliveries).map_err(|e| StoreError::Database(e.to_string()))?;
    let rows = sqlx::query(
        "SELECT d.message_id, d.consumer_group FROM json_each(?1) j JOIN deliveries d \
         ON d.message_id = json_extract(j.value, '$[0]') AND d.consumer_group = json_extract(j.value, '$[1]') \
         WHERE d.state = 'cancelled'",
    )
    .bind(list)
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
