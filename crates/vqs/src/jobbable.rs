use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{JobContext, JobError, RetryPolicy};

/// A background job: a stable topic, typed params and the work itself.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use vqs::{JobContext, JobError, Jobbable};
///
/// #[derive(Serialize, Deserialize)]
/// pub struct SendInvoiceParams { pub invoice_id: u64 }
///
/// pub struct SendInvoice;
///
/// impl Jobbable for SendInvoice {
///     type Params = SendInvoiceParams;
///     const TOPIC: &'static str = "send-invoice";
///
///     fn max_attempts(&self) -> u32 { 5 }
///
///     fn dedup_key(&self, p: &SendInvoiceParams) -> Option<String> {
///         Some(format!("invoice-{}", p.invoice_id))
///     }
///
///     async fn perform(&self, params: SendInvoiceParams, _ctx: JobContext) -> Result<(), JobError> {
///         if params.invoice_id == 0 {
///             return Err(JobError::fatal("invoice 0 does not exist"));
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Jobbable: Send + Sync + 'static {
    /// The job's params; serialized as the message payload (JSON).
    type Params: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The topic messages of this job are published to, kebab-case (`sync-patient`).
    ///
    /// Keep it stable across renames of the type: messages already queued name this topic.
    const TOPIC: &'static str;

    /// At most this many of the job's messages leased at once for each consumer group, across
    /// every process (SPEC "Flow control": replaces the trigger's `maxConcurrency`; an
    /// operator's runtime override wins). Defaults to none.
    fn concurrency(&self) -> Option<u32> {
        None
    }

    /// At most `limit` starts per `period_seconds` for each consumer group (a retry or a
    /// rescue is a start; a snooze is not), across every process; an operator's runtime
    /// override wins. Defaults to none.
    fn rate_limit(&self) -> Option<crate::RateLimit> {
        None
    }

    /// At most `limit` starts per `period_seconds` for each message group ([`Jobbable::group`])
    /// of each consumer group, across every process (a GCRA bucket per group: a burst of
    /// `limit`, then `limit` per period); a group over it waits out of the ready set while the
    /// others run. Defaults to none.
    fn group_rate_limit(&self) -> Option<crate::RateLimit> {
        None
    }

    /// Attempts before the message is dead-lettered. Defaults to 3.
    fn max_attempts(&self) -> u32 {
        3
    }

    /// The dedup key for these params: while a message with the same key is pending or
    /// running, `perform_later` queues nothing and reports a duplicate. Defaults to none.
    fn dedup_key(&self, _params: &Self::Params) -> Option<String> {
        None
    }

    /// The group key of these params (a tenant, an account; 1–256 characters, no control
    /// characters): under [`Jobbable::group_concurrency`], at most that many messages of
    /// one group run at once, and a busy group never holds back another. Defaults to none.
    fn group(&self, _params: &Self::Params) -> Option<String> {
        None
    }

    /// The priority of these params: −100..=100, lower starts first (among due messages of
    /// a consumer group; by due time within a priority). A send's
    /// [`PerformOpts::priority`](crate::PerformOpts::priority) wins. Defaults to 0.
    fn priority(&self, _params: &Self::Params) -> i16 {
        0
    }

    /// Leased at once per group key at most, across every process (a lease counts from
    /// the claim): the default of the consumer route that serves this job. Messages without
    /// a group are not limited. Defaults to `None` (unlimited).
    fn group_concurrency(&self) -> Option<u32> {
        None
    }

    /// How long one attempt may run before it fails (retryably: the retry policy decides
    /// when the next attempt runs). Defaults to 15 minutes.
    ///
    /// The timeout cancels the job's future, so **async work stops at its next `.await`**:
    /// the future is dropped there and nothing after that point runs. **Blocking code is not
    /// cancelled**: a CPU-bound loop, `std::thread::sleep`, a synchronous driver or file
    /// I/O has no `.await` to stop at. It holds its worker thread until it returns — the
    /// timeout fires only after it, and every task sharing that thread (other jobs, this
    /// process's heartbeat) waits too. Run such code with [`tokio::task::spawn_blocking`]:
    /// the attempt then times out on time and the runtime stays responsive. (The closure
    /// itself still runs to its end on the blocking pool; give it a deadline or a flag to
    /// check if it can run long.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use vqs::{JobContext, JobError, Jobbable};
    ///
    /// pub struct Thumbnail;
    ///
    /// impl Jobbable for Thumbnail {
    ///     /// The image's path.
    ///     type Params = String;
    ///     const TOPIC: &'static str = "thumbnail";
    ///
    ///     /// 2 minutes.
    ///     fn timeout(&self) -> Duration {
    ///         Duration::from_secs(120)
    ///     }
    ///
    ///     async fn perform(&self, path: String, _ctx: JobContext) -> Result<(), JobError> {
    ///         // CPU-bound: off the async worker threads, so the timeout and the heartbeat run.
    ///         tokio::task::spawn_blocking(move || resize(&path))
    ///             .await
    ///             .map_err(|e| JobError::retryable(format!("resizing panicked: {e}")))?
    ///     }
    /// }
    ///
    /// fn resize(_path: &str) -> Result<(), JobError> {
    ///     Ok(()) // decode, scale, encode: seconds of CPU, no `.await`
    /// }
    /// ```
    fn timeout(&self) -> Duration {
        Duration::from_secs(15 * 60)
    }

    /// When to try again after a failed attempt. Defaults to `(10 · n)²` seconds.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Do the work. `Err(JobError::retryable(..))` (or `?`) asks for another attempt,
    /// `Err(JobError::fatal(..))` dead-letters the message at once.
    fn perform(&self, params: Self::Params, ctx: JobContext) -> impl Future<Output = Result<(), JobError>> + Send;
}
