//! `on_duplicate: replace` (SPEC.md, "Job outcomes"): a send whose idempotency key is held
//! by a message that has not started gives that message its payload, content type, headers
//! and due time; one that has started or finished hands the key to a new message.
//!
//! Races need no locks here: every write, claims included, goes through the one writer
//! connection, and a replace runs inside the writer's transaction (`BEGIN IMMEDIATE`), so a
//! claim sees the message either before the replace or after it, never half of it.

use sqlx::sqlite::SqliteConnection;
use vqs::store::{MessageSendParams, SendResult, StoreError};

use crate::rows::{db_err, us};

/// Replace `original`, the kept message that holds `p`'s key: `Some` with the answer when
/// it had not started; `None` when it had, its key released for the caller to send anew.
pub(crate) async fn replace_held(
    conn: &mut SqliteConnection,
    p: &MessageSendParams,
    original: &str,
) -> Result<Option<SendResult>, StoreError> {
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM deliveries WHERE message_id = ?")
        .bind(original)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    // No delivery yet (no consumer group subscribed) counts as not started.
    if !states.iter().all(|s| s == "pending") {
        sqlx::query("UPDATE messages SET idempotency_key = NULL WHERE id = ?")
            .bind(original)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        return Ok(None);
    }
    let now = us(p.now);
    let due = now + i64::from(p.delay_seconds) * 1_000_000;
    // Kept at least as long as the new send asks: a debounce that keeps pushing the due time
    // never outlives its message.
    sqlx::query(
        "UPDATE messages SET payload = ?2, content_type = ?3, headers_json = ?4, deliver_at = ?5, \
         expires_at = MAX(expires_at, ?6) WHERE id = ?1",
    )
    .bind(original)
    .bind(&p.payload)
    .bind(&p.content_type)
    .bind(&p.headers_json)
    .bind(due)
    .bind(now + i64::from(p.retention_seconds) * 1_000_000)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    // Due at the new time in every group; attempts and delivery counts kept.
    sqlx::query("UPDATE deliveries SET visible_at = ?2, updated_at = ?3 WHERE message_id = ?1")
        .bind(original)
        .bind(due)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(Some(SendResult { message_id: original.to_owned(), duplicate: false, replaced: true }))
}
