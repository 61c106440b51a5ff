//! Cron runs and named locks.

use futures::FutureExt;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

pub(crate) async fn cron_run_start(writer: &Writer, p: CronRunStartParams) -> Result<Option<i64>, StoreError> {
    writer
        .run(move |c| {
            async move {
                let row = sqlx::query(
                    "INSERT INTO cron_runs (path, schedule, scheduled_at, started_at, outcome) VALUES (?, ?, ?, ?, 'running') \
                     ON CONFLICT (path, schedule, scheduled_at) DO NOTHING RETURNING id",
                )
                .bind(&p.path)
                .bind(&p.schedule)
                .bind(us(p.scheduled_at))
                .bind(us(p.now))
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(row.map(|r| r.get(0)))
            }
            .boxed()
        })
        .await
}

pub(crate) async fn cron_run_finish(writer: &Writer, p: CronRunFinishParams) -> Result<(), StoreError> {
    writer
        .run(move |c| {
            async move {
                sqlx::query(
                    "UPDATE cron_runs SET finished_at = ?1, duration_ms = (?1 - started_at) / 1000, status_code = ?2, \
                     outcome = ?3, error = ?4 WHERE id = ?5",
                )
                .bind(us(p.now))
                .bind(p.status_code.map(i64::from))
                .bind(if p.success { "success" } else { "failed" })
                .bind(&p.error)
                .bind(p.id)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(())
            }
            .boxed()
        })
        .await
}

pub(crate) async fn cron_run_list(read: &SqlitePool, p: CronRunListParams) -> Result<Vec<CronRunRecord>, StoreError> {
    let (path, limit) = (p.path.as_deref(), p.limit);
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("SELECT {CRON_RUN_COLUMNS} FROM cron_runs r WHERE 1 = 1"));
    if let Some(path) = path {
        q.push(" AND path = ").push_bind(path);
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(if limit == 0 { 100 } else { limit }));
    let rows = q.build().fetch_all(read).await.map_err(db_err)?;
    Ok(rows.iter().map(cron_run).collect())
}

pub(crate) async fn cron_run_summary(
    read: &SqlitePool,
    _: CronRunSummaryParams,
) -> Result<Vec<CronRunSummary>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {CRON_RUN_COLUMNS}, s.last_success FROM cron_runs r JOIN \
           (SELECT MAX(id) AS id, MAX(CASE WHEN outcome = 'success' THEN finished_at END) AS last_success \
            FROM cron_runs GROUP BY path, schedule) s ON s.id = r.id ORDER BY r.path, r.schedule"
    ))
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| {
            let run = cron_run(r);
            CronRunSummary {
                path: run.path.clone(),
                schedule: run.schedule.clone(),
                last_success_at: r.get::<Option<i64>, _>("last_success").map(time),
                last_run: Some(run),
            }
        })
        .collect())
}

pub(crate) async fn cron_lock_acquire(writer: &Writer, p: CronLockParams) -> Result<bool, StoreError> {
    writer
        .run(move |c| {
            async move {
                let now = us(p.now);
                let row = sqlx::query(
                    "INSERT INTO cron_locks (name, owner, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                     WHERE cron_locks.expires_at <= ?4 RETURNING owner",
                )
                .bind(&p.name)
                .bind(&p.owner)
                .bind(now + i64::from(p.ttl_seconds) * US_PER_S)
                .bind(now)
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(row.is_some())
            }
            .boxed()
        })
        .await
}

pub(crate) async fn cron_lock_release(writer: &Writer, p: CronLockReleaseParams) -> Result<bool, StoreError> {
    let (name, owner) = (p.name.as_str(), p.owner.as_str());
    let (name, owner) = (name.to_owned(), owner.to_owned());
    writer
        .run(move |c| {
            async move {
                let r = sqlx::query("DELETE FROM cron_locks WHERE name = ? AND owner = ?")
                    .bind(&name)
                    .bind(&owner)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                Ok(r.rows_affected() > 0)
            }
            .boxed()
        })
        .await
}

pub(crate) async fn cron_lock_extend(writer: &Writer, p: CronLockExtendParams) -> Result<bool, StoreError> {
    writer
        .run(move |c| {
            async move {
                let r = sqlx::query("UPDATE cron_locks SET expires_at = ?3 WHERE name = ?1 AND owner = ?2")
                    .bind(&p.name)
                    .bind(&p.owner)
                    .bind(us(p.now) + i64::from(p.ttl_seconds) * US_PER_S)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                Ok(r.rows_affected() > 0)
            }
            .boxed()
        })
        .await
}
