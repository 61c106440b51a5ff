//! Message groups under a group concurrency limit (SPEC.md, "Flow control"): the ready set
//! of `flow_groups` rows, the grouped claim's picks through it, and the re-keying of a
//! consumer group's deliveries when its subscription becomes grouped or stops being so.
//!
//! Invariant (ARCHITECTURE.md): a group's `ready_at` is never later than the moment it may
//! next lease something — its oldest due row when it has room, its earliest lease end when
//! it is full. Only the claim moves `ready_at` later, from what it counts in its write
//! transaction; publishes and lease ends (triggers of migration 0021) only move it earlier
//! and take one off `running`.

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use vqs::store::{
    DeliveryClaimParams, DeliveryGroupHeldParams, FlowGroupBusiestParams, FlowGroupLoad, GroupHeld, StoreError,
};

use crate::rows::{db_err, us};
use crate::statements::{ROWS_PER_STATEMENT, push_in_list, push_rows};

/// What a grouped claim picked: the groups it looked at and the deliveries to lease.
pub(crate) struct GroupPicks {
    pub(crate) keys: Vec<String>,
    /// Each visited group's live leases before the claim, in `keys` order.
    lives: Vec<i64>,
    pub(crate) message_ids: Vec<String>,
    /// The group of each of `message_ids`, in that order.
    picked_keys: Vec<String>,
    /// Each picked group's rate bucket (`tat_us`) as read, in `keys` order.
    tats: Vec<Option<i64>>,
    per_group: u32,
}

/// The ready groups not paused in a topic the consumer group subscribes to (a paused group
/// is skipped, never visited: its backlog is not read), by priority then oldest `ready_at`
/// first ([`ready_by_priority`]), up to
/// `limit` of them: each one's live leases
/// counted and its oldest due deliveries picked up to the room left (the `""` group,
/// ungrouped messages, has no limit) — read through `deliveries_grouped`, a group's rows
/// only. A full group is not in the ready index, so its backlog is never read.
pub(crate) async fn pick(
    conn: &mut SqliteConnection,
    p: &DeliveryClaimParams,
    per_group: u32,
    limit: u32,
) -> Result<GroupPicks, StoreError> {
    let per_group = per_group.max(1);
    let now = us(p.now);
    let picked = ready_by_priority(conn, p, now, i64::from(limit.max(1))).await?;
    let (keys, tats): (Vec<String>, Vec<Option<i64>>) = picked.into_iter().unzip();
    if keys.is_empty() {
        return Ok(GroupPicks {
            keys,
            lives: Vec::new(),
            tats,
            message_ids: Vec::new(),
            picked_keys: Vec::new(),
            per_group,
        });
    }
    // Every visited group's live leases and unexpired push slots (`flow_group_slots`: pushes
    // this database did not lease, running under the same group concurrency), in one
    // statement of one text (the keys as a JSON array): a text per number of groups would be
    // prepared again at almost every claim.
    let live: Vec<i64> = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM deliveries WHERE consumer_group = ?1 AND group_key = j.value \
           AND state IN ('pending', 'leased') AND state = 'leased' AND visible_at > ?2) \
           + (SELECT COUNT(*) FROM flow_group_slots s WHERE s.consumer_group = ?1 AND s.group_key = j.value \
           AND s.expires_at > ?2) \
         FROM json_each(?3) j ORDER BY j.key",
    )
    .bind(&p.consumer_group)
    .bind(now)
    .bind(serde_json::to_string(&keys).expect("strings"))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    // Limited groups first, each up to its room; the ungrouped pseudo-group (`""`, no
    // limit) last with whatever the batch has left. Each group's room is capped by the
    // batch, not by what the groups before it took: a group with fewer due rows than its
    // room leaves the rest of the batch to the next ones (taken in ready order until the
    // batch is full).
    let total = i64::from(limit.max(1));
    let mut rooms: Vec<(&String, i64)> = Vec::new();
    for ((key, live), tat) in keys.iter().zip(live.iter().copied()).zip(&tats) {
        if key.is_empty() {
            continue;
        }
        let mut room = (i64::from(per_group) - live).min(total);
        // Under a group rate limit, no more than the group's bucket allows now.
        if let Some(r) = p.group_rate_limit {
            room = room.min(i64::from(vqs::store_support::rate_room(r, *tat, now)));
        }
        if room > 0 {
            rooms.push((key, room));
        }
    }
    // Each group's best due rows up to its room, read through its own slice of
    // `deliveries_grouped` and nothing past its room: the groups with room for one (the
    // common case, group concurrency 1) in one statement, the others one statement each,
    // in ready order until the batch is full.
    let ones: Vec<&String> = rooms.iter().filter(|(_, room)| *room == 1).map(|(k, _)| *k).collect();
    let mut by_group: std::collections::HashMap<&str, Vec<String>> = std::collections::HashMap::new();
    if !ones.is_empty() {
        for (key, id) in pick_one_each(conn, p, now, &ones).await? {
            by_group.entry(key).or_default().push(id);
        }
    }
    let (mut message_ids, mut picked_keys) = (Vec::new(), Vec::new());
    for (key, room) in &rooms {
        let left = total - message_ids.len() as i64;
        if left <= 0 {
            break;
        }
        let ids = if *room == 1 {
            by_group.remove(key.as_str()).unwrap_or_default()
        } else {
            pick_in_group(conn, p, now, key, (*room).min(left)).await?
        };
        for id in ids {
            message_ids.push(id);
            picked_keys.push((*key).clone());
        }
    }
    if let Some(key) = keys.iter().find(|k| k.is_empty()) {
        let room = total - message_ids.len() as i64;
        if room > 0 {
            for id in pick_in_group(conn, p, now, key, room).await? {
                message_ids.push(id);
                picked_keys.push(key.clone());
            }
        }
    }
    Ok(GroupPicks { keys, lives: live, tats, message_ids, picked_keys, per_group })
}

/// The best due delivery of each of `keys` (groups with room for one), in one statement
/// of one text: each group's slice of `deliveries_grouped` read to its first due row.
async fn pick_one_each<'k>(
    conn: &mut SqliteConnection,
    p: &DeliveryClaimParams,
    now: i64,
    keys: &[&'k String],
) -> Result<Vec<(&'k str, String)>, StoreError> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT j.key, (SELECT d.message_id FROM deliveries d ");
    // `INDEXED BY`: the group's slice in claim order (SQLite would otherwise pick the
    // time-ordered `deliveries_grouped_live` and sort the group's due rows).
    if p.message_id.is_none() {
        q.push("INDEXED BY deliveries_grouped ");
    }
    q.push("JOIN messages m ON m.id = d.message_id WHERE d.consumer_group = ")
        .push_bind(&p.consumer_group)
        .push(" AND d.group_key = j.value");
    crate::due::push_due_filter(&mut q, p, now);
    q.push(" ORDER BY d.priority, d.visible_at LIMIT 1) FROM json_each(")
        .push_bind(serde_json::to_string(keys).expect("strings"))
        .push(") j ORDER BY j.key");
    let rows: Vec<(i64, Option<String>)> = q.build_query_as().fetch_all(&mut *conn).await.map_err(db_err)?;
    Ok(rows.into_iter().filter_map(|(i, id)| Some((keys.get(usize::try_from(i).ok()?)?.as_str(), id?))).collect())
}

/// Up to `room` of one group's due deliveries, best priority first, oldest first within one
/// (its slice of `deliveries_grouped`, nothing past the room read).
async fn pick_in_group(
    conn: &mut SqliteConnection,
    p: &DeliveryClaimParams,
    now: i64,
    key: &str,
    room: i64,
) -> Result<Vec<String>, StoreError> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT d.message_id FROM deliveries d ");
    if p.message_id.is_none() {
        q.push("INDEXED BY deliveries_grouped ");
    }
    q.push("JOIN messages m ON m.id = d.message_id WHERE d.consumer_group = ")
        .push_bind(&p.consumer_group)
        .push(" AND d.group_key = ")
        .push_bind(key);
    crate::due::push_due_filter(&mut q, p, now);
    q.push(" ORDER BY d.priority, d.visible_at LIMIT ").push_bind(room);
    q.build_query_scalar().fetch_all(&mut *conn).await.map_err(db_err)
}

/// Up to `limit` ready groups (with their rate buckets) not paused in a topic the consumer
/// group subscribes to, in claim order: by priority, then the longest ready. The priorities
/// present in the ready set are found one descent each of `flow_groups_ready` (consumer
/// group, priority, ready_at), lowest first and only as far as needed, and each one's ready
/// groups are one range of it — one scan in (priority, ready_at) order would walk every
/// group of a lower priority parked until later (full, or waiting for its rate) first.
async fn ready_by_priority(
    conn: &mut SqliteConnection,
    p: &DeliveryClaimParams,
    now: i64,
    limit: i64,
) -> Result<Vec<(String, Option<i64>)>, StoreError> {
    let mut picked: Vec<(String, Option<i64>)> = Vec::new();
    let mut after: Option<i64> = None;
    while (picked.len() as i64) < limit {
        // Two texts, not `(?2 IS NULL OR priority > ?2)`: the OR would make SQLite walk the
        // index from the consumer group's start instead of seeking past `after`.
        let sql = if after.is_some() {
            "SELECT MIN(priority) FROM flow_groups WHERE consumer_group = ?1 AND ready_at IS NOT NULL AND priority > ?2"
        } else {
            "SELECT MIN(priority) FROM flow_groups WHERE consumer_group = ?1 AND ready_at IS NOT NULL"
        };
        let next: Option<i64> =
            sqlx::query_scalar(sql).bind(&p.consumer_group).bind(after).fetch_one(&mut *conn).await.map_err(db_err)?;
        let Some(priority) = next else { break };
        let got: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT group_key, tat_us FROM flow_groups INDEXED BY flow_groups_ready \
             WHERE consumer_group = ?1 AND priority = ?2 AND ready_at IS NOT NULL AND ready_at <= ?3 \
             AND NOT EXISTS (SELECT 1 FROM group_pauses gp JOIN subscriptions s ON s.consumer_group = ?1 \
               AND (s.topic_pattern = gp.topic OR (s.is_prefix = 1 AND substr(gp.topic, 1, length(s.prefix)) = s.prefix)) \
               WHERE gp.group_key = flow_groups.group_key) \
             ORDER BY ready_at LIMIT ?4",
        )
        .bind(&p.consumer_group)
        .bind(priority)
        .bind(now)
        .bind(limit - picked.len() as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        picked.extend(got);
        after = Some(priority);
    }
    Ok(picked)
}

/// Under a group rate limit, after the lease and the park, in its transaction: each visited
/// group's bucket advanced by what it leased, and a group whose bucket allows no start now
/// parked until its next start is allowed (a group with nothing live stays out).
pub(crate) async fn advance_buckets(
    conn: &mut SqliteConnection,
    p: &DeliveryClaimParams,
    picks: &GroupPicks,
    leased_ids: &[String],
) -> Result<(), StoreError> {
    let Some(r) = p.group_rate_limit else { return Ok(()) };
    let now = us(p.now);
    let mut counts: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    if !leased_ids.is_empty() {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT group_key FROM deliveries WHERE consumer_group = ");
        q.push_bind(&p.consumer_group).push(" AND message_id IN ");
        push_in_list(&mut q, leased_ids);
        let keys: Vec<Option<String>> = q.build_query_scalar().fetch_all(&mut *conn).await.map_err(db_err)?;
        for key in keys.into_iter().flatten() {
            *counts.entry(key).or_default() += 1;
        }
    }
    for (key, tat) in picks.keys.iter().zip(&picks.tats).filter(|(k, _)| !k.is_empty()) {
        let n = counts.get(key).copied().unwrap_or(0);
        let (tat, next) = vqs::store_support::group_rate_after(r, *tat, now, n);
        sqlx::query(
            "UPDATE flow_groups SET tat_us = ?3, \
               ready_at = CASE WHEN ready_at IS NULL OR ?4 IS NULL THEN ready_at ELSE MAX(ready_at, ?4) END \
             WHERE consumer_group = ?1 AND group_key = ?2",
        )
        .bind(&p.consumer_group)
        .bind(key)
        .bind(tat)
        .bind(next)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// After the lease: each group looked at gets its live lease count, and is ready again at
/// its oldest live delivery if it has room, at its earliest lease end if it is full (NULL:
/// nothing pending or leased).
///
/// A group that had no live lease and that this claim filled is parked from what the claim
/// knows, with no read: `running` is the group concurrency, its earliest lease end is
/// `lease_until` (every lease it has is this claim's), and only its best waiting priority
/// is read. That is every group of the common case — group concurrency 1, a group visited
/// because something was due — and it spares three reads of the group's slice per group.
pub(crate) async fn park(
    conn: &mut SqliteConnection,
    p: &DeliveryClaimParams,
    picks: &GroupPicks,
    lease_until: i64,
) -> Result<(), StoreError> {
    if picks.keys.is_empty() {
        return Ok(());
    }
    let (filled, rest) = vqs::store_support::groups_filled(
        &picks.keys,
        &picks.lives,
        picks.picked_keys.iter().map(String::as_str),
        picks.per_group,
    );
    if !filled.is_empty() {
        sqlx::query(
            "UPDATE flow_groups SET running = ?3, concurrency = ?3, ready_at = ?4, \
               priority = COALESCE((SELECT d.priority FROM deliveries d WHERE d.consumer_group = ?1 \
                 AND d.group_key = flow_groups.group_key AND d.state IN ('pending', 'leased') AND d.state = 'pending' \
                 ORDER BY d.priority LIMIT 1), 32767) \
             WHERE consumer_group = ?1 AND group_key IN (SELECT value FROM json_each(?2))",
        )
        .bind(&p.consumer_group)
        .bind(serde_json::to_string(&filled).expect("strings"))
        .bind(i64::from(picks.per_group))
        .bind(lease_until)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    if rest.is_empty() {
        return Ok(());
    }
    let now = us(p.now);
    for keys in rest.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "WITH c AS (SELECT k.key AS key, (SELECT COUNT(*) FROM deliveries d WHERE d.consumer_group = ",
        );
        q.push_bind(&p.consumer_group)
            .push(
                " AND d.group_key = k.key AND d.state IN ('pending', 'leased') AND d.state = 'leased' AND d.visible_at > ",
            )
            .push_bind(now)
            .push(") + (SELECT COUNT(*) FROM flow_group_slots s WHERE s.consumer_group = ")
            .push_bind(&p.consumer_group)
            .push(" AND s.group_key = k.key AND s.expires_at > ")
            .push_bind(now)
            .push(
                ") AS live, (SELECT MIN(e) FROM (SELECT MIN(d.visible_at) AS e FROM deliveries d WHERE d.consumer_group = ",
            )
            .push_bind(&p.consumer_group)
            .push(
                " AND d.group_key = k.key AND d.state IN ('pending', 'leased') AND d.state = 'leased' AND d.visible_at > ",
            )
            .push_bind(now)
            .push(" UNION ALL SELECT MIN(s.expires_at) FROM flow_group_slots s WHERE s.consumer_group = ")
            .push_bind(&p.consumer_group)
            .push(" AND s.group_key = k.key AND s.expires_at > ")
            .push_bind(now)
            .push(")) AS lease_end, (SELECT MIN(d.visible_at) FROM deliveries d WHERE d.consumer_group = ")
            .push_bind(&p.consumer_group)
            .push(" AND d.group_key = k.key AND d.state IN ('pending', 'leased')) AS first, (SELECT d.priority FROM deliveries d WHERE d.consumer_group = ")
            .push_bind(&p.consumer_group)
            .push(
                " AND d.group_key = k.key AND d.state IN ('pending', 'leased') AND d.state = 'pending' \
                 ORDER BY d.priority LIMIT 1) AS best FROM (",
            );
        // The keys as padded rows: one text for nearby numbers of groups (`statements.rs`).
        push_rows(&mut q, "column2 AS key", 1, keys, |b, key| {
            b.push_bind(*key);
        });
        // `UPDATE … FROM`: the counts are computed once per group (a CTE referenced from
        // correlated subqueries would be evaluated again for every row).
        q.push(") k) UPDATE flow_groups SET running = c.live, concurrency = ")
            .push_bind(i64::from(picks.per_group))
            .push(", ready_at = CASE WHEN c.key <> '' AND c.live >= ")
            .push_bind(i64::from(picks.per_group))
            .push(" THEN c.lease_end ELSE c.first END, priority = COALESCE(c.best, 32767) FROM c WHERE flow_groups.consumer_group = ")
            .push_bind(&p.consumer_group)
            .push(" AND flow_groups.group_key = c.key");
        q.build().execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

/// A consumer group's subscription became grouped (or stopped being so): its live
/// deliveries take their message's group key (`""` when it has none) and its groups enter
/// the ready set — or lose their keys and their groups.
pub(crate) async fn rekey(
    conn: &mut SqliteConnection,
    consumer_group: &str,
    grouped: bool,
    now: i64,
) -> Result<(), StoreError> {
    if grouped {
        sqlx::query(
            "UPDATE deliveries SET group_key = COALESCE((SELECT m.group_key FROM messages m WHERE m.id = message_id), '') \
             WHERE consumer_group = ? AND state IN ('pending', 'leased') AND group_key IS NULL",
        )
        .bind(consumer_group)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO flow_groups (consumer_group, group_key, running, ready_at, priority) \
             SELECT ?1, group_key, 0, MIN(MIN(visible_at), ?2), \
                    COALESCE(MIN(CASE WHEN state = 'pending' THEN priority END), 32767) FROM deliveries \
             WHERE consumer_group = ?1 AND state IN ('pending', 'leased') AND group_key IS NOT NULL \
             GROUP BY group_key \
             ON CONFLICT (consumer_group, group_key) DO UPDATE \
             SET ready_at = excluded.ready_at, priority = excluded.priority",
        )
        .bind(consumer_group)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    } else {
        sqlx::query(
            "UPDATE deliveries SET group_key = NULL \
             WHERE consumer_group = ? AND state IN ('pending', 'leased') AND group_key IS NOT NULL",
        )
        .bind(consumer_group)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM flow_groups WHERE consumer_group = ?")
            .bind(consumer_group)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Whether a delivery of the message waits only because its group is full (the admin API's
/// `"held": "group_concurrency"`): pending and due, with as many live leases in its group
/// as the group concurrency its last claim applied.
pub(crate) async fn group_held(read: &SqlitePool, p: DeliveryGroupHeldParams) -> Result<Option<GroupHeld>, StoreError> {
    // The bucket allows no start while tat − (limit − 1)·interval is later than now.
    let tolerance = p.group_rate_limit.map(|r| i64::from(r.limit.max(1) - 1) * vqs::store_support::rate_interval_us(r));
    let row = sqlx::query(
        "SELECT MAX(f.concurrency <= (SELECT COUNT(*) FROM deliveries o WHERE o.consumer_group = d.consumer_group \
                       AND o.group_key = d.group_key AND o.state IN ('pending', 'leased') \
                       AND o.state = 'leased' AND o.visible_at > ?2)), \
                MAX(?3 IS NOT NULL AND f.tat_us - ?3 > ?2) \
         FROM deliveries d JOIN flow_groups f ON f.consumer_group = d.consumer_group AND f.group_key = d.group_key \
         WHERE d.message_id = ?1 AND d.state = 'pending' AND d.visible_at <= ?2 AND d.group_key <> ''",
    )
    .bind(&p.message_id)
    .bind(us(p.now))
    .bind(tolerance)
    .fetch_one(read)
    .await
    .map_err(db_err)?;
    Ok(vqs::store_support::group_held_reason(row.get(0), row.get(1)))
}

/// The busiest groups of `p.topic`'s grouped consumer groups ([`vqs::QueueStore::flow_group_busiest`]):
/// the topic's live leases grouped (the few leased rows, `deliveries_leased`), then up to
/// twice `limit` ready groups per consumer group (`flow_groups_ready`); each candidate's
/// pending rows counted up to the cap through `deliveries_grouped_live` (its slice only).
pub(crate) async fn busiest(read: &SqlitePool, p: FlowGroupBusiestParams) -> Result<Vec<FlowGroupLoad>, StoreError> {
    let now = us(p.now);
    let limit = i64::from(p.limit.max(1));
    let consumer_groups: Vec<String> = sqlx::query_scalar(
        "SELECT consumer_group FROM subscriptions WHERE topic_pattern = ? AND grouped = 1 ORDER BY consumer_group",
    )
    .bind(&p.topic)
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    if consumer_groups.is_empty() {
        return Ok(Vec::new());
    }
    let running: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT consumer_group, group_key, SUM(n) FROM ( \
           SELECT consumer_group, group_key, COUNT(*) AS n FROM deliveries INDEXED BY deliveries_leased \
           WHERE state = 'leased' AND visible_at > ?2 AND topic = ?1 AND group_key IS NOT NULL AND group_key <> '' \
             AND consumer_group IN (SELECT consumer_group FROM subscriptions WHERE topic_pattern = ?1 AND grouped = 1) \
           GROUP BY consumer_group, group_key \
           UNION ALL \
           SELECT consumer_group, group_key, COUNT(*) FROM flow_group_slots \
           WHERE expires_at > ?2 AND group_key <> '' \
             AND consumer_group IN (SELECT consumer_group FROM subscriptions WHERE topic_pattern = ?1 AND grouped = 1) \
           GROUP BY consumer_group, group_key) \
         GROUP BY consumer_group, group_key ORDER BY 3 DESC, 1, 2",
    )
    .bind(&p.topic)
    .bind(now)
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    let mut ready = Vec::new();
    for cg in &consumer_groups {
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT group_key FROM flow_groups WHERE consumer_group = ?1 AND ready_at IS NOT NULL AND group_key <> '' \
             ORDER BY priority, ready_at LIMIT ?2",
        )
        .bind(cg)
        .bind(2 * limit)
        .fetch_all(read)
        .await
        .map_err(db_err)?;
        ready.extend(keys.into_iter().map(|k| (cg.clone(), k)));
    }
    let (live, candidates) = vqs::store_support::busiest_candidates(running, ready, p.limit);
    let mut out = Vec::new();
    for (cg, key) in candidates {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries INDEXED BY deliveries_grouped_live \
                      WHERE consumer_group = ?1 AND group_key = ?2 AND state IN ('pending', 'leased') \
                        AND state = 'pending' AND topic = ?3 LIMIT ?4)), \
                    (SELECT concurrency FROM flow_groups WHERE consumer_group = ?1 AND group_key = ?2), \
                    (SELECT tat_us FROM flow_groups WHERE consumer_group = ?1 AND group_key = ?2)",
        )
        .bind(&cg)
        .bind(&key)
        .bind(&p.topic)
        .bind(i64::from(p.waiting_cap))
        .fetch_one(read)
        .await
        .map_err(db_err)?;
        let running = live.get(&(cg.clone(), key.clone())).copied().unwrap_or(0);
        out.push(FlowGroupLoad {
            running: u32::try_from(running).unwrap_or(u32::MAX),
            waiting: u32::try_from(row.get::<i64, _>(0)).unwrap_or(u32::MAX),
            concurrency: row.get::<Option<i64>, _>(1).and_then(|c| u32::try_from(c).ok()),
            tat_us: row.get(2),
            consumer_group: cg,
            group_key: key,
        });
    }
    Ok(vqs::store_support::busiest_groups(out, p.limit))
}

/// A push of a message group this database did not lease, under the group's limits
/// ([`vqs::QueueStore::flow_group_start`]), through the one writer (so serialised per group).
pub(crate) async fn start(
    writer: &crate::writer::Writer,
    p: vqs::store::FlowGroupStartParams,
) -> Result<vqs::store::FlowGroupStart, StoreError> {
    use futures::FutureExt;
    use vqs::store::FlowGroupStart;
    writer
        .run(move |c| {
            async move {
                let now = us(p.now);
                if let Some(n) = p.concurrency {
                    sqlx::query(
                        "DELETE FROM flow_group_slots WHERE consumer_group = ?1 AND group_key = ?2 AND expires_at <= ?3",
                    )
                    .bind(&p.consumer_group)
                    .bind(&p.group_key)
                    .bind(now)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    // Other pushes' slots, and this database's own live leases of the group
                    // (the grouped claim counts these slots too): one limit for both.
                    let held: i64 = sqlx::query_scalar(
                        "SELECT (SELECT COUNT(*) FROM flow_group_slots \
                                 WHERE consumer_group = ?1 AND group_key = ?2 AND message_id <> ?3) \
                              + (SELECT COUNT(*) FROM deliveries WHERE consumer_group = ?1 AND group_key = ?2 \
                                 AND state IN ('pending', 'leased') AND state = 'leased' AND visible_at > ?4)",
                    )
                    .bind(&p.consumer_group)
                    .bind(&p.group_key)
                    .bind(&p.message_id)
                    .bind(now)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                    if held >= i64::from(n) {
                        return Ok(FlowGroupStart::Full);
                    }
                }
                if let Some(r) = p.rate {
                    let tat: Option<i64> = sqlx::query_scalar(
                        "SELECT tat_us FROM flow_groups WHERE consumer_group = ?1 AND group_key = ?2",
                    )
                    .bind(&p.consumer_group)
                    .bind(&p.group_key)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(db_err)?
                    .flatten();
                    if vqs::store_support::rate_room(r, tat, now) == 0 {
                        let next = vqs::store_support::group_rate_after(r, tat, now, 0).1.unwrap_or(now + 1);
                        return Ok(FlowGroupStart::RateLimited { wait_us: (next - now).max(1) });
                    }
                    let (tat, _) = vqs::store_support::group_rate_after(r, tat, now, 1);
                    sqlx::query(
                        "INSERT INTO flow_groups (consumer_group, group_key, running, ready_at, tat_us) \
                         VALUES (?1, ?2, 0, NULL, ?3) \
                         ON CONFLICT (consumer_group, group_key) DO UPDATE SET tat_us = excluded.tat_us",
                    )
                    .bind(&p.consumer_group)
                    .bind(&p.group_key)
                    .bind(tat)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                }
                if p.concurrency.is_some() {
                    sqlx::query(
                        "INSERT INTO flow_group_slots (consumer_group, group_key, message_id, expires_at) \
                         VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT (consumer_group, group_key, message_id) DO UPDATE SET expires_at = excluded.expires_at",
                    )
                    .bind(&p.consumer_group)
                    .bind(&p.group_key)
                    .bind(&p.message_id)
                    .bind(us(p.slot_until))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                }
                Ok(FlowGroupStart::Started)
            }
            .boxed()
        })
        .await
}

/// Free a push's group slot ([`vqs::QueueStore::flow_group_slot_release`]), and wake its
/// group: a claim that found it full of slots parked it until its earliest slot or lease
/// end, and `ready_at` only ever moves earlier outside the claim.
pub(crate) async fn slot_release(
    writer: &crate::writer::Writer,
    p: vqs::store::FlowGroupSlotReleaseParams,
) -> Result<(), StoreError> {
    use futures::FutureExt;
    writer
        .run(move |c| {
            async move {
                let freed = sqlx::query(
                    "DELETE FROM flow_group_slots WHERE consumer_group = ?1 AND group_key = ?2 AND message_id = ?3",
                )
                .bind(&p.consumer_group)
                .bind(&p.group_key)
                .bind(&p.message_id)
                .execute(&mut *c)
                .await
                .map_err(db_err)?
                .rows_affected();
                if freed > 0 {
                    sqlx::query(
                        "UPDATE flow_groups SET ready_at = ?3 \
                         WHERE consumer_group = ?1 AND group_key = ?2 AND ready_at > ?3",
                    )
                    .bind(&p.consumer_group)
                    .bind(&p.group_key)
                    .bind(us(p.now))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                }
                Ok(())
            }
            .boxed()
        })
        .await
}
