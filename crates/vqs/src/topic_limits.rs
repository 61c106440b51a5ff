//! Limits per topic (SPEC.md, "Flow control"): `concurrency` (leased at once per consumer
//! group, across processes; replaces a trigger's `maxConcurrency` while set) and
//! `rate_limit` (a GCRA bucket per consumer group and topic, across processes), with
//! `group_concurrency` / `group_rate_limit` (the same per consumer group and group key, for
//! message groups).
//!
//! Defaults come from the job type ([`crate::Jobbable::concurrency`],
//! [`crate::Jobbable::rate_limit`], registered with [`Queue::set_limit_defaults`]); runtime
//! overrides live in the store ([`QueueStore::topic_limits_set`]) and win field by field.
//! Each process keeps the overrides in memory, refreshed as the paused topics are: the
//! change itself at once in the changing process, PostgreSQL's `NOTIFY vqs_control`
//! (`limits:<topic>`) in every listening process, elsewhere [`crate::watch_topic_controls`]'
//! read once every [`crate::TOPIC_CONTROL_POLL_INTERVAL`]. The dispatcher reads the limits in force for
//! its topic before each claim and passes them to the store, which enforces them inside
//! its serialised limited claim.
//!
//! [`QueueStore::topic_limits_set`]: crate::QueueStore::topic_limits_set

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::store::{
    DeliveryLeasedCountParams, RateBucketGetParams, RateBucketTakeParams, RateLimit, TopicLimits, TopicLimitsPatch,
    TopicLimitsRow, TopicLimitsSetParams,
};
use crate::{Queue, QueueError, check_storable, is_valid_name};

/// The largest `concurrency`, `group_concurrency` and rate `limit` accepted.
pub const MAX_LIMIT: u32 = 1_000_000;
/// The longest rate-limit period accepted: one day.
pub const MAX_RATE_PERIOD_SECONDS: u32 = 86_400;

/// Where a limit in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// The job type's default.
    Default,
    /// An operator's runtime override.
    Override,
}

/// One limit in force and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitInForce<T> {
    /// The limit.
    pub value: T,
    /// Whether it is the job type's default or an operator's override.
    pub source: LimitSource,
}

/// A topic's limits: the job type's defaults, the operator's overrides, and the merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicLimitsView {
    /// The topic the limits are of.
    pub topic: String,
    /// The job type's limits, as its code declares them and [`Queue::set_limit_defaults`]
    /// registered them (empty when none were).
    pub defaults: TopicLimits,
    /// The operator's overrides as stored (empty when none was set).
    pub overrides: TopicLimits,
    /// The limits in force (an override wins field by field), each saying where it comes from.
    pub in_force: LimitsInForce,
}

/// The limits in force for a topic, field by field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LimitsInForce {
    /// Leased at once per consumer group across processes; `None`: no limit.
    pub concurrency: Option<LimitInForce<u32>>,
    /// Starts per consumer group's bucket; `None`: no limit.
    pub rate_limit: Option<LimitInForce<RateLimit>>,
    /// Leased at once per (consumer group, group key); `None`: no limit.
    pub group_concurrency: Option<LimitInForce<u32>>,
    /// Starts per message group's bucket; `None`: no limit.
    pub group_rate_limit: Option<LimitInForce<RateLimit>>,
}

fn pick<T: Copy>(over: Option<T>, default: Option<T>) -> Option<LimitInForce<T>> {
    match (over, default) {
        (Some(value), _) => Some(LimitInForce { value, source: LimitSource::Override }),
        (None, Some(value)) => Some(LimitInForce { value, source: LimitSource::Default }),
        (None, None) => None,
    }
}

impl LimitsInForce {
    /// The limits in force: per field, the override when set, else the default.
    pub fn merge(defaults: &TopicLimits, overrides: &TopicLimits) -> Self {
        LimitsInForce {
            concurrency: pick(overrides.concurrency, defaults.concurrency),
            rate_limit: pick(overrides.rate_limit, defaults.rate_limit),
            group_concurrency: pick(overrides.group_concurrency, defaults.group_concurrency),
            group_rate_limit: pick(overrides.group_rate_limit, defaults.group_rate_limit),
        }
    }

    /// The values alone.
    pub fn values(&self) -> TopicLimits {
        TopicLimits {
            concurrency: self.concurrency.map(|l| l.value),
            rate_limit: self.rate_limit.map(|l| l.value),
            group_concurrency: self.group_concurrency.map(|l| l.value),
            group_rate_limit: self.group_rate_limit.map(|l| l.value),
        }
    }
}

/// Check a limit count (`concurrency`, `group_concurrency`, a rate `limit`).
pub fn check_limit(field: &str, n: u32) -> Result<u32, String> {
    if n == 0 || n > MAX_LIMIT {
        return Err(format!(
            "{field} must be a whole number from 1 to {MAX_LIMIT} (to stop a topic, pause it instead), not {n}"
        ));
    }
    Ok(n)
}

/// Check a rate limit: a limit from 1 to [`MAX_LIMIT`] per 1 to [`MAX_RATE_PERIOD_SECONDS`].
pub fn check_rate_limit(field: &str, r: RateLimit) -> Result<RateLimit, String> {
    check_limit(&format!("{field}.limit"), r.limit)?;
    if r.period_seconds == 0 || r.period_seconds > MAX_RATE_PERIOD_SECONDS {
        return Err(format!(
            "{field}.period_seconds must be a whole number of seconds from 1 to {MAX_RATE_PERIOD_SECONDS} (one day), not {}",
            r.period_seconds
        ));
    }
    Ok(r)
}

/// Check every value a patch sets.
pub fn check_patch(p: &TopicLimitsPatch) -> Result<(), String> {
    if let Some(Some(n)) = p.concurrency {
        check_limit("concurrency", n)?;
    }
    if let Some(Some(n)) = p.group_concurrency {
        check_limit("group_concurrency", n)?;
    }
    if let Some(Some(r)) = p.rate_limit {
        check_rate_limit("rate_limit", r)?;
    }
    if let Some(Some(r)) = p.group_rate_limit {
        check_rate_limit("group_rate_limit", r)?;
    }
    Ok(())
}

/// The stored overrides by topic, and when they were read (`None`: read them again).
type OverridesView = (Arc<BTreeMap<String, TopicLimits>>, Option<Instant>);

/// This process's view of the limits: the job types' defaults and the stored overrides.
#[derive(Default)]
pub(crate) struct LimitsState {
    defaults: Mutex<Arc<BTreeMap<String, TopicLimits>>>,
    overrides: Mutex<OverridesView>,
    generation: AtomicU64,
    reading: tokio::sync::Mutex<()>,
}

impl LimitsState {
    fn overrides(&self) -> std::sync::MutexGuard<'_, OverridesView> {
        self.overrides.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn defaults(&self) -> Arc<BTreeMap<String, TopicLimits>> {
        self.defaults.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_override(&self, topic: &str, limits: TopicLimits) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut state = self.overrides();
        let mut map = (*state.0).clone();
        if limits.is_empty() {
            map.remove(topic);
        } else {
            map.insert(topic.to_owned(), limits);
        }
        state.0 = Arc::new(map);
    }

    /// Forget when the store was last read (the next look reads it).
    pub(crate) fn mark_unread(&self) {
        self.overrides().1 = None;
    }

    fn in_force(&self, topic: &str) -> TopicLimits {
        let defaults = self.defaults().get(topic).copied().unwrap_or_default();
        let overrides = self.overrides().0.get(topic).copied().unwrap_or_default();
        LimitsInForce::merge(&defaults, &overrides).values()
    }
}

impl Queue {
    /// Register the job types' default limits by topic (the app does this once at start,
    /// from its [`crate::QueueHandler`]s' [`crate::QueueHandler::limits`]); topics whose
    /// defaults are empty are left out.
    pub fn set_limit_defaults(&self, defaults: impl IntoIterator<Item = (String, TopicLimits)>) {
        let map: BTreeMap<String, TopicLimits> = defaults.into_iter().filter(|(_, l)| !l.is_empty()).collect();
        *self.limits_state().defaults.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }

    /// The limits in force for `topic` as this process knows them (no store read: at most
    /// [`crate::TOPIC_CONTROL_POLL_INTERVAL`] old where no notification reaches the process).
    pub fn limits_in_force_known(&self, topic: &str) -> TopicLimits {
        self.limits_state().in_force(topic)
    }

    /// The job type's default limits for `topic` ([`Queue::set_limit_defaults`]).
    pub fn limit_defaults_known(&self, topic: &str) -> TopicLimits {
        self.limits_state().defaults().get(topic).copied().unwrap_or_default()
    }

    /// The operator's overrides for `topic` as this process knows them (no defaults merged).
    pub fn limit_overrides_known(&self, topic: &str) -> TopicLimits {
        self.limits_state().overrides().0.get(topic).copied().unwrap_or_default()
    }

    /// Apply a patch to `topic`'s overrides (validated: see [`check_patch`]) and return the
    /// topic's limits now: in force on this process at once, on every other within a second.
    pub async fn set_limits(&self, topic: &str, patch: TopicLimitsPatch) -> Result<TopicLimitsView, QueueError> {
        check_topic(topic)?;
        check_patch(&patch).map_err(QueueError::Invalid)?;
        let now = self.clock().now();
        // A group limit needs the topic's deliveries keyed by group before any process claims
        // under it: group the subscriptions first, then store the override others will read.
        if matches!(patch.group_concurrency, Some(Some(_))) || matches!(patch.group_rate_limit, Some(Some(_))) {
            let p = crate::store::SubscriptionGroupTopicParams { topic: topic.to_owned(), now };
            self.store().subscription_group_topic(p).await?;
        }
        let row = self.store().topic_limits_set(TopicLimitsSetParams { topic: topic.to_owned(), patch, now }).await?;
        self.limits_state().set_override(topic, row.overrides);
        self.wake();
        tracing::info!(queue.name = topic, limits = ?row.overrides, "topic limits changed");
        Ok(self.limits_view(topic, row.overrides))
    }

    /// Remove every override of `topic` (its defaults apply again).
    pub async fn clear_limits(&self, topic: &str) -> Result<TopicLimitsView, QueueError> {
        let all = TopicLimitsPatch {
            concurrency: Some(None),
            rate_limit: Some(None),
            group_concurrency: Some(None),
            group_rate_limit: Some(None),
        };
        self.set_limits(topic, all).await
    }

    /// Every topic with a default or an override, read from the store now.
    pub async fn limits(&self) -> Result<Vec<TopicLimitsView>, QueueError> {
        let stored = self.read_topic_limits().await?;
        let mut topics: BTreeMap<String, TopicLimits> =
            self.limits_state().defaults().keys().map(|t| (t.clone(), TopicLimits::default())).collect();
        for row in stored {
            topics.insert(row.topic, row.overrides);
        }
        Ok(topics.into_iter().map(|(topic, overrides)| self.limits_view(&topic, overrides)).collect())
    }

    /// One topic's limits (defaults, overrides, in force), read from the store now.
    pub async fn topic_limits(&self, topic: &str) -> Result<TopicLimitsView, QueueError> {
        check_topic(topic)?;
        let stored = self.read_topic_limits().await?;
        let overrides = stored.into_iter().find(|r| r.topic == topic).map(|r| r.overrides).unwrap_or_default();
        Ok(self.limits_view(topic, overrides))
    }

    /// Whether the overrides were read since the notification channel (re)connected.
    pub(crate) fn limits_read(&self) -> bool {
        self.limits_state().overrides().1.is_some()
    }

    fn limits_view(&self, topic: &str, overrides: TopicLimits) -> TopicLimitsView {
        let defaults = self.limits_state().defaults().get(topic).copied().unwrap_or_default();
        TopicLimitsView {
            topic: topic.to_owned(),
            defaults,
            overrides,
            in_force: LimitsInForce::merge(&defaults, &overrides),
        }
    }

    /// Read the overrides from the store and make them this process's view.
    pub(crate) async fn read_topic_limits(&self) -> Result<Vec<TopicLimitsRow>, QueueError> {
        let state = self.limits_state();
        let _one = state.reading.lock().await;
        let generation = state.generation.load(Ordering::SeqCst);
        let stored = self.store().topic_limits_list().await?;
        let mut view = state.overrides();
        if state.generation.load(Ordering::SeqCst) == generation {
            view.0 = Arc::new(stored.iter().map(|r| (r.topic.clone(), r.overrides)).collect());
            view.1 = Some(Instant::now());
        } else {
            view.1 = None;
        }
        Ok(stored)
    }

    /// Why a due delivery of `topic` for `consumer_group` is not starting because of a limit
    /// in force (as stored), as the dispatcher's claim applies them to `consumer` (the
    /// trigger consuming it in this app, if any): `"concurrency"` when the group has as many
    /// live leases as its limit — the topic's `concurrency`, else the trigger's
    /// `maxConcurrency` — and `"rate_limit"` when the group's bucket for the topic allows no
    /// start now. A wildcard consumer (`prefix*`) keeps only its trigger's `maxConcurrency`
    /// (limits are per topic). Derived on each call, never stored.
    pub async fn limit_held(
        &self,
        topic: &str,
        consumer_group: &str,
        consumer: Option<&crate::ConsumerConfig>,
    ) -> Result<Option<&'static str>, QueueError> {
        let trigger_max = consumer.and_then(|c| c.global_max_concurrency);
        let limits = if consumer.is_some_and(|c| c.topic_pattern.ends_with('*')) {
            TopicLimits::default()
        } else {
            self.topic_limits(topic).await?.in_force.values()
        };
        let now = self.clock().now();
        if let Some(max) = limits.concurrency.or(trigger_max) {
            let p = DeliveryLeasedCountParams { consumer_group: consumer_group.to_owned(), now };
            if self.store().delivery_leased_count(p).await? >= i64::from(max) {
                return Ok(Some("concurrency"));
            }
        }
        if let Some(rate) = limits.rate_limit {
            let p = RateBucketGetParams { consumer_group: consumer_group.to_owned(), topic: topic.to_owned() };
            let tat = self.store().rate_bucket_get(p).await?;
            if crate::store_support::rate_room(rate, tat, now.timestamp_micros()) == 0 {
                return Ok(Some("rate_limit"));
            }
        }
        Ok(None)
    }

    /// For a push this process did not lease (Vercel's): take a start from the topic's rate
    /// bucket for `consumer_group` when a rate limit is in force. `None`: go ahead (taken,
    /// or no rate limit); `Some(s)`: defer it by `s` seconds (at least 1, at most the
    /// period and an hour), nothing taken. The limits are this process's view (at most a second old).
    pub async fn rate_limit_take(&self, topic: &str, consumer_group: &str) -> Result<Option<u32>, QueueError> {
        self.refresh_limits_if_stale().await?;
        let Some(rate) = self.limits_in_force_known(topic).rate_limit else { return Ok(None) };
        let p = RateBucketTakeParams {
            consumer_group: consumer_group.to_owned(),
            topic: topic.to_owned(),
            rate,
            now: self.clock().now(),
        };
        Ok(self.store().rate_bucket_take(p).await?.map(|wait_us| {
            let secs = (wait_us + 999_999) / 1_000_000;
            // Never past the period, nor past the longest lease a queue service grants.
            u32::try_from(secs)
                .unwrap_or(u32::MAX)
                .clamp(1, rate.period_seconds.clamp(1, crate::MAX_VISIBILITY_SECONDS))
        }))
    }

    /// Give back the start a delivery of message `message_id` of `topic` in `consumer_group`
    /// took from its rate buckets (SPEC.md, "Flow control": a snooze does not count as a
    /// start): the topic's bucket when a rate limit is in force for `topic`, and, when `group`
    /// is given, the message group's bucket under the group rate limit in force (an operator's
    /// override, else `group_default`). `group` is `Some(Some(key))` for a push this process
    /// did not lease (the key [`Queue::group_start`] took the start for), `Some(None)` for a
    /// local lease (the delivery's own key, as the grouped claim used it), `None` to leave
    /// the group's bucket alone. The limits are this process's view; see
    /// [`crate::QueueStore::rate_bucket_credit`].
    pub async fn rate_start_return(
        &self,
        topic: &str,
        consumer_group: &str,
        message_id: &str,
        group: Option<Option<&str>>,
        group_default: Option<RateLimit>,
    ) -> Result<(), QueueError> {
        let rate = self.limits_in_force_known(topic).rate_limit;
        let group_rate = group.and_then(|_| self.limit_overrides_known(topic).group_rate_limit.or(group_default));
        if rate.is_none() && group_rate.is_none() {
            return Ok(());
        }
        let p = crate::store::RateBucketCreditParams {
            consumer_group: consumer_group.to_owned(),
            topic: topic.to_owned(),
            message_id: message_id.to_owned(),
            rate,
            group_key: group.flatten().map(str::to_owned),
            group_rate,
        };
        Ok(self.store().rate_bucket_credit(p).await?)
    }

    /// Read the overrides again when this process has no listener and its copy is older than
    /// the poll (the Vercel functions), before a push this process did not lease is checked.
    pub(crate) async fn refresh_limits_if_stale(&self) -> Result<(), QueueError> {
        if !self.limits_read() || !self.control_notifications() {
            let fresh =
                self.limits_state().overrides().1.is_some_and(|at| at.elapsed() < crate::TOPIC_CONTROL_POLL_INTERVAL);
            if !fresh {
                self.read_topic_limits().await?;
            }
        }
        Ok(())
    }

    /// A limits change announced by another process (a backend's notification listener calls
    /// this with the topic after `limits:`): the overrides are read again at once.
    pub async fn notice_topic_limits(&self, topic: &str) {
        tracing::debug!(queue.name = topic, "topic limits changed elsewhere");
        self.limits_state().mark_unread();
        if let Err(e) = self.read_topic_limits().await {
            tracing::warn!(error = %e, "could not read the topic limits; the poll will try again");
        }
        self.wake();
    }
}

/// Refuse a topic name that is not storable or not a valid name, saying what a topic may be.
pub(crate) fn check_topic(topic: &str) -> Result<(), QueueError> {
    check_storable("topic", topic)?;
    if !is_valid_name(topic) {
        return Err(QueueError::Invalid(format!(
            "invalid topic {topic:?}: use letters, digits, '-' and '_' only, at most {} bytes",
            crate::MAX_KEY_BYTES
        )));
    }
    Ok(())
}
