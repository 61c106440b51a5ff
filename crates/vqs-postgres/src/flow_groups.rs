//! Message groups under a group concurrency limit (SPEC.md, "Flow control"): the ready set
//! of `flow_groups` rows, the grouped claim through it, and the re-keying of a consumer
//! group's deliveries when its subscription becomes grouped or stops being so.
//!
//! Invariant (ARCHITECTURE.md): a group's `ready_at` is never later than the moment it may
//! next lease something — its oldest due row when it has room, its earliest lease end when
//! it is full. Only the claim, holding the group's row lock, moves `ready_at` later (from
//! what it counts in that transaction); everything else (publish, settlement, rescue)
//! only appends a wake-up that the next claim folds in, earlier never later. `running` is
//! the group's live leases as its last claim counted them.
//!
//! A group's live leases are counted as `state IN ('pending', 'leased') AND state <>
//! 'pending'`, never `state = 'leased'`: that form still lets an index keyed by group serve
//! the count, but not `deliveries_leased`, through which a plan made when statistics showed
//! few leases read every lease of the consumer group once per group (migration 0034).

use sqlx::postgres::PgConnection;
use sqlx::{PgPool, Row};
use vqs::store::{DeliveryClaimParams, FlowGroupBusiestParams, FlowGroupLoad, StoreError};

use crate::rows::db_err;

/// Fold the consumer group's wake-ups into its groups' `ready_at` (creating the rows of new
/// groups), in group order so that two claims folding at once never deadlock
/// (`vqs_fold_wakeups`, migration 0032: a plain index scan over a table of mostly dead rows).
pub(crate) async fn fold_wakeups(conn: &mut PgConnection, consumer_group: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT vqs_fold_wakeups($1)").bind(consumer_group).execute(&mut *conn).await.map_err(db_err)?;
    Ok(())
}

/// The groups a grouped claim takes from, each with the room it has.
pub(crate) struct GroupRooms {
    /// Every group visited (locked), to be parked after the claim.
    pub(crate) visited: Vec<String>,
    pub(crate) keys: Vec<String>,
    pub(crate) rooms: Vec<i32>,
    /// Each visited group's rate bucket (`tat_us`) as read, in `visited` order.
    pub(crate) tats: Vec<Option<i64>>,
    /// Each visited group's live leases before the claim, in `visited` order.
    pub(crate) lives: Vec<i64>,
    /// The claim's limit in all, under the consumer group's own limits.
    pub(crate) cap: u32,
}

/// The ready groups of the grouped claim under a group rate limit, in the claim's
/// transaction (the consumer group's wake-ups folded in before it): `vqs_group_rooms`
/// (migration 0032, the one-statement claim's first CTE) locks them and counts each one's
/// room under the group concurrency and the consumer group's limits; each room is then
/// capped by what the group's rate bucket allows now.
pub(crate) async fn ready_groups(
    tx: &mut PgConnection,
    p: &DeliveryClaimParams,
    per_group: u32,
) -> Result<GroupRooms, StoreError> {
    let mut q: sqlx::QueryBuilder<sqlx::Postgres> =
        sqlx::QueryBuilder::new("SELECT g.key, g.room, g.live, g.cap_left, g.tat_us FROM ");
    crate::claim_rooms::push_group_rooms(&mut q, p, per_group);
    q.push(" g ORDER BY g.ord");
    let rows: Vec<(String, i32, i64, i32, Option<i64>)> =
        q.build_query_as().fetch_all(&mut *tx).await.map_err(db_err)?;
    let mut groups = GroupRooms {
        visited: Vec::new(),
        keys: Vec::new(),
        rooms: Vec::new(),
        tats: Vec::new(),
        lives: Vec::new(),
        cap: 0,
    };
    let now_us = p.now.timestamp_micros();
    for (key, room, live, cap, tat) in rows {
        groups.cap = u32::try_from(cap).unwrap_or(0);
        let mut room = i64::from(room);
        // Under a group rate limit, no more than the group's bucket allows now.
        if let Some(r) = p.group_rate_limit.filter(|_| !key.is_empty()) {
            room = room.min(i64::from(vqs::store_support::rate_room(r, tat, now_us)));
        }
        if room > 0 {
            groups.keys.push(key.clone());
            groups.rooms.push(room as i32);
        }
        groups.visited.push(key);
        groups.tats.push(tat);
        groups.lives.push(live);
    }
    Ok(groups)
}

/// Under a group rate limit, after the claim and the park, in its transaction: each visited
/// group's bucket advanced by what it leased, and a group whose bucket allows no start now
/// parked until its next start is allowed (not before; a group with nothing live stays out).
pub(crate) async fn advance_buckets(
    tx: &mut PgConnection,
    p: &DeliveryClaimParams,
    groups: &GroupRooms,
    leased_ids: &[String],
) -> Result<(), StoreError> {
    let Some(r) = p.group_rate_limit else { return Ok(()) };
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT group_key, COUNT(*) FROM deliveries WHERE consumer_group = $1 AND message_id = ANY($2) \
         GROUP BY group_key",
    )
    .bind(&p.consumer_group)
    .bind(leased_ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    let now_us = p.now.timestamp_micros();
    let (mut keys, mut tats, mut nexts) = (Vec::new(), Vec::new(), Vec::new());
    for (key, tat) in groups.visited.iter().zip(&groups.tats).filter(|(k, _)| !k.is_empty()) {
        let n = counts.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n);
        let (tat, next) = vqs::store_support::group_rate_after(r, *tat, now_us, u32::try_from(n).unwrap_or(u32::MAX));
        keys.push(key.clone());
        tats.push(tat);
        nexts.push(next);
    }
    sqlx::query(
        "UPDATE flow_groups f SET tat_us = b.tat, \
           ready_at = CASE WHEN f.ready_at IS NULL OR b.next IS NULL THEN f.ready_at \
                      ELSE GREATEST(f.ready_at, timestamptz 'epoch' + b.next * interval '1 microsecond') END \
         FROM UNNEST($2::text[], $3::bigint[], $4::bigint[]) AS b(key, tat, next) \
         WHERE f.consumer_group = $1 AND f.group_key = b.key",
    )
    .bind(&p.consumer_group)
    .bind(&keys)
    .bind(&tats)
    .bind(&nexts)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// After the claim, in its transaction: each group visited gets its live lease count and
/// is parked — ready again at its oldest live row if it has room, at its earliest lease end
/// if full (out of the ready index until then: its backlog is never read), NULL if empty.
///
/// A group that had no live lease and that this claim filled (`leased_keys`: the group of
/// each delivery leased) is parked from what the claim knows: `running` is the group
/// concurrency and its earliest lease end is `lease_until` (every lease it has is this
/// claim's); only its best waiting priority is read. That is every group of the common case
/// — group concurrency 1, a group visited because something was due — and it spares three
/// reads of the group's slice per group.
pub(crate) async fn park(
    tx: &mut PgConnection,
    p: &DeliveryClaimParams,
    per_group: u32,
    groups: &GroupRooms,
    leased_keys: &[Option<String>],
    lease_until: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let (filled, visited) = vqs::store_support::groups_filled(
        &groups.visited,
        &groups.lives,
        leased_keys.iter().flatten().map(String::as_str),
        per_group,
    );
    if !filled.is_empty() {
        sqlx::query(
            "UPDATE flow_groups f SET running = $3, concurrency = $3, ready_at = $4, \
               priority = COALESCE((SELECT d.priority FROM deliveries d WHERE d.consumer_group = $1 \
                 AND d.group_key = f.group_key AND d.state IN ('pending', 'leased') AND d.state = 'pending' \
                 ORDER BY d.priority LIMIT 1), 32767) \
             WHERE f.consumer_group = $1 AND f.group_key = ANY($2)",
        )
        .bind(&p.consumer_group)
        .bind(&filled)
        .bind(i32::try_from(per_group).unwrap_or(i32::MAX))
        .bind(lease_until)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    if visited.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE flow_groups f SET running = c.live, concurrency = $3, \
           ready_at = CASE WHEN f.group_key <> '' AND c.live >= $3 THEN c.lease_end ELSE c.first END, \
           priority = COALESCE(c.best, 32767) \
         FROM (SELECT k AS key, \
                 (SELECT COUNT(*) FROM deliveries d WHERE d.consumer_group = $1 AND d.group_key = k \
                    AND d.state IN ('pending', 'leased') AND d.state <> 'pending' AND d.visible_at > $2) \
                 + (SELECT COUNT(*) FROM flow_group_slots s WHERE s.consumer_group = $1 AND s.group_key = k \
                    AND s.expires_at > $2) AS live, \
                 LEAST((SELECT MIN(d.visible_at) FROM deliveries d WHERE d.consumer_group = $1 AND d.group_key = k \
                    AND d.state IN ('pending', 'leased') AND d.state <> 'pending' AND d.visible_at > $2), \
                   (SELECT MIN(s.expires_at) FROM flow_group_slots s WHERE s.consumer_group = $1 AND s.group_key = k \
                    AND s.expires_at > $2)) AS lease_end, \
                 (SELECT MIN(d.visible_at) FROM deliveries d WHERE d.consumer_group = $1 AND d.group_key = k \
                    AND d.state IN ('pending', 'leased')) AS first, \
                 (SELECT d.priority FROM deliveries d WHERE d.consumer_group = $1 AND d.group_key = k \
                    AND d.state IN ('pending', 'leased') AND d.state = 'pending' \
                  ORDER BY d.priority LIMIT 1) AS best \
               FROM UNNEST($4::text[]) AS k) c \
         WHERE f.consumer_group = $1 AND f.group_key = c.key",
    )
    .bind(&p.consumer_group)
    .bind(p.now)
    .bind(i64::from(per_group))
    .bind(visited)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// A consumer group's subscription became grouped (or stopped being so): its live
/// deliveries take their message's group key (`""` when it has none) and its groups enter
/// the ready set — or lose their keys and their groups.
pub(crate) async fn rekey(
    tx: &mut PgConnection,
    consumer_group: &str,
    grouped: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    if grouped {
        sqlx::query(
            "UPDATE deliveries d SET group_key = COALESCE(m.group_key, '') FROM messages m \
             WHERE m.id = d.message_id AND d.consumer_group = $1 AND d.state IN ('pending', 'leased') \
               AND d.group_key IS NULL",
        )
        .bind(consumer_group)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO flow_groups (consumer_group, group_key, running, ready_at, priority) \
             SELECT $1, group_key, 0, LEAST(MIN(visible_at), $2), \
                    COALESCE(MIN(priority) FILTER (WHERE state = 'pending'), 32767) FROM deliveries \
             WHERE consumer_group = $1 AND state IN ('pending', 'leased') AND group_key IS NOT NULL \
             GROUP BY group_key ORDER BY group_key \
             ON CONFLICT (consumer_group, group_key) DO UPDATE \
             SET ready_at = EXCLUDED.ready_at, priority = EXCLUDED.priority",
        )
        .bind(consumer_group)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    } else {
        sqlx::query(
            "UPDATE deliveries SET group_key = NULL \
             WHERE consumer_group = $1 AND state IN ('pending', 'leased') AND group_key IS NOT NULL",
        )
        .bind(consumer_group)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM flow_groups WHERE consumer_group = $1")
            .bind(consumer_group)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // Nor its wake-ups: nothing folds them any more (grouped again, its groups are
        // rebuilt from its live deliveries, above).
        sqlx::query("DELETE FROM flow_group_wakeups WHERE consumer_group = $1")
            .bind(consumer_group)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Whether a delivery of the message waits only because its group is full (the admin API's
/// `"held": "group_concurrency"`): pending and due, with as many live leases in its group
/// as the group concurrency its last claim applied.
pub(crate) async fn group_held(
    pool: &PgPool,
    p: vqs::store::DeliveryGroupHeldParams,
) -> Result<Option<vqs::store::GroupHeld>, StoreError> {
    // The bucket allows no start while tat − (limit − 1)·interval is later than now.
    let tolerance = p.group_rate_limit.map(|r| i64::from(r.limit.max(1) - 1) * vqs::store_support::rate_interval_us(r));
    let row = sqlx::query(
        "SELECT bool_or(f.concurrency <= (SELECT COUNT(*) FROM deliveries o WHERE o.consumer_group = d.consumer_group \
                       AND o.group_key = d.group_key AND o.state IN ('pending', 'leased') AND o.state <> 'pending' AND o.visible_at > $2)), \
                bool_or($3::bigint IS NOT NULL AND f.tat_us - $3 > $4) \
         FROM deliveries d JOIN flow_groups f ON f.consumer_group = d.consumer_group AND f.group_key = d.group_key \
         WHERE d.message_id = $1 AND d.state = 'pending' AND d.visible_at <= $2 AND d.group_key <> ''",
    )
    .bind(&p.message_id)
    .bind(p.now)
    .bind(tolerance)
    .bind(p.now.timestamp_micros())
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok(vqs::store_support::group_held_reason(row.get(0), row.get(1)))
}

/// The busiest groups of `p.topic`'s grouped consumer groups ([`vqs::QueueStore::flow_group_busiest`]):
/// the topic's live leases grouped (the few leased rows, `deliveries_leased`), then up to
/// twice `limit` ready groups per consumer group (`flow_groups_ready`) and groups woken but
/// not yet folded in by a claim (`flow_group_wakeups`); each candidate's pending rows counted
/// up to the cap through `deliveries_grouped_live` (its slice only).
pub(crate) async fn busiest(pool: &PgPool, p: FlowGroupBusiestParams) -> Result<Vec<FlowGroupLoad>, StoreError> {
    let limit = i64::from(p.limit.max(1));
    let consumer_groups: Vec<String> = sqlx::query_scalar(
        "SELECT consumer_group FROM subscriptions WHERE topic_pattern = $1 AND grouped ORDER BY consumer_group",
    )
    .bind(&p.topic)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    if consumer_groups.is_empty() {
        return Ok(Vec::new());
    }
    // Live leases, and unexpired push slots (Vercel's running pushes: disjoint from leases).
    let running: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT consumer_group, group_key, SUM(n)::bigint FROM ( \
           SELECT consumer_group, group_key, COUNT(*) AS n FROM deliveries \
           WHERE state = 'leased' AND visible_at > $2 AND topic = $1 AND group_key IS NOT NULL AND group_key <> '' \
             AND consumer_group = ANY($3) \
           GROUP BY consumer_group, group_key \
           UNION ALL \
           SELECT consumer_group, group_key, COUNT(*) FROM flow_group_slots \
           WHERE expires_at > $2 AND group_key <> '' AND consumer_group = ANY($3) \
           GROUP BY consumer_group, group_key) r \
         GROUP BY consumer_group, group_key ORDER BY 3 DESC, 1, 2",
    )
    .bind(&p.topic)
    .bind(p.now)
    .bind(&consumer_groups)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let mut ready = Vec::new();
    for cg in &consumer_groups {
        let keys: Vec<String> = sqlx::query_scalar(
            "(SELECT group_key FROM flow_groups WHERE consumer_group = $1 AND ready_at IS NOT NULL AND group_key <> '' \
              ORDER BY priority, ready_at LIMIT $2) \
             UNION ALL \
             (SELECT group_key FROM flow_group_wakeups WHERE consumer_group = $1 AND group_key <> '' LIMIT $2)",
        )
        .bind(cg)
        .bind(2 * limit)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
        ready.extend(keys.into_iter().map(|k| (cg.clone(), k)));
    }
    let (live, candidates) = vqs::store_support::busiest_candidates(running, ready, p.limit);
    let mut out = Vec::new();
    for (cg, key) in candidates {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries \
                      WHERE consumer_group = $1 AND group_key = $2 AND state IN ('pending', 'leased') \
                        AND state = 'pending' AND topic = $3 LIMIT $4) w), \
                    (SELECT concurrency FROM flow_groups WHERE consumer_group = $1 AND group_key = $2), \
                    (SELECT tat_us FROM flow_groups WHERE consumer_group = $1 AND group_key = $2)",
        )
        .bind(&cg)
        .bind(&key)
        .bind(&p.topic)
        .bind(i64::from(p.waiting_cap))
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
        let running = live.get(&(cg.clone(), key.clone())).copied().unwrap_or(0);
        out.push(FlowGroupLoad {
            running: u32::try_from(running).unwrap_or(u32::MAX),
            waiting: u32::try_from(row.get::<i64, _>(0)).unwrap_or(u32::MAX),
            concurrency: row.get::<Option<i32>, _>(1).and_then(|c| u32::try_from(c).ok()),
            tat_us: row.get(2),
            consumer_group: cg,
            group_key: key,
        });
    }
    Ok(vqs::store_support::busiest_groups(out, p.limit))
}

/// A push of a message group this database did not lease, under the group's limits
/// ([`vqs::QueueStore::flow_group_start`]): serialised per group by the group's
/// `flow_groups` row lock (created if needed; the claim skips a locked group), then each
/// statement of the transaction sees every slot committed before the lock was granted.
pub(crate) async fn start(
    pool: &PgPool,
    p: vqs::store::FlowGroupStartParams,
) -> Result<vqs::store::FlowGroupStart, StoreError> {
    use vqs::store::FlowGroupStart;
    let mut tx = pool.begin().await.map_err(db_err)?;
    // Created and locked in one statement: maintenance may delete an idle row between an
    // insert that found it and a separate lock (`ON CONFLICT DO UPDATE` locks the row it
    // conflicts with, and inserts again if that row is gone).
    let tat: Option<i64> = sqlx::query_scalar(
        "INSERT INTO flow_groups (consumer_group, group_key, running, ready_at) VALUES ($1, $2, 0, NULL) \
         ON CONFLICT (consumer_group, group_key) DO UPDATE SET running = flow_groups.running RETURNING tat_us",
    )
    .bind(&p.consumer_group)
    .bind(&p.group_key)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let now = p.now.timestamp_micros();
    if let Some(n) = p.concurrency {
        sqlx::query("DELETE FROM flow_group_slots WHERE consumer_group = $1 AND group_key = $2 AND expires_at <= $3")
            .bind(&p.consumer_group)
            .bind(&p.group_key)
            .bind(p.now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // Other pushes' slots and this database's own live leases of the group (the grouped
        // claim counts these slots too, under the same row lock): one limit for both.
        let held: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM flow_group_slots \
                     WHERE consumer_group = $1 AND group_key = $2 AND message_id <> $3) \
                  + (SELECT COUNT(*) FROM deliveries WHERE consumer_group = $1 AND group_key = $2 \
                     AND state IN ('pending', 'leased') AND state <> 'pending' AND visible_at > $4)",
        )
        .bind(&p.consumer_group)
        .bind(&p.group_key)
        .bind(&p.message_id)
        .bind(p.now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if held >= i64::from(n) {
            tx.commit().await.map_err(db_err)?;
            return Ok(FlowGroupStart::Full);
        }
    }
    if let Some(r) = p.rate {
        if vqs::store_support::rate_room(r, tat, now) == 0 {
            tx.commit().await.map_err(db_err)?;
            let next = vqs::store_support::group_rate_after(r, tat, now, 0).1.unwrap_or(now + 1);
            return Ok(FlowGroupStart::RateLimited { wait_us: (next - now).max(1) });
        }
        let (tat, _) = vqs::store_support::group_rate_after(r, tat, now, 1);
        sqlx::query("UPDATE flow_groups SET tat_us = $3 WHERE consumer_group = $1 AND group_key = $2")
            .bind(&p.consumer_group)
            .bind(&p.group_key)
            .bind(tat)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    if p.concurrency.is_some() {
        sqlx::query(
            "INSERT INTO flow_group_slots (consumer_group, group_key, message_id, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (consumer_group, group_key, message_id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
        )
        .bind(&p.consumer_group)
        .bind(&p.group_key)
        .bind(&p.message_id)
        .bind(p.slot_until)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(FlowGroupStart::Started)
}

/// Free a push's group slot ([`vqs::QueueStore::flow_group_slot_release`]), and wake its
/// group (a wake-up at `now`, folded in by the next grouped claim): a claim that found the
/// group full of slots parked it until its earliest slot or lease end.
pub(crate) async fn slot_release(pool: &PgPool, p: vqs::store::FlowGroupSlotReleaseParams) -> Result<(), StoreError> {
    sqlx::query(
        "WITH freed AS (DELETE FROM flow_group_slots WHERE consumer_group = $1 AND group_key = $2 AND message_id = $3 \
                        RETURNING consumer_group, group_key) \
         INSERT INTO flow_group_wakeups (consumer_group, group_key, due_at) \
         SELECT consumer_group, group_key, $4 FROM freed",
    )
    .bind(&p.consumer_group)
    .bind(&p.group_key)
    .bind(&p.message_id)
    .bind(p.now)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}
