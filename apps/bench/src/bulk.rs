//! Bulk enqueue, the peers' way: chunks of 1,000 jobs per call, through vqs's bulk API
//! (`JobClient::perform_later_many`: one call, one transaction per chunk).

use anyhow::Result;
use jobs::{Probe, ProbeParams};
use vqs::JobClient;

/// Jobs per bulk call, as every peer.
pub const CHUNK: usize = 1_000;

/// How a bulk call is made, for the output lines.
pub const API: &str = "JobClient::perform_later_many, 1,000 jobs per call";

/// One bulk call of `k` jobs.
pub async fn enqueue_chunk(job: &JobClient<Probe>, k: usize) -> Result<()> {
    let sent = job.perform_later_many(std::iter::repeat_n(ProbeParams::default(), k)).await?;
    anyhow::ensure!(sent.len() == k, "a bulk call of {k} jobs published {}", sent.len());
    Ok(())
}

/// `total` jobs in calls of [`CHUNK`], one call after the other.
pub async fn enqueue(job: &JobClient<Probe>, total: usize) -> Result<()> {
    let mut left = total;
    while left > 0 {
        let k = left.min(CHUNK);
        enqueue_chunk(job, k).await?;
        left -= k;
    }
    Ok(())
}
