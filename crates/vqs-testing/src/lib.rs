//! # vqs-testing — test your jobs against a real queue
//!
//! [`TestQueue`] is a [`vqs::Queue`] on a temporary SQLite file (or a fresh PostgreSQL
//! database) with a manual clock, subscribed to the jobs you pass, and the helpers of
//! [`vqs::testing`] as methods: run a job's `perform` with a working context, assert what
//! was enqueued, and drain the queue through the real consumer path, stepping the clock
//! through delays and retries so a test sees a job retried three times and dead-lettered
//! in milliseconds.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use vqs::testing::DrainOpts;
//! use vqs::{JobContext, JobError, Jobbable, QueueHandler};
//! use vqs_testing::TestQueue;
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Params { invoice_id: u64 }
//!
//! struct SendInvoice;
//! impl Jobbable for SendInvoice {
//!     type Params = Params;
//!     const TOPIC: &'static str = "send-invoice";
//!     async fn perform(&self, p: Params, ctx: JobContext) -> Result<(), JobError> {
//!         if ctx.attempt() < 3 { return Err(JobError::retryable("mail server busy")) }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tq = TestQueue::sqlite(vec![QueueHandler::new(SendInvoice)]).await?;
//!
//! // One attempt, no queue involved.
//! assert!(tq.perform_job(&SendInvoice, Params { invoice_id: 1 }).await.is_err());
//!
//! // Enqueue, assert, then work it: attempts 1 and 2 fail, the clock jumps 100 s and
//! // 400 s (the default backoff), attempt 3 succeeds.
//! tq.queue().job(SendInvoice).perform_later(Params { invoice_id: 7 }).await?;
//! tq.assert_enqueued::<SendInvoice>(&Params { invoice_id: 7 }).await;
//! let report = tq.drain(DrainOpts::with_scheduled()).await?;
//! assert_eq!((report.succeeded, report.failed, report.dead), (1, 2, 0));
//! assert!(tq.all_enqueued::<SendInvoice>().await?.is_empty());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use vqs::testing::{self, DrainOpts, DrainReport, TestContext, TestingError};
use vqs::{Clock, JobError, Jobbable, Queue, QueueHandler, StoreError};

/// Where a [`TestQueue`] starts its manual clock: 2026-01-01T00:00:00Z.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

/// A real queue for one test: a fresh database, a manual clock at [`epoch`], the given jobs
/// subscribed (consumer group [`vqs::testing::TEST_CONSUMER_GROUP`]). The database is
/// dropped with it (SQLite: the temporary directory; PostgreSQL: named
/// `vqs_test_<seconds>_*`, dropped by a later run once an hour old and unused —
/// `vqs_postgres::create_test_database`).
pub struct TestQueue {
    queue: Queue,
    handlers: Vec<QueueHandler>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestQueue").field("handlers", &self.handlers).finish_non_exhaustive()
    }
}

/// Why a [`TestQueue`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestQueueError {
    /// The temporary directory could not be made.
    #[error("could not create a temporary directory: {0}")]
    TempDir(#[from] std::io::Error),
    /// The database could not be opened, migrated or subscribed.
    #[error("could not prepare the test database: {0}")]
    Store(#[from] StoreError),
}

impl TestQueue {
    /// A queue on a new SQLite file in a temporary directory.
    pub async fn sqlite(handlers: Vec<QueueHandler>) -> Result<TestQueue, TestQueueError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("vqs.db").display());
        let store = vqs_sqlite::SqliteStore::open(&url).await?;
        store.migrate().await?;
        TestQueue::over(Queue::new(Arc::new(store), Clock::manual(epoch())), handlers, Some(dir)).await
    }

    /// A queue on a new database `vqs_test_<seconds>_<uuid>` of the PostgreSQL server at `server_url`
    /// (e.g. `postgres://postgres@127.0.0.1:5432`).
    pub async fn postgres(server_url: &str, handlers: Vec<QueueHandler>) -> Result<TestQueue, TestQueueError> {
        let url = vqs_postgres::create_test_database(server_url).await?;
        let store = vqs_postgres::PgStore::connect(&url).await?;
        store.migrate().await?;
        TestQueue::over(Queue::new(Arc::new(store), Clock::manual(epoch())), handlers, None).await
    }

    /// A test queue over a queue you built (its clock should be [`Clock::manual`] for
    /// [`DrainOpts::with_scheduled`]).
    pub async fn over(
        queue: Queue,
        handlers: Vec<QueueHandler>,
        dir: Option<tempfile::TempDir>,
    ) -> Result<TestQueue, TestQueueError> {
        testing::subscribe(&queue, &handlers).await?;
        Ok(TestQueue { queue, handlers, _dir: dir })
    }

    /// The queue: enqueue with `queue().job(J).perform_later(..)`, read executions, dead letters…
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The manual clock: `clock().advance(..)` to move time yourself.
    pub fn clock(&self) -> &Clock {
        self.queue.clock()
    }

    /// [`vqs::testing::perform_job`] on this queue.
    pub async fn perform_job<J: Jobbable>(&self, job: &J, params: J::Params) -> Result<(), JobError> {
        testing::perform_job(&self.queue, job, params).await
    }

    /// [`vqs::testing::perform_job_with`] on this queue.
    pub async fn perform_job_with<J: Jobbable>(
        &self,
        job: &J,
        params: J::Params,
        test: TestContext,
    ) -> Result<(), JobError> {
        testing::perform_job_with(&self.queue, job, params, test).await
    }

    /// [`vqs::testing::all_enqueued`] on this queue.
    pub async fn all_enqueued<J: Jobbable>(&self) -> Result<Vec<J::Params>, TestingError> {
        testing::all_enqueued::<J>(&self.queue).await
    }

    /// [`vqs::testing::assert_enqueued`] on this queue.
    pub async fn assert_enqueued<J: Jobbable>(&self, params: &J::Params)
    where
        J::Params: PartialEq,
    {
        testing::assert_enqueued::<J>(&self.queue, params).await
    }

    /// [`vqs::testing::assert_enqueued_where`] on this queue.
    pub async fn assert_enqueued_where<J: Jobbable>(&self, what: &str, matches: impl Fn(&J::Params) -> bool) {
        testing::assert_enqueued_where::<J>(&self.queue, what, matches).await
    }

    /// [`vqs::testing::refute_enqueued`] on this queue.
    pub async fn refute_enqueued<J: Jobbable>(&self, params: &J::Params)
    where
        J::Params: PartialEq,
    {
        testing::refute_enqueued::<J>(&self.queue, params).await
    }

    /// [`vqs::testing::refute_enqueued_where`] on this queue.
    pub async fn refute_enqueued_where<J: Jobbable>(&self, what: &str, matches: impl Fn(&J::Params) -> bool) {
        testing::refute_enqueued_where::<J>(&self.queue, what, matches).await
    }

    /// [`vqs::testing::drain`] with this queue's jobs.
    pub async fn drain(&self, opts: DrainOpts) -> Result<DrainReport, TestingError> {
        testing::drain(&self.queue, &self.handlers, opts).await
    }
}
