//! Counts. `queue_stats` reads every delivery (the dashboard's full table); the live counts
//! (`queue_depth`) are read from unfinished deliveries only: the partial index `deliveries_due`
//! holds exactly those rows, so the cost follows the queue's depth, not its history.

use sqlx::{Row, SqlitePool};
use vqs::store::{
    ExecutionCountParams, ExecutionCounts, QueueDepthParams, QueueStatsParams, StoreError, TopicDepth, TopicStats,
    topic_depths,
};
use vqs::store_support::{DeliveryCountRow, topic_stats};

use crate::rows::{db_err, time, us};

pub(crate) async fn queue_depth(read: &SqlitePool, p: QueueDepthParams) -> Result<Vec<TopicDepth>, StoreError> {
    let now = us(p.now);
    // Due rows per consumer group: answered from the index alone (no table row is read).
    let due = sqlx::query(
        "SELECT consumer_group, COUNT(*), MIN(visible_at) FROM deliveries \
         WHERE state IN ('pending', 'leased') AND visible_at <= ?1 GROUP BY consumer_group",
    )
    .bind(now)
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    // A group subscribed to one exact topic counts for that topic; any other group (a
    // `prefix*` pattern, several topics, receive-only) is split by topic from its rows.
    let simple: std::collections::HashMap<String, String> = sqlx::query(
        "SELECT consumer_group, MIN(topic_pattern) FROM subscriptions GROUP BY consumer_group \
         HAVING COUNT(*) = 1 AND MAX(is_prefix) = 0",
    )
    .fetch_all(read)
    .await
    .map_err(db_err)?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let mut due_by_topic = Vec::with_capacity(due.len());
    for r in &due {
        let group: String = r.get(0);
        match simple.get(&group) {
            Some(topic) => due_by_topic.push((topic.clone(), r.get(1), r.get::<Option<i64>, _>(2).map(time))),
            None => {
                let rows = sqlx::query(
                    "SELECT topic, COUNT(*), MIN(visible_at) FROM deliveries \
                     WHERE consumer_group = ?1 AND state IN ('pending', 'leased') AND visible_at <= ?2 GROUP BY topic",
                )
                .bind(&group)
                .bind(now)
                .fetch_all(read)
                .await
                .map_err(db_err)?;
                due_by_topic.extend(rows.iter().map(|r| (r.get(0), r.get(1), r.get::<Option<i64>, _>(2).map(time))));
            }
        }
    }
    // Not due yet: leased (running) or waiting out a delay; few rows next to the due ones.
    let not_due = sqlx::query(
        "SELECT topic, SUM(state = 'pending'), SUM(state = 'leased') FROM deliveries \
         WHERE state IN ('pending', 'leased') AND visible_at > ?1 GROUP BY topic",
    )
    .bind(now)
    .fetch_all(read)
    .await
    .map_err(db_err)?;
    let dead =
        sqlx::query("SELECT topic, COUNT(*) FROM dead_letters GROUP BY topic").fetch_all(read).await.map_err(db_err)?;
    Ok(topic_depths(
        due_by_topic,
        not_due.iter().map(|r| (r.get(0), r.get(1), r.get(2))),
        dead.iter().map(|r| (r.get(0), r.get(1))),
    ))
}

pub(crate) async fn execution_counts(
    read: &SqlitePool,
    p: ExecutionCountParams,
) -> Result<Vec<ExecutionCounts>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, SUM(status = 'running'), SUM(status = 'success'), SUM(status = 'failed'), \
         SUM(status = 'snoozed'), SUM(status = 'cancelled') FROM job_executions WHERE started_at >= ? GROUP BY topic ORDER BY topic",
    )
    .bind(us(p.since))
    .fetch_all(read)
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
pub(crate) async fn queue_stats(pool: &SqlitePool, p: QueueStatsParams) -> Result<Vec<TopicStats>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, \
           SUM(state IN ('pending', 'leased') AND visible_at <= ?1), \
           SUM(state = 'pending' AND visible_at > ?1), \
           SUM(state = 'leased' AND visible_at > ?1), \
           SUM(state = 'acked'), SUM(state = 'dead'), SUM(state = 'cancelled') \
         FROM deliveries GROUP BY topic",
    )
    .bind(us(p.now))
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
