//! What benchmarks and tools ask of the server itself: drop a throwaway database that
//! [`crate::create_database`] made, force a checkpoint.

use sqlx::Connection;
use vqs::StoreError;

fn valid_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::Database(format!("invalid database name {name:?}: use letters, digits and _")));
    }
    Ok(())
}

async fn admin(server_url: &str) -> Result<sqlx::PgConnection, StoreError> {
    let base = server_url.trim_end_matches('/');
    sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .map_err(|e| StoreError::Database(format!("PostgreSQL at {base} is unreachable: {e}")))
}

/// Run `CHECKPOINT` on the server at `server_url` (a superuser, or a member of
/// `pg_checkpoint`): write out every dirty buffer now, so that no checkpoint of earlier
/// writes (a bulk load, say) lands inside the measurement that follows.
pub async fn checkpoint(server_url: &str) -> Result<(), StoreError> {
    let mut admin = admin(server_url).await?;
    let done = sqlx::query("CHECKPOINT").execute(&mut admin).await.map_err(|e| StoreError::Database(e.to_string()));
    let _ = admin.close().await;
    done.map(|_| ())
}

/// Drop database `name` on the server at `server_url` (`postgres://user@host:port`, no
/// database), closing its connections first (`WITH (FORCE)`). Nothing happens when there is
/// no such database. The counterpart of [`crate::create_database`], for a benchmark that
/// makes a fresh database per measurement and must not leave them behind.
pub async fn drop_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    valid_name(name)?;
    let mut admin = admin(server_url).await?;
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .map_err(|e| StoreError::Database(e.to_string()));
    let _ = admin.close().await;
    dropped.map(|_| ())
}
