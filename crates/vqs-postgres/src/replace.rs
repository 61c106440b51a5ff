//! `on_duplicate: replace` (SPEC.md, "Job outcomes"): a send whose idempotency key is held
//! by a message that has not started gives that message its payload, content type, headers
//! and due time; one that has started or finished hands the key to a new message.

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use vqs::store::{MessageSendParams, SendResult, StoreError};

use crate::keyed_insert::insert_keyed;
use crate::rows::{db_err, secs};

/// Replace `original`, the kept message that holds `p`'s key. `None` when the key no longer
/// names it (a concurrent replace moved the key, or it expired): the caller sends again.
///
/// Races: the message row is locked first, so two replaces of one key take turns (the
/// second sees the first's payload and state, never a lost update). Its deliveries are
/// locked next; a claim skips locked rows (`SKIP LOCKED`), and a claim that locks one first
/// leases it, so the replace then sees it started. A pending delivery is not updated in
/// place but deleted and inserted again: a claim whose snapshot predates the replace and
/// reaches the row after it committed would follow an updated row to its new version and
/// lease it with the message row of its own snapshot — the old payload. A deleted row it
/// skips instead; the row inserted again is invisible to it.
pub(crate) async fn replace_held(
    conn: &mut PgConnection,
    p: &MessageSendParams,
    original: &str,
) -> Result<Option<SendResult>, StoreError> {
    // A savepoint inside the caller's transaction, a transaction of its own on a bare
    // connection (the writer's): the locks hold until the replace is written.
    let mut tx = conn.begin().await.map_err(db_err)?;
    let held = sqlx::query(
        "SELECT 1 FROM messages WHERE id = $1 AND topic = $2 AND idempotency_key = $3 AND expires_at > $4 FOR UPDATE",
    )
    .bind(original)
    .bind(&p.topic)
    .bind(&p.idempotency_key)
    .bind(p.now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    if held.is_none() {
        tx.rollback().await.map_err(db_err)?;
        return Ok(None);
    }
    let states: Vec<String> =
        sqlx::query_scalar("SELECT state FROM deliveries WHERE message_id = $1 ORDER BY consumer_group FOR UPDATE")
            .bind(original)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
    // No delivery yet (no consumer group subscribed) counts as not started.
    let result = if states.iter().all(|s| s == "pending") {
        let due = p.now + secs(p.delay_seconds);
        // Kept at least as long as the new send asks: a debounce that keeps pushing the due
        // time never outlives its message.
        sqlx::query(
            "UPDATE messages SET payload = $2, content_type = $3, headers_json = $4, deliver_at = $5, \
             expires_at = GREATEST(expires_at, $6) WHERE id = $1",
        )
        .bind(original)
        .bind(&p.payload)
        .bind(&p.content_type)
        .bind(&p.headers_json)
        .bind(due)
        .bind(p.now + secs(p.retention_seconds))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        // Due at the new time in every group, attempts and delivery counts kept; every
        // process's dispatchers wake as on a publish (on commit). Every column of
        // `deliveries` is carried over: a column added by a later migration is added here.
        sqlx::query(
            "WITH gone AS ( \
                 DELETE FROM deliveries WHERE message_id = $1 \
                 RETURNING message_id, consumer_group, topic, state, delivery_count, lease_token, keyed, \
                           attempts, lease_holder, group_key, priority), \
             back AS ( \
                 INSERT INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, \
                                         lease_token, keyed, updated_at, attempts, lease_holder, group_key, priority) \
                 SELECT message_id, consumer_group, topic, state, $2, delivery_count, lease_token, keyed, $3, \
                        attempts, lease_holder, group_key, priority FROM gone \
                 RETURNING topic), \
             woken AS (SELECT pg_notify('vqs_published', topic) FROM (SELECT DISTINCT topic FROM back) t) \
             SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM woken)",
        )
        .bind(original)
        .bind(due)
        .bind(p.now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        SendResult { message_id: original.to_owned(), duplicate: false, replaced: true }
    } else {
        // Started or finished: the key moves to a new message, sent as usual.
        sqlx::query("UPDATE messages SET idempotency_key = NULL WHERE id = $1")
            .bind(original)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let id = insert_keyed(&mut tx, p).await?.ok_or_else(|| {
            StoreError::Database(format!(
                "the key of message {original} was released but a new message could not take it"
            ))
        })?;
        SendResult { message_id: id, duplicate: false, replaced: false }
    };
    tx.commit().await.map_err(db_err)?;
    Ok(Some(result))
}
