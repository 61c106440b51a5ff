//! Text a database can store. PostgreSQL refuses a NUL character in a `text` column, and an
//! index refuses a row over a few kilobytes; a value either database refuses must never
//! reach a write that other messages share (a group commit). So text from outside is
//! checked at the facade — refused with the field's name, nothing written — and text the
//! job itself produced (its error, a progress note) is stored with NUL escaped visibly.

use std::borrow::Cow;

use crate::QueueError;

/// Longest user text kept in an indexed column (message ids, receipt handles, filters), in
/// bytes: well under PostgreSQL's index row limit (about 2.7 kB), far above any id vqs issues.
pub const MAX_KEY_BYTES: usize = 1024;

/// Refuse `value` for `field` when a database cannot store it or an index cannot hold it:
/// a NUL character anywhere, or more than [`MAX_KEY_BYTES`] bytes. The error names the
/// field and says what to change.
///
/// ```
/// assert!(vqs::check_storable("idempotency key", "order-42").is_ok());
/// let e = vqs::check_storable("idempotency key", "a\0b").unwrap_err();
/// assert!(e.to_string().contains("idempotency key"));
/// ```
pub fn check_storable(field: &str, value: &str) -> Result<(), QueueError> {
    if let Some(at) = value.find('\0') {
        return Err(QueueError::Invalid(format!(
            "invalid {field}: it contains a NUL character (\\0) at byte {at}, which cannot be stored; remove it"
        )));
    }
    if value.len() > MAX_KEY_BYTES {
        return Err(QueueError::Invalid(format!(
            "invalid {field}: it is {} bytes long; the limit is {MAX_KEY_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// Like [`check_storable`] with no length limit, for text kept in a column no index covers
/// (trace headers).
pub fn check_storable_long(field: &str, value: &str) -> Result<(), QueueError> {
    match value.find('\0') {
        Some(at) => Err(QueueError::Invalid(format!(
            "invalid {field}: it contains a NUL character (\\0) at byte {at}, which cannot be stored; remove it"
        ))),
        None => Ok(()),
    }
}

/// `text` with every NUL character written as the two characters `\0`, so text the job
/// produced (an error message, a serde error echoing a payload key) is kept readable
/// rather than refused by the database.
///
/// ```
/// assert_eq!(vqs::escape_unstorable("bad key \"a\0b\""), "bad key \"a\\0b\"");
/// assert_eq!(vqs::escape_unstorable("fine"), "fine");
/// ```
pub fn escape_unstorable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') { Cow::Owned(text.replace('\0', "\\0")) } else { Cow::Borrowed(text) }
}

/// [`escape_unstorable`] of an owned string, without a copy when there is nothing to escape.
pub(crate) fn escape_owned(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\\0") } else { text }
}
