//! The per-minute rollup of executions for the dashboard's charts (`vqs::stats`): one
//! transaction locks the rollup's state row (`FOR UPDATE SKIP LOCKED`: one process at a
//! time; the others skip), reads the executions after the cursor by primary key and those
//! remembered as running, adds their figures to `stats_minutes`, samples the depth, prunes
//! old minutes and moves the cursor.

use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Connection, Row};
use vqs::stats::{MinuteFigures, RollupRow, roll};
use vqs::store::*;

use crate::rows::db_err;

const ROLLUP_COLUMNS: &str = "id, topic, status, started_at, finished_at, duration_ms";

/// Ids come from a sequence and may commit out of order: the cursor passes only executions
/// recorded at least this long ago, by which time their transaction has long committed.
const SETTLE_GRACE_SECONDS: i64 = 15;

fn rollup_row(r: &PgRow) -> RollupRow {
    RollupRow {
        id: r.get("id"),
        topic: r.get("topic"),
        status: r.get("status"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        duration_ms: r.get("duration_ms"),
    }
}

pub(crate) async fn stats_rollup(pool: &PgPool, p: StatsRollupParams) -> Result<StatsRollupReport, StoreError> {
    let mut conn = pool.acquire().await.map_err(db_err)?;
    let mut tx = conn.begin().await.map_err(db_err)?;
    let state =
        sqlx::query("SELECT rolled_through_id, pending FROM stats_rollup_state WHERE id = 1 FOR UPDATE SKIP LOCKED")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    let Some(state) = state else {
        return Ok(StatsRollupReport { skipped: true, ..StatsRollupReport::default() });
    };
    let cursor: i64 = state.get(0);
    let pending: Vec<i64> = serde_json::from_str(state.get::<&str, _>(1)).unwrap_or_default();
    let remembered =
        sqlx::query(&format!("SELECT {ROLLUP_COLUMNS} FROM job_executions WHERE id = ANY($1) ORDER BY id"))
            .bind(&pending)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
    let new = sqlx::query(&format!("SELECT {ROLLUP_COLUMNS} FROM job_executions WHERE id > $1 ORDER BY id LIMIT $2"))
        .bind(cursor)
        .bind(i64::from(p.batch.max(1)))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    let more = new.len() >= p.batch.max(1) as usize;
    let remembered: Vec<RollupRow> = remembered.iter().map(rollup_row).collect();
    let new: Vec<RollupRow> = new.iter().map(rollup_row).collect();
    let rolled = roll(cursor, &remembered, &new, p.now - chrono::Duration::seconds(SETTLE_GRACE_SECONDS));
    for ((topic, minute), add) in &rolled.figures {
        let old =
            sqlx::query("SELECT finished, failed, latency, max_ms FROM stats_minutes WHERE topic = $1 AND minute = $2")
                .bind(topic)
                .bind(minute)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let mut f = old.map_or_else(MinuteFigures::default, |r| {
            MinuteFigures::from_stored(r.get(0), r.get(1), r.get(2), r.get(3))
        });
        f.merge(add);
        sqlx::query(
            "INSERT INTO stats_minutes (topic, minute, finished, failed, latency, max_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (topic, minute) DO UPDATE SET finished = excluded.finished, failed = excluded.failed, \
             latency = excluded.latency, max_ms = excluded.max_ms",
        )
        .bind(topic)
        .bind(minute)
        .bind(f.finished)
        .bind(f.failed)
        .bind(f.latency_text())
        .bind(f.max_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    let now_minute = vqs::stats::minute_of(p.now);
    for (topic, waiting) in &p.depth {
        sqlx::query(
            "INSERT INTO stats_minutes (topic, minute, depth) VALUES ($1, $2, $3) \
             ON CONFLICT (topic, minute) DO UPDATE SET depth = excluded.depth",
        )
        .bind(topic)
        .bind(now_minute)
        .bind(waiting)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    sqlx::query("DELETE FROM stats_minutes WHERE minute < $1")
        .bind(p.prune_before)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let pending = serde_json::to_string(&rolled.pending).unwrap_or_else(|_| "[]".into());
    sqlx::query("UPDATE stats_rollup_state SET rolled_through_id = $1, pending = $2 WHERE id = 1")
        .bind(rolled.cursor)
        .bind(pending)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(StatsRollupReport { counted: rolled.counted, pending: rolled.pending.len() as u64, more, skipped: false })
}

pub(crate) async fn stats_series(pool: &PgPool, p: StatsSeriesParams) -> Result<Vec<StatsMinuteRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, minute, finished, failed, latency, max_ms, depth FROM stats_minutes \
         WHERE minute >= $1 AND ($2::text IS NULL OR topic = $2) ORDER BY topic, minute",
    )
    .bind(p.since)
    .bind(&p.topic)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| StatsMinuteRecord {
            topic: r.get(0),
            minute: r.get(1),
            figures: MinuteFigures::from_stored(r.get(2), r.get(3), r.get(4), r.get(5)),
            depth: r.get(6),
        })
        .collect())
}
