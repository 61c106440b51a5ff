//! Process heartbeats and the rescue of a dead process's leases.

use sqlx::PgPool;
use vqs::store::*;

use crate::rows::*;

pub(crate) async fn process_beat(pool: &PgPool, p: ProcessBeatParams) -> Result<bool, StoreError> {
    let r = sqlx::query("UPDATE processes SET heartbeat_at = $2 WHERE id = $1")
        .bind(&p.process_id)
        .bind(p.now)
        .execute(pool)
        .await
        .map_err(db_err)?;
    if r.rows_affected() > 0 {
        return Ok(true);
    }
    sqlx::query(
        "INSERT INTO processes (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
    )
    .bind(&p.process_id)
    .bind(p.now)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(false)
}

pub(crate) async fn process_rescue(pool: &PgPool, p: ProcessRescueParams) -> Result<ProcessRescueReport, StoreError> {
    // One transaction: the dead are forgotten only together with their leases' rescue. A
    // process that beats while this runs is not deleted (its row is re-checked after the
    // beat commits), so a live process's leases are never touched.
    let mut tx = pool.begin().await.map_err(db_err)?;
    let dead: Vec<String> =
        sqlx::query_scalar("DELETE FROM processes WHERE heartbeat_at < $1 AND id <> $2 RETURNING id")
            .bind(p.dead_before)
            .bind(&p.rescuer)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
    if dead.is_empty() {
        return Ok(ProcessRescueReport::default());
    }
    let r = sqlx::query(
        "UPDATE deliveries SET visible_at = $1, updated_at = $1 \
         WHERE state = 'leased' AND visible_at > $1 AND lease_holder = ANY($2)",
    )
    .bind(p.now)
    .bind(&dead)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(ProcessRescueReport { processes: dead.len() as u64, deliveries: r.rows_affected() })
}
