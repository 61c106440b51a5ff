//! Message-group limits on pushes this process did not lease (Vercel's, SPEC.md "Flow
//! control"): the grouped claim enforces group concurrency and group rate limits locally;
//! a push the platform made of a message of a group is checked here instead. A start is
//! taken from the group's rate bucket (the claim's own, `flow_groups.tat_us`) and, under a
//! group concurrency, one of the group's slots is held (keyed by the message id, expiring
//! with the push's lease so a killed function's slot frees itself) until the push settles.
//! Over a limit the push is deferred ([`crate::QueueService::retry_after`]): no attempt, no
//! execution. [`crate::QueueStore::flow_group_start`] does it atomically per group.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{FlowGroupSlotReleaseParams, FlowGroupStart, FlowGroupStartParams};
use crate::{Queue, QueueError, RateLimit};

/// How long a push of a full message group is deferred before it is tried again.
pub const GROUP_FULL_DEFER: Duration = Duration::from_secs(5);

/// What [`Queue::group_start`] decided for a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStart {
    /// Run it (holding a slot when `slot`: release it with [`Queue::group_slot_release`]).
    Started {
        /// A slot is held (the group has a concurrency): release it when the push settles.
        slot: bool,
    },
    /// Deferred: `held` is `"group_concurrency"` or `"rate_limit"`.
    Held {
        /// Why: `"group_concurrency"` or `"rate_limit"`.
        held: &'static str,
        /// Seconds to defer the push by.
        after_seconds: u32,
    },
}

impl Queue {
    /// Take a start of message group `group` of `topic` for a push of `message_id` in
    /// `consumer_group` that this process did not lease, under the group limits in force (an
    /// operator's override, else the job type's `defaults`); the slot, if any, is held until
    /// `slot_until` at most.
    pub async fn group_start(
        &self,
        topic: &str,
        consumer_group: &str,
        group: &str,
        message_id: &str,
        defaults: (Option<u32>, Option<RateLimit>),
        slot_until: DateTime<Utc>,
    ) -> Result<GroupStart, QueueError> {
        self.refresh_limits_if_stale().await?;
        let o = self.limit_overrides_known(topic);
        let (concurrency, rate) = (o.group_concurrency.or(defaults.0), o.group_rate_limit.or(defaults.1));
        if concurrency.is_none() && rate.is_none() {
            return Ok(GroupStart::Started { slot: false });
        }
        let p = FlowGroupStartParams {
            consumer_group: consumer_group.to_owned(),
            group_key: group.to_owned(),
            message_id: message_id.to_owned(),
            concurrency,
            rate,
            slot_until,
            now: self.clock().now(),
        };
        Ok(match self.store().flow_group_start(p).await? {
            FlowGroupStart::Started => GroupStart::Started { slot: concurrency.is_some() },
            FlowGroupStart::Full => {
                GroupStart::Held { held: "group_concurrency", after_seconds: GROUP_FULL_DEFER.as_secs() as u32 }
            }
            FlowGroupStart::RateLimited { wait_us } => {
                let secs = u32::try_from((wait_us + 999_999) / 1_000_000).unwrap_or(u32::MAX);
                let period = rate.map_or(1, |r| r.period_seconds);
                GroupStart::Held {
                    held: "rate_limit",
                    after_seconds: secs.clamp(1, period.clamp(1, crate::MAX_VISIBILITY_SECONDS)),
                }
            }
        })
    }

    /// Free the slot [`Queue::group_start`] took for the push of `message_id`.
    pub async fn group_slot_release(
        &self,
        consumer_group: &str,
        group: &str,
        message_id: &str,
    ) -> Result<(), QueueError> {
        let p = FlowGroupSlotReleaseParams {
            consumer_group: consumer_group.to_owned(),
            group_key: group.to_owned(),
            message_id: message_id.to_owned(),
            now: self.clock().now(),
        };
        Ok(self.store().flow_group_slot_release(p).await?)
    }
}
