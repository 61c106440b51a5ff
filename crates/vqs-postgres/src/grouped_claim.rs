//! The grouped claim's driver (`flow_groups.rs` has the ready set): the wake-ups folded in,
//! then the one claim statement `claim_statement.rs` builds — two at once for many groups, on the
//! claim's two held connections — or, under a group rate limit, a transaction of its own.

use std::sync::Arc;

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
/// A claim of many groups runs as two statements at once (`split_claim.rs`), both after the
/// fold. A grouped claim's cost is per group visited — each one locked, counted, leased
/// from and parked — and one statement runs on one server core (the flow workload,
/// BENCHMARKS.md). `vqs_group_rooms` locks the groups it takes (`SKIP LOCKED`), so the
/// halves take different groups, each counted after its lock as two processes' claims are:
/// together, the first groups in claim order.
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
    match second_claim_conn.filter(|_| crate::split_claim::splits(p)) {
        Some(second) => crate::split_claim::claim_in_two(&mut held, second, p, per_group).await,
        None => crate::split_claim::claim_statement(&mut held, p, Some(per_group)).await,
    }
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
