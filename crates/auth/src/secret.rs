use subtle::ConstantTimeEq;

/// A bearer secret. `Debug` and `Display` print `[redacted]`; comparison is constant time.
/// Shared, not copied, by a clone (the app's state, secrets included, is cloned per request).
#[derive(Clone)]
pub struct Secret(std::sync::Arc<str>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Secret {
    /// `None` for an unset, empty or blank value.
    pub fn new(value: Option<String>) -> Option<Secret> {
        value.filter(|v| !v.trim().is_empty()).map(|v| Secret(v.into()))
    }

    /// True when `given` equals the secret. Constant time in the secret's bytes: every byte
    /// of the longer input is looked at whatever the lengths are.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (given.as_bytes(), self.0.as_bytes());
        let n = a.len().max(b.len());
        let mut diff = subtle::Choice::from(u8::from(a.len() != b.len()));
        for i in 0..n {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= !x.ct_eq(&y);
        }
        !bool::from(diff)
    }

    /// The value, to send it as a credential. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when `headers` carry exactly `Authorization: Bearer <secret>`.
    pub fn matches_bearer(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| self.matches(given))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_exactly() {
        let s = Secret::new(Some("abc123".into())).unwrap();
        assert!(s.matches("abc123"));
        assert!(!s.matches("abc124"));
        assert!(!s.matches("abc12"));
        assert!(!s.matches("abc1234"));
        assert!(!s.matches(""));
        assert!(!s.matches(" abc123"));
    }

    #[test]
    fn blank_is_unset_and_nothing_prints_the_value() {
        assert!(Secret::new(None).is_none());
        assert!(Secret::new(Some("  ".into())).is_none());
        let s = Secret::new(Some("hunter2".into())).unwrap();
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }
}
