//! Process heartbeats and the rescue of a dead process's leases.

use futures::FutureExt;
use sqlx::Connection;
use vqs::store::*;

use crate::rows::*;
use crate::writer::Writer;

pub(crate) async fn process_beat(writer: &Writer, p: ProcessBeatParams) -> Result<bool, StoreError> {
    writer
        .run(move |c| {
            async move {
                let r = sqlx::query("UPDATE processes SET heartbeat_at = ?2 WHERE id = ?1")
                    .bind(&p.process_id)
                    .bind(us(p.now))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                if r.rows_affected() > 0 {
                    return Ok(true);
                }
                sqlx::query(
                    "INSERT INTO processes (id, started_at, heartbeat_at) VALUES (?1, ?2, ?2) \
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                )
                .bind(&p.process_id)
                .bind(us(p.now))
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(false)
            }
            .boxed()
        })
        .await
}

pub(crate) async fn process_rescue(writer: &Writer, p: ProcessRescueParams) -> Result<ProcessRescueReport, StoreError> {
    writer
        .run(move |c| {
            async move {
                // One transaction (BEGIN IMMEDIATE: processes sharing the file take turns),
                // so a beat lands either before it (and the process is not presumed dead)
                // or after it.
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                let (dead_before, now) = (us(p.dead_before), us(p.now));
                let dead: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM processes WHERE heartbeat_at < ?1 AND id <> ?2")
                        .bind(dead_before)
                        .bind(&p.rescuer)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_err)?;
                if dead == 0 {
                    return Ok(ProcessRescueReport::default());
                }
                let r = sqlx::query(
                    "UPDATE deliveries SET visible_at = ?3, updated_at = ?3 \
                     WHERE state = 'leased' AND visible_at > ?3 AND lease_holder IN \
                     (SELECT id FROM processes WHERE heartbeat_at < ?1 AND id <> ?2)",
                )
                .bind(dead_before)
                .bind(&p.rescuer)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                sqlx::query("DELETE FROM processes WHERE heartbeat_at < ?1 AND id <> ?2")
                    .bind(dead_before)
                    .bind(&p.rescuer)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(ProcessRescueReport { processes: dead as u64, deliveries: r.rows_affected() })
            }
            .boxed()
        })
        .await
}
