//! Dead letters by group: the operator's bulk retry or discard of every dead letter of one
//! topic that failed the same way ([`crate::store::dead_letter_fingerprint`]).

use crate::store::{DEAD_LETTER_FINGERPRINT_CHARS, DeadLetterGroup, DeadLetterGroupIdsParams, DeadLetterGroupsParams};
use crate::{Queue, QueueError, StoreError, check_storable};

/// Dead letters one page of a bulk action reads and settles.
pub const DEAD_LETTER_BATCH: u32 = 100;

/// What a bulk action does to each dead letter of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterGroupAction {
    /// Publish it again ([`Queue::dead_letter_replay`]).
    Replay,
    /// Remove it for good ([`Queue::dead_letter_discard`]).
    Discard,
}

impl Queue {
    /// Dead letters grouped by topic and error fingerprint, the largest groups first, at
    /// most `limit` groups.
    pub async fn dead_letter_groups(&self, limit: u32) -> Result<Vec<DeadLetterGroup>, QueueError> {
        Ok(self.store().dead_letter_groups(DeadLetterGroupsParams { limit }).await?)
    }

    /// Replay or discard every dead letter of the group `(topic, error)` that exists when the
    /// call begins, [`DEAD_LETTER_BATCH`] at a time, each through the same one-winner
    /// settlement as a single action: of concurrent bulk (or single) actions each dead letter
    /// is acted on once, by whichever call got it. Returns how many this call acted on.
    /// `error` is the group's fingerprint as [`Queue::dead_letter_groups`] lists it.
    pub async fn dead_letter_group_act(
        &self,
        topic: &str,
        error: &str,
        action: DeadLetterGroupAction,
    ) -> Result<u64, QueueError> {
        if topic.is_empty() {
            return Err(QueueError::Invalid("empty topic: name the topic of the dead-letter group".into()));
        }
        check_storable("topic", topic)?;
        check_storable("error", error)?;
        if error.chars().count() > DEAD_LETTER_FINGERPRINT_CHARS || error.contains('\n') {
            return Err(QueueError::Invalid(format!(
                "invalid error: a group's error is one line of at most {DEAD_LETTER_FINGERPRINT_CHARS} characters, \
                 as the list of groups shows it"
            )));
        }
        let page = |after_id, through_id| DeadLetterGroupIdsParams {
            topic: topic.to_owned(),
            error: error.to_owned(),
            after_id,
            through_id,
            limit: DEAD_LETTER_BATCH,
        };
        // The newest dead letter now bounds the action: one that arrives meanwhile is left.
        let through = self.dead_letters(1).await?.first().map_or(0, |d| d.id);
        let mut after = 0;
        let mut acted = 0;
        loop {
            let ids = self.store().dead_letter_group_ids(page(after, through)).await?;
            let Some(&last) = ids.last() else { break };
            for id in ids {
                let r = match action {
                    DeadLetterGroupAction::Replay => self.dead_letter_replay(id).await.map(|_| ()),
                    DeadLetterGroupAction::Discard => self.dead_letter_discard(id).await,
                };
                match r {
                    Ok(()) => acted += 1,
                    // Another call (a concurrent bulk action) took it first.
                    Err(QueueError::Conflict(_) | QueueError::Store(StoreError::NotFound(_))) => {}
                    Err(e) => return Err(e),
                }
            }
            after = last;
        }
        if acted > 0 {
            tracing::info!(queue.name = %topic, acted, ?action, "dead-letter group settled");
        }
        Ok(acted)
    }
}
