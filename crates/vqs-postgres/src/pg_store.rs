use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{Postgres, QueryBuilder, Row};
use vqs::store::*;

use crate::held_connection::HeldConnection;
use crate::writer::{Move, Writer};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The PostgreSQL store. Cheap to clone (a pool and a handle to its writer tasks).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Group commit for the hot path: publishes, execution starts and finishes, acks.
    writer: Writer,
    /// The claims' own connection (a claim is one statement: no pool pings around it).
    claim_conn: Arc<tokio::sync::Mutex<HeldConnection>>,
}

/// Messages per multi-row insert of `message_send_many`.
const SEND_MANY_CHUNK: usize = 5000;

/// Writer tasks: while one writes its batch, the next one collects the following batch.
const WRITER_TASKS: usize = 2;

/// Connections of the hot path's pool: one per writer task, the claim's, and one spare.
const HOT_CONNECTIONS: u32 = WRITER_TASKS as u32 + 2;

/// How many connections a [`PgStore`] may open (see [`PgStore::connect_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgPoolSize {
    /// Connections of the main pool (everything but the hot path).
    pub main: u32,
    /// Connections of the hot path's pool (the claim and the group-commit writers).
    pub hot: u32,
}

impl PgPoolSize {
    /// The fewest connections a store works with: two in each pool (a claim held on one
    /// hot connection leaves a writer the other; the main pool never waits on itself).
    pub const MIN_TOTAL: u32 = 4;

    /// A process that runs the dispatcher and many jobs at once: 16 + 4 connections.
    pub const SERVER: PgPoolSize = PgPoolSize { main: 16, hot: HOT_CONNECTIONS };

    /// `total` connections at most, split between the two pools (a fifth, 2 to 4, for the
    /// hot path). `None` below [`PgPoolSize::MIN_TOTAL`].
    pub fn total(total: u32) -> Option<PgPoolSize> {
        if total < Self::MIN_TOTAL {
            return None;
        }
        let hot = (total / 5).clamp(2, HOT_CONNECTIONS);
        Some(PgPoolSize { main: total - hot, hot })
    }
}

impl Default for PgPoolSize {
    fn default() -> Self {
        Self::SERVER
    }
}

/// Whether this build can speak TLS to PostgreSQL (the crate's `tls` feature).
pub const TLS_AVAILABLE: bool = cfg!(feature = "tls");

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    // Data exceptions (a NUL in text: 22021), integrity constraints, program limits (an
    // index row too big: 54000) and a trigger's RAISE: the input, not the server, is at fault.
    let refused = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| ["22", "23", "54", "P0"].iter().any(|class| c.starts_with(class)));
    if refused { StoreError::Refused(e.to_string()) } else { StoreError::Database(e.to_string()) }
}

pub(crate) fn secs(n: impl Into<i64>) -> chrono::Duration {
    chrono::Duration::seconds(n.into())
}

/// Publish inside the caller's transaction (or on any connection): the message exists if
/// and only if the transaction commits.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool, queue: vqs::Queue) -> Result<(), Box<dyn std::error::Error>> {
/// # struct SendInvoice;
/// # impl vqs::Jobbable for SendInvoice { type Params = i64; const TOPIC: &'static str = "send-invoice";
/// #   async fn perform(&self, _: i64, _: vqs::JobContext) -> Result<(), vqs::JobError> { Ok(()) } }
/// let mut tx = pool.begin().await?;
/// // … write the invoice …
/// let prepared = queue.job(SendInvoice).prepare(7, Default::default())?;
/// vqs_postgres::enqueue_in(&mut tx, prepared).await?;
/// tx.commit().await?; // the job is queued now, or never
/// # Ok(()) }
/// ```
pub async fn enqueue_in(conn: &mut PgConnection, p: MessageSendParams) -> Result<SendResult, StoreError> {
    for _ in 0..2 {
        let id = new_message_id_at(p.now);
        let inserted = sqlx::query(
            "INSERT INTO messages (id, topic, payload, content_type, headers_json, idempotency_key, created_at, deliver_at, expires_at, only_group) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (topic, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
        )
        .bind(&id)
        .bind(&p.topic)
        .bind(&p.payload)
        .bind(&p.content_type)
        .bind(&p.headers_json)
        .bind(&p.idempotency_key)
        .bind(p.now)
        .bind(p.now + secs(p.delay_seconds))
        .bind(p.now + secs(p.retention_seconds))
        .bind(&p.only_group)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
        if inserted.is_some() {
            return Ok(SendResult { message_id: id, duplicate: false });
        }
        let original = sqlx::query("SELECT id, expires_at FROM messages WHERE topic = $1 AND idempotency_key = $2")
            .bind(&p.topic)
            .bind(&p.idempotency_key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        match original {
            Some(r) if r.get::<DateTime<Utc>, _>(1) > p.now => {
                return Ok(SendResult { message_id: r.get(0), duplicate: true });
            }
            // The original expired: its key no longer dedups. Release it and insert again.
            Some(r) => {
                sqlx::query("UPDATE messages SET idempotency_key = NULL WHERE id = $1")
                    .bind(r.get::<String, _>(0))
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
            }
            None => {}
        }
    }
    Err(StoreError::Database("idempotent insert did not settle".into()))
}

/// Create database `name` on the server at `server_url` (`postgres://user@host:port`, no
/// database) and return its URL. For tests and benchmarks that want a fresh database.
pub async fn create_database(server_url: &str, name: &str) -> Result<String, StoreError> {
    use sqlx::Connection;
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::Database(format!("invalid database name {name:?}: use letters, digits and _")));
    }
    let base = server_url.trim_end_matches('/');
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .map_err(|e| StoreError::Database(format!("PostgreSQL at {base} is unreachable: {e}")))?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.map_err(db_err)?;
    let _ = admin.close().await;
    Ok(format!("{base}/{name}"))
}

impl PgStore {
    /// Connect to `url` (`postgres://…`) with [`PgPoolSize::SERVER`] connections at most.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        Self::connect_with(url, PgPoolSize::SERVER).await
    }

    /// Connect to `url` with at most `size` connections (a serverless function wants few).
    /// The URL's `sslmode` is honoured (`disable`, `prefer` — the default —, `require`,
    /// `verify-ca`, `verify-full`, with `sslrootcert=`); the modes that require TLS need the
    /// crate's `tls` feature, and say so when it is off.
    pub async fn connect_with(url: &str, size: PgPoolSize) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        if !TLS_AVAILABLE
            && matches!(options.get_ssl_mode(), PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull)
        {
            return Err(StoreError::Database(format!(
                "the PostgreSQL URL asks for TLS (sslmode={}) but this build has none: build with the `tls` \
                 feature (`cargo build -p web --features tls`; the `vercel` feature includes it), or \
                 use sslmode=disable/prefer for a server without TLS",
                ssl_mode_name(options.get_ssl_mode())
            )));
        }
        let options = options
            // The queue's working set is in memory (or on SSD): an index lookup is not four
            // times a sequential page read, and with the default the planner prefers scanning
            // a still-small table to a few dozen primary-key lookups.
            .options([("random_page_cost", "1.1")]);
        // The pool serves everything but the hot path: plan every execution with the tables'
        // current sizes. Queue tables start empty and grow by thousands of rows a second: a
        // generic plan cached while they were small (a sequential scan, a hash join) would
        // stay in use long after it is wrong.
        let pool = PgPoolOptions::new()
            .max_connections(size.main.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone().options([("plan_cache_mode", "force_custom_plan")]))
            .await
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        // The hot path's connections (the claim, the writers) each run a handful of statements
        // written to be driven by their indexes, thousands of times a second. Planning them
        // anew each time was a seventh of the server's time per job (the settle statement
        // took 1 ms to plan): here each is planned once per connection — and again whenever
        // ANALYZE changes its tables' statistics — and a sequential scan is never a plan's
        // choice (`enable_seqscan = off`), so a plan made while a table was small stays right
        // when it is large. No JIT: a disabled scan that has no alternative (the fan-out
        // trigger's transition table) is costed at 10^10, which would JIT-compile every
        // publish (230 ms each); a queue's short statements never gain from it anyway.
        let hot = PgPoolOptions::new()
            .max_connections(size.hot.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.options([
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
                ("jit", "off"),
            ]));
        let claim_conn = Arc::new(tokio::sync::Mutex::new(HeldConnection::new(hot.clone())));
        // `pool.close()` waits for every connection to come back: give the claims' back, and
        // close the hot path's pool with it.
        let (held, closed, hot_pool) = (claim_conn.clone(), pool.close_event(), hot.clone());
        tokio::spawn(async move {
            closed.await;
            held.lock().await.discard();
            hot_pool.close().await;
        });
        Ok(PgStore { writer: Writer::start(pool.clone(), hot, WRITER_TASKS), claim_conn, pool })
    }

    /// The pool, for callers that want to open a transaction and [`enqueue_in`] it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Apply the migrations in `migrations/postgres` that have not run yet (safe from many
    /// processes at once: sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| StoreError::Database(format!("migration failed: {e}")))
    }

    /// Refresh the planner's statistics of the queue tables.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        sqlx::query("ANALYZE deliveries, messages, job_executions").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    /// Wake `queue`'s dispatchers whenever any process publishes (LISTEN/NOTIFY), so new work
    /// starts at once instead of at the next poll. Reconnects by itself.
    pub fn forward_wakeups(&self, queue: vqs::Queue) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; retrying in 1s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen("vqs_published").await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    match listener.recv().await {
                        Ok(_) => queue.wake(),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                            break;
                        }
                    }
                }
            }
        })
    }
}

fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

pub(crate) async fn lease_failure(conn: &mut PgConnection, message_id: &str, group: &str, handle: &str) -> StoreError {
    let row = sqlx::query("SELECT state FROM deliveries WHERE message_id = $1 AND consumer_group = $2")
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

/// Move a leased delivery to a new state; returns its message id, delivery count and
/// whether the message has an idempotency key.
async fn lease_update(
    conn: &mut PgConnection,
    lease: &LeaseParams,
    set: &str,
    visible_at: DateTime<Utc>,
) -> Result<(String, i32, bool), StoreError> {
    let (message_id, token) = split_receipt_handle(&lease.receipt_handle)?;
    let sql = format!(
        "UPDATE deliveries SET {set}, visible_at = $1, updated_at = $2 \
         WHERE message_id = $3 AND consumer_group = $4 AND state = 'leased' AND lease_token = $5 \
         RETURNING delivery_count, keyed"
    );
    let row = sqlx::query(&sql)
        .bind(visible_at)
        .bind(lease.now)
        .bind(message_id)
        .bind(&lease.consumer_group)
        .bind(token)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    match row {
        Some(r) => Ok((message_id.to_owned(), r.get(0), r.get(1))),
        None => Err(lease_failure(conn, message_id, &lease.consumer_group, &lease.receipt_handle).await),
    }
}

fn execution(r: &PgRow) -> ExecutionRecord {
    ExecutionRecord {
        id: r.get("id"),
        topic: r.get("topic"),
        message_id: r.get("message_id"),
        consumer_group: r.get("consumer_group"),
        attempt: r.get::<i32, _>("attempt") as u32,
        status: ExecutionStatus::parse(r.get("status")).unwrap_or(ExecutionStatus::Failed),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        duration_ms: r.get("duration_ms"),
        error: r.get("error"),
    }
}

pub(crate) fn dead_letter(r: &PgRow) -> DeadLetterRecord {
    let content_type: String = r.get("content_type");
    let total = i64::from(r.get::<i32, _>("payload_bytes"));
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
        attempts: r.get::<i32, _>("attempts") as u32,
        created_at: r.get("created_at"),
        headers_json: r.try_get("headers_json").ok().flatten(),
    }
}

const CRON_RUN_COLUMNS: &str = "r.id, r.path, r.schedule, r.scheduled_at, r.started_at, r.finished_at, r.duration_ms, r.status_code, r.outcome, r.error";

fn cron_run(r: &PgRow) -> CronRunRecord {
    CronRunRecord {
        id: r.get("id"),
        path: r.get("path"),
        schedule: r.get("schedule"),
        scheduled_at: r.get("scheduled_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        duration_ms: r.get("duration_ms"),
        status_code: r.get::<Option<i32>, _>("status_code").map(|c| c as u16),
        outcome: r.get("outcome"),
        error: r.get("error"),
    }
}

#[async_trait]
impl QueueStore for PgStore {
    async fn message_send(&self, p: MessageSendParams) -> Result<SendResult, StoreError> {
        self.writer.send(p).await
    }

    async fn message_send_many(&self, p: MessageSendManyParams) -> Result<Vec<SendResult>, StoreError> {
        let p = p.messages;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut out: Vec<Option<SendResult>> = vec![None; p.len()];
        let (plain, keyed): (Vec<_>, Vec<_>) = p.iter().enumerate().partition(|(_, m)| m.idempotency_key.is_none());
        for chunk in plain.chunks(SEND_MANY_CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|(_, m)| new_message_id_at(m.now)).collect();
            let params: Vec<&MessageSendParams> = chunk.iter().map(|(_, m)| *m).collect();
            crate::writer::insert_plain(&mut tx, &params, &ids).await?;
            for ((i, _), id) in chunk.iter().zip(ids) {
                out[*i] = Some(SendResult { message_id: id, duplicate: false });
            }
        }
        // With a key: one at a time, in order, so two sends of one key dedup too.
        for (i, m) in keyed {
            out[i] = Some(enqueue_in(&mut tx, m.clone()).await?);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out.into_iter().flatten().collect())
    }

    async fn message_list(&self, p: MessageListParams) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.id FROM messages m WHERE m.topic = $1 AND (EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.message_id = m.id AND d.state IN ('pending', 'leased')) OR NOT EXISTS (SELECT 1 \
             FROM deliveries d WHERE d.message_id = m.id)) ORDER BY m.created_at, m.id LIMIT $2",
        )
        .bind(p.topic)
        .bind(i64::from(p.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn message_get(&self, p: MessageGetParams) -> Result<Option<MessageRecord>, StoreError> {
        let id = p.id.as_str();
        let Some(m) = sqlx::query(
            "SELECT id, topic, payload, content_type, idempotency_key, created_at, expires_at FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        else {
            return Ok(None);
        };
        let deliveries = sqlx::query(
            "SELECT consumer_group, state, delivery_count, visible_at, attempts FROM deliveries WHERE message_id = $1 ORDER BY consumer_group",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| DeliveryRecord {
            consumer_group: r.get(0),
            state: DeliveryState::parse(r.get(1)).unwrap_or(DeliveryState::Pending),
            delivery_count: r.get::<i32, _>(2) as u32,
            attempts: r.get::<i32, _>(4) as u32,
            visible_at: r.get(3),
        })
        .collect();
        let content_type: String = m.get("content_type");
        Ok(Some(MessageRecord {
            id: m.get("id"),
            topic: m.get("topic"),
            payload: payload_json(m.get::<&[u8], _>("payload"), &content_type),
            content_type,
            created_at: m.get("created_at"),
            expires_at: m.get("expires_at"),
            idempotency_key: m.get("idempotency_key"),
            deliveries,
        }))
    }

    async fn subscription_ensure(&self, p: SubscriptionEnsureParams) -> Result<(), StoreError> {
        let (prefix, is_prefix) = match p.topic_pattern.strip_suffix('*') {
            Some(prefix) => (prefix.to_owned(), true),
            None => (p.topic_pattern.clone(), false),
        };
        let initial = i32::try_from(p.initial_delay_seconds).unwrap_or(i32::MAX);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // (xmax = 0) is true only for a freshly inserted row.
        let fresh: bool = sqlx::query(
            "INSERT INTO subscriptions (consumer_group, topic_pattern, prefix, is_prefix, initial_delay_s, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (consumer_group, topic_pattern) DO UPDATE SET initial_delay_s = EXCLUDED.initial_delay_s \
             RETURNING (xmax = 0)",
        )
        .bind(&p.consumer_group)
        .bind(&p.topic_pattern)
        .bind(&prefix)
        .bind(is_prefix)
        .bind(initial)
        .bind(p.now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?
        .get(0);
        if fresh {
            // A new group starts at the beginning of the topic: every live message.
            sqlx::query(
                "INSERT INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at) \
                 SELECT id, $1, topic, 'pending', GREATEST(deliver_at, created_at + make_interval(secs => $2)), 0, \
                        idempotency_key IS NOT NULL, $3 \
                 FROM messages WHERE expires_at > $3 AND only_group IS NULL \
                   AND ((NOT $4 AND topic = $5) OR ($4 AND starts_with(topic, $5))) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&p.consumer_group)
            .bind(f64::from(initial))
            .bind(p.now)
            .bind(is_prefix)
            .bind(&prefix)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// One statement: pick due deliveries (`SKIP LOCKED`), lease them, close the `running`
    /// executions of those whose earlier lease expired (abandoned), and — with
    /// `start_executions` — record each new attempt's `running` execution.
    async fn delivery_claim(&self, p: DeliveryClaimParams) -> Result<Vec<LeasedMessage>, StoreError> {
        let lease_until = p.now + secs(p.visibility_seconds);
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "WITH due AS (SELECT d.message_id, m.topic, m.payload, m.content_type, m.headers_json, m.created_at, m.expires_at \
             FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.consumer_group = ",
        );
        q.push_bind(&p.consumer_group)
            .push(" AND d.state IN ('pending', 'leased') AND d.visible_at <= ")
            .push_bind(p.now)
            .push(" AND m.expires_at > ")
            .push_bind(p.now);
        if let Some(topic) = &p.topic {
            q.push(" AND d.topic = ").push_bind(topic);
        }
        if let Some(id) = &p.message_id {
            q.push(" AND d.message_id = ").push_bind(id);
        }
        q.push(" ORDER BY d.visible_at LIMIT ")
            .push_bind(i64::from(p.limit.max(1)))
            .push(" FOR UPDATE OF d SKIP LOCKED), leased AS (UPDATE deliveries d SET state = 'leased', visible_at = ")
            .push_bind(lease_until)
            .push(", delivery_count = d.delivery_count + 1, attempts = d.attempts + ")
            // Only a lease that records the attempt's execution spends an attempt.
            .push_bind(i32::from(p.start_executions))
            .push(", lease_token = replace(gen_random_uuid()::text, '-', ''), lease_holder = ")
            .push_bind(&p.lease_holder)
            .push(", updated_at = ")
            .push_bind(p.now)
            .push(" FROM due WHERE d.message_id = due.message_id AND d.consumer_group = ")
            .push_bind(&p.consumer_group)
            .push(
                " RETURNING d.message_id, d.topic, d.delivery_count, d.lease_token, d.attempts), \
                 abandoned AS (UPDATE job_executions e SET status = 'failed', finished_at = ",
            )
            .push_bind(p.now)
            .push(", duration_ms = (EXTRACT(EPOCH FROM (")
            .push_bind(p.now)
            .push(" - e.started_at)) * 1000)::BIGINT, error = ")
            .push_bind(ABANDONED_ERROR)
            // The redelivered ids as an array computed first: an index condition on
            // (message_id, consumer_group), and nothing read at all when there are none (a
            // join lets the planner scan every execution of the group, guessing wrong).
            .push(
                " WHERE e.message_id = ANY(ARRAY(SELECT message_id FROM leased WHERE delivery_count > 1)) \
                 AND e.finished_at IS NULL AND e.consumer_group = ",
            )
            .push_bind(&p.consumer_group)
            .push(
                "), started AS (INSERT INTO job_executions (topic, message_id, consumer_group, attempt, status, started_at) \
                 SELECT l.topic, l.message_id, ",
            )
            .push_bind(&p.consumer_group)
            .push(", l.attempts, 'running', ")
            .push_bind(p.now)
            .push(" FROM leased l WHERE ")
            .push_bind(p.start_executions)
            .push(
                " RETURNING id, message_id) \
                 SELECT l.message_id, l.delivery_count, l.lease_token, m.topic, m.payload, m.content_type, \
                 m.headers_json, m.created_at, m.expires_at, s.id, l.attempts \
                 FROM leased l JOIN due m ON m.message_id = l.message_id LEFT JOIN started s ON s.message_id = l.message_id",
            );
        let mut held = self.claim_conn.lock().await;
        let conn = held.get().await?;
        let rows = q.build().fetch_all(&mut *conn).await.map_err(db_err);
        let rows = held.check(rows)?;
        drop(held);
        if rows.is_empty()
            && let Some(id) = &p.message_id
        {
            let row = sqlx::query("SELECT state FROM deliveries WHERE message_id = $1 AND consumer_group = $2")
                .bind(id)
                .bind(&p.consumer_group)
                .fetch_optional(&self.pool)
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
        Ok(rows
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                let token: String = r.get(2);
                LeasedMessage {
                    receipt_handle: receipt_handle(&id, &token),
                    message_id: id,
                    topic: r.get(3),
                    consumer_group: p.consumer_group.clone(),
                    payload: r.get(4),
                    content_type: r.get(5),
                    headers_json: r.get(6),
                    delivery_count: r.get::<i32, _>(1) as u32,
                    attempts: r.get::<i32, _>(10) as u32,
                    created_at: r.get(7),
                    expires_at: r.get(8),
                    lease_until,
                    execution_id: r.get(9),
                }
            })
            .collect())
    }

    async fn delivery_ack(&self, p: DeliveryAckParams) -> Result<(), StoreError> {
        self.writer.ack(p).await
    }

    async fn delivery_set_visibility(&self, p: LeaseVisibilityParams) -> Result<DateTime<Utc>, StoreError> {
        let until = p.lease.now + secs(p.visibility_seconds);
        let set = if p.visibility_seconds == 0 { "state = 'pending', lease_token = NULL" } else { "state = 'leased'" };
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        lease_update(&mut conn, &p.lease, set, until).await?;
        Ok(until)
    }

    async fn delivery_retry(&self, p: DeliveryRetryParams) -> Result<(), StoreError> {
        self.writer.move_lease(Move::Retry(p)).await
    }

    async fn delivery_release(&self, p: DeliveryReleaseParams) -> Result<(), StoreError> {
        self.writer.move_lease(Move::Release(p)).await
    }

    async fn delivery_dead_letter(&self, p: DeliveryDeadLetterParams) -> Result<(), StoreError> {
        self.writer.move_lease(Move::DeadLetter(p)).await
    }

    async fn delivery_leased_count(&self, p: DeliveryLeasedCountParams) -> Result<i64, StoreError> {
        let (consumer_group, now) = (p.consumer_group.as_str(), p.now);
        let row = sqlx::query(
            "SELECT COUNT(*) FROM deliveries WHERE consumer_group = $1 AND state = 'leased' AND visible_at > $2",
        )
        .bind(consumer_group)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.get(0))
    }

    async fn delivery_next_due(&self, p: DeliveryNextDueParams) -> Result<Option<DateTime<Utc>>, StoreError> {
        let consumer_group = p.consumer_group.as_str();
        // Asked by every dispatcher as it goes idle: on the claim's connection, where the
        // statement is planned once and no ping precedes it (the main pool plans every call).
        let mut held = self.claim_conn.lock().await;
        let conn = held.get().await?;
        let row = sqlx::query(
            "SELECT MIN(visible_at) FROM deliveries WHERE consumer_group = $1 AND state IN ('pending', 'leased')",
        )
        .bind(consumer_group)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err);
        Ok(held.check(row)?.get(0))
    }

    async fn execution_start(&self, p: ExecutionStartParams) -> Result<i64, StoreError> {
        self.writer.execution_start(p).await
    }

    async fn execution_finish(&self, p: ExecutionFinishParams) -> Result<(), StoreError> {
        self.writer.execution_finish(p).await
    }

    async fn execution_list(&self, p: ExecutionListParams) -> Result<Vec<ExecutionRecord>, StoreError> {
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
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(if p.limit == 0 { 100 } else { p.limit }));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        Ok(rows.iter().map(execution).collect())
    }

    async fn checkpoint_get(&self, p: CheckpointGetParams) -> Result<Option<serde_json::Value>, StoreError> {
        let (message_id, consumer_group) = (p.message_id.as_str(), p.consumer_group.as_str());
        let row = sqlx::query("SELECT value FROM checkpoints WHERE message_id = $1 AND consumer_group = $2")
            .bind(message_id)
            .bind(consumer_group)
            .fetch_optional(&self.pool)
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
        sqlx::query(
            "INSERT INTO checkpoints (message_id, consumer_group, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (message_id, consumer_group) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
        )
        .bind(&p.message_id)
        .bind(&p.consumer_group)
        .bind(p.value.to_string())
        .bind(p.now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn queue_stats(&self, p: QueueStatsParams) -> Result<Vec<TopicStats>, StoreError> {
        let now = p.now;
        let rows = sqlx::query(
            "SELECT topic, \
               COUNT(*) FILTER (WHERE state IN ('pending', 'leased') AND visible_at <= $1), \
               COUNT(*) FILTER (WHERE state = 'pending' AND visible_at > $1), \
               COUNT(*) FILTER (WHERE state = 'leased' AND visible_at > $1), \
               COUNT(*) FILTER (WHERE state = 'acked'), COUNT(*) FILTER (WHERE state = 'dead') \
             FROM deliveries GROUP BY topic",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut stats: std::collections::BTreeMap<String, TopicStats> = rows
            .iter()
            .map(|r| {
                let topic: String = r.get(0);
                let s = TopicStats {
                    topic: topic.clone(),
                    waiting: r.get(1),
                    delayed: r.get(2),
                    running: r.get(3),
                    succeeded: r.get(4),
                    failed: 0,
                    dead: r.get(5),
                };
                (topic, s)
            })
            .collect();
        let failed = sqlx::query("SELECT topic, COUNT(*) FROM job_executions WHERE status = 'failed' GROUP BY topic")
            .fetch_all(&self.pool)
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
        crate::queue_depth::queue_depth(&self.pool, p).await
    }

    async fn execution_counts(&self, p: ExecutionCountParams) -> Result<Vec<ExecutionCounts>, StoreError> {
        crate::queue_depth::execution_counts(&self.pool, p).await
    }

    async fn progress_put(&self, p: ProgressPutParams) -> Result<(), StoreError> {
        crate::job_progress::progress_put(&self.pool, p).await
    }

    async fn progress_list(&self, p: ProgressListParams) -> Result<Vec<ProgressRecord>, StoreError> {
        crate::job_progress::progress_list(&self.pool, p).await
    }

    async fn sync_log_get(&self, p: SyncLogGetParams) -> Result<Option<SyncLogRecord>, StoreError> {
        let (topic, key) = (p.topic.as_str(), p.key.as_str());
        crate::job_progress::sync_log_get(&self.pool, topic, key).await
    }

    async fn sync_log_put(&self, p: SyncLogPutParams) -> Result<(), StoreError> {
        crate::job_progress::sync_log_put(&self.pool, p).await
    }

    async fn sync_log_list(&self, p: SyncLogListParams) -> Result<Vec<SyncLogRecord>, StoreError> {
        let topic = p.topic.as_deref();
        crate::job_progress::sync_log_list(&self.pool, topic).await
    }

    async fn dead_letter_list(&self, p: DeadLetterListParams) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let limit = p.limit;
        let rows = sqlx::query(
            "SELECT id, message_id, topic, consumer_group, content_type, substring(payload FROM 1 FOR $2) AS payload, \
             octet_length(payload) AS payload_bytes, error, attempts, created_at \
             FROM dead_letters ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(if limit == 0 { 100 } else { limit }))
        .bind(PAYLOAD_PREVIEW_BYTES as i32)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(dead_letter).collect())
    }

    async fn dead_letter_get(&self, p: DeadLetterGetParams) -> Result<Option<DeadLetterRecord>, StoreError> {
        let id = p.id;
        let row = sqlx::query(
            "SELECT id, message_id, topic, consumer_group, content_type, payload, octet_length(payload) AS payload_bytes, \
             error, attempts, created_at FROM dead_letters WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.as_ref().map(dead_letter))
    }

    async fn dead_letter_delete(&self, p: DeadLetterDeleteParams) -> Result<bool, StoreError> {
        let id = p.id;
        let r =
            sqlx::query("DELETE FROM dead_letters WHERE id = $1").bind(id).execute(&self.pool).await.map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn dead_letter_settle(&self, p: DeadLetterSettleParams) -> Result<DeadLetterSettled, StoreError> {
        crate::dead_letter_settle::settle(&self.pool, p).await
    }

    async fn dead_letter_restore(&self, p: DeadLetterRestoreParams) -> Result<(), StoreError> {
        let DeadLetterRestoreParams { letter, payload } = p;
        crate::dead_letter_settle::restore(&self.pool, letter, payload).await
    }

    async fn dead_letter_insert(&self, p: DeadLetterInsertParams) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO dead_letters \
               (message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, headers_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&p.message_id)
        .bind(&p.topic)
        .bind(&p.consumer_group)
        .bind(&p.content_type)
        .bind(&p.payload)
        .bind(&p.error)
        .bind(i32::try_from(p.attempts).unwrap_or(i32::MAX))
        .bind(p.now)
        .bind(&p.headers_json)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.get(0))
    }

    async fn execution_close_outlived(&self, p: OutlivedParams) -> Result<u64, StoreError> {
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
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(closed)
    }

    async fn maintenance_run(&self, p: MaintenanceParams) -> Result<MaintenanceReport, StoreError> {
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
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        let mut report = MaintenanceReport { executions_rescued, ..MaintenanceReport::default() };

        // Expired messages: unfinished deliveries become dead letters (nothing vanishes silently).
        let mut tx = self.pool.begin().await.map_err(db_err)?;
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

        report.executions_pruned = crate::retention::prune_executions(&self.pool, &p).await?;
        report.finished_messages_pruned = crate::retention::prune_finished_messages(&self.pool, &p).await?;
        let dl_cutoff = vqs::store::retention_cutoff(p.now, p.dead_letter_retention_seconds);
        report.dead_letters_pruned = sqlx::query(
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE created_at < $1 ORDER BY id LIMIT $2)",
        )
        .bind(dl_cutoff)
        .bind(batch)
        .execute(&self.pool)
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
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        report.cron_runs_pruned = crate::retention::prune_cron_runs(&self.pool, &p).await?;
        sqlx::query("DELETE FROM cron_locks WHERE expires_at <= $1")
            .bind(p.now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(report)
    }

    async fn cron_run_start(&self, p: CronRunStartParams) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "INSERT INTO cron_runs (path, schedule, scheduled_at, started_at, outcome) VALUES ($1, $2, $3, $4, 'running') \
             ON CONFLICT (path, schedule, scheduled_at) DO NOTHING RETURNING id",
        )
        .bind(&p.path)
        .bind(&p.schedule)
        .bind(p.scheduled_at)
        .bind(p.now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn cron_run_finish(&self, p: CronRunFinishParams) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE cron_runs SET finished_at = $1, duration_ms = (EXTRACT(EPOCH FROM ($1 - started_at)) * 1000)::BIGINT, \
             status_code = $2, outcome = $3, error = $4 WHERE id = $5",
        )
        .bind(p.now)
        .bind(p.status_code.map(i32::from))
        .bind(if p.success { "success" } else { "failed" })
        .bind(&p.error)
        .bind(p.id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn cron_run_list(&self, p: CronRunListParams) -> Result<Vec<CronRunRecord>, StoreError> {
        let (path, limit) = (p.path.as_deref(), p.limit);
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {CRON_RUN_COLUMNS} FROM cron_runs r WHERE TRUE"));
        if let Some(path) = path {
            q.push(" AND path = ").push_bind(path);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(if limit == 0 { 100 } else { limit }));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        Ok(rows.iter().map(cron_run).collect())
    }

    async fn cron_run_summary(&self, _: CronRunSummaryParams) -> Result<Vec<CronRunSummary>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CRON_RUN_COLUMNS}, s.last_success FROM cron_runs r JOIN \
               (SELECT MAX(id) AS id, MAX(finished_at) FILTER (WHERE outcome = 'success') AS last_success \
                FROM cron_runs GROUP BY path, schedule) s ON s.id = r.id ORDER BY r.path, r.schedule"
        ))
        .fetch_all(&self.pool)
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

    async fn cron_lock_acquire(&self, p: CronLockParams) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO cron_locks (name, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at \
             WHERE cron_locks.expires_at <= $4 RETURNING owner",
        )
        .bind(&p.name)
        .bind(&p.owner)
        .bind(p.now + secs(p.ttl_seconds))
        .bind(p.now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.is_some())
    }

    async fn cron_lock_release(&self, p: CronLockReleaseParams) -> Result<bool, StoreError> {
        let (name, owner) = (p.name.as_str(), p.owner.as_str());
        let r = sqlx::query("DELETE FROM cron_locks WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn cron_lock_extend(&self, p: CronLockExtendParams) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE cron_locks SET expires_at = $3 WHERE name = $1 AND owner = $2")
            .bind(&p.name)
            .bind(&p.owner)
            .bind(p.now + secs(p.ttl_seconds))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn process_beat(&self, p: ProcessBeatParams) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE processes SET heartbeat_at = $2 WHERE id = $1")
            .bind(&p.process_id)
            .bind(p.now)
            .execute(&self.pool)
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
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(false)
    }

    async fn process_rescue(&self, p: ProcessRescueParams) -> Result<ProcessRescueReport, StoreError> {
        // One transaction: the dead are forgotten only together with their leases' rescue. A
        // process that beats while this runs is not deleted (its row is re-checked after the
        // beat commits), so a live process's leases are never touched.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
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

    async fn session_revoke(&self, p: SessionRevokeParams) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM revoked_sessions WHERE expires_at <= $1")
            .bind(p.now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO revoked_sessions (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING")
            .bind(&p.nonce)
            .bind(p.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn session_revoked(&self, p: SessionRevokedParams) -> Result<bool, StoreError> {
        let nonce = p.nonce.as_str();
        let row = sqlx::query("SELECT 1 FROM revoked_sessions WHERE nonce = $1")
            .bind(nonce)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(row.is_some())
    }

    async fn delivery_topic(&self, p: DeliveryTopicParams) -> Result<Option<String>, StoreError> {
        let (message_id, consumer_group) = (p.message_id.as_str(), p.consumer_group.as_str());
        sqlx::query_scalar("SELECT topic FROM deliveries WHERE message_id = $1 AND consumer_group = $2")
            .bind(message_id)
            .bind(consumer_group)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if !self.writer.is_running() {
            return Err(StoreError::Database(
                "the PostgreSQL writers have stopped (see the error logged when they did)".into(),
            ));
        }
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }
}
