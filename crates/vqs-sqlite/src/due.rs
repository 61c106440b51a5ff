//! What makes a delivery due for a claim: one filter, written once, for the plain claim
//! (`lease`) and the grouped picks (`flow_groups`).

use sqlx::{QueryBuilder, Sqlite};
use vqs::store::DeliveryClaimParams;

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
