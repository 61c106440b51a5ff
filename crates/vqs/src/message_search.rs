//! An operator's search: the message an id or an idempotency key names.

use crate::store::{MessageGetParams, MessageKeyLookupParams, MessageRecord};
use crate::{MAX_IDEMPOTENCY_KEY_LEN, Queue, QueueError, check_storable};

/// Messages one search returns at most.
pub const SEARCH_LIMIT: u32 = 20;

impl Queue {
    /// The messages `query` names: the message of that id (`msg_…`), and those of any topic
    /// holding it as their idempotency key (finished ones too, while kept), newest first, at
    /// most [`SEARCH_LIMIT`]. An empty query, one with a NUL or one longer than any id or key is
    /// refused ([`QueueError::Invalid`]).
    pub async fn search_messages(&self, query: &str) -> Result<Vec<MessageRecord>, QueueError> {
        let q = query.trim();
        if q.is_empty() || q.chars().count() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(QueueError::Invalid(format!(
                "search for a message id (msg_…) or an idempotency key: 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
            )));
        }
        check_storable("search", q)?;
        let mut found = Vec::new();
        if let Some(m) = self.store().message_get(MessageGetParams { id: q.to_owned() }).await? {
            found.push(m);
        }
        let keyed =
            self.store().message_ids_by_key(MessageKeyLookupParams { key: q.to_owned(), limit: SEARCH_LIMIT }).await?;
        for id in keyed {
            if found.len() >= SEARCH_LIMIT as usize {
                break;
            }
            if found.iter().any(|m| m.id == id) {
                continue;
            }
            // Gone between the two reads (pruned): skipped.
            if let Some(m) = self.store().message_get(MessageGetParams { id }).await? {
                found.push(m);
            }
        }
        Ok(found)
    }
}
