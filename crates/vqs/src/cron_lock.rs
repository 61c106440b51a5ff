//! A named lock with a TTL, for cron handlers: take it at the start of a run, skip the tick
//! when another run holds it. Released when the run ends; expires by itself if the run dies.

use std::time::Duration;

use crate::store::CronLockParams;
use crate::{Queue, QueueError};

/// A held lock. Call [`CronLock::release`] when done; dropping it releases it in the
/// background too. If the process dies, the lock expires after its TTL.
#[derive(Debug)]
pub struct CronLock {
    queue: Queue,
    name: String,
    owner: String,
    released: bool,
}

impl Queue {
    /// Take the lock `name` for at most `ttl`. `None` when another run holds it: skip this tick.
    ///
    /// ```no_run
    /// # async fn handler(queue: vqs::Queue) -> Result<(), vqs::QueueError> {
    /// let Some(lock) = queue.cron_lock("nightly-export", std::time::Duration::from_secs(900)).await? else {
    ///     return Ok(()); // the previous run is still going
    /// };
    /// // … enqueue the work …
    /// lock.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn cron_lock(&self, name: &str, ttl: Duration) -> Result<Option<CronLock>, QueueError> {
        crate::check_storable("lock name", name)?;
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let taken = self
            .store()
            .cron_lock_acquire(CronLockParams {
                name: name.to_owned(),
                owner: owner.clone(),
                ttl_seconds: ttl.as_secs().clamp(1, u64::from(u32::MAX)) as u32,
                now: self.clock().now(),
            })
            .await?;
        Ok(taken.then(|| CronLock { queue: self.clone(), name: name.to_owned(), owner, released: false }))
    }
}

impl CronLock {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Release the lock now.
    pub async fn release(mut self) -> Result<(), QueueError> {
        self.released = true;
        self.queue.store().cron_lock_release(&self.name, &self.owner).await?;
        Ok(())
    }
}

impl Drop for CronLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (queue, name, owner) =
                (self.queue.clone(), std::mem::take(&mut self.name), std::mem::take(&mut self.owner));
            rt.spawn(async move {
                let _ = queue.store().cron_lock_release(&name, &owner).await;
            });
        }
    }
}
