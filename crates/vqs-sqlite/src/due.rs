//! What makes a delivery due for a claim: one filter, written once, for the plain claim
//! (`lease`) and the grouped picks (`flow_groups`).

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};
use vqs::store::{DeliveryClaimParams, StoreError};

use crate::rows::db_err;

/// The conditions of a due delivery of `p`'s consumer group (after `d.consumer_group = ?`),
/// for every claim — plain and grouped (`flow_groups::pick`): pending or with its lease
/// ended, due, its message unexpired, its topic and its message group not paused, and the topic or message the
/// claim names.
pub(crate) fn push_due_filter<'a>(q: &mut QueryBuilder<'a, Sqlite>, p: &'a DeliveryClaimParams, now: i64) {
    q.push(" AND d.state IN ('pending', 'leased') AND d.visible_at <= ")
        .push_bind(now)
        .push(" AND m.expires_at > ")
        .push_bind(now)
        // Paused topics' deliveries stay pending (the subquery is evaluated once per
        // statement). A dispatcher that knows its topic is paused does not claim at all, so
        // this only skips rows for a wildcard subscription spanning a paused topic.
        .push(" AND d.topic NOT IN (SELECT topic FROM topic_controls WHERE paused = 1)")
        // Nor a paused message group's (`group_pauses.rs`): a primary-key probe per row of a
        // grouped message, and none when no group is paused.
        .push(
            " AND (m.group_key IS NULL OR NOT EXISTS (SELECT 1 FROM group_pauses) \
             OR NOT EXISTS (SELECT 1 FROM group_pauses gp WHERE gp.topic = d.topic AND gp.group_key = m.group_key))",
        );
    if let Some(topic) = &p.topic {
        q.push(" AND d.topic = ").push_bind(topic);
    }
    if let Some(id) = &p.message_id {
        q.push(" AND d.message_id = ").push_bind(id);
    }
}

/// The plain claim's picks, up to `limit`, in claim order: lower priority first, by due time
/// within a priority. The priorities present are found one index descent each (`MIN` over
/// `deliveries_due`), lowest first and only as far as needed, and each one's due rows are
/// one range of the index (consumer group, priority, due time <= now). One scan in
/// `(priority, visible_at)` order would walk every not-yet-due entry of a lower priority —
/// 100,000 delayed rows at 0 before the due ones at 5 cost 30–40 ms a claim, against
/// 0.2 ms (docs/flow-control.md).
pub(crate) async fn pick_by_priority(
    conn: &mut SqliteConnection,
    p: &DeliveryClaimParams,
    now: i64,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let limit = i64::from(limit.max(1));
    let mut ids: Vec<String> = Vec::new();
    let mut after: Option<i64> = None;
    while (ids.len() as i64) < limit {
        // Two texts, not `(?2 IS NULL OR priority > ?2)`: the OR would make SQLite walk the
        // index from the group's start instead of seeking past `after`.
        let sql = if after.is_some() {
            "SELECT MIN(priority) FROM deliveries WHERE consumer_group = ?1 AND state IN ('pending', 'leased') \
             AND priority > ?2"
        } else {
            "SELECT MIN(priority) FROM deliveries WHERE consumer_group = ?1 AND state IN ('pending', 'leased')"
        };
        let next: Option<i64> =
            sqlx::query_scalar(sql).bind(&p.consumer_group).bind(after).fetch_one(&mut *conn).await.map_err(db_err)?;
        let Some(priority) = next else { break };
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT d.message_id FROM deliveries d INDEXED BY deliveries_due JOIN messages m ON m.id = d.message_id \
             WHERE d.consumer_group = ",
        );
        q.push_bind(&p.consumer_group).push(" AND d.priority = ").push_bind(priority);
        push_due_filter(&mut q, p, now);
        q.push(" ORDER BY d.visible_at LIMIT ").push_bind(limit - ids.len() as i64);
        let got: Vec<String> = q.build_query_scalar().fetch_all(&mut *conn).await.map_err(db_err)?;
        ids.extend(got);
        after = Some(priority);
    }
    Ok(ids)
}
