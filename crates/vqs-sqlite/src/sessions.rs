//! Revoked dashboard sessions.

use futures::FutureExt;
use sqlx::{Connection, SqlitePool};
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

pub(crate) async fn session_revoke(writer: &Writer, p: SessionRevokeParams) -> Result<(), StoreError> {
    writer
        .run(move |c| {
            async move {
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                sqlx::query("DELETE FROM revoked_sessions WHERE expires_at <= ?")
                    .bind(us(p.now))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                sqlx::query(
                    "INSERT INTO revoked_sessions (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
                )
                .bind(&p.nonce)
                .bind(us(p.expires_at))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }
            .boxed()
        })
        .await
}

pub(crate) async fn session_revoked(read: &SqlitePool, p: SessionRevokedParams) -> Result<bool, StoreError> {
    let nonce = p.nonce.as_str();
    let row = sqlx::query("SELECT 1 FROM revoked_sessions WHERE nonce = ?")
        .bind(nonce)
        .fetch_optional(read)
        .await
        .map_err(db_err)?;
    Ok(row.is_some())
}
