//! Per-minute figures of each topic, for the dashboard's charts: how many attempts finished
//! and failed, their latency percentiles, and a sample of the queue's depth — kept in a small
//! rollup (`stats_minutes`, one row per topic and minute, 7 days) rather than read from the
//! executions each time a chart is drawn.
//!
//! A rollup pass ([`Queue::stats_rollup`]) reads the executions recorded since the last pass
//! by their primary key (no index is added to the hot path), from a cursor kept with the
//! rollup. An execution still running when a pass reaches it is remembered by id and
//! counted by the pass that finds it finished. The cursor, the remembered ids and the
//! figures change in one transaction, which one process at a time holds, so each execution
//! is counted once however many processes run passes. An execution counts in the minute it
//! finished; a pass adds to a minute rather than replacing it.
//!
//! Latency is kept as counts in fixed buckets ([`LATENCY_BUCKETS_MS`]); a percentile is the
//! upper bound of the bucket holding it (at most the slowest attempt of the minute).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;

use crate::store::{StatsMinuteRecord, StatsRollupParams, StatsRollupReport, StatsSeriesParams};
use crate::{Queue, QueueError};

/// The latency buckets' upper bounds in milliseconds; a last bucket holds the slower ones.
pub const LATENCY_BUCKETS_MS: [i64; 13] =
    [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000];

/// Buckets per minute: [`LATENCY_BUCKETS_MS`] and one for anything slower.
pub const LATENCY_BUCKETS: usize = LATENCY_BUCKETS_MS.len() + 1;

/// How long the rollup keeps a minute.
pub const STATS_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Executions one rollup transaction reads at most.
pub const STATS_ROLLUP_BATCH: u32 = 5_000;

/// Running executions a rollup remembers at most; past that the oldest are given up (their
/// attempts then never count: a sign of a stuck rollup, logged).
pub const STATS_MAX_PENDING: usize = 20_000;

/// The start of `t`'s minute.
pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::minutes(1)).unwrap_or(t)
}

/// The bucket of a latency.
pub fn latency_bucket(ms: i64) -> usize {
    LATENCY_BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(LATENCY_BUCKETS_MS.len())
}

/// One execution as a rollup pass reads it.
#[derive(Debug, Clone)]
pub struct RollupRow {
    /// The execution's id: the rollup's cursor moves by it.
    pub id: i64,
    /// The job's topic.
    pub topic: String,
    /// The status as stored (`running` until the attempt is closed).
    pub status: String,
    /// When the attempt was recorded.
    pub started_at: DateTime<Utc>,
    /// When it was closed; `None` while running. Its minute is the one it counts in.
    pub finished_at: Option<DateTime<Utc>>,
    /// How long the job's code ran, in milliseconds; `None` while running (or not measured).
    pub duration_ms: Option<i64>,
}

/// What one pass adds: the figures per (topic, minute), the new cursor and the executions
/// still running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rolled {
    /// What to add per (topic, start of the minute the attempts finished in).
    pub figures: BTreeMap<(String, DateTime<Utc>), MinuteFigures>,
    /// The id of the last new execution the pass reached: the next pass reads after it.
    pub cursor: i64,
    /// The ids of the executions still running, to look at again next pass (at most
    /// [`STATS_MAX_PENDING`], the newest kept).
    pub pending: Vec<i64>,
    /// Executions counted.
    pub counted: u64,
}

/// The figures of one topic in one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteFigures {
    /// Attempts that finished in the minute, however they ended.
    pub finished: i64,
    /// Of those, the attempts that ended `failed`.
    pub failed: i64,
    /// How many attempts fell in each latency bucket ([`LATENCY_BUCKETS_MS`], then slower).
    pub latency: [i64; LATENCY_BUCKETS],
    /// The slowest attempt's duration in milliseconds (0 when none was measured).
    pub max_ms: i64,
}

impl MinuteFigures {
    fn add_row(&mut self, status: &str, duration_ms: Option<i64>) {
        self.finished += 1;
        self.failed += i64::from(status == "failed");
        if let Some(ms) = duration_ms {
            self.latency[latency_bucket(ms.max(0))] += 1;
            self.max_ms = self.max_ms.max(ms);
        }
    }

    /// Add `other` to these figures.
    pub fn merge(&mut self, other: &MinuteFigures) {
        self.finished += other.finished;
        self.failed += other.failed;
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a += b;
        }
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    /// The latency counts as stored: comma-separated, one per bucket.
    pub fn latency_text(&self) -> String {
        self.latency.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    }

    /// Figures as stored (a latency text that does not parse counts as empty).
    pub fn from_stored(finished: i64, failed: i64, latency: &str, max_ms: i64) -> MinuteFigures {
        let mut f = MinuteFigures { finished, failed, max_ms, ..MinuteFigures::default() };
        for (slot, n) in f.latency.iter_mut().zip(latency.split(',')) {
            *slot = n.trim().parse().unwrap_or(0);
        }
        f
    }
}

/// One rollup pass over what the backend read: `pending`, the executions remembered as
/// running (as they are now; one missing was pruned), and `new`, those after the cursor in
/// id order. A new execution recorded after `settled_before` stops the pass there (an
/// earlier id may still be committing), so the cursor never passes a row not yet visible.
pub fn roll(cursor: i64, pending: &[RollupRow], new: &[RollupRow], settled_before: DateTime<Utc>) -> Rolled {
    let mut out = Rolled { cursor, ..Rolled::default() };
    let count = |out: &mut Rolled, r: &RollupRow| match r.finished_at {
        Some(at) if r.status != "running" => {
            out.figures.entry((r.topic.clone(), minute_of(at))).or_default().add_row(&r.status, r.duration_ms);
            out.counted += 1;
        }
        _ => out.pending.push(r.id),
    };
    for r in pending {
        count(&mut out, r);
    }
    for r in new {
        if r.started_at >= settled_before {
            break;
        }
        out.cursor = r.id;
        count(&mut out, r);
    }
    if out.pending.len() > STATS_MAX_PENDING {
        out.pending.sort_unstable();
        let given_up = out.pending.len() - STATS_MAX_PENDING;
        out.pending.drain(..given_up);
        tracing::warn!(given_up, "the stats rollup gave up on executions that stayed running too long");
    }
    out
}

/// One topic's minute as the admin API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsPoint {
    /// The minute's start (UTC).
    pub minute: DateTime<Utc>,
    /// Attempts that finished in the minute, however they ended.
    pub finished: i64,
    /// Of those, the attempts that ended `failed`.
    pub failed: i64,
    /// The median latency in milliseconds: the upper bound of its bucket ([`percentile`]);
    /// `None` when no attempt was measured.
    pub p50_ms: Option<i64>,
    /// The 95th percentile latency in milliseconds, the same way.
    pub p95_ms: Option<i64>,
    /// The 99th percentile latency in milliseconds, the same way.
    pub p99_ms: Option<i64>,
    /// Messages waiting (due, not leased) when the minute was sampled; `None`: not sampled.
    pub depth: Option<i64>,
}

/// One topic's minutes, oldest first, every minute of the window (zero when nothing finished).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicSeries {
    /// The topic the points are of.
    pub topic: String,
    /// One per minute of the window, oldest first.
    pub points: Vec<StatsPoint>,
}

/// The `q` percentile (0–1) of a minute's latency: the upper bound of its bucket, at most the
/// slowest attempt; `None` when no attempt finished.
pub fn percentile(f: &MinuteFigures, q: f64) -> Option<i64> {
    let total: i64 = f.latency.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in f.latency.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound = LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(f.max_ms);
            return Some(bound.min(f.max_ms));
        }
    }
    Some(f.max_ms)
}

impl Queue {
    /// Roll the executions finished since the last pass into the per-minute figures, sample
    /// each topic's depth into the current minute, and drop minutes older than
    /// [`STATS_RETENTION`] — in transactions of at most [`STATS_ROLLUP_BATCH`] executions
    /// until caught up (at most 20 of them a call). A pass another process holds is skipped.
    pub async fn stats_rollup(&self) -> Result<StatsRollupReport, QueueError> {
        let depth: Vec<(String, i64)> = self.depth().await?.into_iter().map(|d| (d.topic, d.waiting)).collect();
        let mut total = StatsRollupReport::default();
        for round in 0..20 {
            let now = self.clock().now();
            let p = StatsRollupParams {
                now,
                batch: STATS_ROLLUP_BATCH,
                depth: if round == 0 { depth.clone() } else { Vec::new() },
                prune_before: crate::store::retention_cutoff(now, STATS_RETENTION.as_secs()),
            };
            let r = self.store().stats_rollup(p).await?;
            total.counted += r.counted;
            total.pending = r.pending;
            total.skipped |= r.skipped;
            if !r.more || r.skipped {
                break;
            }
        }
        if total.counted > 0 {
            tracing::debug!(counted = total.counted, pending = total.pending, "stats rolled up");
        }
        Ok(total)
    }

    /// Each topic's figures (or one topic's) for the last `minutes` minutes, the current one
    /// included: every minute present, oldest first.
    pub async fn stats_timeseries(&self, topic: Option<&str>, minutes: u32) -> Result<Vec<TopicSeries>, QueueError> {
        if let Some(t) = topic {
            crate::check_storable("topic", t)?;
        }
        let minutes = i64::from(minutes.max(1));
        let last = minute_of(self.clock().now());
        let since = last - Duration::minutes(minutes - 1);
        let rows = self.store().stats_series(StatsSeriesParams { topic: topic.map(str::to_owned), since }).await?;
        let mut by_topic: BTreeMap<String, BTreeMap<DateTime<Utc>, StatsMinuteRecord>> = BTreeMap::new();
        for r in rows {
            by_topic.entry(r.topic.clone()).or_default().insert(r.minute, r);
        }
        if let Some(t) = topic {
            by_topic.entry(t.to_owned()).or_default();
        }
        Ok(by_topic
            .into_iter()
            .map(|(topic, rows)| {
                let points = (0..minutes)
                    .map(|i| {
                        let minute = since + Duration::minutes(i);
                        match rows.get(&minute) {
                            None => StatsPoint {
                                minute,
                                finished: 0,
                                failed: 0,
                                p50_ms: None,
                                p95_ms: None,
                                p99_ms: None,
                                depth: None,
                            },
                            Some(r) => StatsPoint {
                                minute,
                                finished: r.figures.finished,
                                failed: r.figures.failed,
                                p50_ms: percentile(&r.figures, 0.50),
                                p95_ms: percentile(&r.figures, 0.95),
                                p99_ms: percentile(&r.figures, 0.99),
                                depth: r.depth,
                            },
                        }
                    })
                    .collect();
                TopicSeries { topic, points }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, status: &str, started: i64, finished: Option<i64>, ms: i64) -> RollupRow {
        let t = |s: i64| "2026-03-02T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(s);
        RollupRow {
            id,
            topic: "t".into(),
            status: status.into(),
            started_at: t(started),
            finished_at: finished.map(t),
            duration_ms: Some(ms),
        }
    }

    #[test]
    fn a_pass_counts_finished_rows_remembers_running_ones_and_stops_at_unsettled_ones() {
        let base: DateTime<Utc> = "2026-03-02T09:00:00Z".parse().unwrap();
        let new = [
            row(1, "success", 0, Some(1), 5),
            row(2, "running", 0, None, 0),
            row(3, "failed", 10, Some(70), 400),
            row(4, "success", 100, Some(101), 5),
        ];
        let r = roll(0, &[], &new, base + Duration::seconds(100));
        assert_eq!((r.cursor, r.pending.clone(), r.counted), (3, vec![2], 2));
        let first = &r.figures[&("t".to_owned(), base)];
        assert_eq!((first.finished, first.failed, first.latency[0]), (1, 0, 1));
        let second = &r.figures[&("t".to_owned(), base + Duration::minutes(1))];
        assert_eq!((second.finished, second.failed, second.latency[latency_bucket(400)]), (1, 1, 1));
        // The next pass finds 2 finished; 4 is now settled.
        let r = roll(3, &[row(2, "success", 0, Some(130), 20)], &new[3..], base + Duration::seconds(200));
        assert_eq!((r.cursor, r.pending.len(), r.counted), (4, 0, 2));
    }

    #[test]
    fn percentiles_are_bucket_bounds_at_most_the_slowest() {
        let mut f = MinuteFigures::default();
        for ms in [3, 4, 5, 6, 7, 8, 9, 20, 40, 900] {
            f.add_row("success", Some(ms));
        }
        assert_eq!(percentile(&f, 0.5), Some(10));
        assert_eq!(percentile(&f, 0.95), Some(900), "at most the slowest, not the bucket's 1000");
        assert_eq!(percentile(&MinuteFigures::default(), 0.5), None);
        let back = MinuteFigures::from_stored(f.finished, f.failed, &f.latency_text(), f.max_ms);
        assert_eq!(back, f);
    }
}
