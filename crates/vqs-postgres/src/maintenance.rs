//! Maintenance: abandoned attempts rescued (`maintenance_run`/`maintain`), and retention:
//! finished messages and old execution rows and cron runs, pruned by age and by
//! count, each step at most `batch` rows (and `SKIP LOCKED` where rows may be in use), so a
//! pass never stalls the queue.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use vqs::store::{
    ABANDONED_ERROR, MaintenanceParams, MaintenanceReport, StoreError, message_id_floor, retention_cutoff, sql_count,
};
use vqs::store_support::{CountLimitBoundaries, CountLimitBoundary};

use crate::rows::db_err;

fn cutoff(p: &MaintenanceParams, seconds: u64) -> DateTime<Utc> {
    retention_cutoff(p.now, seconds)
}

/// Whether `table` may hold more than `max` rows. Finding where a count limit falls is an
/// OFFSET walk over `max` index entries (a million by default: 0.2–0.8 s of server time);
/// a limit that large is only walked when the planner's estimate of the table's rows is
/// above it (or the table has no estimate yet), and what the walk found is remembered for a
/// while ([`CountLimitBoundary`]). Small limits are always walked: that is cheap, and exact.
async fn may_exceed(pool: &PgPool, table: &str, max: u64) -> Result<bool, StoreError> {
    if max < CountLimitBoundary::<()>::REMEMBERED_FROM {
        return Ok(true);
    }
    let estimate: Option<f32> = sqlx::query("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
        .bind(table)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
        .map(|r| r.get(0));
    Ok(estimate.is_none_or(|rows| rows < 0.0 || f64::from(rows) > max as f64))
}

/// The id of `table`'s newest row beyond its newest `limit` (`None`: it holds no more), the
/// OFFSET walk itself; `table` is one of ours, never input.
async fn newest_beyond<T>(pool: &PgPool, table: &'static str, limit: u64) -> Result<Option<T>, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    if !may_exceed(pool, table, limit).await? {
        return Ok(None);
    }
    sqlx::query(&format!("SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET $1"))
        .bind(sql_count(limit))
        .fetch_optional(pool)
        .await
        .map(|r| r.map(|r| r.get(0)))
        .map_err(db_err)
}

/// Execution rows older than the retention, then beyond the count limit (oldest first).
pub(crate) async fn prune_executions(
    pool: &PgPool,
    limits: &CountLimitBoundaries,
    p: &MaintenanceParams,
) -> Result<u64, StoreError> {
    let batch = i64::from(p.batch.max(1));
    let mut pruned = sqlx::query(
        "DELETE FROM job_executions WHERE id IN \
         (SELECT id FROM job_executions WHERE started_at < $1 AND status != 'running' ORDER BY started_at LIMIT $2)",
    )
    .bind(cutoff(p, p.execution_retention_seconds))
    .bind(batch)
    .execute(pool)
    .await
    .map_err(db_err)?
    .rows_affected();
    if p.max_executions > 0 && (pruned as i64) < batch {
        let boundary = limits
            .executions
            .get_or_walk(p.max_executions, || newest_beyond(pool, "job_executions", p.max_executions))
            .await?;
        if let Some(boundary) = boundary {
            pruned += sqlx::query(
                "DELETE FROM job_executions WHERE id IN \
                 (SELECT id FROM job_executions WHERE id <= $1 AND status != 'running' ORDER BY id LIMIT $2)",
            )
            .bind(boundary)
            .bind(batch - pruned as i64)
            .execute(pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        }
    }
    Ok(pruned)
}

/// Messages whose every delivery finished (acknowledged or dead), created before the
/// retention cut-off or beyond the count limit, with their deliveries, checkpoint and
/// progress. Ids are time-ordered, so "older than" is a primary-key range. A message with an
/// idempotency key is kept until its retention ends: its key dedups sends until then.
pub(crate) async fn prune_finished_messages(
    pool: &PgPool,
    limits: &CountLimitBoundaries,
    p: &MaintenanceParams,
) -> Result<u64, StoreError> {
    let age_floor = message_id_floor(cutoff(p, p.message_retention_seconds));
    let over_count: String = if p.max_messages > 0 {
        limits
            .messages
            .get_or_walk(p.max_messages, || newest_beyond(pool, "messages", p.max_messages))
            .await?
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mut tx = pool.begin().await.map_err(db_err)?;
    let ids: Vec<String> = sqlx::query(
        "SELECT m.id FROM messages m WHERE (m.id < $1 OR m.id <= $2) \
           AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id) \
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state IN ('pending', 'leased')) \
           AND (m.idempotency_key IS NULL OR m.expires_at <= $4) \
         ORDER BY m.id LIMIT $3 FOR UPDATE OF m SKIP LOCKED",
    )
    .bind(&age_floor)
    .bind(&over_count)
    .bind(i64::from(p.batch.max(1)))
    .bind(p.now)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?
    .iter()
    .map(|r| r.get(0))
    .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    for sql in [
        "DELETE FROM deliveries WHERE message_id = ANY($1)",
        "DELETE FROM checkpoints WHERE message_id = ANY($1)",
        "DELETE FROM job_progress WHERE message_id = ANY($1)",
    ] {
        sqlx::query(sql).bind(&ids).execute(&mut *tx).await.map_err(db_err)?;
    }
    let n = sqlx::query("DELETE FROM messages WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
    tx.commit().await.map_err(db_err)?;
    Ok(n)
}

/// Cron runs older than the retention or beyond the per-cron count limit — never a run
/// still `running`, the latest run of a cron, nor its latest success (heartbeats read them).
pub(crate) async fn prune_cron_runs(pool: &PgPool, p: &MaintenanceParams) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM cron_runs WHERE id IN (SELECT id FROM \
           (SELECT id, started_at, outcome, ROW_NUMBER() OVER (PARTITION BY path, schedule ORDER BY id DESC) AS rn \
            FROM cron_runs) r \
         WHERE r.outcome != 'running' AND (r.started_at < $1 OR ($2 > 0 AND r.rn > $2)) \
           AND r.id NOT IN (SELECT MAX(id) FROM cron_runs GROUP BY path, schedule) \
           AND r.id NOT IN (SELECT MAX(id) FROM cron_runs WHERE outcome = 'success' GROUP BY path, schedule) \
         ORDER BY r.id LIMIT $3)",
    )
    .bind(cutoff(p, p.cron_run_retention_seconds))
    .bind(sql_count(p.max_cron_runs))
    .bind(i64::from(p.batch.max(1)))
    .execute(pool)
    .await
    .map_err(db_err)?
    .rows_affected())
}

pub(crate) async fn maintenance_run(
    pool: &PgPool,
    limits: &CountLimitBoundaries,
    p: MaintenanceParams,
) -> Result<MaintenanceReport, StoreError> {
    let batch = i64::from(p.batch.max(1));
    // Attempts left `running` by a process that died: their delivery's lease ran out and
    // nobody has leased it again yet (a new lease closes them itself). Found from the
    // leases (`deliveries_leased`), so the scan covers expired leases only, not history.
    let executions_rescued = sqlx::query(
        "UPDATE job_executions e SET status = 'failed', finished_at = $1, \
         duration_ms = (EXTRACT(EPOCH FROM ($1 - e.started_at)) * 1000)::BIGINT, error = $2 \
         FROM (SELECT d.message_id, d.consumer_group FROM deliveries d \
               WHERE d.state = 'leased' AND d.visible_at <= $1 \
                 AND EXISTS (SELECT 1 FROM job_executions r WHERE r.message_id = d.message_id \
                             AND r.consumer_group = d.consumer_group AND r.finished_at IS NULL) \
               LIMIT $3 FOR UPDATE OF d SKIP LOCKED) lapsed \
         WHERE e.message_id = lapsed.message_id AND e.consumer_group = lapsed.consumer_group \
           AND e.finished_at IS NULL",
    )
    .bind(p.now)
    .bind(ABANDONED_ERROR)
    .bind(batch)
    .execute(pool)
    .await
    .map_err(db_err)?
    .rows_affected();
    let mut report = MaintenanceReport { executions_rescued, ..MaintenanceReport::default() };

    // Expired messages: unfinished deliveries become dead letters (nothing vanishes silently).
    let mut tx = pool.begin().await.map_err(db_err)?;
    let expired: Vec<String> =
        sqlx::query("SELECT id FROM messages WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED")
            .bind(p.now)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
    if !expired.is_empty() {
        sqlx::query(
            "INSERT INTO dead_letters \
               (message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, headers_json) \
             SELECT m.id, m.topic, d.consumer_group, m.content_type, m.payload, \
               'expired after its retention before it was processed', d.delivery_count, $1, m.headers_json \
             FROM deliveries d JOIN messages m ON m.id = d.message_id \
             WHERE d.message_id = ANY($2) AND d.state IN ('pending', 'leased')",
        )
        .bind(p.now)
        .bind(&expired)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        // An attempt still running when its message expires is closed with it.
        sqlx::query(
            "UPDATE job_executions SET status = 'failed', finished_at = $1, \
             duration_ms = (EXTRACT(EPOCH FROM ($1 - started_at)) * 1000)::BIGINT, error = $2 \
             WHERE message_id = ANY($3) AND finished_at IS NULL",
        )
        .bind(p.now)
        .bind(ABANDONED_ERROR)
        .bind(&expired)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for sql in [
            "DELETE FROM deliveries WHERE message_id = ANY($1)",
            "DELETE FROM checkpoints WHERE message_id = ANY($1)",
            "DELETE FROM job_progress WHERE message_id = ANY($1)",
            "DELETE FROM messages WHERE id = ANY($1)",
        ] {
            sqlx::query(sql).bind(&expired).execute(&mut *tx).await.map_err(db_err)?;
        }
    }
    tx.commit().await.map_err(db_err)?;
    report.messages_pruned = expired.len() as u64;

    report.executions_pruned = prune_executions(pool, limits, &p).await?;
    report.finished_messages_pruned = prune_finished_messages(pool, limits, &p).await?;
    let dl_cutoff = vqs::store::retention_cutoff(p.now, p.dead_letter_retention_seconds);
    report.dead_letters_pruned = sqlx::query(
        "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE created_at < $1 ORDER BY id LIMIT $2)",
    )
    .bind(dl_cutoff)
    .bind(batch)
    .execute(pool)
    .await
    .map_err(db_err)?
    .rows_affected();
    report.cron_runs_rescued = sqlx::query(
        "UPDATE cron_runs SET outcome = 'failed', finished_at = $1, \
         duration_ms = (EXTRACT(EPOCH FROM ($1 - started_at)) * 1000)::BIGINT, \
         error = 'abandoned: still running after an hour (the process died during the run)' \
         WHERE id IN (SELECT id FROM cron_runs WHERE outcome = 'running' AND started_at < $2 LIMIT $3)",
    )
    .bind(p.now)
    .bind(p.now - chrono::Duration::hours(1))
    .bind(batch)
    .execute(pool)
    .await
    .map_err(db_err)?
    .rows_affected();
    report.cron_runs_pruned = prune_cron_runs(pool, &p).await?;
    sqlx::query("DELETE FROM cron_locks WHERE expires_at <= $1").bind(p.now).execute(pool).await.map_err(db_err)?;
    fold_idle_wakeups(pool, &p).await?;
    (report.flow_group_slots_pruned, report.flow_groups_pruned) = prune_flow_groups(pool, &p).await?;
    Ok(report)
}

/// Fold the wake-ups of every consumer group that has some (at most `batch` consumer groups
/// a run), as its next grouped claim would. Only a grouped claim folds them, and a consumer
/// group whose subscription stayed grouped after its last group limit or group pause ended
/// claims in one plain statement: without this, each of its publishes and settlements would
/// leave a row in `flow_group_wakeups` until the next grouped claim, however far off. Safe at
/// any time: a fold only moves `ready_at` earlier (see `flow_groups.rs`), in group order.
async fn fold_idle_wakeups(pool: &PgPool, p: &MaintenanceParams) -> Result<(), StoreError> {
    // The distinct consumer groups, one index descent each (`flow_group_wakeups_group`).
    let groups: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE cg AS ( \
           (SELECT consumer_group FROM flow_group_wakeups ORDER BY consumer_group LIMIT 1) \
           UNION ALL \
           SELECT (SELECT w.consumer_group FROM flow_group_wakeups w WHERE w.consumer_group > cg.consumer_group \
                   ORDER BY w.consumer_group LIMIT 1) FROM cg WHERE cg.consumer_group IS NOT NULL) \
         SELECT consumer_group FROM cg WHERE consumer_group IS NOT NULL LIMIT $1",
    )
    .bind(i64::from(p.batch.max(1)))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    if groups.is_empty() {
        return Ok(());
    }
    let mut conn = pool.acquire().await.map_err(db_err)?;
    for cg in groups {
        crate::flow_groups::fold_wakeups(&mut conn, &cg).await?;
    }
    Ok(())
}

/// Expired push slots, then idle message-group rows, at most `batch` of each. A group row is
/// idle when nothing of its consumer group and key is pending or leased, no unexpired slot is
/// held and its rate bucket's `tat_us` is past — whatever its `ready_at` says: a consumer group
/// claiming without group limits never parks its groups, and their rows must still go.
///
/// Racing the users of the row, in one transaction: the candidates are locked first
/// (`SKIP LOCKED`: a group being claimed or started is skipped), and the delete checks them
/// again in its own statement, whose snapshot is taken after the locks were granted. A fold
/// that applied a publish's wake-up upserts the row, so it either committed before the lock
/// (and the delete's snapshot sees the published delivery: the row stays) or waits for this
/// transaction and recreates the row after it (`INSERT … ON CONFLICT`). A wake-up not yet
/// folded recreates the row when it is. A push's start likewise either committed first (its
/// slot or bucket seen) or comes after.
async fn prune_flow_groups(pool: &PgPool, p: &MaintenanceParams) -> Result<(u64, u64), StoreError> {
    let batch = i64::from(p.batch.max(1));
    let slots = sqlx::query(
        "DELETE FROM flow_group_slots WHERE (consumer_group, group_key, message_id) IN \
         (SELECT consumer_group, group_key, message_id FROM flow_group_slots WHERE expires_at <= $1 LIMIT $2)",
    )
    .bind(p.now)
    .bind(batch)
    .execute(pool)
    .await
    .map_err(db_err)?
    .rows_affected();
    const IDLE: &str = "(f.tat_us IS NULL OR f.tat_us <= $2) \
        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.consumer_group = f.consumer_group \
                        AND d.group_key = f.group_key AND d.state IN ('pending', 'leased')) \
        AND NOT EXISTS (SELECT 1 FROM flow_group_slots s WHERE s.consumer_group = f.consumer_group \
                        AND s.group_key = f.group_key AND s.expires_at > $1)";
    let mut tx = pool.begin().await.map_err(db_err)?;
    let (consumer_groups, keys): (Vec<String>, Vec<String>) = sqlx::query_as::<_, (String, String)>(&format!(
        "SELECT f.consumer_group, f.group_key FROM flow_groups f WHERE {IDLE} LIMIT $3 FOR UPDATE OF f SKIP LOCKED"
    ))
    .bind(p.now)
    .bind(p.now.timestamp_micros())
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?
    .into_iter()
    .unzip();
    if keys.is_empty() {
        return Ok((slots, 0));
    }
    let groups = sqlx::query(&format!(
        "DELETE FROM flow_groups f USING unnest($3::text[], $4::text[]) AS k(consumer_group, group_key) \
         WHERE f.consumer_group = k.consumer_group AND f.group_key = k.group_key AND {IDLE}"
    ))
    .bind(p.now)
    .bind(p.now.timestamp_micros())
    .bind(&consumer_groups)
    .bind(&keys)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    tx.commit().await.map_err(db_err)?;
    Ok((slots, groups))
}
