//! Cron runs and named locks.

use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use vqs::store::*;

use crate::rows::*;

pub(crate) async fn cron_run_start(pool: &PgPool, p: CronRunStartParams) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "INSERT INTO cron_runs (path, schedule, scheduled_at, started_at, outcome) VALUES ($1, $2, $3, $4, 'running') \
         ON CONFLICT (path, schedule, scheduled_at) DO NOTHING RETURNING id",
    )
    .bind(&p.path)
    .bind(&p.schedule)
    .bind(p.scheduled_at)
    .bind(p.now)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    Ok(row.map(|r| r.get(0)))
}

pub(crate) async fn cron_run_finish(pool: &PgPool, p: CronRunFinishParams) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE cron_runs SET finished_at = $1, duration_ms = (EXTRACT(EPOCH FROM ($1 - started_at)) * 1000)::BIGINT, \
         status_code = $2, outcome = $3, error = $4 WHERE id = $5",
    )
    .bind(p.now)
    .bind(p.status_code.map(i32::from))
    .bind(if p.success { "success" } else { "failed" })
    .bind(&p.error)
    .bind(p.id)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn cron_run_list(pool: &PgPool, p: CronRunListParams) -> Result<Vec<CronRunRecord>, StoreError> {
    let (path, limit) = (p.path.as_deref(), p.limit);
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {CRON_RUN_COLUMNS} FROM cron_runs r WHERE TRUE"));
    if let Some(path) = path {
        q.push(" AND path = ").push_bind(path);
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(if limit == 0 { 100 } else { limit }));
    let rows = q.build().fetch_all(pool).await.map_err(db_err)?;
    Ok(rows.iter().map(cron_run).collect())
}

pub(crate) async fn cron_run_summary(
    pool: &PgPool,
    _: CronRunSummaryParams,
) -> Result<Vec<CronRunSummary>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {CRON_RUN_COLUMNS}, s.last_success FROM cron_runs r JOIN \
           (SELECT MAX(id) AS id, MAX(finished_at) FILTER (WHERE outcome = 'success') AS last_success \
            FROM cron_runs GROUP BY path, schedule) s ON s.id = r.id ORDER BY r.path, r.schedule"
    ))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| {
            let run = cron_run(r);
            CronRunSummary {
                path: run.path.clone(),
                schedule: run.schedule.clone(),
                last_success_at: r.get("last_success"),
                last_run: Some(run),
            }
        })
        .collect())
}

pub(crate) async fn cron_lock_acquire(pool: &PgPool, p: CronLockParams) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "INSERT INTO cron_locks (name, owner, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at \
         WHERE cron_locks.expires_at <= $4 RETURNING owner",
    )
    .bind(&p.name)
    .bind(&p.owner)
    .bind(p.now + secs(p.ttl_seconds))
    .bind(p.now)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    Ok(row.is_some())
}

pub(crate) async fn cron_lock_release(pool: &PgPool, p: CronLockReleaseParams) -> Result<bool, StoreError> {
    let (name, owner) = (p.name.as_str(), p.owner.as_str());
    let r = sqlx::query("DELETE FROM cron_locks WHERE name = $1 AND owner = $2")
        .bind(name)
        .bind(owner)
        .execute(pool)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

pub(crate) async fn cron_lock_extend(pool: &PgPool, p: CronLockExtendParams) -> Result<bool, StoreError> {
    let r = sqlx::query("UPDATE cron_locks SET expires_at = $3 WHERE name = $1 AND owner = $2")
        .bind(&p.name)
        .bind(&p.owner)
        .bind(p.now + secs(p.ttl_seconds))
        .execute(pool)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}
