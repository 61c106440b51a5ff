//! Paused message groups of a topic (`group_pauses`, migration 0024): the claim reads the
//! table itself (`lease.rs`, `flow_groups.rs`), so a pause holds on every process at once.

use sqlx::{PgPool, Row};
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
