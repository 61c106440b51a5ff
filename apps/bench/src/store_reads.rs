//! Results read back from the store, through the queue's own admin reads (no SQL here):
//! the peers' "completed, as the system reports it".

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use vqs::Queue;
use vqs::store::{ExecutionListParams, ExecutionStatus};

/// Probe messages acknowledged after a successful run (the admin API's `succeeded`).
pub async fn succeeded(queue: &Queue) -> Result<usize> {
    Ok(queue.stats().await?.iter().filter(|s| s.topic == "probe").map(|s| s.succeeded.max(0) as usize).sum())
}

/// Poll [`succeeded`] every `every` until it reaches `n` or `deadline` passes; returns the
/// last count.
pub async fn wait_succeeded(queue: &Queue, n: usize, deadline: Instant, every: Duration) -> Result<usize> {
    loop {
        let done = succeeded(queue).await?;
        if done >= n || Instant::now() >= deadline {
            return Ok(done);
        }
        tokio::time::sleep(every).await;
    }
}

/// Successful probe executions recorded (at most `limit`).
pub async fn successful_executions(queue: &Queue, limit: usize) -> Result<usize> {
    let rows = queue
        .executions(ExecutionListParams {
            topic: Some("probe".into()),
            status: Some(ExecutionStatus::Success),
            message_id: None,
            consumer_group: None,
            before_id: None,
            limit: limit as u32,
        })
        .await?;
    Ok(rows.len())
}

/// The execution record times of the newest `limit` probe executions, by message id:
/// `(started_at, finished_at)`.
pub async fn execution_times(
    queue: &Queue,
    limit: usize,
) -> Result<HashMap<String, (DateTime<Utc>, Option<DateTime<Utc>>)>> {
    let rows = queue
        .executions(ExecutionListParams {
            topic: Some("probe".into()),
            status: None,
            message_id: None,
            consumer_group: None,
            before_id: None,
            limit: limit as u32,
        })
        .await?;
    Ok(rows.into_iter().map(|e| (e.message_id, (e.started_at, e.finished_at))).collect())
}
