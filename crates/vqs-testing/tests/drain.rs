//! `drain`'s edges: delays, one topic at a time, a job that never stops re-enqueueing, and a
//! queue whose clock cannot be moved.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vqs::testing::{DrainOpts, TestingError};
use vqs::{Clock, JobContext, JobError, Jobbable, PerformOpts, Queue, QueueHandler};
use vqs_testing::{TestQueue, epoch};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct N {
    n: u32,
}

/// Succeeds.
struct Ok1;
impl Jobbable for Ok1 {
    type Params = N;
    const TOPIC: &'static str = "ok-one";
    async fn perform(&self, _p: N, _ctx: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// Fails its first attempt.
struct FailOnce;
impl Jobbable for FailOnce {
    type Params = N;
    const TOPIC: &'static str = "fail-once";
    async fn perform(&self, _p: N, ctx: JobContext) -> Result<(), JobError> {
        if ctx.attempt() == 1 { Err(JobError::retryable("first attempt")) } else { Ok(()) }
    }
}

/// Enqueues its successor, forever.
struct Forever;
impl Jobbable for Forever {
    type Params = N;
    const TOPIC: &'static str = "forever";
    async fn perform(&self, p: N, ctx: JobContext) -> Result<(), JobError> {
        ctx.queue().job(Forever).perform_later(N { n: p.n + 1 }).await.map_err(JobError::retryable)?;
        Ok(())
    }
}

fn handlers() -> Vec<QueueHandler> {
    vec![QueueHandler::new(Ok1), QueueHandler::new(FailOnce), QueueHandler::new(Forever)]
}

#[tokio::test]
async fn a_delayed_job_runs_when_the_clock_reaches_it_and_only_with_scheduled() {
    let tq = TestQueue::sqlite(handlers()).await.unwrap();
    let opts = PerformOpts { delay: Duration::from_secs(3600), ..Default::default() };
    tq.queue().job(Ok1).perform_later_with(N { n: 1 }, opts).await.unwrap();
    assert_eq!(tq.drain(DrainOpts::default()).await.unwrap().succeeded, 0, "not due yet");
    tq.assert_enqueued::<Ok1>(&N { n: 1 }).await;
    assert_eq!(tq.drain(DrainOpts::with_scheduled()).await.unwrap().succeeded, 1);
    assert_eq!(tq.clock().now() - epoch(), chrono::Duration::hours(1));
}

#[tokio::test]
async fn a_drain_of_one_topic_leaves_the_others_enqueued() {
    let tq = TestQueue::sqlite(handlers()).await.unwrap();
    tq.queue().job(Ok1).perform_later(N { n: 1 }).await.unwrap();
    tq.queue().job(FailOnce).perform_later(N { n: 2 }).await.unwrap();
    let only = DrainOpts { topic: Some("ok-one".into()), ..DrainOpts::with_scheduled() };
    assert_eq!(tq.drain(only).await.unwrap().succeeded, 1);
    assert_eq!(tq.all_enqueued::<FailOnce>().await.unwrap(), vec![N { n: 2 }]);
    tq.refute_enqueued::<Ok1>(&N { n: 1 }).await;
}

#[tokio::test]
async fn a_job_that_re_enqueues_itself_forever_fails_the_drain() {
    let tq = TestQueue::sqlite(handlers()).await.unwrap();
    tq.queue().job(Forever).perform_later(N { n: 0 }).await.unwrap();
    let opts = DrainOpts { max_rounds: 5, ..DrainOpts::default() };
    assert!(matches!(tq.drain(opts).await, Err(TestingError::TooManyRounds(5))));
}

#[tokio::test]
async fn with_scheduled_on_the_system_clock_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        vqs_sqlite::SqliteStore::open(&format!("sqlite://{}", dir.path().join("q.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    let tq = TestQueue::over(Queue::new(Arc::new(store), Clock::system()), handlers(), Some(dir)).await.unwrap();
    tq.queue().job(FailOnce).perform_later(N { n: 1 }).await.unwrap();
    assert_eq!(tq.drain(DrainOpts::default()).await.unwrap().failed, 1);
    let e = tq.drain(DrainOpts::with_scheduled()).await.unwrap_err();
    assert!(matches!(e, TestingError::ManualClockNeeded), "{e}");
}
