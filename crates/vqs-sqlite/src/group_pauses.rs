//! Paused message groups of a topic (`group_pauses`, migration 0024): the claim reads the
//! table itself (`due.rs`, `flow_groups.rs`).

use futures::FutureExt;
use sqlx::{Row, SqlitePool};
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

/// Pause (insert, idempotent) or resume (delete) one group of a topic, through the one
/// writer. A resume makes the group ready again in every grouped consumer group that has
/// it (a paused group was parked out of the ready set).
pub(crate) async fn group_pause_set(writer: &Writer, p: GroupPauseSetParams) -> Result<Option<GroupPause>, StoreError> {
    writer
        .run(move |c| {
            async move {
                if p.paused {
                    let r = sqlx::query(
                        "INSERT INTO group_pauses (topic, group_key, paused_at) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (topic, group_key) DO UPDATE SET paused_at = group_pauses.paused_at \
                         RETURNING topic, group_key, paused_at",
                    )
                    .bind(&p.topic)
                    .bind(&p.group_key)
                    .bind(us(p.now))
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                    return Ok(Some(GroupPause { topic: r.get(0), group_key: r.get(1), paused_at: time(r.get(2)) }));
                }
                let removed = sqlx::query(
                    "DELETE FROM group_pauses WHERE topic = ?1 AND group_key = ?2 RETURNING topic, group_key, paused_at",
                )
                .bind(&p.topic)
                .bind(&p.group_key)
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?
                .map(|r| GroupPause { topic: r.get(0), group_key: r.get(1), paused_at: time(r.get(2)) });
                if removed.is_some() {
                    sqlx::query(
                        "UPDATE flow_groups SET ready_at = ?2 WHERE group_key = ?1 AND (ready_at IS NULL OR ready_at > ?2)",
                    )
                    .bind(&p.group_key)
                    .bind(us(p.now))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                }
                Ok(removed)
            }
            .boxed()
        })
        .await
}

pub(crate) async fn group_pause_list(
    read: &SqlitePool,
    p: GroupPauseListParams,
) -> Result<Vec<GroupPause>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, group_key, paused_at FROM group_pauses WHERE (?1 IS NULL OR topic = ?1) AND (?3 IS NULL OR group_key = ?3) \
         ORDER BY topic, group_key LIMIT ?2",
    )
    .bind(&p.topic)
    .bind(i64::from(p.limit))
    .bind(&p.group_key)
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(|r| GroupPause { topic: r.get(0), group_key: r.get(1), paused_at: time(r.get(2)) }).collect())
}

/// True when `consumer_group`'s subscription is grouped (its deliveries carry their group
/// key) and a message group of a topic it subscribes to is paused: its claim then goes
/// through the ready groups with no limit per group (`lease.rs`), which skip the paused
/// group, instead of reading past the paused backlog in due order. Read in the claim's
/// write transaction (two index lookups; nothing when no group is paused).
pub(crate) async fn claims_by_group(
    conn: &mut sqlx::SqliteConnection,
    consumer_group: &str,
) -> Result<bool, StoreError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM group_pauses) AND EXISTS (SELECT 1 FROM subscriptions s \
         JOIN group_pauses gp ON gp.topic = s.topic_pattern \
           OR (s.is_prefix = 1 AND substr(gp.topic, 1, length(s.prefix)) = s.prefix) \
         WHERE s.consumer_group = ?1 AND s.grouped)",
    )
    .bind(consumer_group)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)
}
