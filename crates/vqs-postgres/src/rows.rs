//! Row decoders and the conversions every statement shares.

use sqlx::Row;
use sqlx::postgres::PgRow;
use vqs::store::*;

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    // Data exceptions (a NUL in text: 22021), integrity constraints, program limits (an
    // index row too big: 54000) and a trigger's RAISE: the input, not the server, is at fault.
    let refused = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| ["22", "23", "54", "P0"].iter().any(|class| c.starts_with(class)));
    if refused { StoreError::Refused(e.to_string()) } else { StoreError::Database(e.to_string()) }
}

pub(crate) fn secs(n: impl Into<i64>) -> chrono::Duration {
    chrono::Duration::seconds(n.into())
}

pub(crate) fn execution(r: &PgRow) -> ExecutionRecord {
    ExecutionRecord {
        id: r.get("id"),
        topic: r.get("topic"),
        message_id: r.get("message_id"),
        consumer_group: r.get("consumer_group"),
        attempt: r.get::<i32, _>("attempt") as u32,
        status: ExecutionStatus::parse(r.get("status")).unwrap_or(ExecutionStatus::Failed),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        duration_ms: r.get("duration_ms"),
        error: r.get("error"),
    }
}

pub(crate) fn dead_letter(r: &PgRow) -> DeadLetterRecord {
    let content_type: String = r.get("content_type");
    let total = i64::from(r.get::<i32, _>("payload_bytes"));
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
        attempts: r.get::<i32, _>("attempts") as u32,
        created_at: r.get("created_at"),
        headers_json: r.try_get("headers_json").ok().flatten(),
        group_key: r.try_get("group_key").ok().flatten(),
        priority: r.try_get::<Option<i16>, _>("priority").ok().flatten().unwrap_or(0),
    }
}

pub(crate) const CRON_RUN_COLUMNS: &str = "r.id, r.path, r.schedule, r.scheduled_at, r.started_at, r.finished_at, r.duration_ms, r.status_code, r.outcome, r.error";

pub(crate) fn cron_run(r: &PgRow) -> CronRunRecord {
    CronRunRecord {
        id: r.get("id"),
        path: r.get("path"),
        schedule: r.get("schedule"),
        scheduled_at: r.get("scheduled_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        duration_ms: r.get("duration_ms"),
        status_code: r.get::<Option<i32>, _>("status_code").map(|c| c as u16),
        outcome: r.get("outcome"),
        error: r.get("error"),
    }
}
