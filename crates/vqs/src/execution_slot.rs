//! One of a consumer group's `maxConcurrency` execution slots, lent by the local dispatcher
//! to a push and given back by the consumer as soon as the job's code is done.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit};

/// The execution slot an in-process push holds: the seam between the local dispatcher (which
/// lends it) and the consumer (which gives it back).
///
/// The dispatcher puts it on the push ([`crate::Delivery::execution_slot`]); a transport that
/// stays in the process carries it along (the web app, as a request extension of its
/// `router.oneshot` push); the consumer ([`crate::QueueHandler`]) calls [`release`] the
/// moment the job's code is done, *before* its settlement (closing the execution,
/// acknowledging) is written. So `maxConcurrency` bounds jobs *running*, as on Vercel, and a
/// group's settlements are written in large batches instead of one small batch per slot.
/// The dispatcher releases it too when the push returns (a push over HTTP, or one that never
/// reached a job, carries no slot to the consumer); releasing twice is a no-op.
///
/// [`release`]: ExecutionSlot::release
#[derive(Clone)]
pub struct ExecutionSlot {
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    /// Wakes the dispatcher's loop of the consumer group: a slot is free.
    freed: Arc<Notify>,
}

impl ExecutionSlot {
    pub(crate) fn new(permit: OwnedSemaphorePermit, freed: Arc<Notify>) -> Self {
        ExecutionSlot { permit: Arc::new(Mutex::new(Some(permit))), freed }
    }

    /// Give the slot back to the dispatcher: the next message of the group may start now.
    /// The first call frees it; later calls (and clones' calls) do nothing.
    pub fn release(&self) {
        if let Ok(mut slot) = self.permit.lock()
            && slot.take().is_some()
        {
            self.freed.notify_one();
        }
    }

    /// Whether [`ExecutionSlot::release`] was called (on this slot or a clone of it).
    pub fn is_released(&self) -> bool {
        self.permit.lock().map(|p| p.is_none()).unwrap_or(true)
    }
}

impl std::fmt::Debug for ExecutionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionSlot").field("released", &self.is_released()).finish()
    }
}

/// Two handles are equal when they are the same slot (clones of one another).
impl PartialEq for ExecutionSlot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.permit, &other.permit)
    }
}
