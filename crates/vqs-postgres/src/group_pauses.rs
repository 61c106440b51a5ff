//! Paused message groups of a topic (`group_pauses`, migration 0024): the claim reads the
//! table itself (`claim_statement.rs`, `flow_groups.rs`), so a pause holds on every process at once.

use sqlx::{PgPool, Row};
use std::collections::HashSet;
use std::sync::Arc;
use vqs::store::*;

use crate::rows::*;

/// The claim's filter (after the conditions on `d` and `m`): no delivery of a paused group
/// of its topic. With no paused group at all it is one init plan per statement; the planner
/// rates the OR at one half at worst (`m.group_key IS NULL` is most rows' case), so the
/// claim keeps reading the due index (the plan test `a_claim_reads_the_due_index…`).
pub(crate) const CLAIM_FILTER: &str = " AND (NOT EXISTS (SELECT 1 FROM group_pauses) \
     OR NOT EXISTS (SELECT 1 FROM group_pauses gp WHERE gp.topic = d.topic \
     AND gp.group_key = (SELECT g.group_key FROM messages g WHERE g.id = d.message_id)))";

/// Pause (insert, idempotent) or resume (delete) one group of a topic. A resume wakes the
/// group in every grouped consumer group that has it (a wake-up the next claim folds in:
/// a paused group was parked out of the ready set).
pub(crate) async fn group_pause_set(pool: &PgPool, p: GroupPauseSetParams) -> Result<Option<GroupPause>, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let out = if p.paused {
        sqlx::query(
            "INSERT INTO group_pauses (topic, group_key, paused_at) VALUES ($1, $2, $3) \
             ON CONFLICT (topic, group_key) DO UPDATE SET paused_at = group_pauses.paused_at \
             RETURNING topic, group_key, paused_at",
        )
        .bind(&p.topic)
        .bind(&p.group_key)
        .bind(p.now)
        .fetch_one(&mut *tx)
        .await
        .map(|r| Some(GroupPause { topic: r.get(0), group_key: r.get(1), paused_at: r.get(2) }))
        .map_err(db_err)?
    } else {
        let removed = sqlx::query(
            "DELETE FROM group_pauses WHERE topic = $1 AND group_key = $2 RETURNING topic, group_key, paused_at",
        )
        .bind(&p.topic)
        .bind(&p.group_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .map(|r| GroupPause { topic: r.get(0), group_key: r.get(1), paused_at: r.get(2) });
        if removed.is_some() {
            sqlx::query(
                "INSERT INTO flow_group_wakeups (consumer_group, group_key, due_at) \
                 SELECT consumer_group, group_key, $2 FROM flow_groups WHERE group_key = $1",
            )
            .bind(&p.group_key)
            .bind(p.now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        removed
    };
    // Every process's view of the paused groups (`Queue::group_paused_known`) hears of it at
    // the commit: `gpause:<topic>/<group>` (a topic has no `/`).
    sqlx::query("SELECT pg_notify('vqs_control', $1 || $2 || '/' || $3)")
        .bind(if p.paused { "gpause:" } else { "gresume:" })
        .bind(&p.topic)
        .bind(&p.group_key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(out)
}

pub(crate) async fn group_pause_list(pool: &PgPool, p: GroupPauseListParams) -> Result<Vec<GroupPause>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, group_key, paused_at FROM group_pauses WHERE ($1::text IS NULL OR topic = $1) AND ($3::text IS NULL OR group_key = $3) \
         ORDER BY topic, group_key LIMIT $2",
    )
    .bind(&p.topic)
    .bind(i64::from(p.limit))
    .bind(&p.group_key)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(|r| GroupPause { topic: r.get(0), group_key: r.get(1), paused_at: r.get(2) }).collect())
}

/// How long a process goes by its last read of which consumer groups claim through the
/// ready groups because a group of their topic is paused ([`ClaimsByGroup`]).
const CLAIMS_BY_GROUP_READ_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The consumer groups whose claim goes through the ready groups with no limit per group
/// (`lease.rs`, `delivery_claim`): subscribed grouped (their deliveries carry their group key) to a topic
/// with a paused message group. Their claim then skips the paused group in the ready set
/// instead of reading past its backlog in due order.
///
/// Read at most once a second per store (one small join; the plain claim stays one
/// statement, with no extra round trip), and at once after this store pauses or resumes a
/// group or changes a subscription. Another process's pause reaches it within that second;
/// until then the plain claim holds the group back by its filter ([`CLAIM_FILTER`]), so a
/// stale answer costs speed for that second, never correctness.
#[derive(Debug, Default)]
pub(crate) struct ClaimsByGroup {
    read: std::sync::Mutex<Option<(std::time::Instant, Arc<HashSet<String>>)>>,
}

impl ClaimsByGroup {
    /// Forget the last read: the next claim reads again.
    pub(crate) fn forget(&self) {
        *self.read.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Does `consumer_group` claim through the ready groups (see the type)?
    pub(crate) async fn contains(&self, pool: &PgPool, consumer_group: &str) -> Result<bool, StoreError> {
        let known = self.read.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let groups = match known {
            Some((at, groups)) if at.elapsed() < CLAIMS_BY_GROUP_READ_EVERY => groups,
            _ => {
                let read_at = std::time::Instant::now();
                let rows: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT s.consumer_group FROM group_pauses gp JOIN subscriptions s \
                     ON s.grouped AND (s.topic_pattern = gp.topic OR (s.is_prefix AND starts_with(gp.topic, s.prefix)))",
                )
                .fetch_all(pool)
                .await
                .map_err(db_err)?;
                let groups: Arc<HashSet<String>> = Arc::new(rows.into_iter().collect());
                *self.read.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((read_at, groups.clone()));
                groups
            }
        };
        Ok(groups.contains(consumer_group))
    }
}
