use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqlitePool};
use vqs::store::*;

use crate::dead_letters::dead_letter_delivery;
use crate::lease::claim;
use crate::maintenance::maintain;
use crate::rows::*;
use crate::subscriptions::subscribe;
use crate::writer::Writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Every write goes through this one connection's task.
    writer: Writer,
    /// Readers (WAL lets them run beside the writer).
    read: SqlitePool,
    options: SqliteConnectOptions,
    /// Where the retention count limits fell when last walked (`maintenance.rs`).
    count_limits: std::sync::Arc<vqs::store_support::CountLimitBoundaries>,
    /// WAL checkpoints off the writer's path; stops with the last handle.
    _checkpointer: std::sync::Arc<crate::checkpointer::Checkpointer>,
}

/// The file a `sqlite://` URL names (so a caller can check that it exists before opening,
/// which creates it).
pub fn database_file(url: &str) -> Result<std::path::PathBuf, StoreError> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Database(format!("invalid DATABASE_URL {url:?}: {e}")))?;
    Ok(opts.get_filename().to_path_buf())
}

impl SqliteStore {
    /// Open (and create) the database file named by `url` (`sqlite://path`).
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Database(
                "an in-memory SQLite database is not supported: the store reads beside its writer; use a file path"
                    .into(),
            ));
        }
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid DATABASE_URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000")
            // No checkpoint inside a commit: `checkpointer.rs` runs them beside the writer.
            .pragma("wal_autocheckpoint", "0");
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("cannot create {}: {e}", dir.display())))?;
        }
        // The writer keeps one automatic checkpoint, far out: a backstop for a stream of writes
        // the checkpointer cannot catch up with (`checkpointer::WRITER_BACKSTOP_PAGES`).
        let writer_opts =
            opts.clone().pragma("wal_autocheckpoint", crate::checkpointer::WRITER_BACKSTOP_PAGES.to_string());
        let conn = writer_opts.connect().await.map_err(db_err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(opts.clone().read_only(true));
        let checkpointer = std::sync::Arc::new(crate::checkpointer::Checkpointer::start(opts.clone()));
        Ok(SqliteStore {
            writer: Writer::start(conn),
            read,
            options: opts,
            count_limits: Default::default(),
            _checkpointer: checkpointer,
        })
    }

    /// Apply the migrations in `migrations/sqlite` that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // On a connection of its own: the writer's is idle until the schema exists. sqlx
        // takes no lock for SQLite migrations, so processes starting together on one file
        // can race; the loser retries and finds the migration applied.
        let mut last = None;
        for attempt in 0..5 {
            let mut conn = self.options.connect().await.map_err(db_err)?;
            let result = MIGRATOR.run(&mut conn).await;
            let _ = conn.close().await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
        }
        Err(StoreError::Database(format!("migration failed: {}", last.map(|e| e.to_string()).unwrap_or_default())))
    }

    /// Close the read pool; the writer closes when the last handle drops.
    pub async fn close(&self) {
        self.read.close().await;
    }
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn message_send(&self, p: MessageSendParams) -> Result<SendResult, StoreError> {
        self.writer.send(p).await
    }

    async fn message_send_many(&self, p: MessageSendManyParams) -> Result<Vec<SendResult>, StoreError> {
        crate::publish::message_send_many(&self.writer, p).await
    }

    async fn message_list(&self, p: MessageListParams) -> Result<Vec<String>, StoreError> {
        crate::publish::message_list(&self.read, p).await
    }

    async fn message_run_now(&self, p: MessageRunNowParams) -> Result<u64, StoreError> {
        crate::publish::message_run_now(&self.writer, p).await
    }

    async fn message_cancel(&self, p: MessageCancelParams) -> Result<MessageCancelled, StoreError> {
        crate::cancel::message_cancel(&self.writer, p).await
    }

    async fn topic_purge(&self, p: TopicPurgeParams) -> Result<u64, StoreError> {
        crate::cancel::topic_purge(&self.read, &self.writer, p).await
    }

    async fn delivery_cancelled(&self, p: DeliveryCancelledParams) -> Result<Vec<(String, String)>, StoreError> {
        crate::cancel::delivery_cancelled(&self.read, p).await
    }

    async fn message_get(&self, p: MessageGetParams) -> Result<Option<MessageRecord>, StoreError> {
        crate::publish::message_get(&self.read, p).await
    }

    async fn message_ids_by_key(&self, p: MessageKeyLookupParams) -> Result<Vec<String>, StoreError> {
        crate::publish::message_ids_by_key(&self.read, p).await
    }

    async fn delivery_group_held(&self, p: DeliveryGroupHeldParams) -> Result<Option<GroupHeld>, StoreError> {
        crate::flow_groups::group_held(&self.read, p).await
    }

    async fn flow_group_start(&self, p: FlowGroupStartParams) -> Result<FlowGroupStart, StoreError> {
        crate::flow_groups::start(&self.writer, p).await
    }

    async fn flow_group_slot_release(&self, p: FlowGroupSlotReleaseParams) -> Result<(), StoreError> {
        crate::flow_groups::slot_release(&self.writer, p).await
    }

    async fn flow_group_busiest(&self, p: FlowGroupBusiestParams) -> Result<Vec<FlowGroupLoad>, StoreError> {
        crate::flow_groups::busiest(&self.read, p).await
    }

    async fn subscription_ensure(&self, p: SubscriptionEnsureParams) -> Result<(), StoreError> {
        self.writer.run(move |c| subscribe(c, p).boxed()).await
    }

    async fn subscription_group_topic(&self, p: SubscriptionGroupTopicParams) -> Result<u64, StoreError> {
        self.writer.run(move |c| crate::subscriptions::group_topic(c, p).boxed()).await
    }

    async fn delivery_claim(&self, p: DeliveryClaimParams) -> Result<Vec<LeasedMessage>, StoreError> {
        self.writer.run(move |c| claim(c, p).boxed()).await
    }

    async fn delivery_ack(&self, p: DeliveryAckParams) -> Result<(), StoreError> {
        self.writer.ack(p).await
    }

    async fn delivery_set_visibility(&self, p: LeaseVisibilityParams) -> Result<DateTime<Utc>, StoreError> {
        crate::lease::delivery_set_visibility(&self.writer, p).await
    }

    async fn delivery_retry(&self, p: DeliveryRetryParams) -> Result<(), StoreError> {
        crate::lease::delivery_retry(&self.writer, p).await
    }

    async fn delivery_release(&self, p: DeliveryReleaseParams) -> Result<(), StoreError> {
        crate::lease::delivery_release(&self.writer, p).await
    }

    async fn delivery_dead_letter(&self, p: DeliveryDeadLetterParams) -> Result<(), StoreError> {
        self.writer.run(move |c| dead_letter_delivery(c, p).boxed()).await
    }

    async fn delivery_leased_count(&self, p: DeliveryLeasedCountParams) -> Result<i64, StoreError> {
        crate::lease::delivery_leased_count(&self.read, p).await
    }

    async fn delivery_next_due(&self, p: DeliveryNextDueParams) -> Result<Option<DateTime<Utc>>, StoreError> {
        crate::lease::delivery_next_due(&self.read, p).await
    }

    async fn execution_start(&self, p: ExecutionStartParams) -> Result<i64, StoreError> {
        self.writer.execution_start(p).await
    }

    async fn execution_finish(&self, p: ExecutionFinishParams) -> Result<(), StoreError> {
        self.writer.execution_finish(p).await
    }

    async fn execution_list(&self, p: ExecutionListParams) -> Result<Vec<ExecutionRecord>, StoreError> {
        crate::executions::execution_list(&self.read, p).await
    }

    async fn checkpoint_get(&self, p: CheckpointGetParams) -> Result<Option<serde_json::Value>, StoreError> {
        crate::executions::checkpoint_get(&self.read, p).await
    }

    async fn checkpoint_put(&self, p: CheckpointPutParams) -> Result<(), StoreError> {
        crate::executions::checkpoint_put(&self.writer, p).await
    }

    async fn queue_stats(&self, p: QueueStatsParams) -> Result<Vec<TopicStats>, StoreError> {
        crate::stats::queue_stats(&self.read, p).await
    }

    async fn queue_depth(&self, p: QueueDepthParams) -> Result<Vec<TopicDepth>, StoreError> {
        crate::stats::queue_depth(&self.read, p).await
    }

    async fn execution_counts(&self, p: ExecutionCountParams) -> Result<Vec<ExecutionCounts>, StoreError> {
        crate::stats::execution_counts(&self.read, p).await
    }

    async fn progress_put(&self, p: ProgressPutParams) -> Result<(), StoreError> {
        self.writer.run(move |c| crate::progress::progress_put(c, p).boxed()).await
    }

    async fn progress_list(&self, p: ProgressListParams) -> Result<Vec<ProgressRecord>, StoreError> {
        crate::progress::progress_list(&self.read, p).await
    }

    async fn sync_log_get(&self, p: SyncLogGetParams) -> Result<Option<SyncLogRecord>, StoreError> {
        let (topic, key) = (p.topic.as_str(), p.key.as_str());
        crate::progress::sync_log_get(&self.read, topic, key).await
    }

    async fn sync_log_put(&self, p: SyncLogPutParams) -> Result<(), StoreError> {
        self.writer.run(move |c| crate::progress::sync_log_put(c, p).boxed()).await
    }

    async fn sync_log_list(&self, p: SyncLogListParams) -> Result<Vec<SyncLogRecord>, StoreError> {
        let topic = p.topic.as_deref();
        crate::progress::sync_log_list(&self.read, topic).await
    }

    async fn dead_letter_list(&self, p: DeadLetterListParams) -> Result<Vec<DeadLetterRecord>, StoreError> {
        crate::dead_letters::dead_letter_list(&self.read, p).await
    }

    async fn dead_letter_get(&self, p: DeadLetterGetParams) -> Result<Option<DeadLetterRecord>, StoreError> {
        crate::dead_letters::dead_letter_get(&self.read, p).await
    }

    async fn dead_letter_delete(&self, p: DeadLetterDeleteParams) -> Result<bool, StoreError> {
        crate::dead_letters::dead_letter_delete(&self.writer, p).await
    }

    async fn dead_letter_settle(&self, p: DeadLetterSettleParams) -> Result<DeadLetterSettled, StoreError> {
        self.writer.run(move |c| crate::dead_letters::settle(c, p).boxed()).await
    }

    async fn dead_letter_restore(&self, p: DeadLetterRestoreParams) -> Result<(), StoreError> {
        let DeadLetterRestoreParams { letter, payload } = p;
        self.writer.run(move |c| crate::dead_letters::restore(c, letter, payload).boxed()).await
    }

    async fn dead_letter_groups(&self, p: DeadLetterGroupsParams) -> Result<Vec<DeadLetterGroup>, StoreError> {
        crate::dead_letter_groups::dead_letter_groups(&self.read, p).await
    }

    async fn dead_letter_group_ids(&self, p: DeadLetterGroupIdsParams) -> Result<Vec<i64>, StoreError> {
        crate::dead_letter_groups::dead_letter_group_ids(&self.read, p).await
    }

    async fn stats_rollup(&self, p: StatsRollupParams) -> Result<StatsRollupReport, StoreError> {
        crate::stats_rollup::stats_rollup(&self.read, &self.writer, p).await
    }

    async fn stats_series(&self, p: StatsSeriesParams) -> Result<Vec<StatsMinuteRecord>, StoreError> {
        crate::stats_rollup::stats_series(&self.read, p).await
    }

    async fn dead_letter_insert(&self, p: DeadLetterInsertParams) -> Result<i64, StoreError> {
        crate::dead_letters::dead_letter_insert(&self.writer, p).await
    }

    async fn execution_close_outlived(&self, p: OutlivedParams) -> Result<u64, StoreError> {
        crate::executions::execution_close_outlived(&self.writer, p).await
    }

    async fn maintenance_run(&self, p: MaintenanceParams) -> Result<MaintenanceReport, StoreError> {
        let counts = crate::maintenance::count_boundaries(&self.read, &self.count_limits, &p).await?;
        self.writer.run(move |c| maintain(c, p, counts).boxed()).await
    }

    async fn cron_run_start(&self, p: CronRunStartParams) -> Result<Option<i64>, StoreError> {
        crate::cron_runs::cron_run_start(&self.writer, p).await
    }

    async fn cron_run_finish(&self, p: CronRunFinishParams) -> Result<(), StoreError> {
        crate::cron_runs::cron_run_finish(&self.writer, p).await
    }

    async fn cron_run_list(&self, p: CronRunListParams) -> Result<Vec<CronRunRecord>, StoreError> {
        crate::cron_runs::cron_run_list(&self.read, p).await
    }

    async fn cron_run_summary(&self, p: CronRunSummaryParams) -> Result<Vec<CronRunSummary>, StoreError> {
        crate::cron_runs::cron_run_summary(&self.read, p).await
    }

    async fn cron_lock_acquire(&self, p: CronLockParams) -> Result<bool, StoreError> {
        crate::cron_runs::cron_lock_acquire(&self.writer, p).await
    }

    async fn cron_lock_release(&self, p: CronLockReleaseParams) -> Result<bool, StoreError> {
        crate::cron_runs::cron_lock_release(&self.writer, p).await
    }

    async fn cron_lock_extend(&self, p: CronLockExtendParams) -> Result<bool, StoreError> {
        crate::cron_runs::cron_lock_extend(&self.writer, p).await
    }

    async fn process_beat(&self, p: ProcessBeatParams) -> Result<bool, StoreError> {
        crate::processes::process_beat(&self.writer, p).await
    }

    async fn process_rescue(&self, p: ProcessRescueParams) -> Result<ProcessRescueReport, StoreError> {
        crate::processes::process_rescue(&self.writer, p).await
    }

    async fn remote_cancel_record(&self, p: RemoteCancelParams) -> Result<bool, StoreError> {
        crate::remote_cancels::remote_cancel_record(&self.writer, p).await
    }

    async fn remote_cancel_get(&self, p: RemoteCancelGetParams) -> Result<Option<String>, StoreError> {
        crate::remote_cancels::remote_cancel_get(&self.read, p).await
    }

    async fn topic_control_set(&self, p: TopicControlSetParams) -> Result<TopicControl, StoreError> {
        crate::topic_controls::topic_control_set(&self.writer, p).await
    }

    async fn topic_control_list(&self, p: TopicControlListParams) -> Result<Vec<TopicControl>, StoreError> {
        crate::topic_controls::topic_control_list(&self.read, p).await
    }

    async fn group_pause_set(&self, p: GroupPauseSetParams) -> Result<Option<GroupPause>, StoreError> {
        crate::group_pauses::group_pause_set(&self.writer, p).await
    }

    async fn group_pause_list(&self, p: GroupPauseListParams) -> Result<Vec<GroupPause>, StoreError> {
        crate::group_pauses::group_pause_list(&self.read, p).await
    }

    async fn topic_limits_set(&self, p: TopicLimitsSetParams) -> Result<TopicLimitsRow, StoreError> {
        crate::topic_limits::topic_limits_set(&self.writer, p).await
    }

    async fn topic_limits_list(&self) -> Result<Vec<TopicLimitsRow>, StoreError> {
        crate::topic_limits::topic_limits_list(&self.read).await
    }

    async fn rate_bucket_get(&self, p: RateBucketGetParams) -> Result<Option<i64>, StoreError> {
        crate::topic_limits::rate_bucket_get(&self.read, p).await
    }

    async fn rate_bucket_take(&self, p: RateBucketTakeParams) -> Result<Option<i64>, StoreError> {
        crate::topic_limits::rate_bucket_take(&self.writer, p).await
    }

    async fn rate_bucket_credit(&self, p: RateBucketCreditParams) -> Result<(), StoreError> {
        crate::topic_limits::rate_bucket_credit(&self.writer, p).await
    }

    async fn session_revoke(&self, p: SessionRevokeParams) -> Result<(), StoreError> {
        crate::sessions::session_revoke(&self.writer, p).await
    }

    async fn session_revoked(&self, p: SessionRevokedParams) -> Result<bool, StoreError> {
        crate::sessions::session_revoked(&self.read, p).await
    }

    async fn delivery_topic(&self, p: DeliveryTopicParams) -> Result<Option<String>, StoreError> {
        crate::lease::delivery_topic(&self.read, p).await
    }

    async fn schedule_upsert(&self, p: ScheduleUpsertParams) -> Result<ScheduleRecord, StoreError> {
        crate::schedules::schedule_upsert(&self.writer, p).await
    }

    async fn schedule_get(&self, p: ScheduleGetParams) -> Result<Option<ScheduleRecord>, StoreError> {
        crate::schedules::schedule_get(&self.read, p).await
    }

    async fn schedule_list(&self, p: ScheduleListParams) -> Result<Vec<ScheduleRecord>, StoreError> {
        crate::schedules::schedule_list(&self.read, p).await
    }

    async fn schedule_count(&self, p: ScheduleCountParams) -> Result<u64, StoreError> {
        crate::schedules::schedule_count(&self.read, p).await
    }

    async fn schedule_overdue(&self, p: ScheduleOverdueParams) -> Result<Vec<ScheduleRecord>, StoreError> {
        crate::schedules::schedule_overdue(&self.read, p).await
    }

    async fn schedule_delete(&self, p: ScheduleDeleteParams) -> Result<bool, StoreError> {
        crate::schedules::schedule_delete(&self.writer, p).await
    }

    async fn schedule_due(&self, p: ScheduleDueParams) -> Result<Vec<ScheduleRecord>, StoreError> {
        crate::schedules::schedule_due(&self.read, p).await
    }

    async fn schedule_fire(&self, p: ScheduleFireParams) -> Result<ScheduleFired, StoreError> {
        crate::schedules::schedule_fire(&self.writer, p).await
    }

    async fn schedule_fire_sent(&self, p: ScheduleFireSentParams) -> Result<(), StoreError> {
        crate::schedules::schedule_fire_sent(&self.writer, p).await
    }

    async fn schedule_unsent(&self, p: ScheduleUnsentParams) -> Result<Vec<ScheduleUnsent>, StoreError> {
        crate::schedules::schedule_unsent(&self.read, p).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if !self.writer.is_running() {
            return Err(StoreError::Database(
                "the SQLite writer has stopped (see the error logged when it did)".into(),
            ));
        }
        sqlx::query("SELECT 1").execute(&self.read).await.map_err(db_err)?;
        Ok(())
    }
}
