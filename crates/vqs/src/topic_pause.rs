//! Pausing a topic (SPEC.md, "Flow control"): while a topic is paused, publishing works,
//! jobs already running finish, and nothing new starts.
//!
//! The state lives in the store (`topic_controls`, [`QueueStore::topic_control_set`]); the
//! claim itself never leases a paused topic's deliveries. Each process also keeps the set of
//! paused topics in memory, so its dispatchers do not claim for a paused topic at all (its
//! backlog is not scanned): the pause itself updates it at once in the pausing process;
//! PostgreSQL's `NOTIFY vqs_control` (`pause:<topic>`, `resume:<topic>`) in every process
//! that listens; elsewhere [`watch_topic_controls`] reads the paused topics once every
//! [`TOPIC_CONTROL_POLL_INTERVAL`]. A resume wakes the process's dispatchers at once.
//!
//! A push that arrives for a paused topic without a lease this process took (Vercel's) is
//! deferred by [`PAUSED_DEFER`], spending no attempt and recording no execution.
//!
//! [`QueueStore::topic_control_set`]: crate::QueueStore::topic_control_set

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::{TopicControl, TopicControlListParams, TopicControlSetParams};
use crate::{Queue, QueueError, check_storable, is_valid_name};

/// How often a process reads the paused topics when no notification can tell it (and how
/// old its view may be before a push for a remote service's delivery reads it again).
pub const TOPIC_CONTROL_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long a push of a paused topic that this process cannot hold back itself (a delivery
/// of Vercel's queue service) is deferred: it comes back after this (each deferral raises
/// Vercel's delivery count; no attempt is spent). 30 s: a resumed topic starts again within
/// half a minute on Vercel, at two deliveries a minute per held message.
pub const PAUSED_DEFER: Duration = Duration::from_secs(30);

/// This process's view of what is paused: the paused topics, and (a second view, keyed
/// `topic/group`) the paused message groups (`group_pause.rs`).
#[derive(Default)]
pub(crate) struct PausedSet {
    state: Mutex<ViewState>,
    /// Bumped by every change heard of (a pause here, a notification): a store read that
    /// started before it is not applied over it.
    generation: AtomicU64,
    /// One store read at a time.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct ViewState {
    keys: Arc<BTreeSet<String>>,
    /// When the store was last read; `None`: never, or the view must be read again (a
    /// notification channel reconnected: what it missed is unknown).
    read_at: Option<Instant>,
}

impl PausedSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, ViewState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn snapshot(&self) -> Arc<BTreeSet<String>> {
        self.lock().keys.clone()
    }

    /// Record one key's state; true when it was resumed (was paused here).
    pub(crate) fn set(&self, key: &str, paused: bool) -> bool {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock();
        if state.keys.contains(key) == paused {
            return false;
        }
        // Copied only while a snapshot of it is held somewhere (copy on write): a mass pause
        // of many groups, one at a time, does not copy the whole set per pause.
        let keys = Arc::make_mut(&mut state.keys);
        if paused {
            keys.insert(key.to_owned());
        } else {
            keys.remove(key);
        }
        !paused
    }

    /// Forget when the store was last read (the next look reads it).
    pub(crate) fn mark_unread(&self) {
        self.lock().read_at = None;
    }

    fn read_within(&self, age: Duration) -> bool {
        self.lock().read_at.is_some_and(|at| at.elapsed() < age)
    }

    /// Whether the store was read since the view was last marked unread.
    pub(crate) fn was_read(&self) -> bool {
        self.lock().read_at.is_some()
    }

    /// Make `read` — what `store_read` returned from the store — the view, unless a change
    /// was heard of while it was read (then the view is read again next time). True when
    /// something the view had is no longer in it (resumed).
    pub(crate) async fn read_from<F>(&self, store_read: F) -> Result<bool, QueueError>
    where
        F: std::future::Future<Output = Result<BTreeSet<String>, QueueError>>,
    {
        let _one = self.reading.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        let read = store_read.await?;
        let mut state = self.lock();
        if self.generation.load(Ordering::SeqCst) != generation {
            // A change was heard of meanwhile: this read may predate it; read again next time.
            state.read_at = None;
            return Ok(false);
        }
        let resumed = state.keys.iter().any(|k| !read.contains(k));
        state.keys = Arc::new(read);
        state.read_at = Some(Instant::now());
        Ok(resumed)
    }
}

impl Queue {
    /// Pause `topic`: publishing still works, jobs running now finish, nothing new starts
    /// until [`Queue::resume`] — on every process within a second. Idempotent. Returns the
    /// topic's controls as stored.
    pub async fn pause(&self, topic: &str) -> Result<TopicControl, QueueError> {
        self.set_paused(topic, true).await
    }

    /// Resume a paused topic: its backlog starts in due order, this process's dispatchers
    /// at once, other processes' within a second. Idempotent.
    pub async fn resume(&self, topic: &str) -> Result<TopicControl, QueueError> {
        self.set_paused(topic, false).await
    }

    async fn set_paused(&self, topic: &str, paused: bool) -> Result<TopicControl, QueueError> {
        check_storable("topic", topic)?;
        if !is_valid_name(topic) {
            return Err(QueueError::Invalid(format!(
                "invalid topic {topic:?}: use letters, digits, '-' and '_' only, at most {} bytes",
                crate::MAX_KEY_BYTES
            )));
        }
        let now = self.clock().now();
        let control =
            self.store().topic_control_set(TopicControlSetParams { topic: topic.to_owned(), paused, now }).await?;
        if self.paused_topics_view().set(topic, control.paused) {
            self.wake();
        }
        tracing::info!(
            queue.name = topic,
            paused = control.paused,
            "topic {}",
            if paused { "paused" } else { "resumed" }
        );
        Ok(control)
    }

    /// The paused topics as this process knows them, without asking the store (at most
    /// [`TOPIC_CONTROL_POLL_INTERVAL`] old where no notification reaches the process).
    pub fn paused_topics_known(&self) -> Arc<BTreeSet<String>> {
        self.paused_topics_view().snapshot()
    }

    /// The paused topics, read from the store when this process's view may be out of date
    /// (older than [`TOPIC_CONTROL_POLL_INTERVAL`] with no notification channel connected).
    pub async fn paused_topics(&self) -> Result<Arc<BTreeSet<String>>, QueueError> {
        let view = self.paused_topics_view();
        let fresh = if self.control_notifications() {
            view.lock().read_at.is_some()
        } else {
            view.read_within(TOPIC_CONTROL_POLL_INTERVAL)
        };
        if !fresh {
            self.read_paused_topics().await?;
        }
        Ok(view.snapshot())
    }

    /// Read the paused topics from the store now; the dispatchers of a topic found resumed
    /// are woken.
    pub async fn read_paused_topics(&self) -> Result<(), QueueError> {
        let read = async {
            let stored = self.store().topic_control_list(TopicControlListParams { paused_only: true }).await?;
            Ok(stored.into_iter().map(|c| c.topic).collect())
        };
        if self.paused_topics_view().read_from(read).await? {
            self.wake();
        }
        Ok(())
    }

    /// A pause or resume announced by another process (a backend's notification listener
    /// calls this with the payload after `pause:` / `resume:`).
    pub fn notice_topic_control(&self, topic: &str, paused: bool) {
        if self.paused_topics_view().set(topic, paused) {
            self.wake();
        }
    }

    /// Every topic's controls as stored (a row per topic ever paused).
    pub async fn topic_controls(&self) -> Result<Vec<TopicControl>, QueueError> {
        Ok(self.store().topic_control_list(TopicControlListParams { paused_only: false }).await?)
    }
}

/// Read the paused topics once every [`TOPIC_CONTROL_POLL_INTERVAL`] while no notification
/// channel is connected (and once after one connects), waking the dispatchers of a topic
/// found resumed. Runs until `shutdown` turns true; a failed read is logged and tried again.
pub async fn watch_topic_controls(queue: Queue, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TOPIC_CONTROL_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if queue.control_notifications()
            && queue.paused_topics_view().was_read()
            && queue.paused_groups_view().was_read()
            && queue.limits_read()
        {
            continue;
        }
        if let Err(e) = queue.read_paused_topics().await {
            tracing::warn!(error = %e, "could not read the paused topics; trying again shortly");
        }
        // And the paused message groups (`group_pause.rs`).
        if let Err(e) = queue.read_paused_groups().await {
            tracing::warn!(error = %e, "could not read the paused message groups; trying again shortly");
        }
        // The limit overrides travel the same way (`topic_limits.rs`).
        if let Err(e) = queue.read_topic_limits().await {
            tracing::warn!(error = %e, "could not read the topic limits; trying again shortly");
        }
    }
}
