//! Operator controls of a topic (pause and resume; limit overrides will live beside them):
//! one `topic_controls` row per topic. Other processes learn of a change by polling.

use futures::FutureExt;
use sqlx::{Row, SqlitePool};
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

/// Upsert the topic's row (through the one writer, so concurrent identical calls leave one
/// row); `updated_at` moves only when the state changes.
pub(crate) async fn topic_control_set(writer: &Writer, p: TopicControlSetParams) -> Result<TopicControl, StoreError> {
    writer
        .run(move |c| {
            async move {
                let row = sqlx::query(
                    "INSERT INTO topic_controls (topic, paused, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (topic) DO UPDATE SET paused = excluded.paused, \
                     updated_at = CASE WHEN topic_controls.paused = excluded.paused THEN topic_controls.updated_at \
                     ELSE excluded.updated_at END \
                     RETURNING topic, paused, updated_at",
                )
                .bind(&p.topic)
                .bind(p.paused)
                .bind(us(p.now))
                .fetch_one(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(TopicControl { topic: row.get(0), paused: row.get(1), updated_at: time(row.get(2)) })
            }
            .boxed()
        })
        .await
}

pub(crate) async fn topic_control_list(
    read: &SqlitePool,
    p: TopicControlListParams,
) -> Result<Vec<TopicControl>, StoreError> {
    let rows =
        sqlx::query("SELECT topic, paused, updated_at FROM topic_controls WHERE paused = 1 OR NOT ?1 ORDER BY topic")
            .bind(p.paused_only)
            .fetch_all(read)
            .await
            .map_err(db_err)?;
    Ok(rows.iter().map(|r| TopicControl { topic: r.get(0), paused: r.get(1), updated_at: time(r.get(2)) }).collect())
}
