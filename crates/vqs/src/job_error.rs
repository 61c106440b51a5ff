use std::fmt;
use std::time::Duration;

/// How an attempt ended other than in success (SPEC.md, "Job outcomes").
///
/// `?` on any `std::error::Error` gives a retryable failure; call [`JobError::fatal`] for a
/// failure that no retry can fix (the message is dead-lettered at once),
/// [`JobError::snooze`] to run again later without spending an attempt, and
/// [`JobError::cancel`] to end the message without a retry or a dead letter.
#[derive(Debug)]
pub struct JobError {
    message: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Retryable,
    Fatal,
    Snooze(Duration),
    Cancel,
}

impl JobError {
    /// A failure worth retrying (network down, upstream 503, lock busy).
    pub fn retryable(message: impl fmt::Display) -> Self {
        JobError { message: crate::storable_text::escape_owned(message.to_string()), kind: Kind::Retryable }
    }

    /// A failure no retry can fix (bad input, a record that no longer exists): no more attempts.
    pub fn fatal(message: impl fmt::Display) -> Self {
        JobError { message: crate::storable_text::escape_owned(message.to_string()), kind: Kind::Fatal }
    }

    /// Not now: run this message again after `after` (e.g. the upstream said "come back in
    /// 5 minutes"). The attempt is recorded `snoozed` and not counted against
    /// `max_attempts`: the next run keeps this attempt's number. Capped at the longest
    /// delay a message may have (7 days); a message whose retention ends first expires.
    pub fn snooze(after: Duration) -> Self {
        let after = after.min(crate::MAX_RETENTION);
        let message = format!("snoozed for {}s", after.as_secs_f64());
        JobError { message, kind: Kind::Snooze(after) }
    }

    /// End this message now, on purpose: recorded `cancelled` with `reason`; no retry, no
    /// dead letter (the work is no longer wanted: the order was withdrawn, the account closed).
    pub fn cancel(reason: impl fmt::Display) -> Self {
        JobError { message: crate::storable_text::escape_owned(reason.to_string()), kind: Kind::Cancel }
    }

    /// True when no further attempt should be made.
    pub fn is_fatal(&self) -> bool {
        self.kind == Kind::Fatal
    }

    /// The delay a [`JobError::snooze`] asked for.
    pub fn snoozed_for(&self) -> Option<Duration> {
        match self.kind {
            Kind::Snooze(d) => Some(d),
            _ => None,
        }
    }

    /// True for a [`JobError::cancel`].
    pub fn is_cancel(&self) -> bool {
        self.kind == Kind::Cancel
    }

    /// The error text recorded in `job_executions.error` and the dead letter (a NUL
    /// character written as `\0`: see [`crate::escape_unstorable`]).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError::retryable(e)
    }
}

/// Turns any error into a [`JobError`] of the chosen kind at the call site.
///
/// ```
/// use vqs::{JobError, ResultExt};
/// fn parse(s: &str) -> Result<u32, JobError> {
///     s.parse::<u32>().fatal()
/// }
/// assert!(parse("x").unwrap_err().is_fatal());
/// ```
pub trait ResultExt<T> {
    /// Map the error to a retryable failure.
    fn retryable(self) -> Result<T, JobError>;
    /// Map the error to a fatal failure.
    fn fatal(self) -> Result<T, JobError>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, JobError> {
        self.map_err(JobError::retryable)
    }
    fn fatal(self) -> Result<T, JobError> {
        self.map_err(JobError::fatal)
    }
}
