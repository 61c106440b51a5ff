//! Revoked dashboard sessions.

use sqlx::PgPool;
use vqs::store::*;

use crate::rows::*;

pub(crate) async fn session_revoke(pool: &PgPool, p: SessionRevokeParams) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("DELETE FROM revoked_sessions WHERE expires_at <= $1")
        .bind(p.now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    sqlx::query("INSERT INTO revoked_sessions (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING")
        .bind(&p.nonce)
        .bind(p.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

pub(crate) async fn session_revoked(pool: &PgPool, p: SessionRevokedParams) -> Result<bool, StoreError> {
    let nonce = p.nonce.as_str();
    let row = sqlx::query("SELECT 1 FROM revoked_sessions WHERE nonce = $1")
        .bind(nonce)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?;
    Ok(row.is_some())
}
