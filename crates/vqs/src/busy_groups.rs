//! The busiest message groups of a topic (SPEC.md, "Flow control": the admin API shows
//! running per group for the busiest groups): for each grouped consumer group of the topic,
//! the groups with the most live leases, then those with work waiting, each with its
//! running and waiting counts and why it is held. Read through indexes at every refresh
//! ([`crate::QueueStore::flow_group_busiest`]): the live leases, the ready groups and each
//! listed group's own slice, its waiting rows counted up to [`MAX_GROUP_WAITING_COUNTED`] —
//! never the whole backlog.

use serde::Serialize;

use crate::store::FlowGroupBusiestParams;
use crate::topic_limits::check_topic;
use crate::{Queue, QueueError};

/// The most groups listed per topic.
pub const BUSIEST_GROUPS_LISTED: u32 = 10;

/// A group's waiting deliveries are counted up to this many (`waiting_more` says there are more).
pub const MAX_GROUP_WAITING_COUNTED: u32 = 1000;

/// One message group's live work in one consumer group of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLoad {
    /// The message group (its key).
    pub group: String,
    /// The consumer group (one of the topic's grouped subscribers) the counts are for.
    pub consumer_group: String,
    /// Deliveries of the group running now: leased (not expired), or pushed by Vercel and
    /// holding one of the group's slots (not expired).
    pub running: u32,
    /// Deliveries of the group waiting (pending, due or not), at most [`MAX_GROUP_WAITING_COUNTED`].
    pub waiting: u32,
    /// More are waiting than `waiting` says.
    pub waiting_more: bool,
    /// Why the group's waiting deliveries do not start, when they wait because of the group:
    /// `"paused"` (the group is paused), `"group_concurrency"` (as many running as its group
    /// concurrency), `"rate_limit"` (its group rate bucket allows no start now); `None` otherwise.
    pub held: Option<&'static str>,
}

impl Queue {
    /// The busiest message groups of `topic` (at most [`BUSIEST_GROUPS_LISTED`]): most
    /// running first, then most waiting; empty when no consumer group claims it grouped.
    pub async fn busiest_groups(&self, topic: &str) -> Result<Vec<GroupLoad>, QueueError> {
        check_topic(topic)?;
        let now = self.clock().now();
        let p = FlowGroupBusiestParams {
            topic: topic.to_owned(),
            limit: BUSIEST_GROUPS_LISTED,
            waiting_cap: MAX_GROUP_WAITING_COUNTED + 1,
            now,
        };
        let loads = self.store().flow_group_busiest(p).await?;
        let limits = self.limits_in_force_known(topic);
        let now_us = now.timestamp_micros();
        let mut out = Vec::with_capacity(loads.len());
        for l in loads {
            let held = if l.waiting == 0 {
                None
            } else if self.group_paused(topic, &l.group_key).await? {
                Some("paused")
            } else if limits.group_concurrency.or(l.concurrency).is_some_and(|n| l.running >= n) {
                Some("group_concurrency")
            } else if let Some(r) = limits.group_rate_limit
                && crate::store_support::group_rate_after(r, l.tat_us, now_us, 0).1.is_some()
            {
                Some("rate_limit")
            } else {
                None
            };
            out.push(GroupLoad {
                group: l.group_key,
                consumer_group: l.consumer_group,
                running: l.running,
                waiting: l.waiting.min(MAX_GROUP_WAITING_COUNTED),
                waiting_more: l.waiting > MAX_GROUP_WAITING_COUNTED,
                held,
            });
        }
        Ok(out)
    }
}
