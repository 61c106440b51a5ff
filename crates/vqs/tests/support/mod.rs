//! What the dispatcher and consumer tests share: a queue on a real SQLite file, a consumer
//! config, and a `Pusher` that hands each push to a `QueueHandler` in process, recording what
//! it pushed and what the consumer answered.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vqs::{Clock, ConsumerConfig, ConsumerOutcome, Delivery, Pusher, Queue, QueueHandler, QueueService};

pub const GROUP: &str = "test-group";

pub fn t0() -> DateTime<Utc> {
    "2026-01-05T10:00:00Z".parse().unwrap()
}

/// A queue on a new SQLite file (kept while the returned directory lives).
pub async fn sqlite_queue(clock: Clock) -> (Queue, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("vqs.db").display());
    let store = vqs_sqlite::SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    (Queue::new(Arc::new(store), clock), dir)
}

/// The consumer of `topic` as a job's route served by this process (the lease records the
/// attempt), subscribed.
pub async fn consumer(queue: &Queue, topic: &str) -> ConsumerConfig {
    let c = ConsumerConfig {
        consumer_group: GROUP.into(),
        topic_pattern: topic.into(),
        route_path: format!("/api/queue/{topic}"),
        retry_after: Duration::from_secs(60),
        max_deliveries: 32,
        max_concurrency: 10,
        global_max_concurrency: None,
        group_concurrency: None,
        group_rate_limit: None,
        initial_delay: Duration::ZERO,
        visibility: Duration::from_secs(60),
        starts_executions: true,
    };
    vqs::register_consumers(queue, std::slice::from_ref(&c)).await.unwrap();
    c
}

/// What one push carried and what the consumer answered.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub message_id: String,
    pub attempt: u32,
    pub delivery_count: u32,
    pub had_slot: bool,
    pub outcome: ConsumerOutcome,
}

/// Hands each push to `handler` (no HTTP), settling through `service` (the queue's own store
/// unless told otherwise).
pub struct HandlerPusher {
    pub queue: Queue,
    pub handler: QueueHandler,
    pub service: Arc<dyn QueueService>,
    pub pushed: Mutex<Vec<Pushed>>,
}

impl HandlerPusher {
    pub fn new(queue: &Queue, handler: QueueHandler) -> Self {
        let service = Arc::new(vqs::LocalQueueService::new(queue.clone()));
        HandlerPusher::with_service(queue, handler, service)
    }

    pub fn with_service(queue: &Queue, handler: QueueHandler, service: Arc<dyn QueueService>) -> Self {
        HandlerPusher { queue: queue.clone(), handler, service, pushed: Mutex::new(Vec::new()) }
    }

    pub fn pushed(&self) -> Vec<Pushed> {
        self.pushed.lock().unwrap().clone()
    }

    pub fn last(&self) -> Pushed {
        self.pushed.lock().unwrap().last().cloned().expect("a push")
    }
}

#[async_trait]
impl Pusher for HandlerPusher {
    async fn push(&self, _route: &str, delivery: Delivery) -> Result<u16, String> {
        let (message_id, attempt, delivery_count, had_slot) = (
            delivery.message_id.clone(),
            delivery.attempt(),
            delivery.delivery_count,
            delivery.execution_slot.is_some(),
        );
        let outcome = self.handler.handle_with(&self.queue, self.service.as_ref(), Ok(delivery)).await;
        let status = outcome.status();
        self.pushed.lock().unwrap().push(Pushed { message_id, attempt, delivery_count, had_slot, outcome });
        Ok(status)
    }
}

/// Wait (up to 60 s) until `check` holds, looking every 10 ms.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
