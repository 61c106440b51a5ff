//! Progress reports of running jobs and the sync log of incremental sync jobs.

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use vqs::store::{
    ProgressListParams, ProgressPutParams, ProgressRecord, StoreError, SyncLogPutParams, SyncLogRecord, SyncOutcome,
};

use crate::rows::{db_err, time, us};

pub(crate) async fn progress_put(conn: &mut SqliteConnection, p: ProgressPutParams) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO job_progress (message_id, consumer_group, topic, done, total, note, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id, consumer_group) DO UPDATE SET \
         done = excluded.done, total = excluded.total, note = excluded.note, updated_at = excluded.updated_at",
    )
    .bind(&p.message_id)
    .bind(&p.consumer_group)
    .bind(&p.topic)
    .bind(vqs::store::sql_count(p.done))
    .bind(p.total.map(vqs::store::sql_count))
    .bind(&p.note)
    .bind(us(p.now))
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn progress_list(read: &SqlitePool, p: ProgressListParams) -> Result<Vec<ProgressRecord>, StoreError> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT message_id, consumer_group, topic, done, total, note, updated_at FROM job_progress WHERE 1 = 1",
    );
    if let Some(m) = &p.message_id {
        q.push(" AND message_id = ").push_bind(m);
    }
    q.push(" ORDER BY updated_at DESC LIMIT ").push_bind(i64::from(if p.limit == 0 { 100 } else { p.limit }));
    let rows = q.build().fetch_all(read).await.map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| ProgressRecord {
            message_id: r.get(0),
            consumer_group: r.get(1),
            topic: r.get(2),
            done: r.get::<i64, _>(3) as u64,
            total: r.get::<Option<i64>, _>(4).map(|t| t as u64),
            note: r.get(5),
            updated_at: time(r.get(6)),
        })
        .collect())
}

fn sync_log(r: &SqliteRow) -> SyncLogRecord {
    SyncLogRecord {
        topic: r.get(0),
        key: r.get(1),
        cursor: r.get(2),
        last_attempt_at: time(r.get(3)),
        last_success_at: r.get::<Option<i64>, _>(4).map(time),
        last_error: r.get(5),
        items_synced: r.get::<i64, _>(6) as u64,
    }
}

const SYNC_LOG_COLUMNS: &str = "topic, key, cursor, last_attempt_at, last_success_at, last_error, items_synced";

pub(crate) async fn sync_log_get(
    read: &SqlitePool,
    topic: &str,
    key: &str,
) -> Result<Option<SyncLogRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {SYNC_LOG_COLUMNS} FROM sync_log WHERE topic = ? AND key = ?"))
        .bind(topic)
        .bind(key)
        .fetch_optional(read)
        .await
        .map_err(db_err)?;
    Ok(row.as_ref().map(sync_log))
}

pub(crate) async fn sync_log_list(read: &SqlitePool, topic: Option<&str>) -> Result<Vec<SyncLogRecord>, StoreError> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {SYNC_LOG_COLUMNS} FROM sync_log WHERE 1 = 1"));
    if let Some(t) = topic {
        q.push(" AND topic = ").push_bind(t);
    }
    q.push(" ORDER BY topic, key LIMIT 10000");
    Ok(q.build().fetch_all(read).await.map_err(db_err)?.iter().map(sync_log).collect())
}

pub(crate) async fn sync_log_put(conn: &mut SqliteConnection, p: SyncLogPutParams) -> Result<(), StoreError> {
    let now = us(p.now);
    let q = match &p.outcome {
        SyncOutcome::Success { cursor, items_synced } => sqlx::query(
            "INSERT INTO sync_log (topic, key, cursor, last_attempt_at, last_success_at, last_error, items_synced) \
             VALUES (?1, ?2, ?3, ?4, ?4, NULL, ?5) ON CONFLICT (topic, key) DO UPDATE SET cursor = excluded.cursor, \
             last_attempt_at = excluded.last_attempt_at, last_success_at = excluded.last_success_at, \
             last_error = NULL, items_synced = excluded.items_synced",
        )
        .bind(&p.topic)
        .bind(&p.key)
        .bind(cursor)
        .bind(now)
        .bind(vqs::store::sql_count(*items_synced)),
        SyncOutcome::Failure { error } => sqlx::query(
            "INSERT INTO sync_log (topic, key, cursor, last_attempt_at, last_success_at, last_error, items_synced) \
             VALUES (?1, ?2, NULL, ?3, NULL, ?4, 0) ON CONFLICT (topic, key) DO UPDATE SET \
             last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error",
        )
        .bind(&p.topic)
        .bind(&p.key)
        .bind(now)
        .bind(error),
    };
    q.execute(conn).await.map_err(db_err)?;
    Ok(())
}
