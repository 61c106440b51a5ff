use std::fmt;

/// Why an attempt failed, and whether another attempt may help.
///
/// `?` on any `std::error::Error` gives a retryable failure; call [`JobError::fatal`] for a
/// failure that no retry can fix (the message is dead-lettered at once).
#[derive(Debug)]
pub struct JobError {
    message: String,
    fatal: bool,
}

impl JobError {
    /// A failure worth retrying (network down, upstream 503, lock busy).
    pub fn retryable(message: impl fmt::Display) -> Self {
        JobError { message: crate::storable_text::escape_owned(message.to_string()), fatal: false }
    }

    /// A failure no retry can fix (bad input, a record that no longer exists): no more attempts.
    pub fn fatal(message: impl fmt::Display) -> Self {
        JobError { message: crate::storable_text::escape_owned(message.to_string()), fatal: true }
    }

    /// True when no further attempt should be made.
    pub fn is_fatal(&self) -> bool {
        self.fatal
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
