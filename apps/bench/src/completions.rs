//! Knowing when a worker in this process has finished, without polling the store: a
//! middleware on the app's router counts the consumer route's successful answers (a route
//! answers only after the job ran tracked and its ack was written). It only tells the
//! benchmark when to look; "completed" is still read back from the store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Clone, Default)]
pub struct Completions {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    done: AtomicUsize,
    target: AtomicUsize,
    first_push: OnceLock<Instant>,
    reached: Notify,
}

impl Completions {
    /// `router` with the counting middleware.
    pub fn layer(&self, router: Router) -> Router {
        router.layer(middleware::from_fn_with_state(self.clone(), count))
    }

    /// Successful answers so far.
    pub fn done(&self) -> usize {
        self.inner.done.load(Ordering::Acquire)
    }

    /// When the first push reached the router.
    pub fn first_push(&self) -> Option<Instant> {
        self.inner.first_push.get().copied()
    }

    /// Wait until `n` answers were counted (true) or `deadline` passed (false).
    pub async fn wait_for(&self, n: usize, deadline: Instant) -> bool {
        self.inner.target.store(n, Ordering::Release);
        loop {
            if self.done() >= n {
                return true;
            }
            tokio::select! {
                _ = self.inner.reached.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return self.done() >= n,
            }
        }
    }
}

async fn count(State(c): State<Completions>, req: Request, next: Next) -> Response {
    c.inner.first_push.get_or_init(Instant::now);
    let resp = next.run(req).await;
    if resp.status().is_success() {
        let done = c.inner.done.fetch_add(1, Ordering::AcqRel) + 1;
        let target = c.inner.target.load(Ordering::Acquire);
        if target > 0 && done >= target {
            c.inner.reached.notify_one();
        }
    }
    resp
}
