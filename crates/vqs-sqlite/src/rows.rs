//! Row decoders and the conversions every statement shares: times as microseconds, errors.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use vqs::store::*;

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    // SQLITE_TOOBIG, SQLITE_CONSTRAINT (a trigger's RAISE too), SQLITE_MISMATCH, SQLITE_RANGE:
    // the input, not the database, is at fault.
    let refused = e
        .as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25));
    if refused { StoreError::Refused(e.to_string()) } else { StoreError::Database(e.to_string()) }
}

/// Stored times are microseconds since the Unix epoch.
pub(crate) fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

pub(crate) const US_PER_S: i64 = 1_000_000;

pub(crate) fn execution(r: &SqliteRow) -> ExecutionRecord {
    ExecutionRecord {
        id: r.get("id"),
        topic: r.get("topic"),
        message_id: r.get("message_id"),
        consumer_group: r.get("consumer_group"),
        attempt: r.get::<i64, _>("attempt") as u32,
        status: ExecutionStatus::parse(r.get("status")).unwrap_or(ExecutionStatus::Failed),
        started_at: time(r.get("started_at")),
        finished_at: r.get::<Option<i64>, _>("finished_at").map(time),
        duration_ms: r.get("duration_ms"),
        error: r.get("error"),
    }
}

pub(crate) const CRON_RUN_COLUMNS: &str = "r.id, r.path, r.schedule, r.scheduled_at, r.started_at, r.finished_at, r.duration_ms, r.status_code, r.outcome, r.error";

pub(crate) fn cron_run(r: &SqliteRow) -> CronRunRecord {
    CronRunRecord {
        id: r.get("id"),
        path: r.get("path"),
        schedule: r.get("schedule"),
        scheduled_at: time(r.get("scheduled_at")),
        started_at: time(r.get("started_at")),
        finished_at: r.get::<Option<i64>, _>("finished_at").map(time),
        duration_ms: r.get("duration_ms"),
        status_code: r.get::<Option<i64>, _>("status_code").map(|c| c as u16),
        outcome: r.get("outcome"),
        error: r.get("error"),
    }
}

pub(crate) fn dead_letter(r: &SqliteRow) -> DeadLetterRecord {
    let content_type: String = r.get("content_type");
    let total = r.get::<i64, _>("payload_bytes");
    let (payload, payload_bytes, payload_truncated) =
        payload_preview(r.get::<&[u8], _>("payload"), total, &content_type);
    DeadLetterRecord {
        id: r.get("id"),
        message_id: r.get("message_id"),
        topic: r.get("topic"),
        consumer_group: r.get("consumer_group"),
        payload,
        payload_bytes,
        payload_truncated,
        content_type,
        error: r.get("error"),
        attempts: r.get::<i64, _>("attempts") as u32,
        created_at: time(r.get("created_at")),
        headers_json: r.try_get("headers_json").ok().flatten(),
        group_key: r.try_get("group_key").ok().flatten(),
        priority: r.try_get::<Option<i64>, _>("priority").ok().flatten().unwrap_or(0) as i16,
    }
}
