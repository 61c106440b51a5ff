//! The grouped claim's driver (`flow_groups.rs` has the ready set): the wake-ups folded in,
//! then the one claim statement `claim_statement.rs` builds — two at once for many groups, on the
//! claim's two held connections — or, under a group rate limit, a transaction of its own.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::Row;
use sqlx::postgres::PgRow;
use vqs::store::*;

use crate::claim_statement::{Grouped, claim_query_after};
use crate::held_connection::HeldConnection;
use crate::rows::db_err;
use crate::rows::*;

/// The grouped claim (`flow_groups.rs`), on the claim's held connection: the consumer
/// group's wake-ups folded in (a statement of its own: the claim's must not see rows it
/// did not write), then one statement ([`Grouped::InStatement`]). Under a group rate limit,
/// whose buckets are advanced from what was leased, a transaction of its own instead
/// ([`claim_grouped_in_transaction`]).
///
/// A claim of many groups ([`SPLIT_AT`] or more, with the claim's second connection) runs
/// as two statements at once, each up to half the limit, one on each connection. A grouped
/// claim's cost is per group visited — each one locked, counted, leased from and parked —
/// and one statement runs on one server core; the two halves use both, where the claim
/// loop otherwise runs alone while the rest of the machine waits for it (the flow
/// workload, BENCHMARKS.md). Both see the fold. `vqs_group_rooms` locks the groups it takes
/// (`SKIP LOCKED`), so the halves take different groups, each counted after its lock as
/// two processes' claims are: together, the first groups in claim order. Their rows are
/// returned in one statement's order (priority, then due time). What the split leaves
/// within a group one half took is claimed after both (below).
pub(crate) async fn claim_grouped(
    pool: &PgPool,
    claim_conn: &Arc<tokio::sync::Mutex<HeldConnection>>,
    second_claim_conn: Option<&Arc<tokio::sync::Mutex<HeldConnection>>>,
    p: &DeliveryClaimParams,
    per_group: u32,
) -> Result<Vec<PgRow>, StoreError> {
    if p.group_rate_limit.is_some() {
        return claim_grouped_in_transaction(pool, p, per_group).await;
    }
    let mut held = claim_conn.lock().await;
    let conn = held.get().await?;
    let folded = crate::flow_groups::fold_wakeups(&mut *conn, &p.consumer_group).await;
    held.check(folded)?;
    // Not under a consumer group's own limit: `vqs_claim_room` counts this process's leases
    // as `leased_here`, which would not include what the other half leased.
    let split = p.limit >= SPLIT_AT && p.max_leased.is_none() && p.rate_limit.is_none() && p.message_id.is_none();
    match second_claim_conn.filter(|_| split) {
        Some(second) => {
            let first_half = DeliveryClaimParams { limit: p.limit / 2, ..p.clone() };
            let second_half = DeliveryClaimParams { limit: p.limit - p.limit / 2, ..p.clone() };
            let (first, second) = tokio::join!(grouped_statement(&mut held, &first_half, per_group), async {
                grouped_statement(&mut *second.lock().await, &second_half, per_group).await
            });
            // What one half leased is returned even when the other failed: leased and
            // committed, it would otherwise wait for its lease to end.
            let (mut rows, second) = match (first, second) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), Err(_)) => return Err(e),
                (Ok(rows), Err(e)) | (Err(e), Ok(rows)) => {
                    tracing::warn!(error = %e, queue.consumer_group = %p.consumer_group, "half of a grouped claim failed");
                    return Ok(rows);
                }
            };
            // Each half stops at its limit, and the groups it took stay locked until it
            // commits: room left in one of them (more than one a group, or the unkeyed
            // messages' group, whose room is the claim's) was out of the other half's reach.
            // When a half came back full and the claim short, what is left of the limit is
            // claimed again, now that both have committed.
            let full = rows.len() as u32 == first_half.limit || second.len() as u32 == second_half.limit;
            rows.extend(second);
            let room_left_behind =
                per_group > 1 || rows.iter().any(|r| r.get::<Option<String>, _>(11).unwrap_or_default().is_empty());
            let short = p.limit.saturating_sub(rows.len() as u32);
            if full && room_left_behind && short > 0 {
                let rest = DeliveryClaimParams { limit: short, ..p.clone() };
                match grouped_statement(&mut held, &rest, per_group).await {
                    Ok(more) => rows.extend(more),
                    Err(e) => {
                        tracing::warn!(error = %e, queue.consumer_group = %p.consumer_group, "a grouped claim's rest failed")
                    }
                }
            }
            // In the order one statement returns: by priority, then due time. The halves
            // lock groups while both walk the ready set, so either may hold the best ones.
            rows.sort_by_key(|r| (r.get::<i16, _>(12), r.get::<DateTime<Utc>, _>(13)));
            Ok(rows)
        }
        None => grouped_statement(&mut held, p, per_group).await,
    }
}

/// The smallest grouped claim split in two ([`claim_grouped`]): below it, the fixed cost
/// each statement pays (the ready set's priority walk, a round trip, a commit) is not
/// worth paying twice.
const SPLIT_AT: u32 = 32;

/// The one-statement grouped claim of `p` on `held`.
async fn grouped_statement(
    held: &mut HeldConnection,
    p: &DeliveryClaimParams,
    per_group: u32,
) -> Result<Vec<PgRow>, StoreError> {
    let conn = held.get().await?;
    let rows = claim_query_after("", p, Some(Grouped::InStatement(per_group)))
        .build()
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err);
    held.check(rows)
}

/// The grouped claim under a group rate limit: the wake-ups folded in, then in one
/// transaction the consumer group's room under its limits (`vqs_claim_room`: its lock, count
/// and rate bucket, when it has any), the ready groups locked with their room, up to that
/// leased of each in one statement (the consumer group's bucket advanced by what was
/// leased), every group visited parked, and each group's bucket advanced.
async fn claim_grouped_in_transaction(
    pool: &PgPool,
    p: &DeliveryClaimParams,
    per_group: u32,
) -> Result<Vec<PgRow>, StoreError> {
    let per_group = per_group.max(1);
    let mut conn = pool.acquire().await.map_err(db_err)?;
    crate::flow_groups::fold_wakeups(&mut conn, &p.consumer_group).await?;
    drop(conn);
    let mut tx = pool.begin().await.map_err(db_err)?;
    let groups = crate::flow_groups::ready_groups(&mut tx, p, per_group).await?;
    if groups.visited.is_empty() {
        return Ok(Vec::new());
    }
    let rows = if groups.keys.is_empty() {
        Vec::new()
    } else {
        claim_query_after("", p, Some(Grouped::Rooms(&groups, groups.cap)))
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?
    };
    let leased_keys: Vec<Option<String>> = rows.iter().map(|r| r.get(11)).collect();
    let lease_until = p.now + secs(p.visibility_seconds);
    crate::flow_groups::park(&mut tx, p, per_group, &groups, &leased_keys, lease_until).await?;
    let leased_ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    crate::flow_groups::advance_buckets(&mut tx, p, &groups, &leased_ids).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(rows)
}
