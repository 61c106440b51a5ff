//! The per-minute rollup of executions for the dashboard's charts (`vqs::stats`). A pass
//! reads on the read pool, in one snapshot: the cursor, the executions after it by primary
//! key and those remembered as running. Only its small write goes through the writer: one
//! transaction that moves the cursor if no other pass moved it since the read (else the
//! pass is skipped and writes nothing), adds the figures to `stats_minutes`, samples the
//! depth and prunes old minutes. So the pass's big read never holds up the one writer.
//! Ids are committed in order (SQLite has one writer at a time, across processes too), so a
//! snapshot's executions after the cursor are a prefix: none is passed before it is visible.

use std::collections::BTreeMap;

use futures::FutureExt;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection, Row, SqlitePool};
use vqs::stats::{MinuteFigures, Rolled, RollupRow, roll};
use vqs::store::*;

use crate::rows::{db_err, time, us};
use crate::writer::Writer;

const ROLLUP_COLUMNS: &str = "id, topic, status, started_at, finished_at, duration_ms";

fn rollup_row(r: &SqliteRow) -> RollupRow {
    RollupRow {
        id: r.get("id"),
        topic: r.get("topic"),
        status: r.get("status"),
        started_at: time(r.get("started_at")),
        finished_at: r.get::<Option<i64>, _>("finished_at").map(time),
        duration_ms: r.get("duration_ms"),
    }
}

pub(crate) async fn stats_rollup(
    read: &SqlitePool,
    writer: &Writer,
    p: StatsRollupParams,
) -> Result<StatsRollupReport, StoreError> {
    let batch = p.batch.max(1);
    let mut conn = read.acquire().await.map_err(db_err)?;
    // One snapshot for the cursor and the rows (a read transaction).
    let mut tx = conn.begin().await.map_err(db_err)?;
    let state = sqlx::query("SELECT rolled_through_id, pending FROM stats_rollup_state WHERE id = 1")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    let cursor: i64 = state.get(0);
    let pending: String = state.get(1);
    let remembered = sqlx::query(&format!(
        "SELECT {ROLLUP_COLUMNS} FROM job_executions WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id"
    ))
    .bind(&pending)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    let new = sqlx::query(&format!("SELECT {ROLLUP_COLUMNS} FROM job_executions WHERE id > ? ORDER BY id LIMIT ?"))
        .bind(cursor)
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.rollback().await.map_err(db_err)?;
    drop(conn);
    let more = new.len() >= batch as usize;
    let remembered: Vec<RollupRow> = remembered.iter().map(rollup_row).collect();
    let new: Vec<RollupRow> = new.iter().map(rollup_row).collect();
    // Ids are committed in order: every row read is settled as far as the cursor goes.
    let rolled = roll(cursor, &remembered, &new, chrono::DateTime::<chrono::Utc>::MAX_UTC);
    let report =
        StatsRollupReport { counted: rolled.counted, pending: rolled.pending.len() as u64, more, skipped: false };
    let moved = writer.run(move |c| write(c, (cursor, pending), rolled, p).boxed()).await?;
    Ok(if moved { report } else { StatsRollupReport { skipped: true, ..StatsRollupReport::default() } })
}

/// The pass's write, if the cursor is still `(cursor, pending)` as read; false when another
/// pass moved it meanwhile (nothing written).
async fn write(
    conn: &mut SqliteConnection,
    (cursor, pending): (i64, String),
    rolled: Rolled,
    p: StatsRollupParams,
) -> Result<bool, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let next_pending = serde_json::to_string(&rolled.pending).unwrap_or_else(|_| "[]".into());
    let moved = sqlx::query(
        "UPDATE stats_rollup_state SET rolled_through_id = ?, pending = ? \
         WHERE id = 1 AND rolled_through_id = ? AND pending = ?",
    )
    .bind(rolled.cursor)
    .bind(next_pending)
    .bind(cursor)
    .bind(pending)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    if moved == 0 {
        return Ok(false);
    }
    for ((topic, minute), add) in &rolled.figures {
        let old =
            sqlx::query("SELECT finished, failed, latency, max_ms FROM stats_minutes WHERE topic = ? AND minute = ?")
                .bind(topic)
                .bind(us(*minute))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let mut f = old.map_or_else(MinuteFigures::default, |r| {
            MinuteFigures::from_stored(r.get(0), r.get(1), r.get(2), r.get(3))
        });
        f.merge(add);
        sqlx::query(
            "INSERT INTO stats_minutes (topic, minute, finished, failed, latency, max_ms) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (topic, minute) DO UPDATE SET finished = excluded.finished, failed = excluded.failed, \
             latency = excluded.latency, max_ms = excluded.max_ms",
        )
        .bind(topic)
        .bind(us(*minute))
        .bind(f.finished)
        .bind(f.failed)
        .bind(f.latency_text())
        .bind(f.max_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    let now_minute = us(vqs::stats::minute_of(p.now));
    for (topic, waiting) in &p.depth {
        sqlx::query(
            "INSERT INTO stats_minutes (topic, minute, depth) VALUES (?, ?, ?) \
             ON CONFLICT (topic, minute) DO UPDATE SET depth = excluded.depth",
        )
        .bind(topic)
        .bind(now_minute)
        .bind(waiting)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    sqlx::query("DELETE FROM stats_minutes WHERE minute < ?")
        .bind(us(p.prune_before))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}

pub(crate) async fn stats_series(
    read: &SqlitePool,
    p: StatsSeriesParams,
) -> Result<Vec<StatsMinuteRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, minute, finished, failed, latency, max_ms, depth FROM stats_minutes \
         WHERE minute >= ?1 AND (?2 IS NULL OR topic = ?2) ORDER BY topic, minute",
    )
    .bind(us(p.since))
    .bind(&p.topic)
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let rec = StatsMinuteRecord {
            topic: r.get(0),
            minute: time(r.get(1)),
            figures: MinuteFigures::from_stored(r.get(2), r.get(3), r.get(4), r.get(5)),
            depth: r.get(6),
        };
        out.insert((rec.topic.clone(), rec.minute), rec);
    }
    Ok(out.into_values().collect())
}
