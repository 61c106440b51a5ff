//! Bearer secrets for the queue proof and the admin token: compared in constant time,
//! never printed.

use http::HeaderMap;
use subtle::ConstantTimeEq;

/// A secret value. `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Secret {
    /// `None` for an unset or blank secret.
    pub fn new(value: Option<String>) -> Option<Secret> {
        value.filter(|v| !v.trim().is_empty()).map(Secret)
    }

    /// True when `headers` carry `Authorization: Bearer <this secret>`.
    pub fn matches_bearer(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let (a, b) = (given.as_bytes(), self.0.as_bytes());
        // Lengths are not secret-dependent beyond the length itself; the bytes compare in constant time.
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}
