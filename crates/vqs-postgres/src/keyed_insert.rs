//! One message inserted unless its idempotency key is held: the statement both a send
//! (`publish`) and a replace that hands the key to a new message (`replace`) run.

use sqlx::postgres::PgConnection;
use vqs::store::{MessageSendParams, StoreError, new_message_id_at};

use crate::rows::{db_err, secs};

/// Insert one message (with its key, if any); `None` when the key is held by another.
pub(crate) async fn insert_keyed(conn: &mut PgConnection, p: &MessageSendParams) -> Result<Option<String>, StoreError> {
    let id = new_message_id_at(p.now);
    let inserted = sqlx::query(
        "INSERT INTO messages (id, topic, payload, content_type, headers_json, idempotency_key, created_at, deliver_at, expires_at, only_group, group_key, priority) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (topic, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
    )
    .bind(&id)
    .bind(&p.topic)
    .bind(&p.payload)
    .bind(&p.content_type)
    .bind(&p.headers_json)
    .bind(&p.idempotency_key)
    .bind(p.now)
    .bind(p.now + secs(p.delay_seconds))
    .bind(p.now + secs(p.retention_seconds))
    .bind(&p.only_group)
    .bind(&p.group_key)
    .bind(p.priority)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(inserted.map(|_| id))
}
