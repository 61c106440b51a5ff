//! Operator controls of a topic (pause and resume; limit overrides will live beside them):
//! one `topic_controls` row per topic, announced to every process on `vqs_control`.

use sqlx::{PgPool, Row};
use vqs::store::*;

use crate::rows::*;

/// Upsert the topic's row and announce it (`pause:<topic>` / `resume:<topic>`) in the same
/// transaction, so a listener that hears it reads the new state. Concurrent identical calls
/// leave one row (`ON CONFLICT DO UPDATE` serialises them); `updated_at` moves only when
/// the state changes.
pub(crate) async fn topic_control_set(pool: &PgPool, p: TopicControlSetParams) -> Result<TopicControl, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let row = sqlx::query(
        "INSERT INTO topic_controls (topic, paused, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (topic) DO UPDATE SET paused = EXCLUDED.paused, \
         updated_at = CASE WHEN topic_controls.paused = EXCLUDED.paused THEN topic_controls.updated_at \
         ELSE EXCLUDED.updated_at END \
         RETURNING topic, paused, updated_at",
    )
    .bind(&p.topic)
    .bind(p.paused)
    .bind(p.now)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let event = if p.paused { "pause:" } else { "resume:" };
    sqlx::query("SELECT pg_notify('vqs_control', $1 || $2)")
        .bind(event)
        .bind(&p.topic)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(TopicControl { topic: row.get(0), paused: row.get(1), updated_at: row.get(2) })
}

pub(crate) async fn topic_control_list(
    pool: &PgPool,
    p: TopicControlListParams,
) -> Result<Vec<TopicControl>, StoreError> {
    let rows =
        sqlx::query("SELECT topic, paused, updated_at FROM topic_controls WHERE paused OR NOT $1 ORDER BY topic")
            .bind(p.paused_only)
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
    Ok(rows.iter().map(|r| TopicControl { topic: r.get(0), paused: r.get(1), updated_at: r.get(2) }).collect())
}
