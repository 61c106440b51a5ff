//! Dead letters: listing, reading, keeping one (a delivery's last attempt, or a message of
//! another queue service), and operator actions on one (replay, discard): one transaction that records the
//! action (`dead_letter_settlements`, keyed by the dead letter's id), takes the dead letter
//! out and, for a replay, publishes its message. Of concurrent actions on one dead letter
//! the first to record wins; the others read what it did.

use crate::writer::Writer;
use futures::FutureExt;
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};
use vqs::store::{
    DEAD_LETTER_SETTLEMENT_RETENTION_SECONDS, DeadLetterRecord, DeadLetterSettleParams, DeadLetterSettled,
    DeliveryDeadLetterParams, StoreError,
};

use crate::lease::lease_update;
use crate::rows::{db_err, dead_letter, time, us};
use vqs::store::*;

pub(crate) async fn settle(
    conn: &mut SqliteConnection,
    p: DeadLetterSettleParams,
) -> Result<DeadLetterSettled, StoreError> {
    use sqlx::Connection;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let now = us(p.now);
    sqlx::query("DELETE FROM dead_letter_settlements WHERE settled_at < ?")
        .bind(now.saturating_sub(DEAD_LETTER_SETTLEMENT_RETENTION_SECONDS.saturating_mul(1_000_000)))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let claimed = sqlx::query(
        "INSERT INTO dead_letter_settlements (id, action, settled_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(p.id)
    .bind(p.action.past_tense())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected()
        == 1;
    if !claimed {
        let r = sqlx::query("SELECT action, settled_at, message_id FROM dead_letter_settlements WHERE id = ?")
            .bind(p.id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        return vqs::store_support::already_settled(r.get(0), time(r.get(1)), r.get(2));
    }
    let row = sqlx::query(
        "DELETE FROM dead_letters WHERE id = ? RETURNING id, message_id, topic, consumer_group, content_type, payload, \
         length(payload) AS payload_bytes, \
         error, attempts, created_at, headers_json, group_key, priority",
    )
    .bind(p.id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        // Nothing to settle: the recorded action rolls back with the transaction.
        return Ok(DeadLetterSettled::NotFound);
    };
    let letter = dead_letter(&row);
    let payload: Vec<u8> = row.get("payload");
    let mut sent = None;
    if let Some(opts) = &p.publish {
        let send = vqs::store_support::dead_letter_replay(&letter, &payload, opts, p.now);
        let result = crate::writer::sends(&mut tx, &[&send]).await?.pop();
        let result = result.unwrap_or_else(|| Err(StoreError::Database("replay was not published".into())))?;
        sqlx::query("UPDATE dead_letter_settlements SET message_id = ? WHERE id = ?")
            .bind(&result.message_id)
            .bind(p.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sent = Some(result);
    }
    tx.commit().await.map_err(db_err)?;
    Ok(DeadLetterSettled::Settled { letter: Box::new(letter), payload, sent })
}

pub(crate) async fn restore(
    conn: &mut SqliteConnection,
    letter: DeadLetterRecord,
    payload: Vec<u8>,
) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    sqlx::query(
        "INSERT INTO dead_letters \
           (id, message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, headers_json, \
            group_key, priority) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(letter.id)
    .bind(&letter.message_id)
    .bind(&letter.topic)
    .bind(&letter.consumer_group)
    .bind(&letter.content_type)
    .bind(&payload)
    .bind(&letter.error)
    .bind(i64::from(letter.attempts))
    .bind(us(letter.created_at))
    .bind(&letter.headers_json)
    .bind(&letter.group_key)
    .bind(i64::from(letter.priority))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    sqlx::query("DELETE FROM dead_letter_settlements WHERE id = ?")
        .bind(letter.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

pub(crate) async fn dead_letter_delivery(
    conn: &mut SqliteConnection,
    p: DeliveryDeadLetterParams,
) -> Result<(), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    crate::writer::finishes(&mut tx, p.execution.iter()).await?;
    let (message_id, attempts) =
        match lease_update(&mut tx, &p.lease, "state = 'dead', lease_token = NULL", us(p.lease.now)).await {
            Ok(r) => r,
            Err(e) => {
                // The attempt is closed even when the lease was lost.
                tx.commit().await.map_err(db_err)?;
                return Err(e);
            }
        };
    sqlx::query(
        "INSERT INTO dead_letters \
           (message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, headers_json) \
         SELECT id, topic, ?, content_type, payload, ?, ?, ?, headers_json FROM messages WHERE id = ?",
    )
    .bind(&p.lease.consumer_group)
    .bind(&p.reason)
    .bind(attempts)
    .bind(us(p.lease.now))
    .bind(&message_id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

pub(crate) async fn dead_letter_list(
    read: &SqlitePool,
    p: DeadLetterListParams,
) -> Result<Vec<DeadLetterRecord>, StoreError> {
    let limit = p.limit;
    let rows = sqlx::query(
        "SELECT id, message_id, topic, consumer_group, content_type, substr(payload, 1, ?2) AS payload, \
         length(payload) AS payload_bytes, error, attempts, created_at, group_key, priority \
         FROM dead_letters ORDER BY id DESC LIMIT ?1",
    )
    .bind(i64::from(if limit == 0 { 100 } else { limit }))
    .bind(i64::from(PAYLOAD_PREVIEW_BYTES))
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(dead_letter).collect())
}

pub(crate) async fn dead_letter_get(
    read: &SqlitePool,
    p: DeadLetterGetParams,
) -> Result<Option<DeadLetterRecord>, StoreError> {
    let id = p.id;
    let row = sqlx::query(
        "SELECT id, message_id, topic, consumer_group, content_type, payload, length(payload) AS payload_bytes, \
         error, attempts, created_at, group_key, priority FROM dead_letters WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(read)
    .await
    .map_err(db_err)?;
    Ok(row.as_ref().map(dead_letter))
}

pub(crate) async fn dead_letter_delete(writer: &Writer, p: DeadLetterDeleteParams) -> Result<bool, StoreError> {
    let id = p.id;
    writer
        .run(move |c| {
            async move {
                let r = sqlx::query("DELETE FROM dead_letters WHERE id = ?")
                    .bind(id)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                Ok(r.rows_affected() > 0)
            }
            .boxed()
        })
        .await
}

pub(crate) async fn dead_letter_insert(writer: &Writer, p: DeadLetterInsertParams) -> Result<i64, StoreError> {
    writer
        .run(move |c| {
            async move {
                let row = sqlx::query(
                    "INSERT INTO dead_letters \
                       (message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, \
                        headers_json) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(&p.message_id)
                .bind(&p.topic)
                .bind(&p.consumer_group)
                .bind(&p.content_type)
                .bind(&p.payload)
                .bind(&p.error)
                .bind(i64::from(p.attempts))
                .bind(us(p.now))
                .bind(&p.headers_json)
                .fetch_one(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(row.get(0))
            }
            .boxed()
        })
        .await
}
