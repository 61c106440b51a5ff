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

    /// Attempts before the message is dead-lettered. Defaults to 3.
    fn max_attempts(&self) -> u32 {
        3
    }

    /// The dedup key for these params: while a message with the same key is pending or
    /// running, `perform_later` queues nothing and reports a duplicate. Defaults to none.
    fn dedup_key(&self, _params: &Self::Params) -> Option<String> {
        None
    }

    /// How long one attempt may run before it fails. Defaults to 15 minutes.
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
