//! A grouped claim of many groups run as two statements at once, on the claim's two held
//! connections (`grouped_claim.rs`).
//!
//! One claim statement runs on one server core, and the dispatcher waits for it before it
//! claims again: a grouped claim's cost is per group visited, and under load its loop, not
//! the machine, set the pace. Two statements, each up to half the limit, use both cores.
//! They take different groups and rows, as two processes' claims do: `vqs_group_rooms`
//! locks each group it takes `FOR UPDATE SKIP LOCKED`, and each row likewise. Together they
//! take what one statement would have, and their rows are returned in one statement's order
//! (priority, then due time).
//!
//! A plain claim is not split: its two halves walk the same due rows (one skipping what the
//! other locked) and write the same index pages, and each half of a 370-row claim took
//! longer than the whole claim alone (13.6 against 12.1 ms; throughput 10% lower,
//! BENCHMARKS.md).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use vqs::store::*;

use crate::claim_statement::{Grouped, claim_query_after};
use crate::held_connection::HeldConnection;
use crate::rows::db_err;

/// The smallest claim split in two: below it, the fixed cost each statement pays (the
/// priority walk, a round trip, a commit and its WAL flush) is not worth paying twice.
pub(crate) const SPLIT_AT: u32 = 32;

/// Whether a claim of `p` may be split: many rows, and not under a consumer group's own
/// limit (`vqs_claim_room` counts this process's leases as `leased_here`, which would not
/// include what the other half leased) nor for one message by id.
pub(crate) fn splits(p: &DeliveryClaimParams) -> bool {
    p.limit >= SPLIT_AT && p.max_leased.is_none() && p.rate_limit.is_none() && p.message_id.is_none()
}

/// The claim of `p` as two statements at once, `held` (the claim's connection, locked by the
/// caller first, as every claim locks them in that order) and `second`; `per_group` for a
/// grouped claim ([`Grouped::InStatement`]).
///
/// What one half leased is returned even when the other failed (it is leased and
/// committed, and would otherwise wait for its lease to end); the failure is logged.
pub(crate) async fn claim_in_two(
    held: &mut HeldConnection,
    second: &Arc<tokio::sync::Mutex<HeldConnection>>,
    p: &DeliveryClaimParams,
    per_group: u32,
) -> Result<Vec<PgRow>, StoreError> {
    let first_half = DeliveryClaimParams { limit: p.limit / 2, ..p.clone() };
    let second_half = DeliveryClaimParams { limit: p.limit - p.limit / 2, ..p.clone() };
    let (first, second) = tokio::join!(claim_statement(held, &first_half, Some(per_group)), async {
        claim_statement(&mut *second.lock().await, &second_half, Some(per_group)).await
    });
    let (mut rows, second) = match (first, second) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), Err(_)) => return Err(e),
        (Ok(rows), Err(e)) | (Err(e), Ok(rows)) => {
            tracing::warn!(error = %e, queue.consumer_group = %p.consumer_group, "half of a claim failed");
            return Ok(rows);
        }
    };
    // Each half stops at its limit, and a grouped claim's groups stay locked until it
    // commits: room left in one of them (more than one a group, or the unkeyed messages'
    // group, whose room is the claim's) was out of the other half's reach. When a half came
    // back full and the claim short, what is left of the limit is claimed again, now that
    // both have committed.
    let full = rows.len() as u32 == first_half.limit || second.len() as u32 == second_half.limit;
    rows.extend(second);
    let room_left_behind =
        per_group > 1 || rows.iter().any(|r| r.get::<Option<String>, _>(11).unwrap_or_default().is_empty());
    let short = p.limit.saturating_sub(rows.len() as u32);
    if full && room_left_behind && short > 0 {
        let rest = DeliveryClaimParams { limit: short, ..p.clone() };
        match claim_statement(held, &rest, Some(per_group)).await {
            Ok(more) => rows.extend(more),
            Err(e) => tracing::warn!(error = %e, queue.consumer_group = %p.consumer_group, "a claim's rest failed"),
        }
    }
    // In the order one statement returns: by priority, then due time. Both halves walk the
    // ready groups at once, so either may hold the best ones.
    rows.sort_by_key(|r| (r.get::<i16, _>(12), r.get::<DateTime<Utc>, _>(13)));
    Ok(rows)
}

/// The one claim statement of `p` on `held`: grouped ([`Grouped::InStatement`]) with
/// `per_group`, else plain.
pub(crate) async fn claim_statement(
    held: &mut HeldConnection,
    p: &DeliveryClaimParams,
    per_group: Option<u32>,
) -> Result<Vec<PgRow>, StoreError> {
    let conn = held.get().await?;
    let rows = claim_query_after("", p, per_group.map(Grouped::InStatement))
        .build()
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err);
    held.check(rows)
}
