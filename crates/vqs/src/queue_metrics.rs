//! What the queue counts, through the [`metrics`] facade: one call at the one place each
//! event happens (publish in [`Queue`], push in the dispatcher, outcome and duration in the
//! consumer), labelled by topic. The web app exports them in Prometheus format.
//!
//! A queue reports to the recorder given to [`Queue::set_metrics_recorder`] when it has one
//! (so two apps in one process — tests — each see their own values), else to the global
//! recorder `metrics` was given, if any.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::Queue;

/// Counter: messages published (not counting duplicates), by `topic`.
pub const METRIC_PUBLISHED: &str = "vqs_messages_published_total";
/// Counter: pushes the local dispatcher made to a consumer route, by `topic`.
pub const METRIC_DELIVERED: &str = "vqs_messages_delivered_total";
/// Counter: attempts that succeeded, by `topic`.
pub const METRIC_SUCCEEDED: &str = "vqs_jobs_succeeded_total";
/// Counter: attempts that failed (retried or not), by `topic`.
pub const METRIC_FAILED: &str = "vqs_jobs_failed_total";
/// Counter: failed attempts given another try after the backoff, by `topic`.
pub const METRIC_RETRIED: &str = "vqs_jobs_retried_total";
/// Counter: attempts that snoozed (due again later, no attempt spent), by `topic`.
pub const METRIC_SNOOZED: &str = "vqs_jobs_snoozed_total";
/// Counter: jobs cancelled — by the job itself, by an operator's cancel reaching it running
/// or before its push, or by a purge (each message purged) — by `topic`.
pub const METRIC_CANCELLED: &str = "vqs_jobs_cancelled_total";
/// Counter: messages moved to the dead-letter store, by `topic`.
pub const METRIC_DEAD_LETTERED: &str = "vqs_messages_dead_lettered_total";
/// Histogram: how long an attempt ran, in seconds, by `topic` and `outcome` (`success`, `failed`).
pub const METRIC_JOB_DURATION: &str = "vqs_job_duration_seconds";
/// Gauge (read at scrape time): deliveries per `topic` and `state` (`waiting`, `delayed`, `running`).
pub const METRIC_QUEUE_DEPTH: &str = "vqs_queue_depth";
/// Gauge (read at scrape time): seconds the oldest due delivery of a `topic` has waited (0 when none).
pub const METRIC_OLDEST_DUE_AGE: &str = "vqs_queue_oldest_due_age_seconds";
/// Gauge (read at scrape time): rows in the dead-letter store, by `topic`.
pub const METRIC_DEAD_LETTERS: &str = "vqs_dead_letters";

/// Counter: runtime-schedule fires this process made, by `topic` and `kind` (`due`: a tick
/// fired by the schedule loop or the schedules cron; `trigger`: an operator's "fire now").
/// No schedule name label: thousands of schedules would be thousands of series.
pub const METRIC_SCHEDULE_FIRES: &str = "vqs_schedule_fires_total";
/// Gauge (read at scrape time): runtime schedules by heartbeat `state` (`ok`, `late`,
/// `failing`, `unchecked`), as [`crate::ScheduleHealth`] counts them.
pub const METRIC_SCHEDULES: &str = "vqs_schedules";
/// Gauge (read at scrape time): 1 while a `topic` is paused, 0 once resumed (topics never
/// paused have none).
pub const METRIC_TOPIC_PAUSED: &str = "vqs_topic_paused";
/// Gauge (read at scrape time): the paused message groups per `topic` (`.../pause?group=G`),
/// 0 for a topic with none (at most [`crate::MAX_PAUSED_GROUPS_LISTED`] counted in all).
pub const METRIC_PAUSED_GROUPS: &str = "vqs_paused_groups";
/// Gauge (read at scrape time): the limits in force per `topic` (a consumed topic, or one
/// with a stored control), by `limit`: `concurrency` (leased at once per consumer group),
/// `rate_limit` (starts per period) and `rate_period_seconds`; 0 where none is in force.
pub const METRIC_TOPIC_LIMIT: &str = "vqs_topic_limit";

/// A recorder a queue reports to.
pub type SharedRecorder = Arc<dyn metrics::Recorder + Send + Sync>;

impl Queue {
    /// Report this queue's metrics to `recorder` instead of the global one. Set it once, at
    /// start-up; returns false (and changes nothing) when one was set already.
    pub fn set_metrics_recorder(&self, recorder: SharedRecorder) -> bool {
        self.recorder_cell().set(recorder).is_ok()
    }

    /// Run `f` (which emits through the `metrics` macros) against this queue's recorder.
    pub fn with_metrics<T>(&self, f: impl FnOnce() -> T) -> T {
        match self.recorder_cell().get() {
            Some(r) => metrics::with_local_recorder(r.as_ref(), f),
            None => f(),
        }
    }

    pub(crate) fn count(&self, name: &'static str, topic: &str) {
        if let Some((h, recorder)) = self.topic_handles(topic)
            && let Some(i) = PER_TOPIC_COUNTERS.iter().position(|n| *n == name)
        {
            let counter = h.counters[i].get_or_init(|| {
                metrics::with_local_recorder(recorder.as_ref(), || metrics::counter!(name, "topic" => h.topic.clone()))
            });
            return counter.increment(1);
        }
        // Not one of the per-topic counters, or no handles kept.
        self.with_metrics(|| metrics::counter!(name, "topic" => topic.to_owned()).increment(1));
    }

    pub(crate) fn count_schedule_fire(&self, topic: &str, kind: &'static str) {
        self.with_metrics(|| {
            metrics::counter!(METRIC_SCHEDULE_FIRES, "topic" => topic.to_owned(), "kind" => kind).increment(1)
        });
    }

    pub(crate) fn job_duration(&self, topic: &str, success: bool, took: Duration) {
        let outcome = if success { "success" } else { "failed" };
        if let Some((h, recorder)) = self.topic_handles(topic) {
            let histogram = h.durations[usize::from(!success)].get_or_init(|| {
                metrics::with_local_recorder(
                    recorder.as_ref(),
                    || metrics::histogram!(METRIC_JOB_DURATION, "topic" => h.topic.clone(), "outcome" => outcome),
                )
            });
            return histogram.record(took.as_secs_f64());
        }
        self.with_metrics(|| {
            metrics::histogram!(METRIC_JOB_DURATION, "topic" => topic.to_owned(), "outcome" => outcome)
                .record(took.as_secs_f64())
        });
    }

    /// The topic's registered handles, when this queue has a recorder of its own; `None`
    /// (report through the macros, registering each time) for the global recorder — which
    /// may be installed after a handle was taken — and past [`MAX_TOPICS_CACHED`] topics.
    fn topic_handles(&self, topic: &str) -> Option<(Arc<TopicHandles>, &SharedRecorder)> {
        let recorder = self.recorder_cell().get()?;
        let cache = self.metric_handles();
        if let Some(h) = cache.read().unwrap_or_else(|e| e.into_inner()).get(topic) {
            return Some((h.clone(), recorder));
        }
        let mut topics = cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = topics.get(topic) {
            return Some((h.clone(), recorder));
        }
        if topics.len() >= MAX_TOPICS_CACHED {
            return None;
        }
        let h = Arc::new(TopicHandles {
            topic: topic.to_owned(),
            counters: Default::default(),
            durations: Default::default(),
        });
        topics.insert(topic.to_owned(), h.clone());
        Some((h, recorder))
    }
}

/// The most topics whose handles a queue keeps (any name can be published to; past this,
/// each report registers as it goes, as a recorder without a cache would).
const MAX_TOPICS_CACHED: usize = 1_024;

/// The counters a job's life reports, in [`TopicHandles::counters`] order.
const PER_TOPIC_COUNTERS: [&str; 8] = [
    METRIC_PUBLISHED,
    METRIC_DELIVERED,
    METRIC_SUCCEEDED,
    METRIC_FAILED,
    METRIC_RETRIED,
    METRIC_SNOOZED,
    METRIC_CANCELLED,
    METRIC_DEAD_LETTERED,
];

/// A queue's registered metric handles by topic. Reporting through the macros builds a key
/// (the topic copied into a label) and looks it up in the recorder's registry at every
/// call, a thousand instructions and more; a registered handle is an atomic add (the
/// benchmark's callgrind run, BENCHMARKS.md).
pub(crate) type MetricHandles = std::sync::RwLock<std::collections::HashMap<String, Arc<TopicHandles>>>;

/// One topic's counters and its duration histograms (`success`, `failed`), each registered
/// at its first report: a series appears in the export when it first counts, as through the
/// macros (a topic only published to shows its one counter, not ten series of zeros).
pub(crate) struct TopicHandles {
    topic: String,
    counters: [OnceLock<metrics::Counter>; PER_TOPIC_COUNTERS.len()],
    durations: [OnceLock<metrics::Histogram>; 2],
}
