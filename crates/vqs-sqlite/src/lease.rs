//! Leases: the claim (due deliveries leased, abandoned attempts closed, new attempts
//! recorded) and the update every settlement of one lease makes.

use crate::writer::Writer;
use chrono::DateTime;
use chrono::Utc;
use futures::FutureExt;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use vqs::store::*;
use vqs::store_support::{rate_advance, rate_interval_us, rate_room};

use crate::lease_failure::lease_failure;
use crate::rows::{US_PER_S, db_err, time, us};
use crate::statements::{ROWS_PER_STATEMENT, push_in_list};

/// Move a leased delivery to a new state; the error says why when the lease is not held.
/// Returns the message id and its delivery count.
pub(crate) async fn lease_update(
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

/// Lease due deliveries, close the `running` executions of those whose earlier lease expired
/// (abandoned), and — with `start_executions` — record each new attempt's `running`
/// execution: one transaction.
pub(crate) async fn claim(
    conn: &mut SqliteConnection,
    p: DeliveryClaimParams,
) -> Result<Vec<LeasedMessage>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let leased = claim_in(&mut tx, p).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(leased)
}

pub(crate) async fn claim_in(
    conn: &mut SqliteConnection,
    p: DeliveryClaimParams,
) -> Result<Vec<LeasedMessage>, StoreError> {
    let now = us(p.now);
    let lease_until = now + i64::from(p.visibility_seconds) * US_PER_S;
    let mut limit = p.limit;
    if let Some(max) = p.max_leased {
        // The group's limit across processes: its live leases counted inside this write
        // transaction (SQLite has one writer, so no other claim can interleave).
        // Another holder's leases count whole; this holder's are the caller's `leased_here`
        // (a lease whose job is done but whose acknowledgement is still being written is not).
        let leased: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE consumer_group = ? AND state = 'leased' AND visible_at > ? \
             AND (?3 IS NULL OR lease_holder IS NOT ?3)",
        )
        .bind(&p.consumer_group)
        .bind(now)
        .bind(&p.lease_holder)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
        let here = if p.lease_holder.is_some() { i64::from(p.leased_here) } else { 0 };
        limit = limit.min(u32::try_from((i64::from(max) - leased - here).max(0)).unwrap_or(0));
        if limit == 0 {
            return Ok(Vec::new());
        }
    }
    // The topic's rate limit: what its bucket allows now (read and advanced inside this
    // write transaction, after the claim, by the number actually leased).
    let bucket_topic = p.topic.clone().unwrap_or_default();
    let mut tat: Option<i64> = None;
    if let Some(rate) = p.rate_limit {
        tat = sqlx::query_scalar("SELECT tat_us FROM rate_buckets WHERE consumer_group = ? AND topic = ?")
            .bind(&p.consumer_group)
            .bind(&bucket_topic)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        limit = limit.min(rate_room(rate, tat, now));
        if limit == 0 {
            return Ok(Vec::new());
        }
    }
    // Under group concurrency: the ready groups' picks, chosen first (`flow_groups.rs`).
    let grouped = match (p.group_concurrency, p.group_rate_limit) {
        (Some(n), _) => Some(crate::flow_groups::pick(conn, &p, n, limit).await?),
        // A group rate limit alone: grouped, with no concurrency limit per group.
        (None, Some(_)) => Some(crate::flow_groups::pick(conn, &p, i32::MAX as u32, limit).await?),
        // No group limit, but a group of its topic is paused and its deliveries are keyed:
        // through the ready groups, none limited, so the paused group's backlog is not read.
        (None, None)
            if p.message_id.is_none() && crate::group_pauses::claims_by_group(conn, &p.consumer_group).await? =>
        {
            Some(crate::flow_groups::pick(conn, &p, i32::MAX as u32, limit).await?)
        }
        (None, None) => None,
    };
    if grouped.as_ref().is_some_and(|g| g.message_ids.is_empty()) {
        if let Some(g) = &grouped {
            crate::flow_groups::park(conn, &p, g, lease_until).await?;
            crate::flow_groups::advance_buckets(conn, &p, g, &[]).await?;
        }
        return Ok(Vec::new());
    }
    // What to lease, in claim order: the groups' picks, or the due rows priority by
    // priority (`due::pick_by_priority`); a receive by id reads its one row below.
    let picked: Option<Vec<String>> = match &grouped {
        Some(g) => Some(g.message_ids.clone()),
        None if p.message_id.is_none() => {
            let ids = crate::due::pick_by_priority(conn, &p, now, limit).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            Some(ids)
        }
        None => None,
    };
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
        .push_bind(&p.consumer_group);
    if let Some(ids) = &picked {
        q.push(" AND message_id IN ");
        push_in_list(&mut q, ids);
        q.push(" RETURNING message_id, delivery_count, lease_token, topic, attempts");
    } else {
        q.push(
            " AND message_id IN (SELECT d.message_id FROM deliveries d JOIN messages m ON m.id = d.message_id \
             WHERE d.consumer_group = ",
        )
        .push_bind(&p.consumer_group);
        crate::due::push_due_filter(&mut q, &p, now);
        q.push(" LIMIT 1) RETURNING message_id, delivery_count, lease_token, topic, attempts");
    }
    let mut leased = q.build().fetch_all(&mut *conn).await.map_err(db_err)?;
    // In claim order (RETURNING's is the table's).
    if let Some(ids) = &picked {
        let at: std::collections::HashMap<&str, usize> =
            ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        leased.sort_by_cached_key(|r| at.get(r.get::<&str, _>(0)).copied());
    }
    if let Some(rate) = p.rate_limit
        && !leased.is_empty()
    {
        sqlx::query(
            "INSERT INTO rate_buckets (consumer_group, topic, tat_us, interval_us) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (consumer_group, topic) DO UPDATE SET tat_us = excluded.tat_us, interval_us = excluded.interval_us",
        )
        .bind(&p.consumer_group)
        .bind(&bucket_topic)
        .bind(rate_advance(rate, tat, now, leased.len() as u32))
        .bind(rate_interval_us(rate))
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    if let Some(g) = &grouped {
        crate::flow_groups::park(conn, &p, g, lease_until).await?;
        let ids: Vec<String> = leased.iter().map(|r| r.get(0)).collect();
        crate::flow_groups::advance_buckets(conn, &p, g, &ids).await?;
    }
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
                    "acked" | "dead" | "cancelled" => StoreError::AlreadyAcknowledged(id.clone()),
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
            .push(" AND message_id IN ");
        push_in_list(&mut close, &redelivered);
        close.build().execute(&mut *conn).await.map_err(db_err)?;
    }

    let mut started: std::collections::HashMap<String, i64> = Default::default();
    if p.start_executions {
        for chunk in leased.chunks(ROWS_PER_STATEMENT) {
            let mut ins = crate::writer::insert_running(chunk, |l| {
                (l.get::<&str, _>(3), l.get::<&str, _>(0), &p.consumer_group, l.get::<i64, _>(4), now)
            });
            ins.push(" RETURNING id, message_id");
            for r in ins.build().fetch_all(&mut *conn).await.map_err(db_err)? {
                started.insert(r.get(1), r.get(0));
            }
        }
    }

    let leased_ids: Vec<&str> = leased.iter().map(|r| r.get::<&str, _>(0)).collect();
    let mut sel: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT id, topic, payload, content_type, headers_json, created_at, expires_at, group_key FROM messages WHERE id IN ",
    );
    push_in_list(&mut sel, &leased_ids);
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
            group_key: m.get(7),
        });
    }
    Ok(out)
}

pub(crate) async fn delivery_set_visibility(
    writer: &Writer,
    p: LeaseVisibilityParams,
) -> Result<DateTime<Utc>, StoreError> {
    let until = us(p.lease.now) + i64::from(p.visibility_seconds) * US_PER_S;
    let set = if p.visibility_seconds == 0 { "state = 'pending', lease_token = NULL" } else { "state = 'leased'" };
    writer.run(move |c| async move { lease_update(c, &p.lease, set, until).await.map(|_| time(until)) }.boxed()).await
}

pub(crate) async fn delivery_retry(writer: &Writer, p: DeliveryRetryParams) -> Result<(), StoreError> {
    let due = us(p.lease.now).saturating_add(i64::try_from(p.delay.as_micros()).unwrap_or(i64::MAX));
    writer
        .run(move |c| {
            async move {
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                crate::writer::finishes(&mut tx, p.execution.iter()).await?;
                // A snooze gives its attempt back (as a release does): it does not count
                // against max_attempts, so the next claim runs with the same attempt number.
                let snoozed = p.execution.as_ref().is_some_and(|e| e.status == ExecutionStatus::Snoozed);
                let set = if snoozed {
                    "state = 'pending', lease_token = NULL, attempts = MAX(attempts - 1, 0)"
                } else {
                    "state = 'pending', lease_token = NULL"
                };
                let r = lease_update(&mut tx, &p.lease, set, due).await;
                // The attempt is closed even when the lease was lost.
                tx.commit().await.map_err(db_err)?;
                r.map(|_| ())
            }
            .boxed()
        })
        .await
}

pub(crate) async fn delivery_release(writer: &Writer, p: DeliveryReleaseParams) -> Result<(), StoreError> {
    writer
        .run(move |c| {
            async move {
                let mut tx = c.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                let mut dropped = false;
                if let Some(id) = p.execution_id {
                    dropped = sqlx::query("DELETE FROM job_executions WHERE id = ?1 AND status = 'running'")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .rows_affected()
                        > 0;
                }
                // The attempt the lease recorded (with its execution) is not spent either —
                // unless it was closed meanwhile (maintenance found the lease run out and
                // closed it as abandoned): that attempt is on record, and both counts stay.
                let set = match (p.execution_id, dropped) {
                    (Some(_), true) => {
                        "state = 'pending', lease_token = NULL, delivery_count = MAX(delivery_count - 1, 0), \
                         attempts = MAX(attempts - 1, 0)"
                    }
                    (Some(_), false) => "state = 'pending', lease_token = NULL",
                    (None, _) => "state = 'pending', lease_token = NULL, delivery_count = MAX(delivery_count - 1, 0)",
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

pub(crate) async fn delivery_leased_count(read: &SqlitePool, p: DeliveryLeasedCountParams) -> Result<i64, StoreError> {
    let (consumer_group, now) = (p.consumer_group.as_str(), p.now);
    let row =
        sqlx::query("SELECT COUNT(*) FROM deliveries WHERE consumer_group = ? AND state = 'leased' AND visible_at > ?")
            .bind(consumer_group)
            .bind(us(now))
            .fetch_one(read)
            .await
            .map_err(db_err)?;
    Ok(row.get(0))
}

pub(crate) async fn delivery_next_due(
    read: &SqlitePool,
    p: DeliveryNextDueParams,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let consumer_group = p.consumer_group.as_str();
    // The earliest of each priority's first entry in `deliveries_due`: one seek per priority
    // present (migration 0027), not a walk over the group's whole backlog.
    let row = sqlx::query(
        "WITH RECURSIVE prios(p) AS (\
           SELECT (SELECT MIN(priority) FROM deliveries WHERE consumer_group = ?1 AND state IN ('pending', 'leased')) \
           UNION ALL \
           SELECT (SELECT MIN(priority) FROM deliveries WHERE consumer_group = ?1 AND state IN ('pending', 'leased') \
                   AND priority > prios.p) FROM prios WHERE prios.p IS NOT NULL) \
         SELECT MIN((SELECT MIN(visible_at) FROM deliveries WHERE consumer_group = ?1 \
                     AND state IN ('pending', 'leased') AND priority = prios.p)) FROM prios WHERE prios.p IS NOT NULL",
    )
    .bind(consumer_group)
    .fetch_one(read)
    .await
    .map_err(db_err)?;
    Ok(row.get::<Option<i64>, _>(0).map(time))
}

pub(crate) async fn delivery_topic(read: &SqlitePool, p: DeliveryTopicParams) -> Result<Option<String>, StoreError> {
    let (message_id, consumer_group) = (p.message_id.as_str(), p.consumer_group.as_str());
    sqlx::query_scalar("SELECT topic FROM deliveries WHERE message_id = ? AND consumer_group = ?")
        .bind(message_id)
        .bind(consumer_group)
        .fetch_optional(read)
        .await
        .map_err(db_err)
}
