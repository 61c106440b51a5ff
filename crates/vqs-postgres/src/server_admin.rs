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

/// How old a test database must be before [`create_test_database`] takes it for a leftover.
const STALE_TEST_DATABASE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Create a fresh test database `vqs_test_<unix seconds>_<uuid>` on the server at
/// `server_url` and return its URL. Test processes cannot drop their databases on exit, so
/// the first call in each process drops the leftovers of earlier runs instead: every
/// `vqs_test_<seconds>_*` database created more than an hour ago that no session is using.
/// (Hundreds of forgotten databases slow every checkpoint of a developer's server.)
pub async fn create_test_database(server_url: &str) -> Result<String, StoreError> {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    if !SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        let cutoff = now.saturating_sub(STALE_TEST_DATABASE).as_secs();
        if let Err(e) = drop_stale_test_databases(server_url, cutoff).await {
            tracing::warn!(error = %e, "could not drop earlier runs' test databases");
        }
    }
    let name = format!("vqs_test_{}_{}", now.as_secs(), uuid::Uuid::new_v4().simple());
    crate::create_database(server_url, &name).await
}

/// Drop the `vqs_test_<seconds>_*` databases created before `cutoff` (unix seconds) that no
/// session is connected to. Returns how many went.
pub async fn drop_stale_test_databases(server_url: &str, cutoff: u64) -> Result<usize, StoreError> {
    let mut admin = admin(server_url).await?;
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT datname FROM pg_database d WHERE datname LIKE 'vqs\\_test\\_%' \
         AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
    )
    .fetch_all(&mut admin)
    .await
    .map_err(|e| StoreError::Database(e.to_string()))?;
    let mut dropped = 0;
    for (name,) in names {
        let created = name.strip_prefix("vqs_test_").and_then(|rest| rest.split('_').next()?.parse::<u64>().ok());
        if created.is_none_or(|t| t >= cutoff) || valid_name(&name).is_err() {
            continue;
        }
        // Without FORCE: a database someone connected to meanwhile stays.
        if sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut admin).await.is_ok() {
            dropped += 1;
        }
    }
    let _ = admin.close().await;
    Ok(dropped)
}
