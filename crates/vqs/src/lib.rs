//! # vqs — durable background jobs, Vercel Queues compatible
//!
//! The core: the [`Jobbable`] trait, [`Queue`] (publish, track, inspect), the retry policy,
//! the v2beta [`Delivery`] codec, the consumer logic ([`QueueHandler`]), the push
//! dispatcher and the `vercel.json` model. It names no database and no web framework:
//! storage comes in through [`QueueStore`] (`vqs-sqlite`, …), HTTP through the web app.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use vqs::{JobContext, JobError, Jobbable, Queue};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Params { patient_id: u64 }
//!
//! struct SyncPatient;
//! impl Jobbable for SyncPatient {
//!     type Params = Params;
//!     const TOPIC: &'static str = "sync-patient";
//!     async fn perform(&self, p: Params, _ctx: JobContext) -> Result<(), JobError> {
//!         println!("syncing {}", p.patient_id);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let url = format!("sqlite://{}", dir.path().join("vqs.db").display());
//! # let store = vqs_sqlite::SqliteStore::open(&url).await?;
//! # store.migrate().await?;
//! # let queue = Queue::new(std::sync::Arc::new(store), vqs::Clock::system());
//! // `queue`: a Queue on a backend (here a temporary SQLite file).
//! let sent = queue.job(SyncPatient).perform_later(Params { patient_id: 7 }).await?;
//! assert!(sent.message_id.starts_with("msg_") && !sent.duplicate);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod busy_groups;
mod cancellation;
mod clock;
mod consumer;
mod cron_dialect;
mod cron_health;
mod cron_lock;
mod cron_schedule;
mod cron_scheduler;
mod dead_letter_groups;
mod delivery;
mod dispatcher;
mod execution_slot;
mod group_key;
mod group_pause;
mod group_slots;
mod job_client;
mod job_context;
mod job_error;
mod jobbable;
mod lifeline;
mod message_search;
mod priority;
mod queue;
mod queue_metrics;
mod queue_service;
mod retry_policy;
mod schedule;
mod schedule_health;
mod schedule_page;
mod schedule_runner;
mod schedule_times;
pub mod stats;
mod storable_text;
pub mod store;
pub mod store_support;
mod supervisor;
pub mod testing;
mod topic_limits;
mod topic_pause;
mod trace_context;
mod vercel_config;

pub use busy_groups::{BUSIEST_GROUPS_LISTED, GroupLoad, MAX_GROUP_WAITING_COUNTED};
pub use cancellation::{CANCEL_POLL_INTERVAL, CancelSignal, watch_cancellations};
pub use clock::Clock;
pub use consumer::{ConsumerOutcome, MAX_VISIBILITY_SECONDS, QueueHandler, renewal_interval};
pub use cron_health::{CronState, CronStatus, cron_state, expected_window};
pub use cron_lock::CronLock;
pub use cron_schedule::{CronSchedule, CronScheduleError};
pub use cron_scheduler::{
    CronInvoker, CronResponse, CronScheduler, FiredTick, ScheduledCron, run_cron_scheduler, spawn_cron_scheduler,
};
pub use dead_letter_groups::{DEAD_LETTER_BATCH, DeadLetterGroupAction};
pub use delivery::{CE_TYPE_V2BETA, Delivery, DeliveryError};
pub use dispatcher::{
    ConsumerConfig, DEFAULT_MAX_DELIVERIES, DEFAULT_RETRY_AFTER, DispatcherConfig, Pusher, dispatch_due,
    register_consumers, run_dispatcher, spawn_dispatcher,
};
pub use execution_slot::ExecutionSlot;
pub use group_key::{MAX_GROUP_KEY_LEN, check_group_key};
pub use group_pause::MAX_PAUSED_GROUPS_LISTED;
pub use group_slots::{GROUP_FULL_DEFER, GroupStart};
pub use job_client::{JobClient, PerformOpts};
pub use job_context::{JobContext, MessageMetadata};
pub use job_error::{JobError, ResultExt};
pub use jobbable::Jobbable;
pub use lifeline::{DEFAULT_BEAT_INTERVAL, DEFAULT_DEAD_AFTER, Lifeline, LifelineConfig, LifelineReport};
pub use message_search::SEARCH_LIMIT;
pub use priority::{MAX_PRIORITY, MIN_PRIORITY, check_priority, parse_priority};
pub use queue::{
    DEFAULT_RETENTION, MAX_IDEMPOTENCY_KEY_LEN, MAX_PAYLOAD_BYTES, MAX_RETENTION, MIN_RETENTION, Queue, QueueError,
    RetentionConfig, SendOpts, is_valid_content_type, is_valid_name,
};
pub use queue_metrics::{
    METRIC_CANCELLED, METRIC_DEAD_LETTERED, METRIC_DEAD_LETTERS, METRIC_DELIVERED, METRIC_FAILED, METRIC_JOB_DURATION,
    METRIC_OLDEST_DUE_AGE, METRIC_PAUSED_GROUPS, METRIC_PUBLISHED, METRIC_QUEUE_DEPTH, METRIC_RETRIED,
    METRIC_SCHEDULE_FIRES, METRIC_SCHEDULES, METRIC_SNOOZED, METRIC_SUCCEEDED, METRIC_TOPIC_LIMIT, METRIC_TOPIC_PAUSED,
    SharedRecorder,
};
pub use queue_service::{
    DeadLetter, LocalQueueService, QueueService, ReceiveByIdParams, ReceiveParams, ServiceError, ServiceLease,
};
pub use retry_policy::{MAX_RETRY_DELAY, RetryPolicy};
pub use schedule::{
    DEFAULT_TIMEZONE, MAX_SCHEDULE_JITTER_SECONDS, MAX_SCHEDULE_NAME_BYTES, MAX_SCHEDULE_PAYLOAD_BYTES, Schedule,
    parse_timezone, schedule_idempotency_key, validate_schedule_name,
};
pub use schedule_health::{
    SCHEDULE_HEALTH_EXAMINED, ScheduleHealth, SchedulePageStatus, ScheduleStatus, schedule_slack, schedule_state,
};
pub use schedule_page::{
    SCHEDULE_COUNT_CAP, SCHEDULE_PAGE_DEFAULT, SCHEDULE_PAGE_MAX, SchedulePage, check_schedule_page,
};
pub use schedule_runner::{
    SCHEDULE_FIRE_BATCH, SCHEDULE_MISSED_AFTER, SCHEDULE_NEXT_SHOWN, SCHEDULE_POLL_INTERVAL, SCHEDULE_UNSENT_RETRY_FOR,
    ScheduleFire, ScheduleFireReport, Schedules, run_schedules,
};
pub use schedule_times::ScheduleTimes;
pub use storable_text::{MAX_KEY_BYTES, check_storable, check_storable_long, escape_unstorable};
pub use store::{OnDuplicate, QueueStore, RateLimit, SendResult, StoreError, TopicLimits, TopicLimitsPatch};
pub use supervisor::{RestartPolicy, Supervisor, TaskReport, TaskState, log_panic, panic_message};
pub use topic_limits::{
    LimitInForce, LimitSource, LimitsInForce, MAX_LIMIT, MAX_RATE_PERIOD_SECONDS, TopicLimitsView, check_limit,
    check_patch, check_rate_limit,
};
pub use topic_pause::{PAUSED_DEFER, TOPIC_CONTROL_POLL_INTERVAL, watch_topic_controls};
pub use trace_context::TraceContext;
pub use vercel_config::{
    CronEntry, QueueTrigger, VercelConfig, VercelConfigError, consumer_group_name, consumer_group_name_in_service,
    route_path_for,
};
