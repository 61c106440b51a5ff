//! Pausing one message group of a topic (SPEC.md, "Flow control": `.../pause?group=G`):
//! while it is paused, the topic's messages of that group stay waiting — publishing works,
//! jobs already running finish, the topic's other groups go on — until it is resumed.
//!
//! The state lives in the store (`group_pauses`, [`QueueStore::group_pause_set`]) and the
//! claim reads it in the same statement, so a pause holds on every process at once. A
//! grouped consumer group skips a paused group in its ready set (the group's backlog is not
//! read). Pausing a group first makes the topic's subscriptions grouped (their live
//! deliveries re-keyed once, as a group limit does), and a grouped consumer group with no
//! group limit claims through its ready set, with no limit per group, while a group of its
//! topic is paused: so no claim reads a paused group's backlog. A push this process did not
//! lease (Vercel's) of a paused group's message is deferred by [`crate::PAUSED_DEFER`], like
//! a paused topic's.
//!
//! Each process also keeps the paused groups in memory, as it does the paused topics
//! (`topic_pause.rs`: set at once by a pause here, by `NOTIFY vqs_control` —
//! `gpause:<topic>/<group>`, `gresume:…` — on PostgreSQL, else read once every
//! [`crate::TOPIC_CONTROL_POLL_INTERVAL`]), for one check the claim cannot make: a lease
//! already in a dispatcher's buffer when its group is paused is given back unrun.
//!
//! [`QueueStore::group_pause_set`]: crate::QueueStore::group_pause_set

use crate::store::{GroupPause, GroupPauseListParams, GroupPauseSetParams};
use crate::topic_limits::check_topic;
use crate::{Queue, QueueError, check_group_key};

/// The most paused groups one list returns (the admin API and the dashboard page them by topic).
pub const MAX_PAUSED_GROUPS_LISTED: u32 = 1000;

impl Queue {
    /// Pause one message group of `topic`: nothing of it starts until [`Queue::resume_group`],
    /// on every process at once. Idempotent (the first pause's time is kept).
    ///
    /// The first pause in a topic makes its subscriptions (those to exactly `topic`) grouped:
    /// their live deliveries take their message's group key once, in the database (for a
    /// large backlog this is the pause's cost), so that claims skip the paused group in the
    /// ready set instead of reading past its backlog.
    pub async fn pause_group(&self, topic: &str, group: &str) -> Result<GroupPause, QueueError> {
        check_topic(topic)?;
        check_group_key(group)?;
        // Keyed before the pause is stored: a claim that sees the pause finds the topic's
        // deliveries in their groups.
        let p = crate::store::SubscriptionGroupTopicParams { topic: topic.to_owned(), now: self.clock().now() };
        self.store().subscription_group_topic(p).await?;
        let paused = self.set_group_paused(topic, group, true).await?;
        paused.ok_or_else(|| QueueError::Invalid("the store did not keep the pause".into()))
    }

    /// Resume a paused message group: its waiting messages start in due order. Idempotent;
    /// `true` when it was paused.
    pub async fn resume_group(&self, topic: &str, group: &str) -> Result<bool, QueueError> {
        let was = self.set_group_paused(topic, group, false).await?.is_some();
        if was {
            self.wake();
        }
        Ok(was)
    }

    async fn set_group_paused(&self, topic: &str, group: &str, paused: bool) -> Result<Option<GroupPause>, QueueError> {
        check_topic(topic)?;
        check_group_key(group)?;
        let p = GroupPauseSetParams {
            topic: topic.to_owned(),
            group_key: group.to_owned(),
            paused,
            now: self.clock().now(),
        };
        let out = self.store().group_pause_set(p).await?;
        if self.paused_groups_view().set(&view_key(topic, group), out.is_some() && paused) {
            self.wake();
        }
        tracing::info!(
            queue.name = topic,
            queue.group = group,
            paused,
            "message group {}",
            if paused { "paused" } else { "resumed" }
        );
        Ok(out)
    }

    /// Is `group` of `topic` paused as this process knows it, without asking the store (at
    /// most [`crate::TOPIC_CONTROL_POLL_INTERVAL`] old where no notification reaches the
    /// process; of the first [`MAX_PAUSED_GROUPS_LISTED`] paused groups when read from the
    /// store)? The dispatcher asks it of each lease it takes from its buffer.
    pub fn group_paused_known(&self, topic: &str, group: &str) -> bool {
        let view = self.paused_groups_view().snapshot();
        !view.is_empty() && view.contains(&view_key(topic, group))
    }

    /// Read the paused message groups from the store now (the first
    /// [`MAX_PAUSED_GROUPS_LISTED`]); the dispatchers are woken when one was resumed.
    pub async fn read_paused_groups(&self) -> Result<(), QueueError> {
        let read = async {
            let p = GroupPauseListParams { topic: None, group_key: None, limit: MAX_PAUSED_GROUPS_LISTED };
            let listed = self.store().group_pause_list(p).await?;
            Ok(listed.iter().map(|g| view_key(&g.topic, &g.group_key)).collect())
        };
        if self.paused_groups_view().read_from(read).await? {
            self.wake();
        }
        Ok(())
    }

    /// A pause or resume of a message group announced by another process (a backend's
    /// notification listener calls this with the payload after `gpause:` / `gresume:`,
    /// `<topic>/<group>`).
    pub fn notice_group_control(&self, topic_and_group: &str, paused: bool) {
        if topic_and_group.contains('/') && self.paused_groups_view().set(topic_and_group, paused) {
            self.wake();
        }
    }

    /// Is `group` of `topic` paused (as stored)?
    pub async fn group_paused(&self, topic: &str, group: &str) -> Result<bool, QueueError> {
        let p = GroupPauseListParams { topic: Some(topic.to_owned()), group_key: Some(group.to_owned()), limit: 1 };
        Ok(!self.store().group_pause_list(p).await?.is_empty())
    }

    /// The paused message groups of `topic` (every topic's with `None`), ordered by topic
    /// then group, at most [`MAX_PAUSED_GROUPS_LISTED`].
    pub async fn paused_groups(&self, topic: Option<&str>) -> Result<Vec<GroupPause>, QueueError> {
        if let Some(t) = topic {
            check_topic(t)?;
        }
        let p =
            GroupPauseListParams { topic: topic.map(str::to_owned), group_key: None, limit: MAX_PAUSED_GROUPS_LISTED };
        Ok(self.store().group_pause_list(p).await?)
    }

    /// True when some message group of a topic `pattern` covers (`name` or `prefix*`) is
    /// paused: a claim that came back short may have skipped it.
    pub(crate) async fn pattern_has_paused_group(&self, pattern: &str) -> Result<bool, QueueError> {
        let listed = self
            .store()
            .group_pause_list(GroupPauseListParams {
                topic: (!pattern.ends_with('*')).then(|| pattern.to_owned()),
                group_key: None,
                limit: MAX_PAUSED_GROUPS_LISTED,
            })
            .await?;
        Ok(match pattern.strip_suffix('*') {
            Some(prefix) => listed.iter().any(|g| g.topic.starts_with(prefix)),
            None => !listed.is_empty(),
        })
    }
}

/// A paused group in this process's view: `topic/group` (a topic name has no `/`, so the
/// first one splits it).
fn view_key(topic: &str, group: &str) -> String {
    format!("{topic}/{group}")
}
