//! Group commit for the hot path. Concurrent jobs each need a few small writes (publish,
//! start an execution, close it, acknowledge); one commit per write caps a process at a few
//! thousand jobs a second. Writer tasks take whatever is queued and write it together:
//! every plain publish of a batch in one multi-row insert, and every execution start,
//! execution finish and acknowledgement of a batch in **one** statement (data-modifying
//! CTEs over `UNNEST`ed arrays: one round trip and one commit, whatever the batch size, with
//! one prepared statement). A lone operation goes out at once: batching adds no waiting,
//! it only collects what queued up while the previous batch was being written.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::{Mutex, mpsc};
use vqs::store::{
    DeliveryAckParams, DeliveryDeadLetterParams, DeliveryReleaseParams, DeliveryRetryParams, ExecutionFinishParams,
    ExecutionStartParams, ExecutionStatus, LeaseParams, MessageSendParams, SendResult, StoreError, new_message_id_at,
    split_receipt_handle,
};
use vqs::store_support::{Reply, WriteQueue, ack_rounds, drain_batch, lease_delivery, write_row_by_row};

use crate::held_connection::HeldConnection;
use crate::lease_failure::lease_failure;
use crate::publish::{enqueue_in, insert_plain};
use crate::rows::db_err;

/// Operations taken into one batch at most.
const MAX_BATCH: usize = 2048;

enum Op {
    Send(MessageSendParams, Reply<SendResult>),
    ExecStart(ExecutionStartParams, Reply<i64>),
    ExecFinish(ExecutionFinishParams, Reply<()>),
    Ack(DeliveryAckParams, Reply<()>),
    /// A lease given back: for a retry, to the dead letters, or unused (see [`Move`]).
    Move(Move, Reply<()>),
}

/// A leased delivery leaving its lease other than by an acknowledgement.
pub(crate) enum Move {
    Retry(DeliveryRetryParams),
    DeadLetter(DeliveryDeadLetterParams),
    Release(DeliveryReleaseParams),
}

impl Move {
    fn lease(&self) -> &LeaseParams {
        match self {
            Move::Retry(p) => &p.lease,
            Move::DeadLetter(p) => &p.lease,
            Move::Release(p) => &p.lease,
        }
    }
}

/// A handle to the writer tasks. Cheap to clone; the tasks end when the last handle drops.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    queue: WriteQueue<Op>,
}

impl Writer {
    /// Start `tasks` writers, each holding a connection of `hot`: while one writes its
    /// batch, the next collects one. They stop when `pool` closes.
    pub(crate) fn start(pool: PgPool, hot: PgPool, tasks: usize) -> Writer {
        let (queue, rx) = WriteQueue::new("the PostgreSQL writer has stopped");
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..tasks.max(1) {
            tokio::spawn(vqs::log_panic("postgres writer", writer_loop(pool.clone(), hot.clone(), rx.clone())));
        }
        Writer { queue }
    }

    /// False once every writer task has stopped (its callers get an error, health says down).
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

    /// Retries, dead letters and releases are group-committed like acknowledgements: a burst
    /// of thousands of failures due at once (the third attempts of a failing batch) is a few
    /// statements, not thousands of transactions queueing for the pool.
    pub(crate) async fn move_lease(&self, m: Move) -> Result<(), StoreError> {
        self.queue.call(|r| Op::Move(m, r)).await
    }
}

#[derive(Default)]
struct Batch {
    sends: Vec<(MessageSendParams, Reply<SendResult>)>,
    starts: Vec<(ExecutionStartParams, Reply<i64>)>,
    finishes: Vec<(ExecutionFinishParams, Reply<()>)>,
    acks: Vec<(DeliveryAckParams, Reply<()>)>,
    moves: Vec<(Move, Reply<()>)>,
}

async fn writer_loop(pool: PgPool, hot: PgPool, rx: Arc<Mutex<mpsc::UnboundedReceiver<Op>>>) {
    let mut held = HeldConnection::new(hot);
    // `pool.close()` waits for every connection to come back: give ours back and stop.
    let closed = pool.close_event();
    tokio::pin!(closed);
    loop {
        let mut batch = Batch::default();
        {
            // One writer collects at a time; the others are writing their batches meanwhile.
            let mut rx = tokio::select! {
                rx = rx.lock() => rx,
                _ = &mut closed => return,
            };
            let first = tokio::select! {
                op = rx.recv() => op,
                _ = &mut closed => None,
            };
            let Some(first) = first else { return };
            for op in drain_batch(first, MAX_BATCH, || rx.try_recv().ok()) {
                match op {
                    Op::Send(p, r) => batch.sends.push((p, r)),
                    Op::ExecStart(p, r) => batch.starts.push((p, r)),
                    Op::ExecFinish(p, r) => batch.finishes.push((p, r)),
                    Op::Ack(p, r) => batch.acks.push((p, r)),
                    Op::Move(m, r) => batch.moves.push((m, r)),
                }
            }
        }
        let Batch { sends, starts, finishes, acks, moves } = batch;
        // A bug in a batch fails that batch (its callers see the writer's error), never the
        // writers: the next batch is written as usual.
        let write = async {
            write_sends(&mut held, sends).await;
            write_settlements(&mut held, &pool, starts, finishes, acks).await;
            write_moves(&mut held, &pool, moves).await;
        };
        if std::panic::AssertUnwindSafe(write).catch_unwind().await.is_err() {
            tracing::error!("a write batch panicked; its operations failed");
        }
    }
}

async fn write_sends(held: &mut HeldConnection, sends: Vec<(MessageSendParams, Reply<SendResult>)>) {
    if sends.is_empty() {
        return;
    }
    let (plain, keyed): (Vec<_>, Vec<_>) = sends.into_iter().partition(|(p, _)| p.idempotency_key.is_none());
    if !plain.is_empty() {
        let params: Vec<&MessageSendParams> = plain.iter().map(|(p, _)| p).collect();
        let ids: Vec<String> = plain.iter().map(|(p, _)| new_message_id_at(p.now)).collect();
        let inserted = match held.get().await {
            Ok(conn) => insert_plain(conn, &params, &ids).await,
            Err(e) => Err(e),
        };
        let inserted = held.check(inserted);
        match inserted {
            Ok(()) => {
                for ((_, reply), id) in plain.into_iter().zip(ids) {
                    let _ = reply.send(Ok(SendResult { message_id: id, duplicate: false, replaced: false }));
                }
            }
            // A value the database refused fails the whole statement: insert the batch again
            // one message at a time, so only the message that holds it fails.
            Err(e) if write_row_by_row(&e, plain.len()) => {
                tracing::warn!(error = %e, messages = plain.len(), "publish batch refused; inserting row by row");
                for (p, reply) in plain {
                    let id = new_message_id_at(p.now);
                    let r = match held.get().await {
                        Ok(conn) => insert_plain(conn, &[&p], std::slice::from_ref(&id)).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(held.check(r).map(|()| SendResult {
                        message_id: id,
                        duplicate: false,
                        replaced: false,
                    }));
                }
            }
            Err(e) => plain.into_iter().for_each(|(_, r)| drop(r.send(Err(e.clone())))),
        }
    }
    // With a key: one at a time, in order, so two sends of one key in a batch dedup too.
    for (p, reply) in keyed {
        let r = match held.get().await {
            Ok(conn) => enqueue_in(conn, p).await,
            Err(e) => Err(e),
        };
        let _ = reply.send(held.check(r));
    }
}

/// Execution starts, execution finishes (alone or with their acknowledgement) and
/// acknowledgements, in one statement. Execution ids are drawn in input order, so each
/// start gets its own id back; an acknowledgement that matched no live lease is looked at
/// again to say why.
const SETTLE: &str = "\
WITH started AS MATERIALIZED (
    SELECT v.ord, nextval(pg_get_serial_sequence('job_executions', 'id')) AS id, v.topic, v.message_id,
           v.consumer_group, v.attempt, v.started_at
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::timestamptz[])
         WITH ORDINALITY AS v(topic, message_id, consumer_group, attempt, started_at, ord)
), inserted AS (
    INSERT INTO job_executions (id, topic, message_id, consumer_group, attempt, status, started_at)
    SELECT id, topic, message_id, consumer_group, attempt, 'running', started_at FROM started
), finished AS (
    -- No join with the input: a row is found by primary key and reads its own values from the
    -- arrays by position. (Joined, the planner trusts statistics that lag the queue tables by
    -- thousands of rows and picks a nested loop that re-reads the input for every row.) The
    -- ids come sorted and unique, so a row's position is a binary search (`width_bucket`), not
    -- a walk through the whole batch — which made a batch's cost grow with its square.
    -- Still running = not finished yet, said with finished_at, which no index covers: no
    -- indexed column changes, so the row is updated in place (migration 0009). The duration
    -- counts from when the job began ($13; NULL = when the attempt was recorded).
    UPDATE job_executions e SET status = ($7::text[])[width_bucket(e.id, $6::int8[])],
           finished_at = ($8::timestamptz[])[width_bucket(e.id, $6::int8[])],
           duration_ms = (EXTRACT(EPOCH FROM (($8::timestamptz[])[width_bucket(e.id, $6::int8[])]
                          - COALESCE(($13::timestamptz[])[width_bucket(e.id, $6::int8[])], e.started_at))) * 1000)::BIGINT,
           error = ($9::text[])[width_bucket(e.id, $6::int8[])]
    WHERE e.id = ANY($6::int8[]) AND e.finished_at IS NULL
), leases AS MATERIALIZED (
    -- The batch's leases, `group/message.token` ($11) to whether the job cancelled itself
    -- ($15), as one jsonb object, built once: a row's lease is looked up in it by binary
    -- search over its keys. (`width_bucket` over a text array walks the array from its start
    -- to each probe, variable-width elements having no offsets: a cost per row that grew
    -- with the batch, 2.6% of the whole CPU of a C=50 run.)
    SELECT jsonb_object_agg(k, c) AS j FROM UNNEST($11::text[], $15::bool[]) AS u(k, c)
), acked AS (
    -- Likewise by primary key, and the lease named by the receipt handle (unique per lease).
    -- The state comes as a parameter ($14 = 'leased'): written as a constant, it lets the
    -- planner read every lease in flight through the partial index `deliveries_leased` and
    -- test each against the batch — its choice whenever statistics show few leases, as after
    -- a backlog was loaded — instead of looking the batch's rows up by primary key. A job
    -- that cancelled itself closes its attempt `cancelled`, and its delivery ends `cancelled`
    -- instead of `acked`.
    UPDATE deliveries d SET state = CASE WHEN ((SELECT j FROM leases)
                -> (d.consumer_group || '/' || d.message_id || '.' || d.lease_token))::bool
                THEN 'cancelled' ELSE 'acked' END,
           lease_token = NULL, visible_at = $12, updated_at = $12
    WHERE d.message_id = ANY($10::text[]) AND d.state = $14::text
      AND (SELECT j FROM leases) ? (d.consumer_group || '/' || d.message_id || '.' || d.lease_token)
    RETURNING d.message_id, d.consumer_group
)
SELECT 's' AS kind, ord, id, NULL AS message_id, NULL AS consumer_group FROM started
UNION ALL SELECT 'a', 0, 0, message_id, consumer_group FROM acked";

/// Started execution ids in input order, and whether each acknowledgement took.
type Settled = (Vec<Option<i64>>, Vec<bool>);

/// Read the settle statement's rows: `acks` names each acknowledgement's delivery (consumer
/// group, message id), distinct (`ack_rounds`). Never panics: a row that does not decode
/// fails the batch. The names are read in place and matched through a map of borrowed
/// names: no copy of them per row.
fn decode_settled(rows: &[sqlx::postgres::PgRow], starts: usize, acks: &[(&str, &str)]) -> Result<Settled, StoreError> {
    let mut ids = vec![None; starts];
    let mut acked = vec![false; acks.len()];
    let position: std::collections::HashMap<(&str, &str), usize> =
        acks.iter().enumerate().map(|(i, key)| (*key, i)).collect();
    for r in rows {
        // The statement's own columns: read without sqlx's type check (`lease.rs`).
        if r.try_get_unchecked::<&str, _>(0).map_err(db_err)? == "s" {
            let ord = usize::try_from(r.try_get_unchecked::<i64, _>(1).map_err(db_err)?).unwrap_or(0);
            let slot = ord.checked_sub(1).and_then(|i| ids.get_mut(i));
            *slot.ok_or_else(|| StoreError::Database(format!("execution insert returned position {ord}")))? =
                Some(r.try_get_unchecked::<i64, _>(2).map_err(db_err)?);
        } else {
            let key = (
                r.try_get_unchecked::<&str, _>(4).map_err(db_err)?,
                r.try_get_unchecked::<&str, _>(3).map_err(db_err)?,
            );
            // A delivery not asked for cannot be acknowledged by the statement's WHERE.
            if let Some(&i) = position.get(&key) {
                acked[i] = true;
            }
        }
    }
    Ok((ids, acked))
}

async fn write_settlements(
    held: &mut HeldConnection,
    pool: &PgPool,
    starts: Vec<(ExecutionStartParams, Reply<i64>)>,
    finishes: Vec<(ExecutionFinishParams, Reply<()>)>,
    acks: Vec<(DeliveryAckParams, Reply<()>)>,
) {
    // Two acknowledgements of one delivery never share a statement (see `ack_rounds`): the
    // first round goes with the starts and finishes, each later one alone.
    let mut rounds = ack_rounds(acks, |(p, _)| lease_delivery(&p.lease)).into_iter();
    write_settlement_round(held, pool, starts, finishes, rounds.next().unwrap_or_default()).await;
    for round in rounds {
        write_settlement_round(held, pool, Vec::new(), Vec::new(), round).await;
    }
}

/// One settle statement; its acknowledgements name distinct deliveries ([`ack_rounds`]): the
/// statement says which deliveries it acknowledged, not with which handle.
async fn write_settlement_round(
    held: &mut HeldConnection,
    pool: &PgPool,
    starts: Vec<(ExecutionStartParams, Reply<i64>)>,
    finishes: Vec<(ExecutionFinishParams, Reply<()>)>,
    acks: Vec<(DeliveryAckParams, Reply<()>)>,
) {
    if starts.is_empty() && finishes.is_empty() && acks.is_empty() {
        return;
    }
    // Receipt handles that don't parse fail alone, before the statement. A valid one is
    // `message.token`: kept with the length of its message id, read in place (`ValidAck`).
    let mut valid_acks: Vec<ValidAck> = Vec::with_capacity(acks.len());
    for (p, reply) in acks {
        match split_receipt_handle(&p.lease.receipt_handle) {
            Ok((m, _)) => {
                let len = m.len();
                valid_acks.push(ValidAck { params: p, reply, message_len: len });
            }
            Err(e) => {
                // Its execution still closes, with the others.
                let _ = reply.send(Err(e));
            }
        }
    }
    // Sorted and unique, as the statement's binary search needs: executions by id.
    let mut closing: Vec<&ExecutionFinishParams> =
        finishes.iter().map(|(p, _)| p).chain(valid_acks.iter().filter_map(|a| a.params.execution.as_ref())).collect();
    closing.sort_by_key(|p| p.id);
    closing.dedup_by_key(|p| p.id);
    // Each lease as `group/message.token`, and whether its job cancelled itself; one per
    // delivery (`ack_rounds`), in any order (the statement makes them one jsonb object).
    let (leases, cancelling): (Vec<String>, Vec<bool>) = valid_acks
        .iter()
        .map(|ValidAck { params: p, .. }| {
            let cancelled = p.execution.as_ref().is_some_and(|e| e.status == ExecutionStatus::Cancelled);
            let (group, handle) = (&p.lease.consumer_group, &p.lease.receipt_handle);
            let mut lease = String::with_capacity(group.len() + 1 + handle.len());
            lease.push_str(group);
            lease.push('/');
            lease.push_str(handle);
            (lease, cancelled)
        })
        .unzip();
    let conn = match held.get().await {
        Ok(conn) => conn,
        Err(e) => {
            starts.into_iter().for_each(|(_, r)| drop(r.send(Err(e.clone()))));
            finishes.into_iter().for_each(|(_, r)| drop(r.send(Err(e.clone()))));
            valid_acks.into_iter().for_each(|a| drop(a.reply.send(Err(e.clone()))));
            return;
        }
    };
    let result = sqlx::query(SETTLE)
        .bind(starts.iter().map(|(p, _)| p.topic.as_str()).collect::<Vec<_>>())
        .bind(starts.iter().map(|(p, _)| p.message_id.as_str()).collect::<Vec<_>>())
        .bind(starts.iter().map(|(p, _)| p.consumer_group.as_str()).collect::<Vec<_>>())
        .bind(starts.iter().map(|(p, _)| p.attempt as i32).collect::<Vec<_>>())
        .bind(starts.iter().map(|(p, _)| p.now).collect::<Vec<_>>())
        .bind(closing.iter().map(|p| p.id).collect::<Vec<_>>())
        .bind(closing.iter().map(|p| p.status.as_str()).collect::<Vec<_>>())
        .bind(closing.iter().map(|p| p.now).collect::<Vec<_>>())
        .bind(closing.iter().map(|p| p.error.as_deref()).collect::<Vec<_>>())
        .bind(valid_acks.iter().map(ValidAck::message_id).collect::<Vec<_>>())
        .bind(&leases)
        .bind(valid_acks.iter().map(|a| a.params.lease.now).max())
        .bind(closing.iter().map(|p| p.began_at).collect::<Vec<_>>())
        .bind("leased")
        .bind(&cancelling)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)
        .and_then(|rows| {
            let acks: Vec<(&str, &str)> =
                valid_acks.iter().map(|a| (a.params.lease.consumer_group.as_str(), a.message_id())).collect();
            decode_settled(&rows, starts.len(), &acks)
        });
    let (ids, acked) = match held.check(result) {
        Ok(decoded) => decoded,
        // A value the database refused fails the whole statement: write each operation in a
        // statement of its own, so only the one that holds it fails.
        Err(e) if write_row_by_row(&e, starts.len() + finishes.len() + valid_acks.len()) => {
            tracing::warn!(error = %e, "write batch refused; writing it row by row");
            for s in starts {
                Box::pin(write_settlement_round(held, pool, vec![s], Vec::new(), Vec::new())).await;
            }
            for f in finishes {
                Box::pin(write_settlement_round(held, pool, Vec::new(), vec![f], Vec::new())).await;
            }
            for ValidAck { params: p, reply, .. } in valid_acks {
                Box::pin(write_settlement_round(held, pool, Vec::new(), Vec::new(), vec![(p, reply)])).await;
            }
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "write batch failed");
            starts.into_iter().for_each(|(_, r)| drop(r.send(Err(e.clone()))));
            finishes.into_iter().for_each(|(_, r)| drop(r.send(Err(e.clone()))));
            valid_acks.into_iter().for_each(|a| drop(a.reply.send(Err(e.clone()))));
            return;
        }
    };
    for ((_, reply), id) in starts.into_iter().zip(ids) {
        let _ = reply.send(id.ok_or_else(|| StoreError::Database("execution insert lost a row".into())));
    }
    for (_, reply) in finishes {
        let _ = reply.send(Ok(()));
    }
    for (ack, acked) in valid_acks.into_iter().zip(acked) {
        let r = if acked {
            Ok(())
        } else {
            Err(match pool.acquire().await {
                Ok(mut conn) => {
                    let lease = &ack.params.lease;
                    lease_failure(&mut conn, ack.message_id(), &lease.consumer_group, &lease.receipt_handle).await
                }
                Err(e) => db_err(e),
            })
        };
        let _ = ack.reply.send(r);
    }
}

/// An acknowledgement whose receipt handle parsed, in [`write_settlement_round`].
struct ValidAck {
    params: DeliveryAckParams,
    reply: Reply<()>,
    /// The length of the message id its receipt handle (`message.token`) starts with.
    message_len: usize,
}

impl ValidAck {
    /// The message id, read in place in the receipt handle.
    fn message_id(&self) -> &str {
        &self.params.lease.receipt_handle[..self.message_len]
    }
}

/// Retries, dead letters and releases, in one statement: each named lease leaves `leased`
/// for its new state (`pending` after its delay, or `dead` with a dead letter), the attempts
/// that ran are closed as failed, and the attempts recorded with a released lease are removed
/// (released deliveries are not counted, nor the attempt the lease recorded, nor a snoozed one: `unattempt`).
/// A release whose attempt was closed meanwhile (maintenance found its lease run out and
/// closed it as abandoned) keeps both counts: that attempt is on record (`drop_id` not dropped).
/// Small batches (failures are the exception), so the input is joined rather than read by position.
const MOVE: &str = "\
WITH input AS MATERIALIZED (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int4[], $7::text[],
                         $15::int4[], $16::int8[])
        AS v(message_id, consumer_group, token, state, visible_at, uncount, reason, unattempt, drop_id)
), closed AS (
    UPDATE job_executions e SET status = c.status, finished_at = c.now,
           duration_ms = (EXTRACT(EPOCH FROM (c.now - COALESCE(c.began_at, e.started_at))) * 1000)::BIGINT,
           error = c.error
    FROM UNNEST($8::int8[], $9::text[], $10::timestamptz[], $11::timestamptz[], $14::text[])
         AS c(id, error, now, began_at, status)
    WHERE e.id = c.id AND e.finished_at IS NULL
), dropped AS (
    DELETE FROM job_executions e WHERE e.id = ANY($12::int8[]) AND e.finished_at IS NULL RETURNING e.id
), moved AS (
    UPDATE deliveries d SET state = v.state, lease_token = NULL, visible_at = v.visible_at, updated_at = $13,
           delivery_count = GREATEST(d.delivery_count - v.uncount * v.counted, 0),
           attempts = GREATEST(d.attempts - v.unattempt * v.counted, 0)
    FROM (SELECT i.*, CASE WHEN i.drop_id IS NULL OR i.drop_id IN (SELECT id FROM dropped) THEN 1 ELSE 0 END AS counted
          FROM input i) v
    WHERE d.message_id = v.message_id AND d.consumer_group = v.consumer_group
      AND d.state = 'leased' AND d.lease_token = v.token
    RETURNING d.message_id, d.consumer_group, d.delivery_count, d.keyed, v.state, v.reason
), lettered AS (
    INSERT INTO dead_letters (message_id, topic, consumer_group, content_type, payload, error, attempts, created_at, headers_json)
    SELECT m.id, m.topic, mv.consumer_group, m.content_type, m.payload, mv.reason, mv.delivery_count, $13, m.headers_json
    FROM moved mv JOIN messages m ON m.id = mv.message_id
    WHERE mv.state = 'dead'
)
SELECT message_id, consumer_group FROM moved";

async fn write_moves(held: &mut HeldConnection, pool: &PgPool, moves: Vec<(Move, Reply<()>)>) {
    if moves.is_empty() {
        return;
    }
    // Two moves of one delivery never share a statement (see `ack_rounds`): the statement
    // reports which deliveries moved, not with which receipt handle, so a stale lease's move
    // and the current one's in one statement would both read as done.
    let mut rounds = ack_rounds(moves, |(m, _)| lease_delivery(m.lease()));
    if rounds.len() > 1 {
        for round in rounds {
            Box::pin(write_moves(held, pool, round)).await;
        }
        return;
    }
    let moves = rounds.pop().unwrap_or_default();
    // Receipt handles that don't parse fail alone, before the statement.
    let mut valid = Vec::with_capacity(moves.len());
    for (m, reply) in moves {
        match split_receipt_handle(&m.lease().receipt_handle) {
            Ok((id, token)) => {
                let (id, token) = (id.to_owned(), token.to_owned());
                valid.push((m, reply, id, token));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
    let mut cols = MoveColumns::default();
    for (m, _, id, token) in &valid {
        cols.push(m, id, token);
    }
    let now = valid.iter().map(|(m, ..)| m.lease().now).max();
    let result = match held.get().await {
        Ok(conn) => sqlx::query(MOVE)
            .bind(&cols.message_ids)
            .bind(&cols.groups)
            .bind(&cols.tokens)
            .bind(&cols.states)
            .bind(&cols.visible_at)
            .bind(&cols.uncount)
            .bind(&cols.reasons)
            .bind(&cols.closing_ids)
            .bind(&cols.closing_errors)
            .bind(&cols.closing_at)
            .bind(&cols.closing_began)
            .bind(&cols.dropped)
            .bind(now)
            .bind(&cols.closing_status)
            .bind(&cols.unattempt)
            .bind(&cols.drop_ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)
            .and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        Ok((r.try_get::<String, _>(1).map_err(db_err)?, r.try_get::<String, _>(0).map_err(db_err)?))
                    })
                    .collect::<Result<std::collections::HashSet<(String, String)>, StoreError>>()
            }),
        Err(e) => Err(e),
    };
    let mut moved = match held.check(result) {
        Ok(moved) => moved,
        // A value the database refused fails the whole statement: move each lease in a
        // statement of its own, so only the one that holds it fails.
        Err(e) if write_row_by_row(&e, valid.len()) => {
            tracing::warn!(error = %e, moves = valid.len(), "write batch refused; writing it row by row");
            for (m, reply, ..) in valid {
                Box::pin(write_moves(held, pool, vec![(m, reply)])).await;
            }
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "write batch failed");
            valid.into_iter().for_each(|(_, r, ..)| drop(r.send(Err(e.clone()))));
            return;
        }
    };
    for (m, reply, message_id, _) in valid {
        let group = &m.lease().consumer_group;
        let r = if moved.remove(&(group.clone(), message_id.clone())) {
            Ok(())
        } else {
            Err(match pool.acquire().await {
                Ok(mut conn) => lease_failure(&mut conn, &message_id, group, &m.lease().receipt_handle).await,
                Err(e) => db_err(e),
            })
        };
        let _ = reply.send(r);
    }
}

/// The `MOVE` statement's arrays.
#[derive(Default)]
struct MoveColumns<'a> {
    message_ids: Vec<&'a str>,
    groups: Vec<&'a str>,
    tokens: Vec<&'a str>,
    states: Vec<&'static str>,
    visible_at: Vec<DateTime<Utc>>,
    uncount: Vec<i32>,
    unattempt: Vec<i32>,
    reasons: Vec<Option<&'a str>>,
    closing_ids: Vec<i64>,
    closing_errors: Vec<Option<&'a str>>,
    closing_at: Vec<DateTime<Utc>>,
    closing_began: Vec<Option<DateTime<Utc>>>,
    closing_status: Vec<&'static str>,
    dropped: Vec<i64>,
    /// Per lease: the execution a release removes, if any.
    drop_ids: Vec<Option<i64>>,
}

impl<'a> MoveColumns<'a> {
    fn push(&mut self, m: &'a Move, message_id: &'a str, token: &'a str) {
        let lease = m.lease();
        let (state, visible_at, uncount, reason, closing) = match m {
            Move::Retry(p) => {
                let delay = chrono::Duration::from_std(p.delay).unwrap_or(chrono::TimeDelta::MAX);
                (
                    "pending",
                    lease.now.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC),
                    0,
                    None,
                    p.execution.as_ref(),
                )
            }
            Move::DeadLetter(p) => ("dead", lease.now, 0, Some(p.reason.as_str()), p.execution.as_ref()),
            Move::Release(p) => {
                self.dropped.extend(p.execution_id);
                ("pending", lease.now, 1, None, None)
            }
        };
        self.message_ids.push(message_id);
        self.groups.push(&lease.consumer_group);
        self.tokens.push(token);
        self.states.push(state);
        self.visible_at.push(visible_at);
        self.uncount.push(uncount);
        self.drop_ids.push(match m {
            Move::Release(p) => p.execution_id,
            _ => None,
        });
        // A released lease that recorded an attempt (its execution) gives the attempt back, and
        // so does a snooze: it does not count against max_attempts.
        self.unattempt.push(match m {
            Move::Release(p) => i32::from(p.execution_id.is_some()),
            Move::Retry(p) => i32::from(p.execution.as_ref().is_some_and(|e| e.status == ExecutionStatus::Snoozed)),
            Move::DeadLetter(_) => 0,
        });
        self.reasons.push(reason);
        if let Some(c) = closing {
            self.closing_ids.push(c.id);
            self.closing_errors.push(c.error.as_deref());
            self.closing_at.push(c.now);
            self.closing_began.push(c.began_at);
            self.closing_status.push(c.status.as_str());
        }
    }
}
