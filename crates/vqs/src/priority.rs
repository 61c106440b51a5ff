//! A message's priority (SPEC.md, "Flow control"): an integer −100..=100, lower starts
//! first, default 0; among due messages of a consumer group, by due time within a priority.

use crate::QueueError;

/// The most urgent priority.
pub const MIN_PRIORITY: i16 = -100;
/// The least urgent priority.
pub const MAX_PRIORITY: i16 = 100;

/// Refuse a priority outside [`MIN_PRIORITY`]..=[`MAX_PRIORITY`] with a text that says the
/// range and which way is first; answers it as the `i16` the store keeps.
pub fn check_priority(priority: i64) -> Result<i16, QueueError> {
    if (i64::from(MIN_PRIORITY)..=i64::from(MAX_PRIORITY)).contains(&priority) {
        return Ok(priority as i16);
    }
    Err(QueueError::Invalid(format!(
        "invalid priority {priority}: it must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY} \
         (lower starts first, 0 is the default)"
    )))
}

/// [`check_priority`] of a priority given as text (a header, a command-line flag).
pub fn parse_priority(text: &str) -> Result<i16, QueueError> {
    match text.trim().parse::<i64>() {
        Ok(n) => check_priority(n),
        Err(_) => Err(QueueError::Invalid(format!(
            "invalid priority {text:?}: it must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY} \
             (lower starts first, 0 is the default)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_checked() {
        assert_eq!(check_priority(-100).unwrap(), -100);
        assert_eq!(check_priority(100).unwrap(), 100);
        assert_eq!(parse_priority(" 5 ").unwrap(), 5);
        for bad in [101, -101, i64::MAX, i64::MIN] {
            assert!(check_priority(bad).unwrap_err().to_string().contains("from -100 to 100"), "{bad}");
        }
        for bad in ["x", "", "1.5", "101"] {
            assert!(parse_priority(bad).is_err(), "{bad:?}");
        }
    }
}
