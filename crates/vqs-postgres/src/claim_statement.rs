//! The claim statement: due deliveries picked (`SKIP LOCKED`) in priority order, leased,
//! abandoned attempts closed and new ones recorded, in one statement — of the consumer
//! group's backlog, or of the ready groups for a grouped claim, which it also parks — and
//! the plans PostgreSQL makes of it.

use chrono::{DateTime, Utc};
use sqlx::Connection;
use sqlx::PgPool;
use sqlx::Postgres;
use sqlx::QueryBuilder;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use vqs::store::*;
use vqs::store_support::rate_interval_us;

use crate::flow_groups::GroupRooms;
use crate::rows::db_err;
use crate::rows::*;

/// The plan PostgreSQL chooses for the claim statement of `p` (`EXPLAIN`, nothing run).
pub(crate) async fn claim_plan(pool: &PgPool, p: &DeliveryClaimParams) -> Result<String, StoreError> {
    let rows = claim_query_after("EXPLAIN ", p, None).build().fetch_all(pool).await.map_err(db_err)?;
    Ok(plan_text(&rows))
}

/// The plan the claim's own connection caches for the claim statement of `p` (grouped, in
/// one statement, when `p` has a group concurrency): its generic plan, made without the
/// parameters' values under the hot path's settings, as that connection plans it once and
/// keeps (`store.rs`). `PREPARE` and `EXPLAIN EXECUTE` with every parameter `NULL` (a
/// generic plan does not look at them), on a connection of its own, closed after, so
/// neither its settings nor the prepared statement (which a rollback would not remove)
/// reach a pooled connection.
pub(crate) async fn claim_generic_plan(pool: &PgPool, p: &DeliveryClaimParams) -> Result<String, StoreError> {
    let grouped = p.group_concurrency.map(Grouped::InStatement);
    let sql = claim_query_after("", p, grouped).into_sql();
    // The highest `$n` (QueryBuilder numbers its binds 1, 2, … in order).
    let params = sql
        .split('$')
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    let options = pool.connect_options().as_ref().clone();
    let mut conn = PgConnection::connect_with(&options).await.map_err(db_err)?;
    let nulls = vec!["NULL"; params].join(", ");
    let script = format!(
        "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET jit = off; \
         PREPARE vqs_claim_plan AS {sql}"
    );
    let plan = async {
        sqlx::raw_sql(&script).execute(&mut conn).await?;
        sqlx::raw_sql(&format!("EXPLAIN EXECUTE vqs_claim_plan({nulls})")).fetch_all(&mut conn).await
    }
    .await;
    let _ = conn.close().await;
    Ok(plan_text(&plan.map_err(db_err)?))
}

/// An `EXPLAIN`'s rows as one text, a line each.
fn plan_text(rows: &[PgRow]) -> String {
    rows.iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>().join("\n")
}

/// How a grouped claim statement finds its groups.
#[derive(Clone, Copy)]
pub(crate) enum Grouped<'a> {
    /// Of these groups only (locked by the claim's transaction), each up to its room, at
    /// most the given limit in all (already under the consumer group's limits:
    /// `claim_grouped_in_transaction` took the room first). The groups are parked after.
    Rooms(&'a GroupRooms, u32),
    /// The ready groups found, locked and counted by `vqs_group_rooms` (migrations 0032,
    /// 0033) in the statement's first CTE, group concurrency as given, and every group
    /// visited parked by its last CTE: the whole grouped claim in one statement.
    InStatement(u32),
}

/// The claim statement for `p` after `prefix` (`EXPLAIN `, or nothing): at most `p.limit`,
/// and under the consumer group's limits when it has any (see [`push_limit`]). With
/// `grouped`, of the groups it says only, each up to its room (through `deliveries_grouped`:
/// a group's rows in claim order, nothing of another group read).
pub(crate) fn claim_query_after<'a>(
    prefix: &str,
    p: &'a DeliveryClaimParams,
    grouped: Option<Grouped<'a>>,
) -> QueryBuilder<'a, Postgres> {
    let lease_until = p.now + secs(p.visibility_seconds);
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(prefix);
    // The plain claim walks the priorities present one at a time (see `push_priorities`).
    let by_priority = grouped.is_none() && p.message_id.is_none();
    if by_priority {
        push_priorities(&mut q, p);
        q.push(", due AS (SELECT x.* FROM prios CROSS JOIN LATERAL (");
    } else if let Some(Grouped::InStatement(per_group)) = grouped {
        q.push("WITH g AS MATERIALIZED (SELECT * FROM ");
        crate::claim_rooms::push_group_rooms(&mut q, p, per_group);
        q.push("), due AS (");
    } else {
        q.push("WITH due AS (");
    }
    match grouped {
        Some(Grouped::Rooms(g, _)) => {
            q.push("SELECT x.* FROM UNNEST(")
                .push_bind(&g.keys)
                .push("::text[], ")
                .push_bind(&g.rooms)
                .push("::int[]) AS g(key, room) CROSS JOIN LATERAL (");
        }
        Some(Grouped::InStatement(_)) => {
            q.push("SELECT x.* FROM (SELECT * FROM g WHERE g.room > 0 ORDER BY g.ord) g CROSS JOIN LATERAL (");
        }
        None => {}
    }
    q.push(
        "SELECT d.message_id, m.topic, m.payload, m.content_type, m.headers_json, m.created_at, m.expires_at, \
         d.priority, d.visible_at AS due_at, d.group_key, m.group_key AS message_group_key \
         FROM deliveries d JOIN messages m ON m.id = d.message_id \
         WHERE d.consumer_group = ",
    );
    q.push_bind(&p.consumer_group)
        .push(" AND d.state IN ('pending', 'leased') AND d.visible_at <= ")
        .push_bind(p.now)
        .push(" AND m.expires_at > ")
        .push_bind(p.now)
        // Paused topics' deliveries stay pending. A dispatcher that knows its topic is paused
        // does not claim at all, so this filter only skips rows when a wildcard subscription
        // spans a paused topic or a process learns of a pause late. Both halves are computed
        // once per statement (init plans), and the planner rates their OR at one half. Not
        // `<> ALL(ARRAY(…))` alone, nor an anti-join: it cannot estimate those, guesses that
        // one row is left, and reads and sorts the group's whole backlog on every claim
        // (714 ms for 220,000 waiting, against 0.3 ms; the test `a_claim_reads_the_due_index…`).
        .push(
            " AND (NOT EXISTS (SELECT 1 FROM topic_controls WHERE paused) \
             OR d.topic <> ALL(ARRAY(SELECT topic FROM topic_controls WHERE paused)))",
        )
        // Nor a paused group's (`group_pauses.rs`).
        .push(crate::group_pauses::CLAIM_FILTER);
    if let Some(topic) = &p.topic {
        q.push(" AND d.topic = ").push_bind(topic);
    }
    if let Some(id) = &p.message_id {
        q.push(" AND d.message_id = ").push_bind(id);
    }
    match grouped {
        Some(g) => {
            // A group's best priority first, oldest first within it (`deliveries_grouped`
            // is in that order); the groups themselves in the order they were taken (by
            // priority, then the longest ready).
            q.push(
                " AND d.group_key = g.key ORDER BY d.priority, d.visible_at LIMIT g.room FOR UPDATE OF d SKIP LOCKED) x \
                 LIMIT ",
            );
            match g {
                Grouped::Rooms(_, limit) => q.push_bind(i64::from(limit.max(1))),
                Grouped::InStatement(_) => q.push("(SELECT MAX(g.cap_left) FROM g)"),
            };
        }
        None if by_priority => {
            // Lower priority first, by due time within a priority: each priority's due rows
            // are one range of `deliveries_due` (consumer group, priority, due time ≤ now),
            // read oldest first; the outer LIMIT stops at the first `limit` rows.
            q.push(" AND d.priority = prios.priority ORDER BY d.visible_at LIMIT ")
                .push_bind(i64::from(p.limit.max(1)))
                .push(" FOR UPDATE OF d SKIP LOCKED) x LIMIT ");
            push_limit(&mut q, p);
        }
        None => {
            // A receive by id: its one row.
            q.push(" ORDER BY d.priority, d.visible_at LIMIT ");
            push_limit(&mut q, p);
            q.push(" FOR UPDATE OF d SKIP LOCKED");
        }
    }
    q.push("), leased AS (UPDATE deliveries d SET state = 'leased', visible_at = ")
        .push_bind(lease_until)
        .push(", delivery_count = d.delivery_count + 1, attempts = d.attempts + ")
        // Only a lease that records the attempt's execution spends an attempt.
        .push_bind(i32::from(p.start_executions))
        .push(", lease_token = replace(gen_random_uuid()::text, '-', ''), lease_holder = ")
        .push_bind(&p.lease_holder)
        .push(", updated_at = ")
        .push_bind(p.now)
        // The rows `due` locked, by primary key: their ids as an array computed first. Joined
        // (`FROM due`), the generic plan — made once per connection, often while the tables
        // are still empty — hashed the whole consumer group's deliveries, history included,
        // read through the primary key's second column, on every claim until ANALYZE threw
        // the plan away (1.4 ms a one-message claim at a 2 ms gap, growing with the table).
        .push(" WHERE d.message_id = ANY(ARRAY(SELECT message_id FROM due)) AND d.consumer_group = ")
        .push_bind(&p.consumer_group)
        .push(
            " RETURNING d.message_id, d.topic, d.delivery_count, d.lease_token, d.attempts, d.group_key), \
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
            " RETURNING id, message_id)",
        );
    push_bucket_advance(&mut q, p);
    if let Some(Grouped::InStatement(per_group)) = grouped {
        push_park(&mut q, p, per_group, lease_until);
    }
    q.push(
            " SELECT l.message_id, l.delivery_count, l.lease_token, m.topic, m.payload, m.content_type, \
             m.headers_json, m.created_at, m.expires_at, s.id, l.attempts, m.group_key, m.priority, m.due_at, \
             m.message_group_key \
             FROM leased l JOIN due m ON m.message_id = l.message_id LEFT JOIN started s ON s.message_id = l.message_id \
             ORDER BY m.priority, m.due_at",
        );
    q
}

/// `WITH RECURSIVE prios`: the priorities the consumer group has live deliveries at, lowest
/// first, found one index descent each (a loose index scan of `deliveries_due`) and only as
/// far as the claim reads. Ordering the whole group by `(priority, visible_at)` in one scan
/// would walk every entry of a lower priority that is not due yet — 100,000 delayed or
/// retrying rows at priority 0 in front of the due ones at 5 (PostgreSQL 15 has no skip
/// scan) — and, when fewer than `limit` are due, every future row of the group; per
/// priority, the due rows are one range bounded by now. Cost: one descent per priority
/// present (one, when every message has the default), figures in docs/flow-control.md.
fn push_priorities<'a>(q: &mut QueryBuilder<'a, Postgres>, p: &'a DeliveryClaimParams) {
    q.push("WITH RECURSIVE prios AS ((SELECT priority FROM deliveries WHERE consumer_group = ")
        .push_bind(&p.consumer_group)
        .push(
            " AND state IN ('pending', 'leased') ORDER BY priority LIMIT 1) UNION ALL \
             SELECT (SELECT d.priority FROM deliveries d WHERE d.consumer_group = ",
        )
        .push_bind(&p.consumer_group)
        .push(
            " AND d.state IN ('pending', 'leased') AND d.priority > prios.priority ORDER BY d.priority LIMIT 1) \
             FROM prios WHERE prios.priority IS NOT NULL)",
        );
}

/// The claim's LIMIT. Unlimited: `p.limit`. Under a limit across processes
/// (`max_leased`, a trigger's `maxConcurrency` or a topic's `concurrency`):
/// `LEAST(p.limit, vqs_claim_room(...))` (migration 0020), so the serialised claim is this
/// one statement — one round trip instead of BEGIN, lock, count, claim, COMMIT.
///
/// Why no two processes both take the last slot:
/// - `vqs_claim_room` takes the group's transaction-scoped advisory lock before it counts,
///   and the lock is held until this statement's implicit transaction commits, so limited
///   claims of a group run one after another.
/// - The function is VOLATILE PL/pgSQL: under READ COMMITTED each statement inside it takes
///   a fresh snapshot, so its count sees every lease committed by the claim that held the
///   lock before (that claim's commit is visible before its lock is released).
/// - PostgreSQL evaluates a LIMIT expression once, when the Limit node first runs — before
///   the `FOR UPDATE` below it locks any row — so the room is known before anything is leased.
/// - This statement's own snapshot was taken before the lock was granted, so rows the previous
///   claim leased may still look `pending` to its scan. `FOR UPDATE` meets their newer
///   version, locks it and re-checks the WHERE clause against it (EvalPlanQual): a row now
///   `leased` with a future `visible_at` fails `visible_at <= now` and is skipped, never leased
///   twice. Rows freed meanwhile are merely not seen (a smaller claim, never a larger one).
fn push_limit<'a>(q: &mut QueryBuilder<'a, Postgres>, p: &'a DeliveryClaimParams) {
    let limit = i64::from(p.limit.max(1));
    if p.max_leased.is_none() && p.rate_limit.is_none() {
        q.push_bind(limit);
        return;
    }
    q.push("LEAST(").push_bind(limit).push(", ");
    crate::claim_rooms::push_claim_room(q, p);
    q.push(")");
}

/// The park of the one-statement grouped claim, its last CTE: every group `g` visited gets
/// its live leases (those before the claim, `g.live`, plus this claim's) and is parked
/// until its earliest lease end when full (out of the ready index: its backlog is never
/// read), else until its oldest live row (NULL when it has none), with its best waiting
/// priority.
///
/// The statement's snapshot predates its own leases, so the rows it leased (`leased`) are
/// left out of the reads and stand in as `lease_until`. Anything else it misses (a lease
/// settled meanwhile) only makes `ready_at` or `priority` earlier than the truth, never
/// later — the invariant of `flow_groups.rs` — and the settlement's wake-up corrects it.
///
/// One case would break that: another claim parked the group after this snapshot was taken
/// and before the function locked it, having folded a wake-up (a publish) this snapshot
/// does not see. Parking from this snapshot would then undo that: a group with nothing else
/// live would leave the ready set with the new message in it, stranded until something else
/// woke the group. So the function returns the `xmin` of the row version it locked (migration
/// 0033); when the version this snapshot sees is another one, the group is not parked from
/// this snapshot: it is parked ready now (at no worse a priority than the other claim set),
/// or, the update having found the row by the version this snapshot saw (`seen`), left as
/// the other claim parked it; either way the next claim parks it from a newer snapshot
/// (`a_claim_parking_from_an_older_snapshot_never_strands_a_group…`).
/// A full group needs no such care (its lease end comes from the function's own counts),
/// but the rule is applied alike: the case is rare, and it costs the next claim one visit.
fn push_park<'a>(
    q: &mut QueryBuilder<'a, Postgres>,
    p: &'a DeliveryClaimParams,
    per_group: u32,
    lease_until: DateTime<Utc>,
) {
    let per_group = i64::from(per_group.max(1));
    // Each visited group once, with what the park needs of it:
    // - its row as this statement's snapshot sees it, found by its whole primary key (a
    //   subquery per group that cannot be flattened into a join): where it is (`tid`, by
    //   which the update below finds it), and whether another claim changed it after this
    //   snapshot and before the function locked it (the version seen is not the one locked);
    // - what this claim leased of it (`n`, `ids`), counted once for all groups by one
    //   grouped aggregate (a count per visited group read the whole of `leased` each time:
    //   150 groups × 150 leases a claim in the flow workload, 2.7 ms of a 21 ms claim), and
    //   joined here, in a statement of its own, where the planner hashes it (joined in the
    //   update, beside the other joins, it was rescanned once per group).
    q.push(
        ", seen AS MATERIALIZED (SELECT g.key, g.live, g.lease_end, s.tid, g.row_xmin IS DISTINCT FROM s.xmin AS changed, \
           COALESCE(lg.n, 0) AS n, COALESCE(lg.ids, '{}') AS ids, CASE WHEN lg.n > 0 THEN ",
    )
    .push_bind(lease_until)
    .push(
        "::timestamptz END AS until FROM g \
         LEFT JOIN LATERAL (SELECT f0.ctid AS tid, f0.xmin FROM flow_groups f0 WHERE f0.consumer_group = ",
    )
    .push_bind(&p.consumer_group)
    .push(
        " AND f0.group_key = g.key OFFSET 0) s ON true \
         LEFT JOIN (SELECT l.group_key, COUNT(*) AS n, array_agg(l.message_id) AS ids FROM leased l \
           GROUP BY l.group_key) lg ON lg.group_key = g.key)",
    );
    q.push(", parked AS (UPDATE flow_groups f SET running = x.live + x.n, concurrency = ")
        .push_bind(i32::try_from(per_group).unwrap_or(i32::MAX))
        .push(", ready_at = LEAST(CASE WHEN x.key <> '' AND x.live + x.n >= ")
        .push_bind(per_group)
        .push(
            " THEN LEAST(x.lease_end, x.until) \
             ELSE LEAST((SELECT MIN(d.visible_at) FROM deliveries d WHERE d.consumer_group = f.consumer_group \
               AND d.group_key = x.key AND d.state IN ('pending', 'leased') AND d.message_id <> ALL(x.ids)), x.until) END, \
               CASE WHEN x.changed THEN ",
        )
        .push_bind(p.now)
        .push(
            "::timestamptz END), \
             priority = LEAST(COALESCE((SELECT d.priority FROM deliveries d WHERE d.consumer_group = f.consumer_group \
               AND d.group_key = x.key AND d.state IN ('pending', 'leased') AND d.state = 'pending' \
               AND d.message_id <> ALL(x.ids) ORDER BY d.priority LIMIT 1), 32767), \
               CASE WHEN x.changed THEN f.priority END) \
             FROM seen x ",
        )
        // The rows by where they are (a TID scan; `seen` found them in this consumer group),
        // the join by key. Found by key instead, the generic plan — made once per
        // connection, often before `flow_groups` had statistics — read every group of the
        // consumer group through the primary key's first column and filtered them by the
        // visited keys (950 of 1,000 groups read and dropped to park 50: the cost grew with
        // the number of groups, not the claim); and with the consumer group named here too,
        // it still preferred that scan to the TID scan. A row the snapshot does not see
        // (created after it) is not parked here: the group stays ready, as its fold left it,
        // for the next claim.
        .push("WHERE f.ctid = ANY(ARRAY(SELECT tid FROM seen WHERE tid IS NOT NULL)) AND f.group_key = x.key)");
}

/// With a rate limit: a CTE of the claim statement that advances the bucket by the number
/// actually leased (nothing when none was). It runs under `vqs_claim_room`'s lock; `ON
/// CONFLICT DO UPDATE` updates the newest version of the bucket row even when this
/// statement's snapshot predates the previous claim's advance.
fn push_bucket_advance<'a>(q: &mut QueryBuilder<'a, Postgres>, p: &'a DeliveryClaimParams) {
    let Some(rate) = p.rate_limit else { return };
    let now_us = p.now.timestamp_micros();
    let interval = rate_interval_us(rate);
    q.push(", bucket AS (INSERT INTO rate_buckets (consumer_group, topic, tat_us, interval_us) SELECT ")
        .push_bind(&p.consumer_group)
        .push(", ")
        .push_bind(p.topic.clone().unwrap_or_default())
        .push(", ")
        .push_bind(now_us)
        .push(" + c.n * ")
        .push_bind(interval)
        .push(", ")
        .push_bind(interval)
        .push(
            " FROM (SELECT COUNT(*) AS n FROM leased) c WHERE c.n > 0 \
             ON CONFLICT (consumer_group, topic) DO UPDATE SET tat_us = GREATEST(rate_buckets.tat_us, ",
        )
        .push_bind(now_us)
        .push(") - ")
        .push_bind(now_us)
        .push(" + EXCLUDED.tat_us, interval_us = EXCLUDED.interval_us)");
}
