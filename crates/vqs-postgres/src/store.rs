use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgSslMode};
use vqs::store::*;

use crate::held_connection::HeldConnection;
use crate::rows::*;
use crate::writer::{Move, Writer};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The PostgreSQL store. Cheap to clone (a pool and a handle to its writer tasks).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Group commit for the hot path: publishes, execution starts and finishes, acks.
    writer: Writer,
    /// The claims' own connection (a claim is one statement: no pool pings around it).
    claim_conn: Arc<tokio::sync::Mutex<HeldConnection>>,
    /// A second one, when the hot pool has room for it beside a spare: a grouped claim of
    /// many groups runs as two statements at once, one on each (`grouped_claim::claim_grouped`).
    second_claim_conn: Option<Arc<tokio::sync::Mutex<HeldConnection>>>,
    /// The consumer groups that claim through the ready groups while a group of their
    /// topic is paused, as last read (at most a second old).
    claims_by_group: Arc<crate::group_pauses::ClaimsByGroup>,
    /// Where the retention count limits fell when last walked (`maintenance.rs`).
    count_limits: Arc<vqs::store_support::CountLimitBoundaries>,
}

/// Writer tasks: while one writes its batch, the next one collects the following batch.
const WRITER_TASKS: usize = 2;

/// Connections of the hot path's pool: one per writer task, the claim's two, and one spare.
const HOT_CONNECTIONS: u32 = WRITER_TASKS as u32 + 3;

/// How many connections a [`PgStore`] may open (see [`PgStore::connect_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgPoolSize {
    /// Connections of the main pool (everything but the hot path).
    pub main: u32,
    /// Connections of the hot path's pool (the claim and the group-commit writers).
    pub hot: u32,
}

impl PgPoolSize {
    /// The fewest connections a store works with: two in each pool (a claim held on one
    /// hot connection leaves a writer the other; the main pool never waits on itself).
    pub const MIN_TOTAL: u32 = 4;

    /// A process that runs the dispatcher and many jobs at once: 15 + 5 connections.
    pub const SERVER: PgPoolSize = PgPoolSize { main: 15, hot: HOT_CONNECTIONS };

    /// `total` connections at most, split between the two pools (a quarter, 2 to 5, for the
    /// hot path; the claim's second connection only with all 5, from 20). `None` below
    /// [`PgPoolSize::MIN_TOTAL`].
    pub fn total(total: u32) -> Option<PgPoolSize> {
        if total < Self::MIN_TOTAL {
            return None;
        }
        let hot = (total / 4).clamp(2, HOT_CONNECTIONS);
        Some(PgPoolSize { main: total - hot, hot })
    }
}

impl Default for PgPoolSize {
    fn default() -> Self {
        Self::SERVER
    }
}

/// Whether this build can speak TLS to PostgreSQL (the crate's `tls` feature).
pub const TLS_AVAILABLE: bool = cfg!(feature = "tls");

/// Create database `name` on the server at `server_url` (`postgres://user@host:port`, no
/// database) and return its URL. For tests and benchmarks that want a fresh database.
pub async fn create_database(server_url: &str, name: &str) -> Result<String, StoreError> {
    use sqlx::Connection;
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::Database(format!("invalid database name {name:?}: use letters, digits and _")));
    }
    let base = server_url.trim_end_matches('/');
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .map_err(|e| StoreError::Database(format!("PostgreSQL at {base} is unreachable: {e}")))?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.map_err(db_err)?;
    let _ = admin.close().await;
    Ok(format!("{base}/{name}"))
}

impl PgStore {
    /// Connect to `url` (`postgres://…`) with [`PgPoolSize::SERVER`] connections at most.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        Self::connect_with(url, PgPoolSize::SERVER).await
    }

    /// Connect to `url` with at most `size` connections (a serverless function wants few).
    /// The URL's `sslmode` is honoured (`disable`, `prefer` — the default —, `require`,
    /// `verify-ca`, `verify-full`, with `sslrootcert=`); the modes that require TLS need the
    /// crate's `tls` feature, and say so when it is off.
    pub async fn connect_with(url: &str, size: PgPoolSize) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        if !TLS_AVAILABLE
            && matches!(options.get_ssl_mode(), PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull)
        {
            return Err(StoreError::Database(format!(
                "the PostgreSQL URL asks for TLS (sslmode={}) but this build has none: build with the `tls` \
                 feature (`cargo build -p web --features tls`; the `vercel` feature includes it), or \
                 use sslmode=disable/prefer for a server without TLS",
                ssl_mode_name(options.get_ssl_mode())
            )));
        }
        let options = options
            // The queue's working set is in memory (or on SSD): an index lookup is not four
            // times a sequential page read, and with the default the planner prefers scanning
            // a still-small table to a few dozen primary-key lookups.
            .options([("random_page_cost", "1.1")]);
        // The pool serves everything but the hot path: plan every execution with the tables'
        // current sizes. Queue tables start empty and grow by thousands of rows a second: a
        // generic plan cached while they were small (a sequential scan, a hash join) would
        // stay in use long after it is wrong.
        let pool = PgPoolOptions::new()
            .max_connections(size.main.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone().options([("plan_cache_mode", "force_custom_plan")]))
            .await
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        // The hot path's connections (the claim, the writers) each run a handful of statements
        // written to be driven by their indexes, thousands of times a second. Planning them
        // anew each time was a seventh of the server's time per job (the settle statement
        // took 1 ms to plan): here each is planned once per connection — and again whenever
        // ANALYZE changes its tables' statistics — and a sequential scan is never a plan's
        // choice (`enable_seqscan = off`), so a plan made while a table was small stays right
        // when it is large. No JIT: a disabled scan that has no alternative (the fan-out
        // trigger's transition table) is costed at 10^10, which would JIT-compile every
        // publish (230 ms each); a queue's short statements never gain from it anyway.
        let hot = PgPoolOptions::new()
            .max_connections(size.hot.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.options([
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
                ("jit", "off"),
            ]));
        let claim_conn = Arc::new(tokio::sync::Mutex::new(HeldConnection::new(hot.clone())));
        let second_claim_conn =
            (size.hot >= HOT_CONNECTIONS).then(|| Arc::new(tokio::sync::Mutex::new(HeldConnection::new(hot.clone()))));
        // `pool.close()` waits for every connection to come back: give the claims' back, and
        // close the hot path's pool with it.
        let (held, second, closed, hot_pool) =
            (claim_conn.clone(), second_claim_conn.clone(), pool.close_event(), hot.clone());
        tokio::spawn(async move {
            closed.await;
            held.lock().await.discard();
            if let Some(second) = second {
                second.lock().await.discard();
            }
            hot_pool.close().await;
        });
        Ok(PgStore {
            writer: Writer::start(pool.clone(), hot, WRITER_TASKS),
            claim_conn,
            second_claim_conn,
            pool,
            claims_by_group: Default::default(),
            count_limits: Default::default(),
        })
    }

    /// The pool, for callers that want to open a transaction and [`enqueue_in`](crate::enqueue_in) it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Apply the migrations in `migrations/postgres` that have not run yet (safe from many
    /// processes at once: sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| StoreError::Database(format!("migration failed: {e}")))
    }

    /// Refresh the planner's statistics of the queue tables.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        sqlx::query("ANALYZE deliveries, messages, job_executions").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    /// The plan PostgreSQL would use for this claim, as `EXPLAIN` prints it (nothing is
    /// run): for an operator asking why claims are slow, and for the test that a claim reads
    /// the due index — never the whole backlog — however much is waiting.
    pub async fn explain_claim(&self, p: &DeliveryClaimParams) -> Result<String, StoreError> {
        crate::claim_statement::claim_plan(&self.pool, p).await
    }

    /// The plan the claim's own connection keeps for this claim: its generic plan, made once
    /// without the parameters' values (the hot path plans each statement once per
    /// connection, often while the tables are still empty, and keeps the plan until ANALYZE
    /// changes their statistics). Grouped when `p` has a group concurrency. For the test
    /// that no cached claim plan reads a whole consumer group, and for an operator asking
    /// why claims are slow although [`explain_claim`](Self::explain_claim)'s plan is not.
    pub async fn explain_claim_as_cached(&self, p: &DeliveryClaimParams) -> Result<String, StoreError> {
        crate::claim_statement::claim_generic_plan(&self.pool, p).await
    }

    /// Wake `queue`'s dispatchers whenever any process publishes (`LISTEN vqs_published`),
    /// so new work starts at once instead of at the next poll, and tell its running jobs
    /// when any process cancels them (`LISTEN vqs_control`: `cancel:<message id>`), and of
    /// every pause and resume of a topic (`pause:<topic>`, `resume:<topic>`; a resume wakes
    /// the dispatchers). While this is connected, [`vqs::watch_cancellations`] and
    /// [`vqs::watch_topic_controls`] do not poll. Reconnects by itself;
    /// a message cancelled while the connection was down is found by the poll meanwhile.
    pub fn forward_wakeups(&self, queue: vqs::Queue) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                queue.set_cancel_notifications(false);
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; retrying in 1s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen_all(["vqs_published", CONTROL_CHANNEL]).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                queue.set_cancel_notifications(true);
                loop {
                    match listener.recv().await {
                        Ok(n) if n.channel() == CONTROL_CHANNEL => {
                            let payload = n.payload();
                            if let Some(id) = payload.strip_prefix("cancel:") {
                                queue.notice_cancelled(id);
                            } else if let Some(topic) = payload.strip_prefix("pause:") {
                                queue.notice_topic_control(topic, true);
                            } else if let Some(topic) = payload.strip_prefix("resume:") {
                                queue.notice_topic_control(topic, false);
                            } else if let Some(key) = payload.strip_prefix("gpause:") {
                                queue.notice_group_control(key, true);
                            } else if let Some(key) = payload.strip_prefix("gresume:") {
                                queue.notice_group_control(key, false);
                            } else if let Some(topic) = payload.strip_prefix("limits:") {
                                // Read the overrides off the listener's task: it keeps listening.
                                let (queue, topic) = (queue.clone(), topic.to_owned());
                                tokio::spawn(async move { queue.notice_topic_limits(&topic).await });
                            }
                        }
                        Ok(_) => queue.wake(),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                            break;
                        }
                    }
                }
            }
        })
    }
}

/// The channel a cancel (`cancel:<message id>`), a pause or resume of a topic (`pause:<topic>`,
/// `resume:<topic>`) or of a message group (`gpause:<topic>/<group>`, `gresume:…`) and a
/// change of a topic's limits (`limits:<topic>`) are announced on, in their own transaction.
pub const CONTROL_CHANNEL: &str = "vqs_control";

fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

#[async_trait]
impl QueueStore for PgStore {
    async fn message_send(&self, p: MessageSendParams) -> Result<SendResult, StoreError> {
        self.writer.send(p).await
    }

    async fn message_send_many(&self, p: MessageSendManyParams) -> Result<Vec<SendResult>, StoreError> {
        crate::publish::message_send_many(&self.pool, p).await
    }

    async fn message_list(&self, p: MessageListParams) -> Result<Vec<String>, StoreError> {
        crate::publish::message_list(&self.pool, p).await
    }

    async fn message_run_now(&self, p: MessageRunNowParams) -> Result<u64, StoreError> {
        crate::publish::message_run_now(&self.pool, p).await
    }

    async fn message_cancel(&self, p: MessageCancelParams) -> Result<MessageCancelled, StoreError> {
        crate::cancel::message_cancel(&self.pool, p).await
    }

    async fn topic_purge(&self, p: TopicPurgeParams) -> Result<u64, StoreError> {
        crate::cancel::topic_purge(&self.pool, p).await
    }

    async fn delivery_cancelled(&self, p: DeliveryCancelledParams) -> Result<Vec<(String, String)>, StoreError> {
        crate::cancel::delivery_cancelled(&self.pool, p).await
    }

    async fn message_get(&self, p: MessageGetParams) -> Result<Option<MessageRecord>, StoreError> {
        crate::publish::message_get(&self.pool, p).await
    }

    async fn message_ids_by_key(&self, p: MessageKeyLookupParams) -> Result<Vec<String>, StoreError> {
        crate::publish::message_ids_by_key(&self.pool, p).await
    }

    async fn delivery_group_held(&self, p: DeliveryGroupHeldParams) -> Result<Option<GroupHeld>, StoreError> {
        crate::flow_groups::group_held(&self.pool, p).await
    }

    async fn flow_group_start(&self, p: FlowGroupStartParams) -> Result<FlowGroupStart, StoreError> {
        crate::flow_groups::start(&self.pool, p).await
    }

    async fn flow_group_slot_release(&self, p: FlowGroupSlotReleaseParams) -> Result<(), StoreError> {
        crate::flow_groups::slot_release(&self.pool, p).await
    }

    async fn flow_group_busiest(&self, p: FlowGroupBusiestParams) -> Result<Vec<FlowGroupLoad>, StoreError> {
        crate::flow_groups::busiest(&self.pool, p).await
    }

    async fn subscription_ensure(&self, p: SubscriptionEnsureParams) -> Result<(), StoreError> {
        let out = crate::subscriptions::subscription_ensure(&self.pool, p).await;
        self.claims_by_group.forget();
        out
    }

    async fn subscription_group_topic(&self, p: SubscriptionGroupTopicParams) -> Result<u64, StoreError> {
        let out = crate::subscriptions::group_topic(&self.pool, p).await;
        self.claims_by_group.forget();
        out
    }

    /// One statement: pick due deliveries (`SKIP LOCKED`), lease them, close the `running`
    /// executions of those whose earlier lease expired (abandoned), and — with
    /// `start_executions` — record each new attempt's `running` execution.
    async fn delivery_claim(&self, p: DeliveryClaimParams) -> Result<Vec<LeasedMessage>, StoreError> {
        crate::lease::delivery_claim(
            &self.pool,
            &self.claim_conn,
            self.second_claim_conn.as_ref(),
            &self.claims_by_group,
            p,
        )
        .await
    }

    async fn delivery_ack(&self, p: DeliveryAckParams) -> Result<(), StoreError> {
        self.writer.ack(p).await
    }

    async fn delivery_set_visibility(&self, p: LeaseVisibilityParams) -> Result<DateTime<Utc>, StoreError> {
        crate::lease::delivery_set_visibility(&self.pool, p).await
    }

    async fn delivery_retry(&self, p: DeliveryRetryParams) -> Result<(), StoreError> {
        self.writer.move_lease(Move::Retry(p)).await
    }

    async fn delivery_release(&self, p: DeliveryReleaseParams) -> Result<(), StoreError> {
        self.writer.move_lease(Move::Release(p)).await
    }

    async fn delivery_dead_letter(&self, p: DeliveryDeadLetterParams) -> Result<(), StoreError> {
        self.writer.move_lease(Move::DeadLetter(p)).await
    }

    async fn delivery_leased_count(&self, p: DeliveryLeasedCountParams) -> Result<i64, StoreError> {
        crate::lease::delivery_leased_count(&self.pool, p).await
    }

    async fn delivery_next_due(&self, p: DeliveryNextDueParams) -> Result<Option<DateTime<Utc>>, StoreError> {
        crate::lease::delivery_next_due(&self.claim_conn, p).await
    }

    async fn execution_start(&self, p: ExecutionStartParams) -> Result<i64, StoreError> {
        self.writer.execution_start(p).await
    }

    async fn execution_finish(&self, p: ExecutionFinishParams) -> Result<(), StoreError> {
        self.writer.execution_finish(p).await
    }

    async fn execution_list(&self, p: ExecutionListParams) -> Result<Vec<ExecutionRecord>, StoreError> {
        crate::executions::execution_list(&self.pool, p).await
    }

    async fn checkpoint_get(&self, p: CheckpointGetParams) -> Result<Option<serde_json::Value>, StoreError> {
        crate::executions::checkpoint_get(&self.pool, p).await
    }

    async fn checkpoint_put(&self, p: CheckpointPutParams) -> Result<(), StoreError> {
        crate::executions::checkpoint_put(&self.pool, p).await
    }

    async fn queue_stats(&self, p: QueueStatsParams) -> Result<Vec<TopicStats>, StoreError> {
        crate::stats::queue_stats(&self.pool, p).await
    }

    async fn queue_depth(&self, p: QueueDepthParams) -> Result<Vec<TopicDepth>, StoreError> {
        crate::stats::queue_depth(&self.pool, p).await
    }

    async fn execution_counts(&self, p: ExecutionCountParams) -> Result<Vec<ExecutionCounts>, StoreError> {
        crate::stats::execution_counts(&self.pool, p).await
    }

    async fn progress_put(&self, p: ProgressPutParams) -> Result<(), StoreError> {
        crate::progress::progress_put(&self.pool, p).await
    }

    async fn progress_list(&self, p: ProgressListParams) -> Result<Vec<ProgressRecord>, StoreError> {
        crate::progress::progress_list(&self.pool, p).await
    }

    async fn sync_log_get(&self, p: SyncLogGetParams) -> Result<Option<SyncLogRecord>, StoreError> {
        let (topic, key) = (p.topic.as_str(), p.key.as_str());
        crate::progress::sync_log_get(&self.pool, topic, key).await
    }

    async fn sync_log_put(&self, p: SyncLogPutParams) -> Result<(), StoreError> {
        crate::progress::sync_log_put(&self.pool, p).await
    }

    async fn sync_log_list(&self, p: SyncLogListParams) -> Result<Vec<SyncLogRecord>, StoreError> {
        let topic = p.topic.as_deref();
        crate::progress::sync_log_list(&self.pool, topic).await
    }

    async fn dead_letter_list(&self, p: DeadLetterListParams) -> Result<Vec<DeadLetterRecord>, StoreError> {
        crate::dead_letters::dead_letter_list(&self.pool, p).await
    }

    async fn dead_letter_get(&self, p: DeadLetterGetParams) -> Result<Option<DeadLetterRecord>, StoreError> {
        crate::dead_letters::dead_letter_get(&self.pool, p).await
    }

    async fn dead_letter_delete(&self, p: DeadLetterDeleteParams) -> Result<bool, StoreError> {
        crate::dead_letters::dead_letter_delete(&self.pool, p).await
    }

    async fn dead_letter_settle(&self, p: DeadLetterSettleParams) -> Result<DeadLetterSettled, StoreError> {
        crate::dead_letters::settle(&self.pool, p).await
    }

    async fn dead_letter_restore(&self, p: DeadLetterRestoreParams) -> Result<(), StoreError> {
        let DeadLetterRestoreParams { letter, payload } = p;
        crate::dead_letters::restore(&self.pool, letter, payload).await
    }

    async fn dead_letter_groups(&self, p: DeadLetterGroupsParams) -> Result<Vec<DeadLetterGroup>, StoreError> {
        crate::dead_letter_groups::dead_letter_groups(&self.pool, p).await
    }

    async fn dead_letter_group_ids(&self, p: DeadLetterGroupIdsParams) -> Result<Vec<i64>, StoreError> {
        crate::dead_letter_groups::dead_letter_group_ids(&self.pool, p).await
    }

    async fn stats_rollup(&self, p: StatsRollupParams) -> Result<StatsRollupReport, StoreError> {
        crate::stats_rollup::stats_rollup(&self.pool, p).await
    }

    async fn stats_series(&self, p: StatsSeriesParams) -> Result<Vec<StatsMinuteRecord>, StoreError> {
        crate::stats_rollup::stats_series(&self.pool, p).await
    }

    async fn dead_letter_insert(&self, p: DeadLetterInsertParams) -> Result<i64, StoreError> {
        crate::dead_letters::dead_letter_insert(&self.pool, p).await
    }

    async fn execution_close_outlived(&self, p: OutlivedParams) -> Result<u64, StoreError> {
        crate::executions::execution_close_outlived(&self.pool, p).await
    }

    async fn maintenance_run(&self, p: MaintenanceParams) -> Result<MaintenanceReport, StoreError> {
        crate::maintenance::maintenance_run(&self.pool, &self.count_limits, p).await
    }

    async fn cron_run_start(&self, p: CronRunStartParams) -> Result<Option<i64>, StoreError> {
        crate::cron_runs::cron_run_start(&self.pool, p).await
    }

    async fn cron_run_finish(&self, p: CronRunFinishParams) -> Result<(), StoreError> {
        crate::cron_runs::cron_run_finish(&self.pool, p).await
    }

    async fn cron_run_list(&self, p: CronRunListParams) -> Result<Vec<CronRunRecord>, StoreError> {
        crate::cron_runs::cron_run_list(&self.pool, p).await
    }

    async fn cron_run_summary(&self, p: CronRunSummaryParams) -> Result<Vec<CronRunSummary>, StoreError> {
        crate::cron_runs::cron_run_summary(&self.pool, p).await
    }

    async fn cron_lock_acquire(&self, p: CronLockParams) -> Result<bool, StoreError> {
        crate::cron_runs::cron_lock_acquire(&self.pool, p).await
    }

    async fn cron_lock_release(&self, p: CronLockReleaseParams) -> Result<bool, StoreError> {
        crate::cron_runs::cron_lock_release(&self.pool, p).await
    }

    async fn cron_lock_extend(&self, p: CronLockExtendParams) -> Result<bool, StoreError> {
        crate::cron_runs::cron_lock_extend(&self.pool, p).await
    }

    async fn process_beat(&self, p: ProcessBeatParams) -> Result<bool, StoreError> {
        crate::processes::process_beat(&self.pool, p).await
    }

    async fn process_rescue(&self, p: ProcessRescueParams) -> Result<ProcessRescueReport, StoreError> {
        crate::processes::process_rescue(&self.pool, p).await
    }

    async fn remote_cancel_record(&self, p: RemoteCancelParams) -> Result<bool, StoreError> {
        crate::remote_cancels::remote_cancel_record(&self.pool, p).await
    }

    async fn remote_cancel_get(&self, p: RemoteCancelGetParams) -> Result<Option<String>, StoreError> {
        crate::remote_cancels::remote_cancel_get(&self.pool, p).await
    }

    async fn topic_control_set(&self, p: TopicControlSetParams) -> Result<TopicControl, StoreError> {
        crate::topic_controls::topic_control_set(&self.pool, p).await
    }

    async fn topic_control_list(&self, p: TopicControlListParams) -> Result<Vec<TopicControl>, StoreError> {
        crate::topic_controls::topic_control_list(&self.pool, p).await
    }

    async fn group_pause_set(&self, p: GroupPauseSetParams) -> Result<Option<GroupPause>, StoreError> {
        let out = crate::group_pauses::group_pause_set(&self.pool, p).await;
        self.claims_by_group.forget();
        out
    }

    async fn group_pause_list(&self, p: GroupPauseListParams) -> Result<Vec<GroupPause>, StoreError> {
        crate::group_pauses::group_pause_list(&self.pool, p).await
    }

    async fn topic_limits_set(&self, p: TopicLimitsSetParams) -> Result<TopicLimitsRow, StoreError> {
        crate::topic_limits::topic_limits_set(&self.pool, p).await
    }

    async fn topic_limits_list(&self) -> Result<Vec<TopicLimitsRow>, StoreError> {
        crate::topic_limits::topic_limits_list(&self.pool).await
    }

    async fn rate_bucket_get(&self, p: RateBucketGetParams) -> Result<Option<i64>, StoreError> {
        crate::topic_limits::rate_bucket_get(&self.pool, p).await
    }

    async fn rate_bucket_take(&self, p: RateBucketTakeParams) -> Result<Option<i64>, StoreError> {
        crate::topic_limits::rate_bucket_take(&self.pool, p).await
    }

    async fn rate_bucket_credit(&self, p: RateBucketCreditParams) -> Result<(), StoreError> {
        crate::topic_limits::rate_bucket_credit(&self.pool, p).await
    }

    async fn session_revoke(&self, p: SessionRevokeParams) -> Result<(), StoreError> {
        crate::sessions::session_revoke(&self.pool, p).await
    }

    async fn session_revoked(&self, p: SessionRevokedParams) -> Result<bool, StoreError> {
        crate::sessions::session_revoked(&self.pool, p).await
    }

    async fn delivery_topic(&self, p: DeliveryTopicParams) -> Result<Option<String>, StoreError> {
        crate::lease::delivery_topic(&self.pool, p).await
    }

    async fn schedule_upsert(&self, p: ScheduleUpsertParams) -> Result<ScheduleRecord, StoreError> {
        crate::schedules::schedule_upsert(&self.pool, p).await
    }

    async fn schedule_get(&self, p: ScheduleGetParams) -> Result<Option<ScheduleRecord>, StoreError> {
        crate::schedules::schedule_get(&self.pool, p).await
    }

    async fn schedule_list(&self, p: ScheduleListParams) -> Result<Vec<ScheduleRecord>, StoreError> {
        crate::schedules::schedule_list(&self.pool, p).await
    }

    async fn schedule_count(&self, p: ScheduleCountParams) -> Result<u64, StoreError> {
        crate::schedules::schedule_count(&self.pool, p).await
    }

    async fn schedule_overdue(&self, p: ScheduleOverdueParams) -> Result<Vec<ScheduleRecord>, StoreError> {
        crate::schedules::schedule_overdue(&self.pool, p).await
    }

    async fn schedule_delete(&self, p: ScheduleDeleteParams) -> Result<bool, StoreError> {
        crate::schedules::schedule_delete(&self.pool, p).await
    }

    async fn schedule_due(&self, p: ScheduleDueParams) -> Result<Vec<ScheduleRecord>, StoreError> {
        crate::schedules::schedule_due(&self.pool, p).await
    }

    async fn schedule_fire(&self, p: ScheduleFireParams) -> Result<ScheduleFired, StoreError> {
        crate::schedules::schedule_fire(&self.pool, p).await
    }

    async fn schedule_fire_sent(&self, p: ScheduleFireSentParams) -> Result<(), StoreError> {
        crate::schedules::schedule_fire_sent(&self.pool, p).await
    }

    async fn schedule_unsent(&self, p: ScheduleUnsentParams) -> Result<Vec<ScheduleUnsent>, StoreError> {
        crate::schedules::schedule_unsent(&self.pool, p).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if !self.writer.is_running() {
            return Err(StoreError::Database(
                "the PostgreSQL writers have stopped (see the error logged when they did)".into(),
            ));
        }
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }
}
