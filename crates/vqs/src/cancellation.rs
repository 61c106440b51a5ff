//! Telling a running job it was cancelled (SPEC.md, "Job outcomes").
//!
//! The store marks a cancelled delivery and closes its attempt; this is how the process
//! running it learns, so it can drop the job's future: a per-process registry of the
//! deliveries being worked, fired by whichever channel brings the news — the cancel itself
//! (same process), PostgreSQL's `NOTIFY vqs_control` (every process that listens), or the
//! [`watch_cancellations`] poll, one statement every half second for all of a process's running jobs,
//! where no notification can arrive (SQLite cancelled from the CLI, PostgreSQL without LISTEN).
//!
//! A cancel can also arrive before the job starts — its lease waiting in a dispatcher's
//! buffer — so recently cancelled message ids are remembered for a while, and a delivery
//! registered afterwards starts out cancelled: it is never run.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::Queue;
use crate::store::DeliveryCancelledParams;

/// How long a cancelled message id is remembered for deliveries registered after the news.
const REMEMBER_FOR: Duration = Duration::from_secs(600);
/// At most this many remembered ids (the oldest are forgotten first).
const REMEMBER_AT_MOST: usize = 10_000;
/// How often [`watch_cancellations`] asks the store, while jobs run and nothing notifies.
pub const CANCEL_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The deliveries this process is working, and the cancel signal of each.
#[derive(Default)]
pub(crate) struct Cancellations {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// True while a notification channel (PostgreSQL LISTEN) is connected: the poll rests.
    notified: AtomicBool,
}

/// A delivery: (message id, consumer group).
type DeliveryKey = (String, String);

#[derive(Default)]
struct State {
    /// By registration id: the delivery worked and its signal. Keyed by the registration,
    /// not the delivery, so that registering and dropping are one insert and one remove of
    /// a small key (a delivery worked twice at once — its lease ran out and it was taken
    /// again — has two entries).
    running: HashMap<u64, (DeliveryKey, watch::Sender<bool>)>,
    recent: HashSet<String>,
    recent_order: VecDeque<(Instant, String)>,
}

impl State {
    fn forget_old(&mut self, now: Instant) {
        while let Some((at, _)) = self.recent_order.front() {
            if now.duration_since(*at) < REMEMBER_FOR && self.recent_order.len() <= REMEMBER_AT_MOST {
                break;
            }
            if let Some((_, id)) = self.recent_order.pop_front() {
                self.recent.remove(&id);
            }
        }
    }
}

impl Cancellations {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain maps behind: keep using them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a delivery about to run; the guard unregisters it when dropped.
    pub(crate) fn register(&self, message_id: &str, consumer_group: &str) -> (CancelGuard<'_>, CancelSignal) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        state.forget_old(Instant::now());
        let already = state.recent.contains(message_id);
        let (tx, rx) = watch::channel(already);
        state.running.insert(id, ((message_id.to_owned(), consumer_group.to_owned()), tx));
        (CancelGuard { registry: self, id }, CancelSignal(Some(rx)))
    }

    /// A message was cancelled (in every consumer group): fire its running deliveries and
    /// remember it for deliveries registered later.
    pub(crate) fn cancel_message(&self, message_id: &str) {
        let mut state = self.lock();
        let now = Instant::now();
        if state.recent.insert(message_id.to_owned()) {
            state.recent_order.push_back((now, message_id.to_owned()));
        }
        state.forget_old(now);
        for ((m, _), tx) in state.running.values() {
            if m == message_id {
                tx.send_replace(true);
            }
        }
    }

    fn running(&self) -> Vec<(String, String)> {
        let state = self.lock();
        let keys: HashSet<&DeliveryKey> = state.running.values().map(|(key, _)| key).collect();
        keys.into_iter().cloned().collect()
    }
}

/// Unregisters a running delivery when the consumer is done with it.
pub(crate) struct CancelGuard<'a> {
    registry: &'a Cancellations,
    id: u64,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        self.registry.lock().running.remove(&self.id);
    }
}

/// Fires when the delivery being worked is cancelled. A job sees it as
/// [`crate::JobContext::cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelSignal(Option<watch::Receiver<bool>>);

impl CancelSignal {
    /// A signal that never fires (a job run outside a delivery: [`crate::JobClient::run_tracked`]).
    pub fn never() -> Self {
        CancelSignal(None)
    }

    /// True once the delivery has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves when the delivery is cancelled (never, for [`CancelSignal::never`]).
    pub async fn cancelled(&self) {
        match &self.0 {
            Some(rx) => {
                let mut rx = rx.clone();
                // An error means the registry entry is gone: the delivery is no longer worked
                // here, so there is nothing to cancel.
                if rx.wait_for(|c| *c).await.is_err() {
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl Queue {
    /// Tell this process's running jobs of `message_id` that it was cancelled (called by the
    /// cancel itself and by a backend's notification listener), and remember it for a lease
    /// of it still waiting to be pushed.
    pub fn notice_cancelled(&self, message_id: &str) {
        self.cancellations().cancel_message(message_id);
    }

    /// Whether a notification channel that carries cancellations — and pauses and resumes of
    /// topics — is connected (a backend's listener sets it): while it is, neither
    /// [`watch_cancellations`] nor [`crate::watch_topic_controls`] polls. A channel that
    /// (re)connects makes the paused topics be read once more: what it missed is unknown.
    pub fn set_cancel_notifications(&self, connected: bool) {
        self.cancellations().notified.store(connected, Ordering::Relaxed);
        if connected {
            self.paused_topics_view().mark_unread();
            self.paused_groups_view().mark_unread();
            self.limits_state().mark_unread();
        }
    }

    /// Whether a notification channel is connected ([`Queue::set_cancel_notifications`]).
    pub(crate) fn control_notifications(&self) -> bool {
        self.cancellations().notified.load(Ordering::Relaxed)
    }
}

/// Poll the store, once every [`CANCEL_POLL_INTERVAL`], for cancellations of the deliveries
/// this process is running, while no notification channel is connected — one statement for
/// all of them, none while nothing runs. Runs until `shutdown` turns true; a failed poll is
/// logged and tried again at the next interval.
pub async fn watch_cancellations(queue: Queue, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CANCEL_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let registry = queue.cancellations();
        if registry.notified.load(Ordering::Relaxed) {
            continue;
        }
        let running = registry.running();
        if running.is_empty() {
            continue;
        }
        match queue.store().delivery_cancelled(DeliveryCancelledParams { deliveries: running }).await {
            Ok(cancelled) => {
                for (message_id, _) in cancelled {
                    registry.cancel_message(&message_id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not poll for cancelled jobs; trying again shortly"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_fires_the_running_delivery_and_a_later_registration() {
        let registry = Cancellations::default();
        let (guard, signal) = registry.register("m1", "g");
        let (_other_guard, other) = registry.register("m2", "g");
        assert!(!signal.is_cancelled());
        registry.cancel_message("m1");
        signal.cancelled().await;
        assert!(signal.is_cancelled());
        assert!(!other.is_cancelled());
        drop(guard);
        assert_eq!(registry.running(), vec![("m2".to_owned(), "g".to_owned())]);
        // A lease of m1 that was waiting in a buffer registers after the news: cancelled at once.
        let (_g, late) = registry.register("m1", "other-group");
        assert!(late.is_cancelled());
    }

    #[tokio::test]
    async fn never_never_fires() {
        let s = CancelSignal::never();
        assert!(!s.is_cancelled());
        assert!(tokio::time::timeout(Duration::from_millis(20), s.cancelled()).await.is_err());
    }
}
