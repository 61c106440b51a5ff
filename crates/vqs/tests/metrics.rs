//! A queue's counters reach the recorder it was given, by topic, whether the topic's handles
//! are kept (the first topics) or registered at each report (past the cache's limit).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use support::{sqlite_queue, t0};
use vqs::{Clock, SendOpts};

/// Counters by name and `topic` label; gauges and histograms dropped.
#[derive(Default)]
struct Counts(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Counts {
    fn registered(&self, name: &str, topic: &str) -> bool {
        self.0.lock().unwrap().contains_key(&format!("{name}{{topic={topic}}}"))
    }

    fn get(&self, name: &str, topic: &str) -> u64 {
        let key = format!("{name}{{topic={topic}}}");
        self.0.lock().unwrap().get(&key).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl Recorder for Counts {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Counter::from_arc(self.0.lock().unwrap().entry(name).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn each_topic_is_counted_in_the_queues_own_recorder_past_the_kept_handles_too() {
    let (queue, _dir) = sqlite_queue(Clock::manual(t0())).await;
    let counts = Arc::new(Counts::default());
    assert!(queue.set_metrics_recorder(counts.clone()));
    // More topics than the queue keeps handles for (1,024): the later ones are still counted.
    let topics: Vec<String> = (0..1_100).map(|i| format!("topic-{i}")).collect();
    for round in 0..2 {
        for topic in &topics {
            queue.send(topic, b"{}".to_vec(), SendOpts::default()).await.unwrap();
        }
        for topic in [&topics[0], &topics[1_023], &topics[1_024], &topics[1_099]] {
            assert_eq!(counts.get(vqs::METRIC_PUBLISHED, topic), round + 1, "{topic} after round {round}");
        }
    }
    // A series appears when it first counts: a topic only published to has no others.
    assert!(!counts.registered(vqs::METRIC_SUCCEEDED, &topics[0]));
    assert!(!counts.registered(vqs::METRIC_DELIVERED, &topics[0]));
    // A duplicate is not a publish.
    let keyed = SendOpts { idempotency_key: Some("k".into()), ..Default::default() };
    for _ in 0..3 {
        queue.send("keyed", b"{}".to_vec(), keyed.clone()).await.unwrap();
    }
    assert_eq!(counts.get(vqs::METRIC_PUBLISHED, "keyed"), 1);
}
