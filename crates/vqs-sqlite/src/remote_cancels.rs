//! Cancels of messages that live in another queue service (Vercel's): recorded here, read
//! by the consumer when a delivery of one arrives.

use futures::FutureExt;
use sqlx::{Connection, SqlitePool};
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

pub(crate) async fn remote_cancel_record(writer: &Writer, p: RemoteCancelParams) -> Result<bool, StoreError> {
    writer
        .run(move |c| {
            async move {
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                sqlx::query("DELETE FROM remote_cancels WHERE expires_at <= ?")
                    .bind(us(p.now))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                let added = sqlx::query(
                    "INSERT INTO remote_cancels (message_id, reason, expires_at) VALUES (?, ?, ?) \
                     ON CONFLICT (message_id) DO NOTHING",
                )
                .bind(&p.message_id)
                .bind(&p.reason)
                .bind(us(p.expires_at))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                tx.commit().await.map_err(db_err)?;
                Ok(added == 1)
            }
            .boxed()
        })
        .await
}

pub(crate) async fn remote_cancel_get(
    read: &SqlitePool,
    p: RemoteCancelGetParams,
) -> Result<Option<String>, StoreError> {
    use sqlx::Row;
    let row = sqlx::query("SELECT reason FROM remote_cancels WHERE message_id = ?")
        .bind(&p.message_id)
        .fetch_optional(read)
        .await
        .map_err(db_err)?;
    Ok(row.map(|r| r.get(0)))
}
