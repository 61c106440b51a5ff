//! Leases: the claim (due deliveries leased, abandoned attempts closed, new attempts
//! recorded, in one statement) and the update every settlement of one lease makes.

use crate::held_connection::HeldConnection;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::Postgres;
use sqlx::QueryBuilder;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use std::sync::Arc;
use vqs::store::*;

use crate::flow_groups::GroupRooms;
use crate::lease_failure::lease_failure;
use crate::rows::db_err;
use crate::rows::*;

/// Move a leased delivery to a new state; returns its message id, delivery count and
/// whether the message has an idempotency key.
pub(crate) async fn lease_update(
    conn: &mut PgConnection,
    lease: &LeaseParams,
    set: &str,
    visible_at: DateTime<Utc>,
) -> Result<(String, i32, bool), StoreError> {
    let (message_id, token) = split_receipt_handle(&lease.receipt_handle)?;
    let sql = format!(
        "UPDATE deliveries SET {set}, visible_at = $1, updated_at = $2 \
         WHERE message_id = $3 AND consumer_group = $4 AND state = 'leased' AND lease_token = $5 \
         RETURNING delivery_count, keyed"
    );
    let row = sqlx::query(&sql)
        .bind(visible_at)
        .bind(lease.now)
        .bind(message_id)
        .bind(&lease.consumer_group)
        .bind(token)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    match row {
        Some(r) => Ok((message_id.to_owned(), r.get(0), r.get(1))),
        None => Err(lease_failure(conn, message_id, &lease.consumer_group, &lease.receipt_handle).await),
    }
}

/// One statement: pick due deliveries (`SKIP LOCKED`), lease them, close the `running`
/// executions of those whose earlier lease expired (abandoned), and — with
/// `start_executions` — record each new attempt's `running` execution.
pub(crate) async fn delivery_claim(
    pool: &PgPool,
    claim_conn: &Arc<tokio::sync::Mutex<HeldConnection>>,
    p: DeliveryClaimParams,
) -> Result<Vec<LeasedMessage>, StoreError> {
    let lease_until = p.now + secs(p.visibility_seconds);
    let rows = match (p.max_leased, p.group_concurrency) {
        (_, Some(n)) => claim_grouped(pool, &p, n).await?,
        (None, None) => {
            let mut held = claim_conn.lock().await;
            let conn = held.get().await?;
            let rows = claim_query(&p, p.limit, None).build().fetch_all(&mut *conn).await.map_err(db_err);
            let rows = held.check(rows)?;
            drop(held);
            rows
        }
        (Some(max), None) => claim_limited(pool, &p, max).await?,
    };
    if rows.is_empty()
        && let Some(id) = &p.message_id
    {
        let row = sqlx::query("SELECT state FROM deliveries WHERE message_id = $1 AND consumer_group = $2")
            .bind(id)
            .bind(&p.consumer_group)
            .fetch_optional(pool)
            .await
            .map_err(db_err)?;
        return Err(match row {
            None => StoreError::NotFound(format!("no message {id} for consumer group {}", p.consumer_group)),
            Some(r) => match r.get::<String, _>(0).as_str() {
                "acked" | "dead" | "cancelled" => StoreError::AlreadyAcknowledged(id.clone()),
                _ => StoreError::Locked(id.clone()),
            },
        });
    }
    Ok(rows
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            let token: String = r.get(2);
            LeasedMessage {
                receipt_handle: receipt_handle(&id, &token),
                message_id: id,
                topic: r.get(3),
                consumer_group: p.consumer_group.clone(),
                payload: r.get(4),
                content_type: r.get(5),
                headers_json: r.get(6),
                delivery_count: r.get::<i32, _>(1) as u32,
                attempts: r.get::<i32, _>(10) as u32,
                created_at: r.get(7),
                expires_at: r.get(8),
                lease_until,
                execution_id: r.get(9),
            }
        })
        .collect())
}

/// The claim statement for `p`, leasing at most `limit` — of every due delivery of the
/// consumer group, or with `groups` of those groups only, each up to its room (through
/// `deliveries_grouped`: a group's rows in claim order, nothing of another group read).
fn claim_query<'a>(
    p: &'a DeliveryClaimParams,
    limit: u32,
    groups: Option<&'a GroupRooms>,
) -> QueryBuilder<'a, Postgres> {
    let lease_until = p.now + secs(p.visibility_seconds);
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("WITH due AS (");
    if let Some(g) = groups {
        q.push("SELECT x.* FROM UNNEST(")
            .push_bind(&g.keys)
            .push("::text[], ")
            .push_bind(&g.rooms)
            .push("::int[]) AS g(key, room) CROSS JOIN LATERAL (");
    }
    q.push(
        "SELECT d.message_id, m.topic, m.payload, m.content_type, m.headers_json, m.created_at, m.expires_at \
         FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.consumer_group = ",
    );
    q.push_bind(&p.consumer_group)
        .push(" AND d.state IN ('pending', 'leased') AND d.visible_at <= ")
        .push_bind(p.now)
        .push(" AND m.expires_at > ")
        .push_bind(p.now)
        // Paused topics' deliveries stay pending: the paused topics as an array computed once
        // per statement (an empty one when nothing is paused). A dispatcher that knows its
        // topic is paused does not claim at all, so this filter only skips rows when a
        // wildcard subscription spans a paused topic or a process learns of a pause late.
        .push(" AND d.topic <> ALL(ARRAY(SELECT topic FROM topic_controls WHERE paused))");
    if let Some(topic) = &p.topic {
        q.push(" AND d.topic = ").push_bind(topic);
    }
    if let Some(id) = &p.message_id {
        q.push(" AND d.message_id = ").push_bind(id);
    }
    if groups.is_some() {
        q.push(" AND d.group_key = g.key ORDER BY d.visible_at LIMIT g.room FOR UPDATE OF d SKIP LOCKED) x LIMIT ")
            .push_bind(i64::from(limit.max(1)));
    } else {
        q.push(" ORDER BY d.visible_at LIMIT ").push_bind(i64::from(limit.max(1))).push(" FOR UPDATE OF d SKIP LOCKED");
    }
    q.push("), leased AS (UPDATE deliveries d SET state = 'leased', visible_at = ")
        .push_bind(lease_until)
        .push(", delivery_count = d.delivery_count + 1, attempts = d.attempts + ")
        // Only a lease that records the attempt's execution spends an attempt.
        .push_bind(i32::from(p.start_executions))
        .push(", lease_token = replace(gen_random_uuid()::text, '-', ''), lease_holder = ")
        .push_bind(&p.lease_holder)
        .push(", updated_at = ")
        .push_bind(p.now)
        .push(" FROM due WHERE d.message_id = due.message_id AND d.consumer_group = ")
        .push_bind(&p.consumer_group)
        .push(
            " RETURNING d.message_id, d.topic, d.delivery_count, d.lease_token, d.attempts), \
             abandoned AS (UPDATE job_executions e SET status = 'failed', finished_at = ",
        )
        .push_bind(p.now)
        .push(", duration_ms = (EXTRACT(EPOCH FROM (")
        .push_bind(p.now)
        .push(" - e.started_at)) * 1000)::BIGINT, error = ")
        .push_bind(ABANDONED_ERROR)
        // The redelivered ids as an array computed first: an index condition on
        // (message_id, consumer_group), and nothing read at all when there are none (a
        // join lets the planner scan every execution of the group, guessing wrong).
        .push(
            " WHERE e.message_id = ANY(ARRAY(SELECT message_id FROM leased WHERE delivery_count > 1)) \
             AND e.finished_at IS NULL AND e.consumer_group = ",
        )
        .push_bind(&p.consumer_group)
        .push(
            "), started AS (INSERT INTO job_executions (topic, message_id, consumer_group, attempt, status, started_at) \
             SELECT l.topic, l.message_id, ",
        )
        .push_bind(&p.consumer_group)
        .push(", l.attempts, 'running', ")
        .push_bind(p.now)
        .push(" FROM leased l WHERE ")
        .push_bind(p.start_executions)
        .push(
            " RETURNING id, message_id) \
             SELECT l.message_id, l.delivery_count, l.lease_token, m.topic, m.payload, m.content_type, \
             m.headers_json, m.created_at, m.expires_at, s.id, l.attempts \
             FROM leased l JOIN due m ON m.message_id = l.message_id LEFT JOIN started s ON s.message_id = l.message_id",
        );
    q
}

/// A claim under the consumer group's limit across processes (`maxConcurrency`): the
/// group's claims are serialised by a transaction-scoped advisory lock, and its live leases
/// are counted after the lock is taken (a new snapshot under READ COMMITTED), so two
/// processes never both take the last free slot — `SKIP LOCKED` alone would not stop that.
async fn claim_limited(pool: &PgPool, p: &DeliveryClaimParams, max: u32) -> Result<Vec<PgRow>, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // Another holder's leases count whole; this holder's are the caller's `leased_here`
    // (a lease whose job is done but whose acknowledgement is still being written is not).
    let limit = p.limit.min(room_under_max(&mut tx, p, max).await?);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = claim_query(p, limit, None).build().fetch_all(&mut *tx).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(rows)
}

/// The grouped claim (`flow_groups.rs`): the wake-ups folded in, the ready groups locked
/// with their room, up to that leased of each in one statement, and every group visited
/// parked — in one transaction.
async fn claim_grouped(pool: &PgPool, p: &DeliveryClaimParams, per_group: u32) -> Result<Vec<PgRow>, StoreError> {
    let per_group = per_group.max(1);
    let mut conn = pool.acquire().await.map_err(db_err)?;
    crate::flow_groups::fold_wakeups(&mut conn, &p.consumer_group).await?;
    drop(conn);
    let mut tx = pool.begin().await.map_err(db_err)?;
    let mut limit = p.limit.max(1);
    if let Some(max) = p.max_leased {
        limit = limit.min(room_under_max(&mut tx, p, max).await?);
        if limit == 0 {
            return Ok(Vec::new());
        }
    }
    let groups = crate::flow_groups::ready_groups(&mut tx, p, per_group, limit).await?;
    if groups.visited.is_empty() {
        return Ok(Vec::new());
    }
    let rows = if groups.keys.is_empty() {
        Vec::new()
    } else {
        claim_query(p, limit, Some(&groups)).build().fetch_all(&mut *tx).await.map_err(db_err)?
    };
    crate::flow_groups::park(&mut tx, p, per_group, &groups.visited).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(rows)
}

/// Under the consumer group's `max_leased`, in a transaction that holds its claim lock: how
/// many more it may lease now.
async fn room_under_max(tx: &mut PgConnection, p: &DeliveryClaimParams, max: u32) -> Result<u32, StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("vqs-claim:{}", p.consumer_group))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let leased: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE consumer_group = $1 AND state = 'leased' AND visible_at > $2 \
         AND ($3::text IS NULL OR lease_holder IS DISTINCT FROM $3)",
    )
    .bind(&p.consumer_group)
    .bind(p.now)
    .bind(&p.lease_holder)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let here = if p.lease_holder.is_some() { i64::from(p.leased_here) } else { 0 };
    Ok(u32::try_from((i64::from(max) - leased - here).max(0)).unwrap_or(0))
}

pub(crate) async fn delivery_set_visibility(
    pool: &PgPool,
    p: LeaseVisibilityParams,
) -> Result<DateTime<Utc>, StoreError> {
    let until = p.lease.now + secs(p.visibility_seconds);
    let set = if p.visibility_seconds == 0 { "state = 'pending', lease_token = NULL" } else { "state = 'leased'" };
    let mut conn = pool.acquire().await.map_err(db_err)?;
    lease_update(&mut conn, &p.lease, set, until).await?;
    Ok(until)
}

pub(crate) async fn delivery_leased_count(pool: &PgPool, p: DeliveryLeasedCountParams) -> Result<i64, StoreError> {
    let (consumer_group, now) = (p.consumer_group.as_str(), p.now);
    let row = sqlx::query(
        "SELECT COUNT(*) FROM deliveries WHERE consumer_group = $1 AND state = 'leased' AND visible_at > $2",
    )
    .bind(consumer_group)
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok(row.get(0))
}

pub(crate) async fn delivery_next_due(
    claim_conn: &Arc<tokio::sync::Mutex<HeldConnection>>,
    p: DeliveryNextDueParams,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let consumer_group = p.consumer_group.as_str();
    // Asked by every dispatcher as it goes idle: on the claim's connection, where the
    // statement is planned once and no ping precedes it (the main pool plans every call).
    let mut held = claim_conn.lock().await;
    let conn = held.get().await?;
    let row = sqlx::query(
        "SELECT MIN(visible_at) FROM deliveries WHERE consumer_group = $1 AND state IN ('pending', 'leased')",
    )
    .bind(consumer_group)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err);
    Ok(held.check(row)?.get(0))
}

pub(crate) async fn delivery_topic(pool: &PgPool, p: DeliveryTopicParams) -> Result<Option<String>, StoreError> {
    let (message_id, consumer_group) = (p.message_id.as_str(), p.consumer_group.as_str());
    sqlx::query_scalar("SELECT topic FROM deliveries WHERE message_id = $1 AND consumer_group = $2")
        .bind(message_id)
        .bind(consumer_group)
        .fetch_optional(pool)
        .await
        .map_err(db_err)
}
