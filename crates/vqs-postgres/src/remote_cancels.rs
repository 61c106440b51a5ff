//! Cancels of messages that live in another queue service (Vercel's): recorded here, read
//! by the consumer when a delivery of one arrives.

use sqlx::{PgPool, Row};
use vqs::store::*;

use crate::rows::*;

pub(crate) async fn remote_cancel_record(pool: &PgPool, p: RemoteCancelParams) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("DELETE FROM remote_cancels WHERE expires_at <= $1")
        .bind(p.now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let added = sqlx::query(
        "INSERT INTO remote_cancels (message_id, reason, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&p.message_id)
    .bind(&p.reason)
    .bind(p.expires_at)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    tx.commit().await.map_err(db_err)?;
    Ok(added == 1)
}

pub(crate) async fn remote_cancel_get(pool: &PgPool, p: RemoteCancelGetParams) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT reason FROM remote_cancels WHERE message_id = $1")
        .bind(&p.message_id)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?;
    Ok(row.map(|r| r.get(0)))
}
