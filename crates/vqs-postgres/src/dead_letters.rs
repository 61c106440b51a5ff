//! Dead letters: listing, reading, keeping one (a delivery's last attempt, or a message of
//! another queue service), and operator actions on one (replay, discard): one transaction that records the
//! action (`dead_letter_settlements`, keyed by the dead letter's id), takes the dead letter
//! out and, for a replay, publishes its message. Of concurrent actions on one dead letter
//! the first to record wins (the others wait on its key, then read what it did).

use sqlx::Row;
use sqlx::postgres::PgPool;
use vqs::store::{
    DEAD_LETTER_SETTLEMENT_RETENTION_SECONDS, DeadLetterRecord, DeadLetterSettleParams, DeadLetterSettled, StoreError,
};

use crate::publish::enqueue_in;
use crate::rows::{db_err, dead_letter};
use vqs::store::*;

pub(crate) async fn settle(pool: &PgPool, p: DeadLetterSettleParams) -> Result<DeadLetterSettled, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("DELETE FROM dead_letter_settlements WHERE settled_at < $1")
        .bind(p.now - chrono::Duration::seconds(DEAD_LETTER_SETTLEMENT_RETENTION_SECONDS))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let claimed = sqlx::query(
        "INSERT INTO dead_letter_settlements (id, action, settled_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(p.id)
    .bind(p.action.past_tense())
    .bind(p.now)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected()
        == 1;
    if !claimed {
        let r = sqlx::query("SELECT action, settled_at, message_id FROM dead_letter_settlements WHERE id = $1")
            .bind(p.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        // Gone between the two statements (a failed replay put it back): nothing settled it.
        let Some(r) = r else { return Ok(DeadLetterSettled::NotFound) };
        return vqs::store_support::already_settled(r.get(0), r.get(1), r.get(2));
    }
    let row = sqlx::query(
        "DELETE FROM dead_letters WHERE id = $1 RETURNING id, message_id, topic, consumer_group, content_type, payload, \
         octet_length(payload) AS payload_bytes, \
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
        let result = enqueue_in(&mut tx, send).await?;
        sqlx::query("UPDATE dead_letter_settlements SET message_id = $1 WHERE id = $2")
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

pub(crate) async fn restore(pool: &PgPool, letter: DeadLetterRecord, payload: Vec<u8>) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query(
        "INSERT INTO dead_letters \
           (id, message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, headers_json, \
            group_key, priority) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
    )
    .bind(letter.id)
    .bind(&letter.message_id)
    .bind(&letter.topic)
    .bind(&letter.consumer_group)
    .bind(&letter.content_type)
    .bind(&payload)
    .bind(&letter.error)
    .bind(letter.attempts as i32)
    .bind(letter.created_at)
    .bind(&letter.headers_json)
    .bind(&letter.group_key)
    .bind(letter.priority)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    sqlx::query("DELETE FROM dead_letter_settlements WHERE id = $1")
        .bind(letter.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

pub(crate) async fn dead_letter_list(
    pool: &PgPool,
    p: DeadLetterListParams,
) -> Result<Vec<DeadLetterRecord>, StoreError> {
    let limit = p.limit;
    let rows = sqlx::query(
        "SELECT id, message_id, topic, consumer_group, content_type, substring(payload FROM 1 FOR $2) AS payload, \
         octet_length(payload) AS payload_bytes, error, attempts, created_at, group_key, priority \
         FROM dead_letters ORDER BY id DESC LIMIT $1",
    )
    .bind(i64::from(if limit == 0 { 100 } else { limit }))
    .bind(PAYLOAD_PREVIEW_BYTES as i32)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(dead_letter).collect())
}

pub(crate) async fn dead_letter_get(
    pool: &PgPool,
    p: DeadLetterGetParams,
) -> Result<Option<DeadLetterRecord>, StoreError> {
    let id = p.id;
    let row = sqlx::query(
        "SELECT id, message_id, topic, consumer_group, content_type, payload, octet_length(payload) AS payload_bytes, \
         error, attempts, created_at, group_key, priority FROM dead_letters WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    Ok(row.as_ref().map(dead_letter))
}

pub(crate) async fn dead_letter_delete(pool: &PgPool, p: DeadLetterDeleteParams) -> Result<bool, StoreError> {
    let id = p.id;
    let r = sqlx::query("DELETE FROM dead_letters WHERE id = $1").bind(id).execute(pool).await.map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

pub(crate) async fn dead_letter_insert(pool: &PgPool, p: DeadLetterInsertParams) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO dead_letters \
           (message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, headers_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(&p.message_id)
    .bind(&p.topic)
    .bind(&p.consumer_group)
    .bind(&p.content_type)
    .bind(&p.payload)
    .bind(&p.error)
    .bind(i32::try_from(p.attempts).unwrap_or(i32::MAX))
    .bind(p.now)
    .bind(&p.headers_json)
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok(row.get(0))
}
