//! A message's group key (SPEC.md, "Flow control"): a tenant, an account, an upstream —
//! not a consumer group. Under a topic's group concurrency, at most N deliveries of one
//! (consumer group, group key) are leased at once across every process.

use crate::QueueError;

/// The longest group key, in characters.
pub const MAX_GROUP_KEY_LEN: usize = 256;

/// Refuse a group key that is empty, longer than [`MAX_GROUP_KEY_LEN`] characters or holds
/// a control character (NUL included): the error says what to change.
pub fn check_group_key(key: &str) -> Result<(), QueueError> {
    let len = key.chars().count();
    if len == 0 || len > MAX_GROUP_KEY_LEN {
        return Err(QueueError::Invalid(format!(
            "invalid group: it must be 1 to {MAX_GROUP_KEY_LEN} characters (it is {len})"
        )));
    }
    if let Some((at, c)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(QueueError::Invalid(format!(
            "invalid group: it contains the control character {c:?} at byte {at}; use printable text \
             (a tenant or account id)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(check_group_key("tenant-1").is_ok());
        assert!(check_group_key(&"é".repeat(256)).is_ok());
        for bad in ["", "a\0b", "a\nb", "\u{7f}"] {
            assert!(check_group_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_group_key(&"a".repeat(257)).unwrap_err().to_string().contains("1 to 256"));
    }
}
