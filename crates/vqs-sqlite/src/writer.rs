//! The single writer: every write goes through one connection owned by one task, which
//! drains whatever is queued and commits the hot-path operations (sends, execution starts
//! and finishes, acks) together, each kind as one multi-row statement. SQLite has one
//! writer anyway; this turns N concurrent jobs into a handful of statements per commit.

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::query_builder::Separated;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::mpsc;
use vqs::store::{
    DeliveryAckParams, ExecutionFinishParams, ExecutionStartParams, ExecutionStatus, MessageSendParams, OnDuplicate,
    SendResult, StoreError, new_message_id_at, split_receipt_handle,
};
use vqs::store_support::{Reply, WriteQueue, ack_rounds, drain_batch, write_row_by_row};

use crate::rows::{db_err, us};
use crate::statements::{ROWS_PER_STATEMENT, push_rows};

/// Operations drained into one transaction at most.
const MAX_BATCH: usize = 1024;

type RunFn = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, ()> + Send>;

enum Op {
    Send(MessageSendParams, Reply<SendResult>),
    ExecStart(ExecutionStartParams, Reply<i64>),
    ExecFinish(ExecutionFinishParams, Reply<()>),
    Ack(DeliveryAckParams, Reply<()>),
    Run(RunFn),
}

/// A handle to the writer task. Cheap to clone; the task ends when the last handle drops.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    queue: WriteQueue<Op>,
}

impl Writer {
    pub(crate) fn start(conn: SqliteConnection) -> Writer {
        let (queue, rx) =
            WriteQueue::new("the SQLite writer has stopped, or this write panicked (see the error logged)");
        // If the writer ever dies, its cause is logged and every caller (and `ping`) gets
        // "the SQLite writer has stopped" instead of waiting.
        tokio::spawn(vqs::log_panic("sqlite writer", writer_loop(conn, rx)));
        Writer { queue }
    }

    /// False once the writer task has stopped (its callers get an error, health says down).
    pub(crate) fn is_running(&self) -> bool {
        self.queue.is_running()
    }

    pub(crate) async fn send(&self, p: MessageSendParams) -> Result<SendResult, StoreError> {
        self.queue.call(|r| Op::Send(p, r)).await
    }

    pub(crate) async fn execution_start(&self, p: ExecutionStartParams) -> Result<i64, StoreError> {
        self.queue.call(|r| Op::ExecStart(p, r)).await
    }

    pub(crate) async fn execution_finish(&self, p: ExecutionFinishParams) -> Result<(), StoreError> {
        self.queue.call(|r| Op::ExecFinish(p, r)).await
    }

    pub(crate) async fn ack(&self, p: DeliveryAckParams) -> Result<(), StoreError> {
        self.queue.call(|r| Op::Ack(p, r)).await
    }

    /// Run `f` on the write connection, between batches.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        self.queue
            .call(|reply: Reply<T>| {
                Op::Run(Box::new(move |conn| {
                    Box::pin(async move {
                        let _ = reply.send(f(conn).await);
                    })
                }))
            })
            .await
    }
}

#[derive(Default)]
struct Batch {
    sends: Vec<(MessageSendParams, Reply<SendResult>)>,
    starts: Vec<(ExecutionStartParams, Reply<i64>)>,
    finishes: Vec<(ExecutionFinishParams, Reply<()>)>,
    acks: Vec<(DeliveryAckParams, Reply<()>)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.starts.is_empty() && self.finishes.is_empty() && self.acks.is_empty()
    }
}

async fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut batch = Batch::default();
        let mut runs = Vec::new();
        for op in drain_batch(first, MAX_BATCH, || rx.try_recv().ok()) {
            match op {
                Op::Send(p, r) => batch.sends.push((p, r)),
                Op::ExecStart(p, r) => batch.starts.push((p, r)),
                Op::ExecFinish(p, r) => batch.finishes.push((p, r)),
                Op::Ack(p, r) => batch.acks.push((p, r)),
                Op::Run(f) => runs.push(f),
            }
        }
        if !batch.is_empty() {
            // A bug in a batch fails that batch (its callers see the writer's error), never the
            // writer: the next batch is written as usual.
            if std::panic::AssertUnwindSafe(flush(&mut conn, batch)).catch_unwind().await.is_err() {
                tracing::error!("a write batch panicked; its operations failed");
            }
        }
        for f in runs {
            // A panic in a maintenance step (or any `run`) fails that step, never the writer.
            vqs::log_panic("sqlite writer (one step; the writer goes on)", f(&mut conn)).await;
        }
    }
    let _ = conn.close().await;
}

impl Batch {
    fn len(&self) -> usize {
        self.sends.len() + self.starts.len() + self.finishes.len() + self.acks.len()
    }

    /// Each operation as a batch of its own.
    fn split(self) -> Vec<Batch> {
        let mut out = Vec::with_capacity(self.len());
        out.extend(self.sends.into_iter().map(|s| Batch { sends: vec![s], ..Batch::default() }));
        out.extend(self.starts.into_iter().map(|s| Batch { starts: vec![s], ..Batch::default() }));
        out.extend(self.finishes.into_iter().map(|f| Batch { finishes: vec![f], ..Batch::default() }));
        out.extend(self.acks.into_iter().map(|a| Batch { acks: vec![a], ..Batch::default() }));
        out
    }
}

async fn flush(conn: &mut SqliteConnection, batch: Batch) {
    match write_batch(conn, &batch).await {
        Ok(written) => answer(batch, written),
        // A value the database refused fails its whole transaction: write the batch again
        // one operation at a time, so only the operation that holds it fails.
        Err(e) if write_row_by_row(&e, batch.len()) => {
            tracing::warn!(error = %e, operations = batch.len(), "write batch refused; writing it row by row");
            for one in batch.split() {
                let written = write_batch(conn, &one).await;
                match written {
                    Ok(written) => answer(one, written),
                    Err(e) => fail(one, e),
                }
            }
        }
        Err(e) => fail(batch, e),
    }
}

type Written = (Vec<Result<SendResult, StoreError>>, Vec<i64>, Vec<Result<(), StoreError>>);

async fn write_batch(conn: &mut SqliteConnection, batch: &Batch) -> Result<Written, StoreError> {
    // One transaction per batch, so each dirty page is written to the WAL once per commit
    // rather than once per statement; a lone operation runs in autocommit (fewer round
    // trips, lower latency when idle).
    // An ack that closes its execution is two statements: one transaction too.
    // A replace is several statements too.
    let many = batch.len() > 1
        || batch.acks.iter().any(|(a, _)| a.execution.is_some())
        || batch.sends.iter().any(|(p, _)| p.idempotency_key.is_some() && p.on_duplicate == OnDuplicate::Replace);
    let result = async {
        if many {
            // IMMEDIATE: take the write lock up front, so another process writing the same
            // file makes this wait (busy timeout) instead of failing with SQLITE_BUSY.
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(db_err)?;
        }
        let sending: Vec<&MessageSendParams> = batch.sends.iter().map(|(p, _)| p).collect();
        let sent = sends(conn, &sending).await?;
        let started = starts(conn, &batch.starts).await?;
        // Executions closed on their own and those closed with their acknowledgement.
        let closing =
            batch.finishes.iter().map(|(p, _)| p).chain(batch.acks.iter().filter_map(|(a, _)| a.execution.as_ref()));
        finishes(conn, closing).await?;
        let acked = acks(conn, &batch.acks).await?;
        if many {
            sqlx::query("COMMIT").execute(&mut *conn).await.map_err(db_err)?;
        }
        Ok::<_, StoreError>((sent, started, acked))
    }
    .await;
    if result.is_err() && many {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    result
}

fn answer(batch: Batch, (sent, started, acked): Written) {
    for ((_, reply), r) in batch.sends.into_iter().zip(sent) {
        let _ = reply.send(r);
    }
    for ((_, reply), id) in batch.starts.into_iter().zip(started) {
        let _ = reply.send(Ok(id));
    }
    for (_, reply) in batch.finishes {
        let _ = reply.send(Ok(()));
    }
    for ((_, reply), r) in batch.acks.into_iter().zip(acked) {
        let _ = reply.send(r);
    }
}

fn fail(batch: Batch, e: StoreError) {
    tracing::warn!(error = %e, "write batch failed");
    batch.sends.into_iter().for_each(|(_, r)| drop(r.send(Err(e.clone()))));
    batch.starts.into_iter().for_each(|(_, r)| drop(r.send(Err(e.clone()))));
    batch.finishes.into_iter().for_each(|(_, r)| drop(r.send(Err(e.clone()))));
    batch.acks.into_iter().for_each(|(_, r)| drop(r.send(Err(e.clone()))));
}

/// One message's values, in [`INSERT_MESSAGES`]'s column order.
fn bind_message<'a>(b: &mut Separated<'_, 'a, Sqlite, &'static str>, p: &'a MessageSendParams, id: &'a str) {
    let created = us(p.now);
    b.push_bind(id)
        .push_bind(&p.topic)
        .push_bind(&p.payload)
        .push_bind(&p.content_type)
        .push_bind(&p.headers_json)
        .push_bind(&p.idempotency_key)
        .push_bind(created)
        .push_bind(created + i64::from(p.delay_seconds) * 1_000_000)
        .push_bind(created + i64::from(p.retention_seconds) * 1_000_000)
        .push_bind(&p.only_group)
        .push_bind(&p.group_key)
        .push_bind(i64::from(p.priority));
}

const INSERT_MESSAGES: &str = "INSERT INTO messages \
    (id, topic, payload, content_type, headers_json, idempotency_key, created_at, deliver_at, expires_at, only_group, group_key, \
    priority) ";

/// Insert messages: those without a key in multi-row statements, keyed ones one by one.
/// One result per message (a keyed send can fail alone); `Err` when a statement failed.
pub(crate) async fn sends(
    conn: &mut SqliteConnection,
    sends: &[&MessageSendParams],
) -> Result<Vec<Result<SendResult, StoreError>>, StoreError> {
    let mut out: Vec<Option<Result<SendResult, StoreError>>> = (0..sends.len()).map(|_| None).collect();
    // Without a key: one multi-row INSERT (the fan-out trigger adds the deliveries).
    let plain: Vec<(usize, &MessageSendParams, String)> = sends
        .iter()
        .enumerate()
        .filter(|(_, p)| p.idempotency_key.is_none())
        .map(|(i, p)| (i, *p, new_message_id_at(p.now)))
        .collect();
    for chunk in plain.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(INSERT_MESSAGES);
        push_rows(
            &mut q,
            "column2, column3, column4, column5, column6, column7, column8, column9, column10, column11, column12, \
             column13",
            12,
            chunk,
            |b, (_, p, id)| bind_message(b, p, id),
        );
        q.build().execute(&mut *conn).await.map_err(db_err)?;
        for (i, _, id) in chunk {
            out[*i] = Some(Ok(SendResult { message_id: id.clone(), duplicate: false, replaced: false }));
        }
    }
    // With a key: one at a time, in order, so two sends of one key in a batch dedup (or the
    // second replaces the first) too.
    for (i, p) in sends.iter().enumerate().filter(|(_, p)| p.idempotency_key.is_some()) {
        out[i] = Some(keyed_send(conn, p).await);
    }
    Ok(out.into_iter().map(|r| r.unwrap_or_else(|| Err(StoreError::Database("send lost".into())))).collect())
}

async fn keyed_send(conn: &mut SqliteConnection, p: &MessageSendParams) -> Result<SendResult, StoreError> {
    // Two rounds settle it: an expired original, or a started one a replace hands the key
    // away from, releases its key, then the insert goes in.
    for _ in 0..2 {
        let id = new_message_id_at(p.now);
        let mut q = QueryBuilder::new(INSERT_MESSAGES);
        q.push_values([(p, &id)], |mut b, (p, id)| bind_message(&mut b, p, id));
        q.push(" ON CONFLICT (topic, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id");
        if q.build().fetch_optional(&mut *conn).await.map_err(db_err)?.is_some() {
            return Ok(SendResult { message_id: id, duplicate: false, replaced: false });
        }
        let original = sqlx::query("SELECT id, expires_at FROM messages WHERE topic = ? AND idempotency_key = ?")
            .bind(&p.topic)
            .bind(&p.idempotency_key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        match original {
            Some(r) if r.get::<i64, _>(1) > us(p.now) => {
                let original: String = r.get(0);
                if p.on_duplicate == OnDuplicate::Replace {
                    match crate::replace::replace_held(conn, p, &original).await? {
                        Some(replaced) => return Ok(replaced),
                        // Started or finished: its key is released; send anew.
                        None => continue,
                    }
                }
                return Ok(SendResult { message_id: original, duplicate: true, replaced: false });
            }
            // The original expired: its key no longer dedups. Release it and insert again.
            Some(r) => {
                sqlx::query("UPDATE messages SET idempotency_key = NULL WHERE id = ?")
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

/// A `running` execution row's values: topic, message id, consumer group, attempt, and when it
/// started (microseconds).
pub(crate) type RunningRow<'q> = (&'q str, &'q str, &'q str, i64, i64);

/// `INSERT` of a `running` execution row per item of `rows` (at most [`ROWS_PER_STATEMENT`]),
/// as padded rows (`statements.rs`); the caller adds its `RETURNING`. The starts written here
/// and the attempts a claim records (`lease.rs`) both use it.
pub(crate) fn insert_running<'q, T>(
    rows: &'q [T],
    values: impl Fn(&'q T) -> RunningRow<'q>,
) -> QueryBuilder<'q, Sqlite> {
    let mut q = QueryBuilder::new(
        "INSERT INTO job_executions (topic, message_id, consumer_group, attempt, status, started_at) ",
    );
    push_rows(&mut q, "column2, column3, column4, column5, 'running', column6", 5, rows, |b, row| {
        let (topic, message_id, consumer_group, attempt, started) = values(row);
        b.push_bind(topic).push_bind(message_id).push_bind(consumer_group).push_bind(attempt).push_bind(started);
    });
    q
}

async fn starts(
    conn: &mut SqliteConnection,
    starts: &[(ExecutionStartParams, Reply<i64>)],
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(starts.len());
    for chunk in starts.chunks(ROWS_PER_STATEMENT) {
        let mut q = insert_running(chunk, |(p, _)| {
            (&p.topic, &p.message_id, &p.consumer_group, i64::from(p.attempt), us(p.now))
        });
        q.push(" RETURNING id, message_id, consumer_group, attempt");
        let rows = q.build().fetch_all(&mut *conn).await.map_err(db_err)?;
        let by_key: HashMap<(String, String, i64), i64> =
            rows.iter().map(|r| ((r.get(1), r.get(2), r.get(3)), r.get(0))).collect();
        for (p, _) in chunk {
            let key = (p.message_id.clone(), p.consumer_group.clone(), i64::from(p.attempt));
            ids.push(*by_key.get(&key).ok_or_else(|| StoreError::Database("execution insert lost a row".into()))?);
        }
    }
    Ok(ids)
}

/// Close execution rows (those still `running`), a multi-row statement per chunk.
pub(crate) async fn finishes<'a>(
    conn: &mut SqliteConnection,
    finishes: impl Iterator<Item = &'a ExecutionFinishParams>,
) -> Result<(), StoreError> {
    let finishes: Vec<&ExecutionFinishParams> = finishes.collect();
    for chunk in finishes.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new("WITH v (id, status, now, error, began) AS (");
        push_rows(&mut q, "column2, column3, column4, column5, column6", 5, chunk, |b, p| {
            b.push_bind(p.id)
                .push_bind(p.status.as_str())
                .push_bind(us(p.now))
                .push_bind(&p.error)
                .push_bind(p.began_at.map(us));
        });
        q.push(
            ") UPDATE job_executions SET status = v.status, finished_at = v.now, \
             duration_ms = (v.now - COALESCE(v.began, job_executions.started_at)) / 1000, error = v.error \
             FROM v WHERE job_executions.id = v.id AND job_executions.status = 'running'",
        );
        q.build().execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

/// How an acknowledgement ends its delivery: `cancelled` when the job cancelled itself (its
/// attempt closes `cancelled`), `acked` otherwise.
fn ack_state(p: &DeliveryAckParams) -> &'static str {
    match &p.execution {
        Some(e) if e.status == ExecutionStatus::Cancelled => "cancelled",
        _ => "acked",
    }
}

async fn acks(
    conn: &mut SqliteConnection,
    acks: &[(DeliveryAckParams, Reply<()>)],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut out: Vec<Option<Result<(), StoreError>>> = vec![None; acks.len()];
    // Of several acknowledgements of one delivery (a stale lease's and the current one's),
    // each goes in a statement of its own, in order (`ack_rounds`): a statement says which
    // deliveries it acknowledged, not with which handle.
    let mut todo: Vec<(usize, &vqs::store::LeaseParams, &str, &str, &str)> = Vec::with_capacity(acks.len());
    for (i, (p, _)) in acks.iter().enumerate() {
        match split_receipt_handle(&p.lease.receipt_handle) {
            Ok((m, t)) => todo.push((i, &p.lease, m, t, ack_state(p))),
            Err(e) => out[i] = Some(Err(e)),
        }
    }
    for round in ack_rounds(todo, |&(_, p, m, ..)| (m, p.consumer_group.as_str())) {
        for chunk in round.chunks(ROWS_PER_STATEMENT) {
            let mut acked: std::collections::HashSet<(String, String)> = Default::default();
            let mut q = QueryBuilder::new("WITH v (message_id, consumer_group, token, now, state) AS (");
            push_rows(&mut q, "column2, column3, column4, column5, column6", 5, chunk, |b, (_, p, m, t, state)| {
                b.push_bind(*m).push_bind(&p.consumer_group).push_bind(*t).push_bind(us(p.now)).push_bind(*state);
            });
            q.push(
                ") UPDATE deliveries SET state = v.state, lease_token = NULL, visible_at = v.now, updated_at = v.now \
                 FROM v WHERE deliveries.message_id = v.message_id AND deliveries.consumer_group = v.consumer_group \
                 AND deliveries.state = 'leased' AND deliveries.lease_token = v.token \
                 RETURNING deliveries.message_id, deliveries.consumer_group",
            );
            // The message keeps its idempotency key: it dedups for the message's retention
            // (SPEC "Dedup"), not until its ack. A send after expiry frees it (`keyed_send`).
            for r in q.build().fetch_all(&mut *conn).await.map_err(db_err)? {
                acked.insert((r.get(0), r.get(1)));
            }
            for &(i, p, m, ..) in chunk {
                out[i] = Some(if acked.contains(&(m.to_string(), p.consumer_group.clone())) {
                    Ok(())
                } else {
                    Err(crate::lease_failure::lease_failure(conn, m, &p.consumer_group, &p.receipt_handle).await)
                });
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Database("an ack was not written".into()))))
        .collect())
}
