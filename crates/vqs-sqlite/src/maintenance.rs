//! Maintenance: abandoned attempts rescued (`maintenance_run`/`maintain`), and retention:
//! finished messages and old execution rows and cron runs, pruned by age and by
//! count, each step at most `batch` rows so a pass never holds the writer for long.

use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use vqs::store::{
    ABANDONED_ERROR, MaintenanceParams, MaintenanceReport, StoreError, message_id_floor, retention_cutoff, sql_count,
};
use vqs::store_support::CountLimitBoundaries;

use crate::rows::{US_PER_S, db_err, us};

fn cutoff(p: &MaintenanceParams, seconds: u64) -> i64 {
    us(retention_cutoff(p.now, seconds))
}

/// Where the count limits fall: the newest execution id and message id beyond them, if the
/// tables hold more. Each is an OFFSET walk over up to a limit's worth of index entries
/// (a million by default, tens of milliseconds): read through the read pool before the pass,
/// so the single writer — every job's settlement — is not held for them, and a large limit's
/// boundary is remembered for a while rather than walked at every pass
/// ([`CountLimitBoundary`](vqs::store_support::CountLimitBoundary)).
#[derive(Debug, Default)]
pub(crate) struct CountBoundaries {
    executions: Option<i64>,
    messages: Option<String>,
}

pub(crate) async fn count_boundaries(
    read: &SqlitePool,
    limits: &CountLimitBoundaries,
    p: &MaintenanceParams,
) -> Result<CountBoundaries, StoreError> {
    let mut b = CountBoundaries::default();
    if p.max_executions > 0 {
        b.executions = limits
            .executions
            .get_or_walk(p.max_executions, || newest_beyond(read, "job_executions", p.max_executions))
            .await?;
    }
    if p.max_messages > 0 {
        b.messages =
            limits.messages.get_or_walk(p.max_messages, || newest_beyond(read, "messages", p.max_messages)).await?;
    }
    Ok(b)
}

/// The id of `table`'s newest row beyond its newest `limit` (`None`: it holds no more), the
/// OFFSET walk itself; `table` is one of ours, never input.
async fn newest_beyond<T>(read: &SqlitePool, table: &'static str, limit: u64) -> Result<Option<T>, StoreError>
where
    T: for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite> + Send + Unpin,
{
    sqlx::query(&format!("SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET ?"))
        .bind(sql_count(limit))
        .fetch_optional(read)
        .await
        .map(|r| r.map(|r| r.get(0)))
        .map_err(db_err)
}

/// Execution rows older than the retention, then beyond the count limit (oldest first).
pub(crate) async fn prune_executions(
    conn: &mut SqliteConnection,
    p: &MaintenanceParams,
    counts: &CountBoundaries,
) -> Result<u64, StoreError> {
    let batch = i64::from(p.batch.max(1));
    let mut pruned = sqlx::query(
        "DELETE FROM job_executions WHERE id IN \
         (SELECT id FROM job_executions WHERE started_at < ? AND status != 'running' ORDER BY started_at LIMIT ?)",
    )
    .bind(cutoff(p, p.execution_retention_seconds))
    .bind(batch)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    if (pruned as i64) < batch
        && let Some(boundary) = counts.executions
    {
        pruned += sqlx::query(
            "DELETE FROM job_executions WHERE id IN \
             (SELECT id FROM job_executions WHERE id <= ? AND status != 'running' ORDER BY id LIMIT ?)",
        )
        .bind(boundary)
        .bind(batch - pruned as i64)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?
        .rows_affected();
    }
    Ok(pruned)
}

/// Finished messages (every delivery acknowledged or dead) with ids `$op` a bound, oldest first.
/// A message with an idempotency key is kept until its retention ends (`?3` = now): its
/// key dedups sends until then (SPEC "Dedup").
macro_rules! finished_with_id {
    ($op:literal) => {
        concat!(
            "SELECT m.id FROM messages m WHERE m.id ",
            $op,
            " ?1 \
               AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id) \
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state IN ('pending', 'leased')) \
               AND (m.idempotency_key IS NULL OR m.expires_at <= ?3) \
             ORDER BY m.id LIMIT ?2"
        )
    };
}
const FINISHED_BEFORE: &str = finished_with_id!("<");
const FINISHED_UP_TO: &str = finished_with_id!("<=");

/// Messages whose every delivery finished (acknowledged or dead), created before the
/// retention cut-off or beyond the count limit, with their deliveries, checkpoint and
/// progress. Ids are time-ordered, so "older than" is a primary-key range.
pub(crate) async fn prune_finished_messages(
    conn: &mut SqliteConnection,
    p: &MaintenanceParams,
    counts: &CountBoundaries,
) -> Result<u64, StoreError> {
    let age_floor = message_id_floor(retention_cutoff(p.now, p.message_retention_seconds));
    // One primary-key range, whichever limit reaches further: an OR of the two would make
    // SQLite walk every message — a backlog of a million on every pass, holding the writer.
    let (candidates, bound) = match &counts.messages {
        Some(over_count) if *over_count >= age_floor => (FINISHED_UP_TO, over_count.as_str()),
        _ => (FINISHED_BEFORE, age_floor.as_str()),
    };
    let ids: Vec<String> = sqlx::query(candidates)
        .bind(bound)
        .bind(i64::from(p.batch.max(1)))
        .bind(us(p.now))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(db_err)?;
    let result = async {
        for table in ["deliveries", "checkpoints", "job_progress"] {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("DELETE FROM {table} WHERE message_id IN ("));
            let mut sep = q.separated(", ");
            for id in &ids {
                sep.push_bind(id);
            }
            q.push(")");
            q.build().execute(&mut *conn).await.map_err(db_err)?;
        }
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("DELETE FROM messages WHERE id IN (");
        let mut sep = q.separated(", ");
        for id in &ids {
            sep.push_bind(id);
        }
        q.push(")");
        Ok::<_, StoreError>(q.build().execute(&mut *conn).await.map_err(db_err)?.rows_affected())
    }
    .await;
    match result {
        Ok(n) => {
            sqlx::query("COMMIT").execute(&mut *conn).await.map_err(db_err)?;
            Ok(n)
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// Cron runs older than the retention or beyond the per-cron count limit — never a run
/// still `running`, the latest run of a cron, nor its latest success (heartbeats read them).
pub(crate) async fn prune_cron_runs(conn: &mut SqliteConnection, p: &MaintenanceParams) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM cron_runs WHERE id IN (SELECT id FROM \
           (SELECT id, started_at, outcome, ROW_NUMBER() OVER (PARTITION BY path, schedule ORDER BY id DESC) AS rn \
            FROM cron_runs) r \
         WHERE r.outcome != 'running' AND (r.started_at < ?1 OR (?2 > 0 AND r.rn > ?2)) \
           AND r.id NOT IN (SELECT MAX(id) FROM cron_runs GROUP BY path, schedule) \
           AND r.id NOT IN (SELECT MAX(id) FROM cron_runs WHERE outcome = 'success' GROUP BY path, schedule) \
         ORDER BY r.id LIMIT ?3)",
    )
    .bind(cutoff(p, p.cron_run_retention_seconds))
    .bind(sql_count(p.max_cron_runs))
    .bind(i64::from(p.batch.max(1)))
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected())
}

pub(crate) async fn maintain(
    conn: &mut SqliteConnection,
    p: MaintenanceParams,
    counts: crate::maintenance::CountBoundaries,
) -> Result<MaintenanceReport, StoreError> {
    let now = us(p.now);
    let batch = i64::from(p.batch.max(1));
    // Attempts left `running` by a process that died: their delivery's lease ran out and
    // nobody has leased it again yet (a new lease closes them itself). Found from the leases
    // (`deliveries_leased`), so the scan covers expired leases only, not history.
    let executions_rescued = sqlx::query(
        "UPDATE job_executions SET status = 'failed', finished_at = ?1, duration_ms = (?1 - started_at) / 1000, error = ?2 \
         WHERE status = 'running' AND (message_id, consumer_group) IN ( \
           SELECT d.message_id, d.consumer_group FROM deliveries d \
           WHERE d.state = 'leased' AND d.visible_at <= ?1 \
             AND EXISTS (SELECT 1 FROM job_executions r WHERE r.message_id = d.message_id \
                         AND r.consumer_group = d.consumer_group AND r.status = 'running') \
           LIMIT ?3)",
    )
    .bind(now)
    .bind(ABANDONED_ERROR)
    .bind(batch)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    let mut report = MaintenanceReport { executions_rescued, ..MaintenanceReport::default() };

    // Expired messages: unfinished deliveries become dead letters (nothing vanishes silently).
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let expired: Vec<String> = sqlx::query("SELECT id FROM messages WHERE expires_at <= ? LIMIT ?")
        .bind(now)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in &expired {
        sqlx::query(
            "INSERT INTO dead_letters \
               (message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, headers_json) \
             SELECT m.id, m.topic, d.consumer_group, m.content_type, m.payload, \
               'expired after its retention before it was processed', d.delivery_count, ?1, m.headers_json \
             FROM deliveries d JOIN messages m ON m.id = d.message_id \
             WHERE d.message_id = ?2 AND d.state IN ('pending', 'leased')",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        // An attempt still running when its message expires is closed with it.
        sqlx::query(
            "UPDATE job_executions SET status = 'failed', finished_at = ?1, duration_ms = (?1 - started_at) / 1000, \
             error = ?2 WHERE message_id = ?3 AND status = 'running'",
        )
        .bind(now)
        .bind(ABANDONED_ERROR)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for sql in [
            "DELETE FROM deliveries WHERE message_id = ?",
            "DELETE FROM checkpoints WHERE message_id = ?",
            "DELETE FROM job_progress WHERE message_id = ?",
            "DELETE FROM messages WHERE id = ?",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(db_err)?;
        }
    }
    tx.commit().await.map_err(db_err)?;
    report.messages_pruned = expired.len() as u64;

    report.executions_pruned = crate::maintenance::prune_executions(conn, &p, &counts).await?;
    report.finished_messages_pruned = crate::maintenance::prune_finished_messages(conn, &p, &counts).await?;

    let dl_cutoff = us(vqs::store::retention_cutoff(p.now, p.dead_letter_retention_seconds));
    report.dead_letters_pruned = sqlx::query(
        "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE created_at < ? ORDER BY id LIMIT ?)",
    )
    .bind(dl_cutoff)
    .bind(batch)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();

    report.cron_runs_rescued = sqlx::query(
        "UPDATE cron_runs SET outcome = 'failed', finished_at = ?1, duration_ms = (?1 - started_at) / 1000, \
         error = 'abandoned: still running after an hour (the process died during the run)' \
         WHERE id IN (SELECT id FROM cron_runs WHERE outcome = 'running' AND started_at < ?2 LIMIT ?3)",
    )
    .bind(now)
    .bind(now - 3600 * US_PER_S)
    .bind(batch)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    report.cron_runs_pruned = crate::maintenance::prune_cron_runs(conn, &p).await?;
    // Expired locks are dead weight.
    sqlx::query("DELETE FROM cron_locks WHERE expires_at <= ?").bind(now).execute(&mut *conn).await.map_err(db_err)?;
    // Expired push slots, then idle message-group rows (nothing pending or leased in the
    // group, no unexpired slot, its rate bucket past), at most `batch` of each. In the one
    // writer nothing interleaves; a later delivery of the group recreates its row (the
    // `deliveries_flow_group_insert` trigger), a push's start too (`flow_group_start`).
    report.flow_group_slots_pruned = sqlx::query(
        "DELETE FROM flow_group_slots WHERE (consumer_group, group_key, message_id) IN \
         (SELECT consumer_group, group_key, message_id FROM flow_group_slots WHERE expires_at <= ?1 LIMIT ?2)",
    )
    .bind(now)
    .bind(batch)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    report.flow_groups_pruned = sqlx::query(
        "DELETE FROM flow_groups WHERE (consumer_group, group_key) IN (SELECT f.consumer_group, f.group_key \
         FROM flow_groups f \
         WHERE (f.tat_us IS NULL OR f.tat_us <= ?1) \
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.consumer_group = f.consumer_group \
                           AND d.group_key = f.group_key AND d.state IN ('pending', 'leased')) \
           AND NOT EXISTS (SELECT 1 FROM flow_group_slots s WHERE s.consumer_group = f.consumer_group \
                           AND s.group_key = f.group_key AND s.expires_at > ?1) \
         LIMIT ?2)",
    )
    .bind(now)
    .bind(batch)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(report)
}
