//! Leases: the claim (due deliveries leased, abandoned attempts closed, new attempts
//! recorded: `claim_statement.rs` builds the statement, `grouped_claim.rs` drives a grouped
//! one), the update every settlement of one lease makes, and the lease reads. (Migrations
//! 0020–0033 point here for `push_limit` and `push_park`: they are in `claim_statement.rs`.)

use crate::held_connection::HeldConnection;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::Row;
use sqlx::postgres::PgConnection;
use std::sync::Arc;
use vqs::store::*;

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
    second_claim_conn: Option<&Arc<tokio::sync::Mutex<HeldConnection>>>,
    claims_by_group: &Arc<crate::group_pauses::ClaimsByGroup>,
    p: DeliveryClaimParams,
) -> Result<Vec<LeasedMessage>, StoreError> {
    let lease_until = p.now + secs(p.visibility_seconds);
    // Ungrouped: one statement on the claim's held connection, limited or not (a limited
    // group's lock, count and claim happen inside it: `push_limit`'s `vqs_claim_room`).
    // Grouped: through the ready groups (`claim_grouped`): one statement after the fold (two
    // at once for many groups), or a transaction of its own under a group rate limit.
    let rows = match (p.group_concurrency, p.group_rate_limit) {
        (Some(per_group), _) => {
            crate::grouped_claim::claim_grouped(pool, claim_conn, second_claim_conn, &p, per_group).await?
        }
        // A group rate limit alone: grouped, with no concurrency limit per group.
        (None, Some(_)) => {
            crate::grouped_claim::claim_grouped(pool, claim_conn, second_claim_conn, &p, i32::MAX as u32).await?
        }
        // No group limit, but a group of its topic is paused and its deliveries are keyed:
        // through the ready groups, none limited, so the paused group's backlog is not read
        // (`group_pauses::ClaimsByGroup`).
        (None, None) if p.message_id.is_none() && claims_by_group.contains(pool, &p.consumer_group).await? => {
            crate::grouped_claim::claim_grouped(pool, claim_conn, second_claim_conn, &p, i32::MAX as u32).await?
        }
        // Plain: one statement. (Not split in two as a grouped claim of many is: two halves
        // walk the same due rows and write the same index pages, and each took longer than
        // the whole claim alone; BENCHMARKS.md.)
        (None, None) => {
            let mut held = claim_conn.lock().await;
            crate::split_claim::claim_statement(&mut held, &p, None).await?
        }
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
    // Read without sqlx's per-column type check (`try_get_unchecked`): the columns are this
    // statement's own, and the check — a comparison with every type a Rust type accepts —
    // cost more than the decoding, twelve times a leased row. A value still decodes or
    // fails the claim with an error.
    rows.iter()
        .map(|r| {
            let id: String = r.try_get_unchecked(0)?;
            let token: String = r.try_get_unchecked(2)?;
            Ok(LeasedMessage {
                receipt_handle: receipt_handle(&id, &token),
                message_id: id,
                topic: r.try_get_unchecked(3)?,
                consumer_group: p.consumer_group.clone(),
                payload: r.try_get_unchecked(4)?,
                content_type: r.try_get_unchecked(5)?,
                headers_json: r.try_get_unchecked(6)?,
                delivery_count: r.try_get_unchecked::<i32, _>(1)? as u32,
                attempts: r.try_get_unchecked::<i32, _>(10)? as u32,
                created_at: r.try_get_unchecked(7)?,
                expires_at: r.try_get_unchecked(8)?,
                lease_until,
                execution_id: r.try_get_unchecked(9)?,
                group_key: r.try_get_unchecked(14)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db_err)
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
    // The earliest of each priority's first entry in `deliveries_due`: one descent per
    // priority present (migration 0027), not a walk over the group's whole backlog.
    let row = sqlx::query(
        "SELECT MIN((SELECT d.visible_at FROM deliveries d WHERE d.consumer_group = $1 \
         AND d.state IN ('pending', 'leased') AND d.priority = p.priority ORDER BY d.visible_at LIMIT 1)) \
         FROM vqs_live_priorities($1) p",
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
