//! A named lock with a TTL, for cron handlers: take it at the start of a run, skip the tick
//! when another run holds it. Released when the run ends; extended while the run is alive;
//! expires by itself if the run dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::{CronLockParams, CronLockReleaseParams};
use crate::{Queue, QueueError};

/// A held lock. Call [`CronLock::release`] when done; dropping it releases it in the
/// background too. While the guard lives, a background task extends the lock by its TTL
/// every third of the TTL, so a run that outlives its TTL keeps it; if the process dies the
/// extensions stop and the lock expires after its TTL. A lock found taken by another run (it
/// expired while this process could not reach the database) is *lost*: the task logs it
/// and stops, [`CronLock::is_lost`] turns true, and [`CronLock::extend`] answers `false`.
#[derive(Debug)]
pub struct CronLock {
    queue: Queue,
    name: String,
    owner: String,
    released: bool,
    lost: Arc<AtomicBool>,
    keeper: Option<JoinHandle<()>>,
}

/// How often a held lock of `ttl` is extended: a third of its TTL (at least 100 ms), so two
/// extensions can fail before it expires.
fn extend_every(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(100))
}

fn ttl_seconds(ttl: Duration) -> u32 {
    ttl.as_secs().clamp(1, u64::from(u32::MAX)) as u32
}

/// Extend `owner`'s lock `name` by `ttl`; `Ok(false)` when it is no longer held (lost).
async fn extend_lock(queue: &Queue, name: &str, owner: &str, ttl: Duration) -> Result<bool, QueueError> {
    let p = CronLockParams {
        name: name.to_owned(),
        owner: owner.to_owned(),
        ttl_seconds: ttl_seconds(ttl),
        now: queue.clock().now(),
    };
    Ok(queue.store().cron_lock_extend(p).await?)
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
                ttl_seconds: ttl_seconds(ttl),
                now: self.clock().now(),
            })
            .await?;
        if !taken {
            return Ok(None);
        }
        let lost = Arc::new(AtomicBool::new(false));
        let keeper = {
            let (queue, name, owner, lost) = (self.clone(), name.to_owned(), owner.clone(), lost.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(extend_every(ttl)).await;
                    match extend_lock(&queue, &name, &owner, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            tracing::warn!(
                                cron.lock = %name,
                                "cron lock lost: it expired and another run may hold it; this run no longer excludes others"
                            );
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(cron.lock = %name, error = %e, "extending the cron lock failed; retrying")
                        }
                    }
                }
            })
        };
        Ok(Some(CronLock {
            queue: self.clone(),
            name: name.to_owned(),
            owner,
            released: false,
            lost,
            keeper: Some(keeper),
        }))
    }
}

impl CronLock {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hold the lock until `ttl` from now (the automatic extensions go on with the TTL it was
    /// taken with). `Ok(false)` when it is lost: it expired and another run took it, or it
    /// was removed; the caller should stop the work the lock guards.
    pub async fn extend(&self, ttl: Duration) -> Result<bool, QueueError> {
        if self.is_lost() {
            return Ok(false);
        }
        let held = extend_lock(&self.queue, &self.name, &self.owner, ttl).await?;
        if !held {
            self.lost.store(true, Ordering::SeqCst);
        }
        Ok(held)
    }

    /// True once an extension found the lock taken by another run (or removed).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Release the lock now.
    pub async fn release(mut self) -> Result<(), QueueError> {
        self.released = true;
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
        self.queue
            .store()
            .cron_lock_release(CronLockReleaseParams { name: self.name.clone(), owner: self.owner.clone() })
            .await?;
        Ok(())
    }
}

impl Drop for CronLock {
    fn drop(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
        if self.released {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (queue, name, owner) =
                (self.queue.clone(), std::mem::take(&mut self.name), std::mem::take(&mut self.owner));
            rt.spawn(async move {
                let _ = queue.store().cron_lock_release(CronLockReleaseParams { name, owner }).await;
            });
        }
    }
}
