use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite, SqlitePool};
use vqs::store::*;

use crate::writer::Writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Every write goes through this one connection's task.
    writer: Writer,
    /// Readers (WAL lets them run beside the writer).
    read: SqlitePool,
    options: SqliteConnectOptions,
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    // SQLITE_TOOBIG, SQLITE_CONSTRAINT (a trigger's RAISE too), SQLITE_MISMATCH, SQLITE_RANGE:
    // the input, not the database, is at fault.
    let refused = e
        .as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25));
    if refused { StoreError::Refused(e.to_string()) } else { StoreError::Database(e.to_string()) }
}

/// Stored times are microseconds since the Unix epoch.
pub(crate) fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

const US_PER_S: i64 = 1_000_000;

/// Why a lease operation matched no row: gone, already finished, or held by someone else.
pub(crate) async fn lease_failure(
    conn: &mut SqliteConnection,
    message_id: &str,
    group: &str,
    handle: &str,
) -> StoreError {
    let row = sqlx::query("SELECT state FROM deliveries WHERE message_id = ? AND consumer_group = ?")
        .bind(message_id)
        .bind(group)
        .fetch_optional(&mut *conn)
        .await;
    match row {
        Err(e) => db_err(e),
        Ok(None) => StoreError::NotFound(format!("no message {message_id} for consumer group {group}")),
        Ok(Some(r)) => match r.get::<String, _>(0).as_str() {
            "acked" | "dead" => StoreError::NotFound(format!("message {message_id} was already acknowledged")),
            _ => StoreError::LeaseLost(format!("receipt handle {handle:?} no longer holds the lease")),
        },
    }
}

/// Move a leased delivery to a new state; the error says why when the lease is not held.
/// Returns the message id and its delivery count.
async fn lease_update(
    conn: &mut SqliteConnection,
    lease: &LeaseParams,
    set: &str,
    visible_at: i64,
) -> Result<(String, i64), StoreError> {
    let (message_id, token) = split_receipt_handle(&lease.receipt_handle)?;
    let sql = format!(
        "UPDATE deliveries SET {set}, visible_at = ?1, updated_at = ?2 \
         WHERE message_id = ?3 AND consumer_group = ?4 AND state = 'leased' AND lease_token = ?5 \
         RETURNING delivery_count"
    );
    let row = sqlx::query(&sql)
        .bind(visible_at)
        .bind(us(lease.now))
        .bind(message_id)
        .bind(&lease.consumer_group)
        .bind(token)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    match row {
        Some(r) => Ok((message_id.to_owned(), r.get(0))),
        None => Err(lease_failure(conn, message_id, &lease.consumer_group, &lease.receipt_handle).await),
    }
}

/// The file a `sqlite://` URL names (so a caller can check that it exists before opening,
/// which creates it).
pub fn database_file(url: &str) -> Result<std::path::PathBuf, StoreError> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Database(format!("invalid DATABASE_URL {url:?}: {e}")))?;
    Ok(opts.get_filename().to_path_buf())
}

impl SqliteStore {
    /// Open (and create) the database file named by `url` (`sqlite://path`).
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Database(
                "an in-memory SQLite database is not supported: the store reads beside its writer; use a file path"
                    .into(),
            ));
        }
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid DATABASE_URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000");
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = opts.connect().await.map_err(db_err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(opts.clone().read_only(true));
        Ok(SqliteStore { writer: Writer::start(conn), read, options: opts })
    }

    /// Apply the migrations in `migrations/sqlite` that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // On a connection of its own: the writer's is idle until the schema exists. sqlx
        // takes no lock for SQLite migrations, so processes starting together on one file
        // can race; the loser retries and finds the migration applied.
        let mut last = None;
        for attempt in 0..5 {
            let mut conn = self.options.connect().await.map_err(db_err)?;
            let result = MIGRATOR.run(&mut conn).await;
            let _ = conn.close().await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
        }
        Err(StoreError::Database(format!("migration failed: {}", last.map(|e| e.to_string()).unwrap_or_default())))
    }

    /// Close the read pool; the writer closes when the last handle drops.
    pub async fn close(&self) {
        self.read.close().await;
    }
}

fn execution(r: &SqliteRow) -> ExecutionRecord {
    ExecutionRecord {
        id: r.get("id"),
        topic: r.get("topic"),
        message_id: r.get("message_id"),
        consumer_group: r.get("consumer_group"),
        attempt: r.get::<i64, _>("attempt") as u32,
        status: ExecutionStatus::parse(r.get("status")).unwrap_or(ExecutionStatus::Failed),
        started_at: time(r.get("started_at")),
        finished_at: r.get::<Option<i64>, _>("finished_at").map(time),
        duration_ms: r.get("duration_ms"),
        error: r.get("error"),
    }
}

const CRON_RUN_COLUMNS: &str = "r.id, r.path, r.schedule, r.scheduled_at, r.started_at, r.finished_at, r.duration_ms, r.status_code, r.outcome, r.error";

fn cron_run(r: &SqliteRow) -> CronRunRecord {
    CronRunRecord {
        id: r.get("id"),
        path: r.get("path"),
        schedule: r.get("schedule"),
        scheduled_at: time(r.get("scheduled_at")),
        started_at: time(r.get("started_at")),
        finished_at: r.get::<Option<i64>, _>("finished_at").map(time),
        duration_ms: r.get("duration_ms"),
        status_code: r.get::<Option<i64>, _>("status_code").map(|c| c as u16),
        outcome: r.get("outcome"),
        error: r.get("error"),
    }
}

pub(crate) fn dead_letter(r: &SqliteRow) -> DeadLetterRecord {
    let content_type: String = r.get("content_type");
    let total = r.get::<i64, _>("payload_bytes");
    let (payload, payload_bytes, payload_truncated) =
        payload_preview(r.get::<&[u8], _>("payload"), total, &content_type);
    DeadLetterRecord {
        id: r.get("id"),
        message_id: r.get("message_id"),
        topic: r.get("topic"),
        consumer_group: r.get("consumer_group"),
        payload,
        payload_bytes,
        payload_truncated,
        content_type,
        error: r.get("error"),
        attempts: r.get::<i64, _>("attempts") as u32,
        created_at: time(r.get("created_at")),
        headers_json: r.try_get("headers_json").ok().flatten(),
    }
}

/// Lease due deliveries, close the `running` executions of those whose earlier lease expired
/// (abandoned), and — with `start_executions` — record each new attempt's `running`
/// execution: one transaction.
async fn claim(conn: &mut SqliteConnection, p: DeliveryClaimParams) -> Result<Vec<LeasedMessage>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let leased = claim_in(&mut tx, p).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(leased)
}

async fn claim_in(conn: &mut SqliteConnection, p: DeliveryClaimParams) -> Result<Vec<LeasedMessage>, StoreError> {
    let now = us(p.now);
    let lease_until = now + i64::from(p.visibility_seconds) * US_PER_S;
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE deliveries SET state = 'leased', visible_at = ");
    q.push_bind(lease_until)
        .push(", delivery_count = delivery_count + 1, attempts = attempts + ")
        // Only a lease that records the attempt's execution spends an attempt.
        .push_bind(i64::from(p.start_executions))
        .push(", lease_token = lower(hex(randomblob(12))), lease_holder = ")
        .push_bind(p.lease_holder.clone())
        .push(", updated_at = ")
        .push_bind(now)
        .push(" WHERE consumer_group = ")
        .push_bind(&p.consumer_group)
        .push(
            " AND message_id IN (SELECT d.message_id FROM deliveries d JOIN messages m ON m.id = d.message_id \
             WHERE d.consumer_group = ",
        )
        .push_bind(&p.consumer_group)
        .push(" AND d.state IN ('pending', 'leased') AND d.visible_at <= ")
        .push_bind(now)
        .push(" AND m.expires_at > ")
        .push_bind(now);
    if let Some(topic) = &p.topic {
        q.push(" AND d.topic = ").push_bind(topic);
    }
    if let Some(id) = &p.message_id {
        q.push(" AND d.message_id = ").push_bind(id);
    }
    q.push(" ORDER BY d.visible_at LIMIT ")
        .push_bind(i64::from(p.limit.max(1)))
        .push(") RETURNING message_id, delivery_count, lease_token, topic, attempts");
    let leased = q.build().fetch_all(&mut *conn).await.map_err(db_err)?;
    if leased.is_empty() {
        if let Some(id) = &p.message_id {
            let row = sqlx::query("SELECT state FROM deliveries WHERE message_id = ? AND consumer_group = ?")
                .bind(id)
                .bind(&p.consumer_group)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
            return Err(match row {
                None => StoreError::NotFound(format!("no message {id} for consumer group {}", p.consumer_group)),
                Some(r) => match r.get::<String, _>(0).as_str() {
                    "acked" | "dead" => StoreError::AlreadyAcknowledged(id.clone()),
                    _ => StoreError::Locked(id.clone()),
                },
            });
        }
        return Ok(Vec::new());
    }

    // A redelivered message may have an execution still `running`: its attempt was abandoned.
    let redelivered: Vec<String> =
        leased.iter().filter(|r| r.get::<i64, _>(1) > 1).map(|r| r.get::<String, _>(0)).collect();
    if !redelivered.is_empty() {
        let mut close: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE job_executions SET status = 'failed', finished_at = ");
        close
            .push_bind(now)
            .push(", duration_ms = (")
            .push_bind(now)
            .push(" - started_at) / 1000, error = ")
            .push_bind(ABANDONED_ERROR)
            .push(" WHERE status = 'running' AND consumer_group = ")
            .push_bind(&p.consumer_group)
            .push(" AND message_id IN (");
        let mut sep = close.separated(", ");
        for id in &redelivered {
            sep.push_bind(id);
        }
        close.push(")");
        close.build().execute(&mut *conn).await.map_err(db_err)?;
    }

    let mut started: std::collections::HashMap<String, i64> = Default::default();
    if p.start_executions {
        let mut ins: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO job_executions (topic, message_id, consumer_group, attempt, status, started_at) ",
        );
        ins.push_values(&leased, |mut b, l| {
            b.push_bind(l.get::<String, _>(3))
                .push_bind(l.get::<String, _>(0))
                .push_bind(&p.consumer_group)
                .push_bind(l.get::<i64, _>(4))
                .push_bind("running")
                .push_bind(now);
        });
        ins.push(" RETURNING id, message_id");
        for r in ins.build().fetch_all(&mut *conn).await.map_err(db_err)? {
            started.insert(r.get(1), r.get(0));
        }
    }

    let mut sel: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT id, topic, payload, content_type, headers_json, created_at, expires_at FROM messages WHERE id IN (",
    );
    let mut sep = sel.separated(", ");
    for r in &leased {
        sep.push_bind(r.get::<String, _>(0));
    }
    sel.push(")");
    let messages = sel.build().fetch_all(&mut *conn).await.map_err(db_err)?;
    let mut by_id: std::collections::HashMap<String, SqliteRow> =
        messages.into_iter().map(|r| (r.get::<String, _>(0), r)).collect();
    let mut out = Vec::with_capacity(leased.len());
    for l in leased {
        let id: String = l.get(0);
        let Some(m) = by_id.remove(&id) else { continue };
        let execution_id = started.get(&id).copied();
        let token: String = l.get(2);
        out.push(LeasedMessage {
            receipt_handle: receipt_handle(&id, &token),
            message_id: id,
            topic: m.get(1),
            consumer_group: p.consumer_group.clone(),
            payload: m.get(2),
            content_type: m.get(3),
            headers_json: m.get(4),
            delivery_count: l.get::<i64, _>(1) as u32,
            attempts: l.get::<i64, _>(4) as u32,
            created_at: time(m.get(5)),
            expires_at: time(m.get(6)),
            lease_until: time(lease_until),
            execution_id,
        });
    }
    Ok(out)
}

async fn subscribe(conn: &mut SqliteConnection, p: SubscriptionEnsureParams) -> Result<(), StoreError> {
    let (prefix, is_prefix) = match p.topic_pattern.strip_suffix('*') {
        Some(prefix) => (prefix.to_owned(), 1),
        None => (p.topic_pattern.clone(), 0),
    };
    let now = us(p.now);
    let initial = i64::from(p.initial_delay_seconds) * US_PER_S;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let existed = sqlx::query("SELECT 1 FROM subscriptions WHERE consumer_group = ? AND topic_pattern = ?")
        .bind(&p.consumer_group)
        .bind(&p.topic_pattern)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .is_some();
    sqlx::query(
        "INSERT INTO subscriptions (consumer_group, topic_pattern, prefix, is_prefix, initial_delay_us, created_at) \
         VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (consumer_group, topic_pattern) DO UPDATE SET initial_delay_us = excluded.initial_delay_us",
    )
    .bind(&p.consumer_group)
    .bind(&p.topic_pattern)
    .bind(&prefix)
    .bind(is_prefix)
    .bind(initial)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if !existed {
        // A new group starts at the beginning of the topic: every live message.
        sqlx::query(
            "INSERT OR IGNORE INTO deliveries \
               (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at) \
             SELECT id, ?1, topic, 'pending', MAX(deliver_at, created_at + ?2), 0, idempotency_key IS NOT NULL, ?3 \
             FROM messages \
             WHERE expires_at > ?3 AND only_group IS NULL \
               AND ((?4 = 0 AND topic = ?5) OR (?4 = 1 AND substr(topic, 1, length(?5)) = ?5))",
        )
        .bind(&p.consumer_group)
        .bind(initial)
        .bind(now)
        .bind(is_prefix)
        .bind(&prefix)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)
}

async fn dead_letter_delivery(conn: &mut SqliteConnection, p: DeliveryDeadLetterParams) -> Result<(), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    crate::writer::finishes(&mut tx, p.execution.iter()).await?;
    let (message_id, attempts) =
        match lease_update(&mut tx, &p.lease, "state = 'dead', lease_token = NULL", us(p.lease.now)).await {
            Ok(r) => r,
            Err(e) => {
                // The attempt is closed even when the lease was lost.
                tx.commit().await.map_err(db_err)?;
                return Err(e);
            }
        };
    sqlx::query(
        "INSERT INTO dead_letters \
           (message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, headers_json) \
         SELECT id, topic, ?, content_type, payload, ?, ?, ?, headers_json FROM messages WHERE id = ?",
    )
    .bind(&p.lease.consumer_group)
    .bind(&p.reason)
    .bind(attempts)
    .bind(us(p.lease.now))
    .bind(&message_id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

async fn maintain(
    conn: &mut SqliteConnection,
    p: MaintenanceParams,
    counts: crate::retention::CountBoundaries,
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

    report.executions_pruned = crate::retention::prune_executions(conn, &p, &counts).await?;
    report.finished_messages_pruned = crate::retention::prune_finished_messages(conn, &p, &counts).await?;

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
    report.cron_runs_pruned = crate::retention::prune_cron_runs(conn, &p).await?;
    // Expired locks are dead weight.
    sqlx::query("DELETE FROM cron_locks WHERE expires_at <= ?").bind(now).execute(&mut *conn).await.map_err(db_err)?;
    Ok(report)
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn message_send(&self, p: MessageSendParams) -> Result<SendResult, StoreError> {
        self.writer.send(p).await
    }

    async fn message_send_many(&self, p: MessageSendManyParams) -> Result<Vec<SendResult>, StoreError> {
        let p = p.messages;
        self.writer
            .run(move |c| {
                async move {
                    let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                    let all: Vec<&MessageSendParams> = p.iter().collect();
                    let sent = crate::writer::sends(&mut tx, &all).await?.into_iter().collect::<Result<Vec<_>, _>>()?;
                    tx.commit().await.map_err(db_err)?;
                    Ok(sent)
                }
                .boxed()
            })
            .await
    }

    async fn message_list(&self, p: MessageListParams) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.id FROM messages m WHERE m.topic = ? AND (EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.message_id = m.id AND d.state IN ('pending', 'leased')) OR NOT EXISTS (SELECT 1 \
             FROM deliveries d WHERE d.message_id = m.id)) ORDER BY m.created_at, m.id LIMIT ?",
        )
        .bind(p.topic)
        .bind(i64::from(p.limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn message_get(&self, p: MessageGetParams) -> Result<Option<MessageRecord>, StoreError> {
        let id = p.id.as_str();
        let Some(m) = sqlx::query(
            "SELECT id, topic, payload, content_type, idempotency_key, created_at, expires_at FROM messages WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?
        else {
            return Ok(None);
        };
        let deliveries = sqlx::query(
            "SELECT consumer_group, state, delivery_count, visible_at, attempts FROM deliveries WHERE message_id = ? ORDER BY consumer_group",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| DeliveryRecord {
            consumer_group: r.get(0),
            state: DeliveryState::parse(r.get(1)).unwrap_or(DeliveryState::Pending),
            delivery_count: r.get::<i64, _>(2) as u32,
            attempts: r.get::<i64, _>(4) as u32,
            visible_at: time(r.get(3)),
        })
        .collect();
        let content_type: String = m.get("content_type");
        Ok(Some(MessageRecord {
            id: m.get("id"),
            topic: m.get("topic"),
            payload: payload_json(m.get::<&[u8], _>("payload"), &content_type),
            content_type,
            created_at: time(m.get("created_at")),
            expires_at: time(m.get("expires_at")),
            idempotency_key: m.get("idempotency_key"),
            deliveries,
        }))
    }

    async fn subscription_ensure(&self, p: SubscriptionEnsureParams) -> Result<(), StoreError> {
        self.writer.run(move |c| subscribe(c, p).boxed()).await
    }

    async fn delivery_claim(&self, p: DeliveryClaimParams) -> Result<Vec<LeasedMessage>, StoreError> {
        self.writer.run(move |c| claim(c, p).boxed()).await
    }

    async fn delivery_ack(&self, p: DeliveryAckParams) -> Result<(), StoreError> {
        self.writer.ack(p).await
    }

    async fn delivery_set_visibility(&self, p: LeaseVisibilityParams) -> Result<DateTime<Utc>, StoreError> {
        let until = us(p.lease.now) + i64::from(p.visibility_seconds) * US_PER_S;
        let set = if p.visibility_seconds == 0 { "state = 'pending', lease_token = NULL" } else { "state = 'leased'" };
        self.writer
            .run(move |c| async move { lease_update(c, &p.lease, set, until).await.map(|_| time(until)) }.boxed())
            .await
    }

    async fn delivery_retry(&self, p: DeliveryRetryParams) -> Result<(), StoreError> {
        let due = us(p.lease.now).saturating_add(i64::try_from(p.delay.as_micros()).unwrap_or(i64::MAX));
        self.writer
            .run(move |c| {
                async move {
                    let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                    crate::writer::finishes(&mut tx, p.execution.iter()).await?;
                    let r = lease_update(&mut tx, &p.lease, "state = 'pending', lease_token = NULL", due).await;
                    // The attempt is closed even when the lease was lost.
                    tx.commit().await.map_err(db_err)?;
                    r.map(|_| ())
                }
                .boxed()
            })
            .await
    }

    async fn delivery_release(&self, p: DeliveryReleaseParams) -> Result<(), StoreError> {
        self.writer
            .run(move |c| {
                async move {
                    let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                    if let Some(id) = p.execution_id {
                        sqlx::query("DELETE FROM job_executions WHERE id = ?1 AND status = 'running'")
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                    }
                    // The attempt the lease recorded (with its execution) is not spent either.
                    let set = if p.execution_id.is_some() {
                        "state = 'pending', lease_token = NULL, delivery_count = MAX(delivery_count - 1, 0), \
                         attempts = MAX(attempts - 1, 0)"
                    } else {
                        "state = 'pending', lease_token = NULL, delivery_count = MAX(delivery_count - 1, 0)"
                    };
                    let r = lease_update(&mut tx, &p.lease, set, us(p.lease.now)).await;
                    // The unused attempt is removed even when the lease was lost.
                    tx.commit().await.map_err(db_err)?;
                    r.map(|_| ())
                }
                .boxed()
            })
            .await
    }

    async fn delivery_dead_letter(&self, p: DeliveryDeadLetterParams) -> Result<(), StoreError> {
        self.writer.run(move |c| dead_letter_delivery(c, p).boxed()).await
    }

    async fn delivery_leased_count(&self, p: DeliveryLeasedCountParams) -> Result<i64, StoreError> {
        let (consumer_group, now) = (p.consumer_group.as_str(), p.now);
        let row = sqlx::query(
            "SELECT COUNT(*) FROM deliveries WHERE consumer_group = ? AND state IN ('pending', 'leased') \
             AND state = 'leased' AND visible_at > ?",
        )
        .bind(consumer_group)
        .bind(us(now))
        .fetch_one(&self.read)
        .await
        .map_err(db_err)?;
        Ok(row.get(0))
    }

    async fn delivery_next_due(&self, p: DeliveryNextDueParams) -> Result<Option<DateTime<Utc>>, StoreError> {
        let consumer_group = p.consumer_group.as_str();
        let row = sqlx::query(
            "SELECT MIN(visible_at) FROM deliveries WHERE consumer_group = ? AND state IN ('pending', 'leased')",
        )
        .bind(consumer_group)
        .fetch_one(&self.read)
        .await
        .map_err(db_err)?;
        Ok(row.get::<Option<i64>, _>(0).map(time))
    }

    async fn execution_start(&self, p: ExecutionStartParams) -> Result<i64, StoreError> {
        self.writer.execution_start(p).await
    }

    async fn execution_finish(&self, p: ExecutionFinishParams) -> Result<(), StoreError> {
        self.writer.execution_finish(p).await
    }

    async fn execution_list(&self, p: ExecutionListParams) -> Result<Vec<ExecutionRecord>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, topic, message_id, consumer_group, attempt, status, started_at, finished_at, duration_ms, error \
             FROM job_executions WHERE 1 = 1",
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
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(if p.limit == 0 { 100 } else { p.limit }));
        let rows = q.build().fetch_all(&self.read).await.map_err(db_err)?;
        Ok(rows.iter().map(execution).collect())
    }

    async fn checkpoint_get(&self, p: CheckpointGetParams) -> Result<Option<serde_json::Value>, StoreError> {
        let (message_id, consumer_group) = (p.message_id.as_str(), p.consumer_group.as_str());
        let row = sqlx::query("SELECT value FROM checkpoints WHERE message_id = ? AND consumer_group = ?")
            .bind(message_id)
            .bind(consumer_group)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        match row {
            None => Ok(None),
            Some(r) => serde_json::from_str(r.get::<&str, _>(0))
                .map(Some)
                .map_err(|e| StoreError::Database(format!("corrupt checkpoint: {e}"))),
        }
    }

    async fn checkpoint_put(&self, p: CheckpointPutParams) -> Result<(), StoreError> {
        self.writer
            .run(move |c| {
                async move {
                    sqlx::query(
                        "INSERT INTO checkpoints (message_id, consumer_group, value, updated_at) VALUES (?, ?, ?, ?) \
                         ON CONFLICT (message_id, consumer_group) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )
                    .bind(&p.message_id)
                    .bind(&p.consumer_group)
                    .bind(p.value.to_string())
                    .bind(us(p.now))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    async fn queue_stats(&self, p: QueueStatsParams) -> Result<Vec<TopicStats>, StoreError> {
        let now = p.now;
        let now = us(now);
        let rows = sqlx::query(
            "SELECT topic, \
               SUM(state IN ('pending', 'leased') AND visible_at <= ?1), \
               SUM(state = 'pending' AND visible_at > ?1), \
               SUM(state = 'leased' AND visible_at > ?1), \
               SUM(state = 'acked'), SUM(state = 'dead') \
             FROM deliveries GROUP BY topic",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        let mut stats: std::collections::BTreeMap<String, TopicStats> = rows
            .iter()
            .map(|r| {
                let topic: String = r.get(0);
                let stats = TopicStats {
                    topic: topic.clone(),
                    waiting: r.get(1),
                    delayed: r.get(2),
                    running: r.get(3),
                    succeeded: r.get(4),
                    failed: 0,
                    dead: r.get(5),
                };
                (topic, stats)
            })
            .collect();
        let failed = sqlx::query("SELECT topic, COUNT(*) FROM job_executions WHERE status = 'failed' GROUP BY topic")
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        for r in failed {
            let topic: String = r.get(0);
            stats.entry(topic.clone()).or_insert_with(|| TopicStats { topic, ..TopicStats::default() }).failed =
                r.get(1);
        }
        Ok(stats.into_values().collect())
    }

    async fn queue_depth(&self, p: QueueDepthParams) -> Result<Vec<TopicDepth>, StoreError> {
        crate::queue_depth::queue_depth(&self.read, p).await
    }

    async fn execution_counts(&self, p: ExecutionCountParams) -> Result<Vec<ExecutionCounts>, StoreError> {
        crate::queue_depth::execution_counts(&self.read, p).await
    }

    async fn progress_put(&self, p: ProgressPutParams) -> Result<(), StoreError> {
        self.writer.run(move |c| crate::job_progress::progress_put(c, p).boxed()).await
    }

    async fn progress_list(&self, p: ProgressListParams) -> Result<Vec<ProgressRecord>, StoreError> {
        crate::job_progress::progress_list(&self.read, p).await
    }

    async fn sync_log_get(&self, p: SyncLogGetParams) -> Result<Option<SyncLogRecord>, StoreError> {
        let (topic, key) = (p.topic.as_str(), p.key.as_str());
        crate::job_progress::sync_log_get(&self.read, topic, key).await
    }

    async fn sync_log_put(&self, p: SyncLogPutParams) -> Result<(), StoreError> {
        self.writer.run(move |c| crate::job_progress::sync_log_put(c, p).boxed()).await
    }

    async fn sync_log_list(&self, p: SyncLogListParams) -> Result<Vec<SyncLogRecord>, StoreError> {
        let topic = p.topic.as_deref();
        crate::job_progress::sync_log_list(&self.read, topic).await
    }

    async fn dead_letter_list(&self, p: DeadLetterListParams) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let limit = p.limit;
        let rows = sqlx::query(
            "SELECT id, message_id, topic, consumer_group, content_type, substr(payload, 1, ?2) AS payload, \
             length(payload) AS payload_bytes, error, attempts, created_at \
             FROM dead_letters ORDER BY id DESC LIMIT ?1",
        )
        .bind(i64::from(if limit == 0 { 100 } else { limit }))
        .bind(i64::from(PAYLOAD_PREVIEW_BYTES))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(dead_letter).collect())
    }

    async fn dead_letter_get(&self, p: DeadLetterGetParams) -> Result<Option<DeadLetterRecord>, StoreError> {
        let id = p.id;
        let row = sqlx::query(
            "SELECT id, message_id, topic, consumer_group, content_type, payload, length(payload) AS payload_bytes, \
             error, attempts, created_at FROM dead_letters WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        Ok(row.as_ref().map(dead_letter))
    }

    async fn dead_letter_delete(&self, p: DeadLetterDeleteParams) -> Result<bool, StoreError> {
        let id = p.id;
        self.writer
            .run(move |c| {
                async move {
                    let r = sqlx::query("DELETE FROM dead_letters WHERE id = ?")
                        .bind(id)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok(r.rows_affected() > 0)
                }
                .boxed()
            })
            .await
    }

    async fn dead_letter_settle(&self, p: DeadLetterSettleParams) -> Result<DeadLetterSettled, StoreError> {
        self.writer.run(move |c| crate::dead_letter_settle::settle(c, p).boxed()).await
    }

    async fn dead_letter_restore(&self, p: DeadLetterRestoreParams) -> Result<(), StoreError> {
        let DeadLetterRestoreParams { letter, payload } = p;
        self.writer.run(move |c| crate::dead_letter_settle::restore(c, letter, payload).boxed()).await
    }

    async fn dead_letter_insert(&self, p: DeadLetterInsertParams) -> Result<i64, StoreError> {
        self.writer
            .run(move |c| {
                async move {
                    let row = sqlx::query(
                        "INSERT INTO dead_letters \
                           (message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, \
                            headers_json) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    )
                    .bind(&p.message_id)
                    .bind(&p.topic)
                    .bind(&p.consumer_group)
                    .bind(&p.content_type)
                    .bind(&p.payload)
                    .bind(&p.error)
                    .bind(i64::from(p.attempts))
                    .bind(us(p.now))
                    .bind(&p.headers_json)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(row.get(0))
                }
                .boxed()
            })
            .await
    }

    async fn execution_close_outlived(&self, p: OutlivedParams) -> Result<u64, StoreError> {
        self.writer
            .run(move |c| {
                async move {
                    // `job_executions_started` over the window only; a delivery row here means
                    // this database leases the message, and `maintenance_run` owns the attempt.
                    let closed = sqlx::query(
                        "UPDATE job_executions SET status = 'failed', finished_at = ?1, \
                         duration_ms = (?1 - started_at) / 1000, error = ?2 \
                         WHERE id IN (SELECT r.id FROM job_executions r \
                                      WHERE r.started_at >= ?3 AND r.started_at < ?4 AND r.status = 'running' \
                                        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = r.message_id \
                                                        AND d.consumer_group = r.consumer_group) \
                                      LIMIT ?5) \
                           AND status = 'running'",
                    )
                    .bind(us(p.now))
                    .bind(OUTLIVED_ERROR)
                    .bind(us(p.started_after))
                    .bind(us(p.started_before))
                    .bind(i64::from(p.limit.max(1)))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    Ok(closed)
                }
                .boxed()
            })
            .await
    }

    async fn maintenance_run(&self, p: MaintenanceParams) -> Result<MaintenanceReport, StoreError> {
        let counts = crate::retention::count_boundaries(&self.read, &p).await?;
        self.writer.run(move |c| maintain(c, p, counts).boxed()).await
    }

    async fn cron_run_start(&self, p: CronRunStartParams) -> Result<Option<i64>, StoreError> {
        self.writer
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

    async fn cron_run_finish(&self, p: CronRunFinishParams) -> Result<(), StoreError> {
        self.writer
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

    async fn cron_run_list(&self, p: CronRunListParams) -> Result<Vec<CronRunRecord>, StoreError> {
        let (path, limit) = (p.path.as_deref(), p.limit);
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {CRON_RUN_COLUMNS} FROM cron_runs r WHERE 1 = 1"));
        if let Some(path) = path {
            q.push(" AND path = ").push_bind(path);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(if limit == 0 { 100 } else { limit }));
        let rows = q.build().fetch_all(&self.read).await.map_err(db_err)?;
        Ok(rows.iter().map(cron_run).collect())
    }

    async fn cron_run_summary(&self, _: CronRunSummaryParams) -> Result<Vec<CronRunSummary>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CRON_RUN_COLUMNS}, s.last_success FROM cron_runs r JOIN \
               (SELECT MAX(id) AS id, MAX(CASE WHEN outcome = 'success' THEN finished_at END) AS last_success \
                FROM cron_runs GROUP BY path, schedule) s ON s.id = r.id ORDER BY r.path, r.schedule"
        ))
        .fetch_all(&self.read)
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

    async fn cron_lock_acquire(&self, p: CronLockParams) -> Result<bool, StoreError> {
        self.writer
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

    async fn cron_lock_release(&self, p: CronLockReleaseParams) -> Result<bool, StoreError> {
        let (name, owner) = (p.name.as_str(), p.owner.as_str());
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.writer
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

    async fn cron_lock_extend(&self, p: CronLockExtendParams) -> Result<bool, StoreError> {
        self.writer
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

    async fn process_beat(&self, p: ProcessBeatParams) -> Result<bool, StoreError> {
        self.writer
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

    async fn process_rescue(&self, p: ProcessRescueParams) -> Result<ProcessRescueReport, StoreError> {
        self.writer
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

    async fn session_revoke(&self, p: SessionRevokeParams) -> Result<(), StoreError> {
        self.writer
            .run(move |c| {
                async move {
                    let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                    sqlx::query("DELETE FROM revoked_sessions WHERE expires_at <= ?")
                        .bind(us(p.now))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    sqlx::query(
                        "INSERT INTO revoked_sessions (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
                    )
                    .bind(&p.nonce)
                    .bind(us(p.expires_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    tx.commit().await.map_err(db_err)
                }
                .boxed()
            })
            .await
    }

    async fn session_revoked(&self, p: SessionRevokedParams) -> Result<bool, StoreError> {
        let nonce = p.nonce.as_str();
        let row = sqlx::query("SELECT 1 FROM revoked_sessions WHERE nonce = ?")
            .bind(nonce)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        Ok(row.is_some())
    }

    async fn delivery_topic(&self, p: DeliveryTopicParams) -> Result<Option<String>, StoreError> {
        let (message_id, consumer_group) = (p.message_id.as_str(), p.consumer_group.as_str());
        sqlx::query_scalar("SELECT topic FROM deliveries WHERE message_id = ? AND consumer_group = ?")
            .bind(message_id)
            .bind(consumer_group)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if !self.writer.is_running() {
            return Err(StoreError::Database(
                "the SQLite writer has stopped (see the error logged when it did)".into(),
            ));
        }
        sqlx::query("SELECT 1").execute(&self.read).await.map_err(db_err)?;
        Ok(())
    }
}
