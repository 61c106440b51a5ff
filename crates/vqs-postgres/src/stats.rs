//! Counts. `queue_stats` reads every delivery (the dashboard's full table); the live counts
//! (`queue_depth`) are read from unfinished deliveries only: the partial index `deliveries_due`
//! holds exactly those rows, so the cost follows the queue's depth, not its history.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use vqs::store::{
    ExecutionCountParams, ExecutionCounts, QueueDepthParams, QueueStatsParams, StoreError, TopicDepth, TopicStats,
    topic_depths,
};
use vqs::store_support::{DeliveryCountRow, topic_stats};

use crate::rows::db_err;

pub(crate) async fn queue_depth(pool: &PgPool, p: QueueDepthParams) -> Result<Vec<TopicDepth>, StoreError> {
    // Due rows per consumer group (an index-only scan of `deliveries_due` once vacuumed).
    let due = sqlx::query(
        "SELECT consumer_group, COUNT(*), MIN(visible_at) FROM deliveries \
         WHERE state IN ('pending', 'leased') AND visible_at <= $1 GROUP BY consumer_group",
    )
    .bind(p.now)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    // A group subscribed to one exact topic counts for that topic; any other group (a
    // `prefix*` pattern, several topics, receive-only) is split by topic from its rows.
    let simple: std::collections::HashMap<String, String> = sqlx::query(
        "SELECT consumer_group, MIN(topic_pattern) FROM subscriptions GROUP BY consumer_group \
         HAVING COUNT(*) = 1 AND NOT bool_or(is_prefix)",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err)?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let mut due_by_topic = Vec::with_capacity(due.len());
    for r in &due {
        let group: String = r.get(0);
        match simple.get(&group) {
            Some(topic) => due_by_topic.push((topic.clone(), r.get(1), r.get::<Option<DateTime<Utc>>, _>(2))),
            None => {
                let rows = sqlx::query(
                    "SELECT topic, COUNT(*), MIN(visible_at) FROM deliveries \
                     WHERE consumer_group = $1 AND state IN ('pending', 'leased') AND visible_at <= $2 GROUP BY topic",
                )
                .bind(&group)
                .bind(p.now)
                .fetch_all(pool)
                .await
                .map_err(db_err)?;
                due_by_topic.extend(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))));
            }
        }
    }
    // Not due yet: leased (running) or waiting out a delay; few rows next to the due ones.
    // Naming the groups (every delivery belongs to a subscribed group) and each one's
    // priorities present turns this into one range of `deliveries_due` per (group,
    // priority), past the due rows, instead of a walk over the whole index.
    let groups: Vec<String> = sqlx::query("SELECT DISTINCT consumer_group FROM subscriptions")
        .fetch_all(pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let not_due = sqlx::query(
        "SELECT d.topic, COUNT(*) FILTER (WHERE d.state = 'pending'), COUNT(*) FILTER (WHERE d.state = 'leased') \
         FROM UNNEST($2::text[]) g(cg) CROSS JOIN LATERAL vqs_live_priorities(g.cg) p \
         JOIN deliveries d ON d.consumer_group = g.cg AND d.priority = p.priority \
         AND d.state IN ('pending', 'leased') AND d.visible_at > $1 \
         GROUP BY d.topic",
    )
    .bind(p.now)
    .bind(&groups)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let dead =
        sqlx::query("SELECT topic, COUNT(*) FROM dead_letters GROUP BY topic").fetch_all(pool).await.map_err(db_err)?;
    Ok(topic_depths(
        due_by_topic,
        not_due.iter().map(|r| (r.get(0), r.get(1), r.get(2))),
        dead.iter().map(|r| (r.get(0), r.get(1))),
    ))
}

pub(crate) async fn execution_counts(
    pool: &PgPool,
    p: ExecutionCountParams,
) -> Result<Vec<ExecutionCounts>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, COUNT(*) FILTER (WHERE status = 'running'), COUNT(*) FILTER (WHERE status = 'success'), \
         COUNT(*) FILTER (WHERE status = 'failed'), COUNT(*) FILTER (WHERE status = 'snoozed'), \
         COUNT(*) FILTER (WHERE status = 'cancelled') FROM job_executions WHERE started_at >= $1 GROUP BY topic ORDER BY topic",
    )
    .bind(p.since)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| ExecutionCounts {
            topic: r.get(0),
            running: r.get(1),
            success: r.get(2),
            failed: r.get(3),
            snoozed: r.get(4),
            cancelled: r.get(5),
        })
        .collect())
}

/// Every topic's counts by state (reads history: the dashboard's table, not polled). The
/// merge is the core's ([`vqs::store_support::topic_stats`]).
pub(crate) async fn queue_stats(pool: &PgPool, p: QueueStatsParams) -> Result<Vec<TopicStats>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, \
           COUNT(*) FILTER (WHERE state IN ('pending', 'leased') AND visible_at <= $1), \
           COUNT(*) FILTER (WHERE state = 'pending' AND visible_at > $1), \
           COUNT(*) FILTER (WHERE state = 'leased' AND visible_at > $1), \
           COUNT(*) FILTER (WHERE state = 'acked'), COUNT(*) FILTER (WHERE state = 'dead'), \
           COUNT(*) FILTER (WHERE state = 'cancelled') \
         FROM deliveries GROUP BY topic",
    )
    .bind(p.now)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let deliveries = rows.iter().map(|r| DeliveryCountRow {
        topic: r.get(0),
        waiting: r.get(1),
        delayed: r.get(2),
        running: r.get(3),
        acked: r.get(4),
        dead: r.get(5),
        cancelled: r.get(6),
    });
    let failed = sqlx::query("SELECT topic, COUNT(*) FROM job_executions WHERE status = 'failed' GROUP BY topic")
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    Ok(topic_stats(deliveries, failed.iter().map(|r| (r.get(0), r.get(1)))))
}
