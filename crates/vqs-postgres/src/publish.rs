//! Publishing and reading messages: one message inside any transaction (`enqueue_in`),
//! many in one (`message_send_many`, `insert_plain`, which the writer's batches use too).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::Row;
use sqlx::postgres::PgConnection;
use vqs::store::*;

use crate::keyed_insert::insert_keyed;
use crate::rows::db_err;

/// How many times a keyed send tries again when its key changed hands under it.
const SETTLE_ROUNDS: usize = 64;

/// Messages per multi-row insert of `message_send_many`.
const SEND_MANY_CHUNK: usize = 5000;
use crate::rows::secs;

/// Publish inside the caller's transaction (or on any connection): the message exists if
/// and only if the transaction commits. With `on_duplicate: Replace` the replace of the
/// key's message (or the new message that takes its key) commits or rolls back with it too.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool, queue: vqs::Queue) -> Result<(), Box<dyn std::error::Error>> {
/// # struct SendInvoice;
/// # impl vqs::Jobbable for SendInvoice { type Params = i64; const TOPIC: &'static str = "send-invoice";
/// #   async fn perform(&self, _: i64, _: vqs::JobContext) -> Result<(), vqs::JobError> { Ok(()) } }
/// let mut tx = pool.begin().await?;
/// // … write the invoice …
/// let prepared = queue.job(SendInvoice).prepare(7, Default::default())?;
/// vqs_postgres::enqueue_in(&mut tx, prepared).await?;
/// tx.commit().await?; // the job is queued now, or never
/// # Ok(()) }
/// ```
pub async fn enqueue_in(conn: &mut PgConnection, p: MessageSendParams) -> Result<SendResult, StoreError> {
    // Two rounds settle a skip (an expired original releases its key, then the insert
    // goes in); a replace may find the key moved by a concurrent one and go round again.
    // Every round some send of the key wins, so a send racing K others settles within about
    // K rounds. The bound was 8, and 16 replaces of one key racing a claimer ran out of
    // rounds about once in 30 runs (`replaces_racing_claims_never_run_a_replaced_payload`).
    for _ in 0..SETTLE_ROUNDS {
        if let Some(id) = insert_keyed(conn, &p).await? {
            return Ok(SendResult { message_id: id, duplicate: false, replaced: false });
        }
        let original = sqlx::query("SELECT id, expires_at FROM messages WHERE topic = $1 AND idempotency_key = $2")
            .bind(&p.topic)
            .bind(&p.idempotency_key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        match original {
            Some(r) if r.get::<DateTime<Utc>, _>(1) > p.now => {
                let original: String = r.get(0);
                if p.on_duplicate == OnDuplicate::Replace {
                    match crate::replace::replace_held(conn, &p, &original).await? {
                        Some(done) => return Ok(done),
                        // The key moved meanwhile: look again.
                        None => continue,
                    }
                }
                return Ok(SendResult { message_id: original, duplicate: true, replaced: false });
            }
            // The original expired: its key no longer dedups. Release it and insert again.
            Some(r) => {
                sqlx::query("UPDATE messages SET idempotency_key = NULL WHERE id = $1")
                    .bind(r.get::<String, _>(0))
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
            }
            None => {}
        }
    }
    Err(StoreError::Database(format!(
        "idempotent insert did not settle: the key {:?} of topic {:?} changed hands {SETTLE_ROUNDS} times while \
         this send tried it (that many sends of one key at once); send again",
        p.idempotency_key.as_deref().unwrap_or_default(),
        p.topic
    )))
}

pub(crate) async fn message_send_many(pool: &PgPool, p: MessageSendManyParams) -> Result<Vec<SendResult>, StoreError> {
    let p = p.messages;
    let mut tx = pool.begin().await.map_err(db_err)?;
    let mut out: Vec<Option<SendResult>> = vec![None; p.len()];
    let (plain, keyed): (Vec<_>, Vec<_>) = p.iter().enumerate().partition(|(_, m)| m.idempotency_key.is_none());
    for chunk in plain.chunks(SEND_MANY_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|(_, m)| new_message_id_at(m.now)).collect();
        let params: Vec<&MessageSendParams> = chunk.iter().map(|(_, m)| *m).collect();
        insert_plain(&mut tx, &params, &ids).await?;
        for ((i, _), id) in chunk.iter().zip(ids) {
            out[*i] = Some(SendResult { message_id: id, duplicate: false, replaced: false });
        }
    }
    // With a key: one at a time, in order, so two sends of one key dedup (or the second
    // replaces the first) too.
    for (i, m) in keyed {
        out[i] = Some(enqueue_in(&mut tx, m.clone()).await?);
    }
    tx.commit().await.map_err(db_err)?;
    Ok(out.into_iter().flatten().collect())
}

/// Walks the partial index of keys (by its second column), not the messages table.
pub(crate) async fn message_ids_by_key(pool: &PgPool, p: MessageKeyLookupParams) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT id FROM messages WHERE idempotency_key = $1 AND idempotency_key IS NOT NULL \
         ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(&p.key)
    .bind(i64::from(p.limit))
    .fetch_all(pool)
    .await
    .map_err(db_err)
}

pub(crate) async fn message_get(pool: &PgPool, p: MessageGetParams) -> Result<Option<MessageRecord>, StoreError> {
    let id = p.id.as_str();
    let Some(m) = sqlx::query(
        "SELECT id, topic, payload, content_type, idempotency_key, created_at, expires_at, group_key, priority FROM messages WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?
    else {
        return Ok(None);
    };
    let deliveries = sqlx::query(
        "SELECT consumer_group, state, delivery_count, visible_at, attempts FROM deliveries WHERE message_id = $1 ORDER BY consumer_group",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(db_err)?
    .iter()
    .map(|r| DeliveryRecord {
        consumer_group: r.get(0),
        state: DeliveryState::parse(r.get(1)).unwrap_or(DeliveryState::Pending),
        delivery_count: r.get::<i32, _>(2) as u32,
        attempts: r.get::<i32, _>(4) as u32,
        visible_at: r.get(3),
    })
    .collect();
    let content_type: String = m.get("content_type");
    Ok(Some(MessageRecord {
        id: m.get("id"),
        topic: m.get("topic"),
        payload: payload_json(m.get::<&[u8], _>("payload"), &content_type),
        content_type,
        created_at: m.get("created_at"),
        expires_at: m.get("expires_at"),
        idempotency_key: m.get("idempotency_key"),
        group_key: m.get("group_key"),
        priority: m.get("priority"),
        deliveries,
    }))
}

pub(crate) async fn message_list(pool: &PgPool, p: MessageListParams) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT m.id FROM messages m WHERE m.topic = $1 AND (EXISTS (SELECT 1 FROM deliveries d \
         WHERE d.message_id = m.id AND d.state IN ('pending', 'leased')) OR NOT EXISTS (SELECT 1 \
         FROM deliveries d WHERE d.message_id = m.id)) ORDER BY m.created_at, m.id LIMIT $2",
    )
    .bind(p.topic)
    .bind(i64::from(p.limit))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Messages without an idempotency key, in one statement (the fan-out trigger adds their deliveries).
pub(crate) async fn insert_plain(
    conn: &mut PgConnection,
    sends: &[&MessageSendParams],
    ids: &[String],
) -> Result<(), StoreError> {
    let col = |f: fn(&MessageSendParams) -> &str| sends.iter().map(|p| f(p)).collect::<Vec<_>>();
    let times = |f: fn(&MessageSendParams) -> DateTime<Utc>| sends.iter().map(|p| f(p)).collect::<Vec<_>>();
    let payloads: Vec<&[u8]> = sends.iter().map(|p| p.payload.as_slice()).collect();
    let headers: Vec<Option<&str>> = sends.iter().map(|p| p.headers_json.as_deref()).collect();
    let only_group: Vec<Option<&str>> = sends.iter().map(|p| p.only_group.as_deref()).collect();
    let group_key: Vec<Option<&str>> = sends.iter().map(|p| p.group_key.as_deref()).collect();
    let priority: Vec<i16> = sends.iter().map(|p| p.priority).collect();
    sqlx::query(
        "INSERT INTO messages (id, topic, payload, content_type, headers_json, created_at, deliver_at, expires_at, only_group, \
                               group_key, priority) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::timestamptz[], \
                              $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::smallint[])",
    )
    .bind(ids)
    .bind(col(|p| &p.topic))
    .bind(payloads)
    .bind(col(|p| &p.content_type))
    .bind(headers)
    .bind(times(|p| p.now))
    .bind(times(|p| p.now + secs(p.delay_seconds)))
    .bind(times(|p| p.now + secs(p.retention_seconds)))
    .bind(only_group)
    .bind(group_key)
    .bind(priority)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn message_run_now(pool: &PgPool, p: MessageRunNowParams) -> Result<u64, StoreError> {
    // Made due and announced in one statement: every process's dispatchers wake as on a
    // publish (LISTEN vqs_published), once per topic.
    // (`woken` is read by the final SELECT only so that PostgreSQL runs it.)
    let row = sqlx::query(
        "WITH due AS ( \
             UPDATE deliveries SET visible_at = $1, updated_at = $1 \
             WHERE message_id = $2 AND state = 'pending' AND visible_at > $1 \
             RETURNING topic), \
         woken AS (SELECT pg_notify('vqs_published', topic) FROM (SELECT DISTINCT topic FROM due) t) \
         SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM woken)",
    )
    .bind(p.now)
    .bind(&p.message_id)
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok(u64::try_from(row.try_get::<i64, _>(0).map_err(db_err)?).unwrap_or(0))
}
