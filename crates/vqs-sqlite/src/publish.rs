//! Publishing and reading messages.

use futures::FutureExt;
use sqlx::{Connection, Row, SqlitePool};
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

pub(crate) async fn message_send_many(
    writer: &Writer,
    p: MessageSendManyParams,
) -> Result<Vec<SendResult>, StoreError> {
    let p = p.messages;
    writer
        .run(move |c| {
            async move {
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                let all: Vec<&MessageSendParams> = p.iter().collect();
                let sent = crate::writer::sends(&mut tx, &all).await?.into_iter().collect::<Result<Vec<_>, _>>()?;
                tx.commit().await.map_err(db_err)?;
                Ok(sent)
            }
            .boxed()
        })
        .await
}

pub(crate) async fn message_ids_by_key(
    read: &SqlitePool,
    p: MessageKeyLookupParams,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT id FROM messages WHERE idempotency_key = ? AND idempotency_key IS NOT NULL \
         ORDER BY created_at DESC, id DESC LIMIT ?",
    )
    .bind(&p.key)
    .bind(i64::from(p.limit))
    .fetch_all(read)
    .await
    .map_err(db_err)
}

pub(crate) async fn message_get(read: &SqlitePool, p: MessageGetParams) -> Result<Option<MessageRecord>, StoreError> {
    let id = p.id.as_str();
    let Some(m) = sqlx::query(
        "SELECT id, topic, payload, content_type, idempotency_key, created_at, expires_at, group_key, priority FROM messages WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(read)
    .await
    .map_err(db_err)?
    else {
        return Ok(None);
    };
    let deliveries = sqlx::query(
        "SELECT consumer_group, state, delivery_count, visible_at, attempts FROM deliveries WHERE message_id = ? ORDER BY consumer_group",
    )
    .bind(id)
    .fetch_all(read)
    .await
    .map_err(db_err)?
    .iter()
    .map(|r| DeliveryRecord {
        consumer_group: r.get(0),
        state: DeliveryState::parse(r.get(1)).unwrap_or(DeliveryState::Pending),
        delivery_count: r.get::<i64, _>(2) as u32,
        attempts: r.get::<i64, _>(4) as u32,
        visible_at: time(r.get(3)),
    })
    .collect();
    let content_type: String = m.get("content_type");
    Ok(Some(MessageRecord {
        id: m.get("id"),
        topic: m.get("topic"),
        payload: payload_json(m.get::<&[u8], _>("payload"), &content_type),
        content_type,
        created_at: time(m.get("created_at")),
        expires_at: time(m.get("expires_at")),
        idempotency_key: m.get("idempotency_key"),
        group_key: m.get("group_key"),
        priority: m.get::<i64, _>("priority") as i16,
        deliveries,
    }))
}

pub(crate) async fn message_list(read: &SqlitePool, p: MessageListParams) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT m.id FROM messages m WHERE m.topic = ? AND (EXISTS (SELECT 1 FROM deliveries d \
         WHERE d.message_id = m.id AND d.state IN ('pending', 'leased')) OR NOT EXISTS (SELECT 1 \
         FROM deliveries d WHERE d.message_id = m.id)) ORDER BY m.created_at, m.id LIMIT ?",
    )
    .bind(p.topic)
    .bind(i64::from(p.limit))
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(crate) async fn message_run_now(writer: &Writer, p: MessageRunNowParams) -> Result<u64, StoreError> {
    writer
        .run(move |c| {
            async move {
                let done = sqlx::query(
                    "UPDATE deliveries SET visible_at = ?1, updated_at = ?1 \
                     WHERE message_id = ?2 AND state = 'pending' AND visible_at > ?1",
                )
                .bind(us(p.now))
                .bind(&p.message_id)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(done.rows_affected())
            }
            .boxed()
        })
        .await
}
