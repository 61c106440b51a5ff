//! Runtime schedules: the rows, the due query and a fire — one transaction that claims the
//! tick by compare-and-set on `next_fire_at` and `updated_at`, records it in
//! `schedule_fires` (unique per name and tick) and publishes its message through the same
//! code a send uses (`writer::sends`). SQLite has one writer, so racing fires queue up and
//! every one after the first finds the tick claimed.

use futures::FutureExt;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection, Row, SqlitePool};
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

const COLUMNS: &str = "name, cron, timezone, topic, payload, enabled, catch_up, jitter_seconds, next_fire_at, \
                       due_at, created_at, updated_at, last_tick, last_fired_at, last_message_id";

fn record(r: &SqliteRow) -> ScheduleRecord {
    let payload: String = r.get("payload");
    ScheduleRecord {
        name: r.get("name"),
        cron: r.get("cron"),
        timezone: r.get("timezone"),
        topic: r.get("topic"),
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        enabled: r.get::<i64, _>("enabled") != 0,
        catch_up: r.get::<i64, _>("catch_up") != 0,
        jitter_seconds: u32::try_from(r.get::<i64, _>("jitter_seconds")).unwrap_or(0),
        next_fire_at: r.get::<Option<i64>, _>("next_fire_at").map(time),
        due_at: r.get::<Option<i64>, _>("due_at").map(time),
        created_at: time(r.get("created_at")),
        updated_at: time(r.get("updated_at")),
        last_tick: r.get::<Option<i64>, _>("last_tick").map(time),
        last_fired_at: r.get::<Option<i64>, _>("last_fired_at").map(time),
        last_message_id: r.get("last_message_id"),
    }
}

pub(crate) async fn schedule_upsert(writer: &Writer, p: ScheduleUpsertParams) -> Result<ScheduleRecord, StoreError> {
    writer
        .run(move |c| {
            async move {
                let s = &p.schedule;
                let row = sqlx::query(&format!(
                    "INSERT INTO schedules (name, cron, timezone, topic, payload, enabled, next_fire_at, created_at, \
                     updated_at, catch_up, jitter_seconds, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, timezone = excluded.timezone, \
                     topic = excluded.topic, payload = excluded.payload, enabled = excluded.enabled, \
                     next_fire_at = excluded.next_fire_at, updated_at = excluded.updated_at, \
                     catch_up = excluded.catch_up, jitter_seconds = excluded.jitter_seconds, due_at = excluded.due_at \
                     RETURNING {COLUMNS}"
                ))
                .bind(&s.name)
                .bind(&s.cron)
                .bind(&s.timezone)
                .bind(&s.topic)
                .bind(s.payload_text())
                .bind(i64::from(s.enabled))
                .bind(p.next_fire_at.map(us))
                .bind(us(p.now))
                .bind(us(p.now))
                .bind(i64::from(s.catch_up))
                .bind(i64::from(s.jitter_seconds))
                .bind(p.due_at.map(us))
                .fetch_one(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(record(&row))
            }
            .boxed()
        })
        .await
}

pub(crate) async fn schedule_get(
    read: &SqlitePool,
    p: ScheduleGetParams,
) -> Result<Option<ScheduleRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE name = ?"))
        .bind(&p.name)
        .fetch_optional(read)
        .await
        .map_err(db_err)?;
    Ok(row.as_ref().map(record))
}

pub(crate) async fn schedule_list(read: &SqlitePool, p: ScheduleListParams) -> Result<Vec<ScheduleRecord>, StoreError> {
    // Every name is at least one byte, so "" starts at the first; BINARY collation is byte order.
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE name > ? ORDER BY name LIMIT ?"))
        .bind(p.after.unwrap_or_default())
        .bind(i64::from(p.limit))
        .fetch_all(read)
        .await
        .map_err(db_err)?;
    Ok(rows.iter().map(record).collect())
}

pub(crate) async fn schedule_count(read: &SqlitePool, p: ScheduleCountParams) -> Result<u64, StoreError> {
    let query = match p.overdue_before {
        None => sqlx::query_scalar::<_, i64>("SELECT count(*) FROM (SELECT 1 FROM schedules LIMIT ?)")
            .bind(i64::from(p.cap)),
        // The conditions repeat the partial index's, so SQLite reads it.
        Some(before) => sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM (SELECT 1 FROM schedules WHERE enabled = 1 AND next_fire_at IS NOT NULL \
             AND next_fire_at <= ? LIMIT ?)",
        )
        .bind(us(before))
        .bind(i64::from(p.cap)),
    };
    Ok(query.fetch_one(read).await.map_err(db_err)?.max(0) as u64)
}

pub(crate) async fn schedule_overdue(
    read: &SqlitePool,
    p: ScheduleOverdueParams,
) -> Result<Vec<ScheduleRecord>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedules WHERE enabled = 1 AND next_fire_at IS NOT NULL AND next_fire_at <= ? \
         ORDER BY next_fire_at, name LIMIT ?"
    ))
    .bind(us(p.before))
    .bind(i64::from(p.limit))
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(record).collect())
}

pub(crate) async fn schedule_delete(writer: &Writer, p: ScheduleDeleteParams) -> Result<bool, StoreError> {
    writer
        .run(move |c| {
            async move {
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                let r = sqlx::query("DELETE FROM schedules WHERE name = ?")
                    .bind(&p.name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                sqlx::query("DELETE FROM schedule_fires WHERE name = ?")
                    .bind(&p.name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(r.rows_affected() > 0)
            }
            .boxed()
        })
        .await
}

pub(crate) async fn schedule_due(read: &SqlitePool, p: ScheduleDueParams) -> Result<Vec<ScheduleRecord>, StoreError> {
    // The conditions repeat the partial index's, so SQLite reads it.
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedules WHERE enabled = 1 AND due_at IS NOT NULL AND due_at <= ? \
         ORDER BY due_at LIMIT ?"
    ))
    .bind(us(p.now))
    .bind(i64::from(p.limit))
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(record).collect())
}

pub(crate) async fn schedule_fire(writer: &Writer, p: ScheduleFireParams) -> Result<ScheduleFired, StoreError> {
    writer.run(move |c| fire(c, p).boxed()).await
}

async fn fire(conn: &mut SqliteConnection, p: ScheduleFireParams) -> Result<ScheduleFired, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let (tick, now) = (us(p.tick), us(p.now));
    let skip = p.mode == ScheduleFireMode::Skip;
    let claimed = match &p.kind {
        // A skipped (missed) tick moves the schedule on without counting as its last fire.
        ScheduleFireKind::Due { updated_at, next_fire_at, next_due_at } => sqlx::query(
            "UPDATE schedules SET next_fire_at = ?1, due_at = ?6, \
             last_tick = CASE WHEN ?7 THEN last_tick ELSE ?2 END, \
             last_fired_at = CASE WHEN ?7 THEN last_fired_at ELSE ?3 END \
             WHERE name = ?4 AND enabled = 1 AND next_fire_at = ?2 AND updated_at = ?5 RETURNING topic, payload",
        )
        .bind(next_fire_at.map(us))
        .bind(tick)
        .bind(now)
        .bind(&p.name)
        .bind(us(*updated_at))
        .bind(next_due_at.map(us))
        .bind(skip),
        ScheduleFireKind::Trigger => {
            sqlx::query("UPDATE schedules SET last_tick = ?, last_fired_at = ? WHERE name = ? RETURNING topic, payload")
                .bind(tick)
                .bind(now)
                .bind(&p.name)
        }
    }
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(row) = claimed else {
        let fired_before = sqlx::query("SELECT 1 FROM schedule_fires WHERE name = ? AND tick = ?")
            .bind(&p.name)
            .bind(tick)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .is_some();
        let answer = if fired_before {
            ScheduleFired::AlreadyFired
        } else if p.kind == ScheduleFireKind::Trigger {
            ScheduleFired::NotFound
        } else {
            ScheduleFired::Changed
        };
        return Ok(answer);
    };
    let kind = vqs::store_support::schedule_fire_kind(&p);
    let recorded = sqlx::query(
        "INSERT INTO schedule_fires (name, tick, kind, fired_at) VALUES (?, ?, ?, ?) ON CONFLICT (name, tick) DO NOTHING",
    )
    .bind(&p.name)
    .bind(tick)
    .bind(kind)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    if recorded == 0 {
        // This tick was fired already (a trigger at the very instant of a due tick): a due
        // claim still moves `next_fire_at` on, or the schedule would be due forever; a
        // trigger's is rolled back with the dropped transaction.
        if p.kind != ScheduleFireKind::Trigger {
            tx.commit().await.map_err(db_err)?;
        }
        return Ok(ScheduleFired::AlreadyFired);
    }
    sqlx::query("DELETE FROM schedule_fires WHERE name = ? AND tick < ?")
        .bind(&p.name)
        .bind(tick.saturating_sub(SCHEDULE_FIRE_RETENTION_SECONDS.saturating_mul(1_000_000)))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let payload: String = row.get("payload");
    match p.mode {
        ScheduleFireMode::Skip => {
            tx.commit().await.map_err(db_err)?;
            return Ok(ScheduleFired::Skipped);
        }
        ScheduleFireMode::Claim => {
            tx.commit().await.map_err(db_err)?;
            return Ok(ScheduleFired::Claimed { topic: row.get("topic"), payload });
        }
        ScheduleFireMode::Publish => {}
    }
    let send = vqs::store_support::schedule_send(&p, row.get("topic"), payload);
    let sent = crate::writer::sends(&mut tx, &[&send]).await?.pop();
    let sent = sent.unwrap_or_else(|| Err(StoreError::Database("the schedule's message was not published".into())))?;
    sqlx::query("UPDATE schedule_fires SET message_id = ? WHERE name = ? AND tick = ?")
        .bind(&sent.message_id)
        .bind(&p.name)
        .bind(tick)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    sqlx::query("UPDATE schedules SET last_message_id = ? WHERE name = ?")
        .bind(&sent.message_id)
        .bind(&p.name)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(ScheduleFired::Fired { message_id: sent.message_id, duplicate: sent.duplicate })
}

pub(crate) async fn schedule_fire_sent(writer: &Writer, p: ScheduleFireSentParams) -> Result<(), StoreError> {
    writer
        .run(move |c| {
            async move {
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                let recorded = sqlx::query(
                    "UPDATE schedule_fires SET message_id = ? WHERE name = ? AND tick = ? AND message_id IS NULL",
                )
                .bind(&p.message_id)
                .bind(&p.name)
                .bind(us(p.tick))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                if recorded == 0 {
                    return Ok(());
                }
                // Only the latest fire names the schedule's last message (a late resend of an
                // older one does not).
                sqlx::query("UPDATE schedules SET last_message_id = ? WHERE name = ? AND last_tick = ?")
                    .bind(&p.message_id)
                    .bind(&p.name)
                    .bind(us(p.tick))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }
            .boxed()
        })
        .await
}

pub(crate) async fn schedule_unsent(
    read: &SqlitePool,
    p: ScheduleUnsentParams,
) -> Result<Vec<ScheduleUnsent>, StoreError> {
    // The conditions repeat the partial index's (schedule_fires_unsent).
    let rows = sqlx::query(
        "SELECT f.name, f.tick, s.topic, s.payload FROM schedule_fires f JOIN schedules s ON s.name = f.name \
         WHERE f.message_id IS NULL AND f.kind <> 'missed' AND f.fired_at >= ? AND f.fired_at <= ? \
         ORDER BY f.fired_at LIMIT ?",
    )
    .bind(us(p.since))
    .bind(us(p.until))
    .bind(i64::from(p.limit))
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| ScheduleUnsent { name: r.get(0), tick: time(r.get(1)), topic: r.get(2), payload: r.get(3) })
        .collect())
}
