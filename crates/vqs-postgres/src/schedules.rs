//! Runtime schedules: the rows, the due query and a fire — one transaction that claims the
//! tick by compare-and-set on `next_fire_at` and `updated_at`, records it in
//! `schedule_fires` (unique per name and tick) and publishes its message through the same
//! code a send uses (`publish::enqueue_in`). Racing fires for one tick wait on the
//! schedule's row lock; when the first commits, the others' compare-and-set no longer
//! matches and they find the tick's fire record.

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use vqs::store::*;

use crate::publish::enqueue_in;
use crate::rows::db_err;

const COLUMNS: &str = "name, cron, timezone, topic, payload, enabled, catch_up, jitter_seconds, next_fire_at, \
                       due_at, created_at, updated_at, last_tick, last_fired_at, last_message_id";

fn record(r: &PgRow) -> ScheduleRecord {
    let payload: String = r.get("payload");
    ScheduleRecord {
        name: r.get("name"),
        cron: r.get("cron"),
        timezone: r.get("timezone"),
        topic: r.get("topic"),
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        enabled: r.get("enabled"),
        catch_up: r.get("catch_up"),
        jitter_seconds: r.get::<i32, _>("jitter_seconds").max(0) as u32,
        next_fire_at: r.get("next_fire_at"),
        due_at: r.get("due_at"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        last_tick: r.get("last_tick"),
        last_fired_at: r.get("last_fired_at"),
        last_message_id: r.get("last_message_id"),
    }
}

pub(crate) async fn schedule_upsert(pool: &PgPool, p: ScheduleUpsertParams) -> Result<ScheduleRecord, StoreError> {
    let s = &p.schedule;
    let row = sqlx::query(&format!(
        "INSERT INTO schedules (name, cron, timezone, topic, payload, enabled, next_fire_at, created_at, updated_at, \
         catch_up, jitter_seconds, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11) \
         ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, timezone = excluded.timezone, \
         topic = excluded.topic, payload = excluded.payload, enabled = excluded.enabled, \
         next_fire_at = excluded.next_fire_at, updated_at = excluded.updated_at, catch_up = excluded.catch_up, \
         jitter_seconds = excluded.jitter_seconds, due_at = excluded.due_at \
         RETURNING {COLUMNS}"
    ))
    .bind(&s.name)
    .bind(&s.cron)
    .bind(&s.timezone)
    .bind(&s.topic)
    .bind(s.payload_text())
    .bind(s.enabled)
    .bind(p.next_fire_at)
    .bind(p.now)
    .bind(s.catch_up)
    .bind(i32::try_from(s.jitter_seconds).unwrap_or(i32::MAX))
    .bind(p.due_at)
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok(record(&row))
}

pub(crate) async fn schedule_get(pool: &PgPool, p: ScheduleGetParams) -> Result<Option<ScheduleRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE name = $1"))
        .bind(&p.name)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?;
    Ok(row.as_ref().map(record))
}

pub(crate) async fn schedule_list(pool: &PgPool, p: ScheduleListParams) -> Result<Vec<ScheduleRecord>, StoreError> {
    // `name` is COLLATE "C" (byte order) and never empty, so "" starts at the first.
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE name > $1 ORDER BY name LIMIT $2"))
        .bind(p.after.unwrap_or_default())
        .bind(i64::from(p.limit))
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    Ok(rows.iter().map(record).collect())
}

pub(crate) async fn schedule_count(pool: &PgPool, p: ScheduleCountParams) -> Result<u64, StoreError> {
    let query = match p.overdue_before {
        None => sqlx::query_scalar::<_, i64>("SELECT count(*) FROM (SELECT 1 FROM schedules LIMIT $1) s")
            .bind(i64::from(p.cap)),
        // The conditions repeat the partial index's, so the planner can use it.
        Some(before) => sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM (SELECT 1 FROM schedules WHERE enabled AND next_fire_at IS NOT NULL \
             AND next_fire_at <= $1 LIMIT $2) s",
        )
        .bind(before)
        .bind(i64::from(p.cap)),
    };
    Ok(query.fetch_one(pool).await.map_err(db_err)?.max(0) as u64)
}

pub(crate) async fn schedule_overdue(
    pool: &PgPool,
    p: ScheduleOverdueParams,
) -> Result<Vec<ScheduleRecord>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedules WHERE enabled AND next_fire_at IS NOT NULL AND next_fire_at <= $1 \
         ORDER BY next_fire_at, name LIMIT $2"
    ))
    .bind(p.before)
    .bind(i64::from(p.limit))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(record).collect())
}

pub(crate) async fn schedule_delete(pool: &PgPool, p: ScheduleDeleteParams) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let r =
        sqlx::query("DELETE FROM schedules WHERE name = $1").bind(&p.name).execute(&mut *tx).await.map_err(db_err)?;
    sqlx::query("DELETE FROM schedule_fires WHERE name = $1").bind(&p.name).execute(&mut *tx).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

pub(crate) async fn schedule_due(pool: &PgPool, p: ScheduleDueParams) -> Result<Vec<ScheduleRecord>, StoreError> {
    // The conditions repeat the partial index's, so the planner can use it.
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedules WHERE enabled AND due_at IS NOT NULL AND due_at <= $1 \
         ORDER BY due_at LIMIT $2"
    ))
    .bind(p.now)
    .bind(i64::from(p.limit))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(record).collect())
}

pub(crate) async fn schedule_fire(pool: &PgPool, p: ScheduleFireParams) -> Result<ScheduleFired, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let (tick, now) = (p.tick, p.now);
    let skip = p.mode == ScheduleFireMode::Skip;
    let claimed = match &p.kind {
        // A skipped (missed) tick moves the schedule on without counting as its last fire.
        ScheduleFireKind::Due { updated_at, next_fire_at, next_due_at } => sqlx::query(
            "UPDATE schedules SET next_fire_at = $1, due_at = $6, \
             last_tick = CASE WHEN $7 THEN last_tick ELSE $2 END, \
             last_fired_at = CASE WHEN $7 THEN last_fired_at ELSE $3 END \
             WHERE name = $4 AND enabled AND next_fire_at = $2 AND updated_at = $5 RETURNING topic, payload",
        )
        .bind(*next_fire_at)
        .bind(tick)
        .bind(now)
        .bind(&p.name)
        .bind(*updated_at)
        .bind(*next_due_at)
        .bind(skip),
        ScheduleFireKind::Trigger => sqlx::query(
            "UPDATE schedules SET last_tick = $1, last_fired_at = $2 WHERE name = $3 RETURNING topic, payload",
        )
        .bind(tick)
        .bind(now)
        .bind(&p.name),
    }
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(row) = claimed else {
        let fired_before = sqlx::query("SELECT 1 FROM schedule_fires WHERE name = $1 AND tick = $2")
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
        "INSERT INTO schedule_fires (name, tick, kind, fired_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name, tick) DO NOTHING",
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
    sqlx::query("DELETE FROM schedule_fires WHERE name = $1 AND tick < $2")
        .bind(&p.name)
        .bind(tick.checked_sub_signed(chrono::Duration::seconds(SCHEDULE_FIRE_RETENTION_SECONDS)).unwrap_or(tick))
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
    let sent = enqueue_in(&mut tx, send).await?;
    sqlx::query("UPDATE schedule_fires SET message_id = $1 WHERE name = $2 AND tick = $3")
        .bind(&sent.message_id)
        .bind(&p.name)
        .bind(tick)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    sqlx::query("UPDATE schedules SET last_message_id = $1 WHERE name = $2")
        .bind(&sent.message_id)
        .bind(&p.name)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(ScheduleFired::Fired { message_id: sent.message_id, duplicate: sent.duplicate })
}

pub(crate) async fn schedule_fire_sent(pool: &PgPool, p: ScheduleFireSentParams) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let recorded =
        sqlx::query("UPDATE schedule_fires SET message_id = $1 WHERE name = $2 AND tick = $3 AND message_id IS NULL")
            .bind(&p.message_id)
            .bind(&p.name)
            .bind(p.tick)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
    if recorded == 0 {
        // Reported already, or no such fire: the first report stands.
        return Ok(());
    }
    // Only the latest fire names the schedule's last message (a late resend of an older one
    // does not).
    sqlx::query("UPDATE schedules SET last_message_id = $1 WHERE name = $2 AND last_tick = $3")
        .bind(&p.message_id)
        .bind(&p.name)
        .bind(p.tick)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

pub(crate) async fn schedule_unsent(pool: &PgPool, p: ScheduleUnsentParams) -> Result<Vec<ScheduleUnsent>, StoreError> {
    // The conditions repeat the partial index's (schedule_fires_unsent).
    let rows = sqlx::query(
        "SELECT f.name, f.tick, s.topic, s.payload FROM schedule_fires f JOIN schedules s ON s.name = f.name \
         WHERE f.message_id IS NULL AND f.kind <> 'missed' AND f.fired_at >= $1 AND f.fired_at <= $2 \
         ORDER BY f.fired_at LIMIT $3",
    )
    .bind(p.since)
    .bind(p.until)
    .bind(i64::from(p.limit))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| ScheduleUnsent { name: r.get(0), tick: r.get(1), topic: r.get(2), payload: r.get(3) })
        .collect())
}
