//! Executions (attempts) and checkpoints.

use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use vqs::store::*;

use crate::rows::*;

pub(crate) async fn execution_list(pool: &PgPool, p: ExecutionListParams) -> Result<Vec<ExecutionRecord>, StoreError> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT id, topic, message_id, consumer_group, attempt, status, started_at, finished_at, duration_ms, error \
         FROM job_executions WHERE TRUE",
    );
    if let Some(t) = &p.topic {
        q.push(" AND topic = ").push_bind(t);
    }
    if let Some(s) = p.status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some(m) = &p.message_id {
        q.push(" AND message_id = ").push_bind(m);
    }
    if let Some(g) = &p.consumer_group {
        q.push(" AND consumer_group = ").push_bind(g);
    }
    if let Some(before) = p.before_id {
        // The primary key, walked backwards from the cursor: no OFFSET.
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(if p.limit == 0 { 100 } else { p.limit }));
    let rows = q.build().fetch_all(pool).await.map_err(db_err)?;
    Ok(rows.iter().map(execution).collect())
}

pub(crate) async fn checkpoint_get(
    pool: &PgPool,
    p: CheckpointGetParams,
) -> Result<Option<serde_json::Value>, StoreError> {
    let (message_id, consumer_group) = (p.message_id.as_str(), p.consumer_group.as_str());
    let row = sqlx::query("SELECT value FROM checkpoints WHERE message_id = $1 AND consumer_group = $2")
        .bind(message_id)
        .bind(consumer_group)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?;
    match row {
        None => Ok(None),
        Some(r) => serde_json::from_str(r.get::<&str, _>(0))
            .map(Some)
            .map_err(|e| StoreError::Database(format!("corrupt checkpoint: {e}"))),
    }
}

pub(crate) async fn checkpoint_put(pool: &PgPool, p: CheckpointPutParams) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO checkpoints (message_id, consumer_group, value, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (message_id, consumer_group) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
    )
    .bind(&p.message_id)
    .bind(&p.consumer_group)
    .bind(p.value.to_string())
    .bind(p.now)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn execution_close_outlived(pool: &PgPool, p: OutlivedParams) -> Result<u64, StoreError> {
    // Walks `job_executions_started` over the window only; a delivery row here means this
    // database leases the message, and `maintenance_run` owns that attempt.
    let closed = sqlx::query(
        "UPDATE job_executions e SET status = 'failed', finished_at = $1, \
         duration_ms = (EXTRACT(EPOCH FROM ($1 - e.started_at)) * 1000)::BIGINT, error = $2 \
         WHERE e.id IN (SELECT r.id FROM job_executions r \
                        WHERE r.started_at >= $3 AND r.started_at < $4 AND r.finished_at IS NULL \
                          AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = r.message_id \
                                          AND d.consumer_group = r.consumer_group) \
                        LIMIT $5) \
           AND e.finished_at IS NULL",
    )
    .bind(p.now)
    .bind(OUTLIVED_ERROR)
    .bind(p.started_after)
    .bind(p.started_before)
    .bind(i64::from(p.limit.max(1)))
    .execute(pool)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(closed)
}
