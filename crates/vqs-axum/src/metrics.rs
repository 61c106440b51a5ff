//! The app's Prometheus recorder behind `GET /metrics` (`metrics_route.rs`): the queue's counters and histograms (recorded where each event happens,
//! through the `metrics` facade) and its gauges (read from the store at scrape time: queue
//! depth per topic, runtime schedules per heartbeat state — never per schedule name), in
//! the Prometheus text format. Behind `Authorization: Bearer <VQS_METRICS_TOKEN>` (or the
//! admin token).
//!
//! Each app has its own recorder (not a process-wide one), handed to its [`Queue`]: two
//! apps in one process — the tests — each see their own values.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use vqs::{
    METRIC_DEAD_LETTERS, METRIC_JOB_DURATION, METRIC_OLDEST_DUE_AGE, METRIC_PAUSED_GROUPS, METRIC_QUEUE_DEPTH,
    METRIC_SCHEDULES, METRIC_TOPIC_LIMIT, METRIC_TOPIC_PAUSED, Queue,
};

/// Buckets of `vqs_job_duration_seconds`: 5 ms to 15 minutes.
const DURATION_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

/// This app's Prometheus recorder and what it needs at scrape time. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    /// Topics that ever had a gauge: set to 0 when they empty, rather than left stale.
    topics: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A new recorder, installed on `queue` (its counters and histograms go here). `topics`
    /// get gauges from the first scrape on, even while empty.
    pub fn install(queue: &Queue, topics: impl IntoIterator<Item = String>) -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(METRIC_JOB_DURATION.into()), DURATION_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if !queue.set_metrics_recorder(Arc::new(recorder)) {
            tracing::warn!("this queue already reports to another metrics recorder; /metrics shows gauges only");
        }
        Metrics { handle, topics: Arc::new(Mutex::new(topics.into_iter().collect())) }
    }

    /// Read the gauges from the store, then render everything.
    pub async fn render(&self, queue: &Queue) -> Result<String, vqs::QueueError> {
        let depth = queue.depth().await?;
        // Bounded however many schedules there are (three index counts, one short read).
        let schedules = queue.schedules().health(0).await?;
        let controls = queue.topic_controls().await?;
        let limits = queue.limits().await?;
        let paused_groups = queue.paused_groups(None).await?;
        let now = queue.clock().now();
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let mut zero: BTreeSet<String> = topics.clone();
        queue.with_metrics(|| {
            for c in &controls {
                metrics::gauge!(METRIC_TOPIC_PAUSED, "topic" => c.topic.clone()).set(if c.paused { 1.0 } else { 0.0 });
            }
            // Paused message groups per topic: every topic known here reads 0 once resumed.
            let mut groups: std::collections::BTreeMap<&str, usize> = topics.iter().map(|t| (t.as_str(), 0)).collect();
            for g in &paused_groups {
                *groups.entry(g.topic.as_str()).or_default() += 1;
            }
            for (topic, n) in groups {
                metrics::gauge!(METRIC_PAUSED_GROUPS, "topic" => topic.to_owned()).set(n as f64);
            }
            // Every topic with a stored control or a limit: a cleared override reads 0.
            let limited: BTreeSet<&str> =
                controls.iter().map(|c| c.topic.as_str()).chain(limits.iter().map(|l| l.topic.as_str())).collect();
            for topic in limited {
                let l = limits.iter().find(|l| l.topic == topic).map(|l| l.in_force.values()).unwrap_or_default();
                let t = topic.to_owned();
                let rate = l.rate_limit.map(|r| (r.limit, r.period_seconds)).unwrap_or_default();
                metrics::gauge!(METRIC_TOPIC_LIMIT, "topic" => t.clone(), "limit" => "concurrency")
                    .set(f64::from(l.concurrency.unwrap_or(0)));
                metrics::gauge!(METRIC_TOPIC_LIMIT, "topic" => t.clone(), "limit" => "rate_limit")
                    .set(f64::from(rate.0));
                metrics::gauge!(METRIC_TOPIC_LIMIT, "topic" => t, "limit" => "rate_period_seconds")
                    .set(f64::from(rate.1));
            }
            for d in &depth {
                zero.remove(&d.topic);
                topics.insert(d.topic.clone());
                let t = d.topic.clone();
                metrics::gauge!(METRIC_QUEUE_DEPTH, "topic" => t.clone(), "state" => "waiting").set(d.waiting as f64);
                metrics::gauge!(METRIC_QUEUE_DEPTH, "topic" => t.clone(), "state" => "delayed").set(d.delayed as f64);
                metrics::gauge!(METRIC_QUEUE_DEPTH, "topic" => t.clone(), "state" => "running").set(d.running as f64);
                let age = d.oldest_due_at.map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0);
                metrics::gauge!(METRIC_OLDEST_DUE_AGE, "topic" => t.clone()).set(age);
                metrics::gauge!(METRIC_DEAD_LETTERS, "topic" => t).set(d.dead_letters as f64);
            }
            for (state, n) in [
                ("ok", schedules.ok),
                ("late", schedules.late),
                ("failing", schedules.failing),
                ("unchecked", schedules.unchecked),
            ] {
                metrics::gauge!(METRIC_SCHEDULES, "state" => state).set(n as f64);
            }
            for t in zero {
                for state in ["waiting", "delayed", "running"] {
                    metrics::gauge!(METRIC_QUEUE_DEPTH, "topic" => t.clone(), "state" => state).set(0.0);
                }
                metrics::gauge!(METRIC_OLDEST_DUE_AGE, "topic" => t.clone()).set(0.0);
                metrics::gauge!(METRIC_DEAD_LETTERS, "topic" => t).set(0.0);
            }
        });
        drop(topics);
        Ok(self.handle.render())
    }
}
