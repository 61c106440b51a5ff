//! The dashboard's login session: a signed, expiring cookie, and the CSRF token of its forms.
//!
//! The cookie is `<expires unix s>.<nonce>.<HMAC-SHA256(VQS_ADMIN_TOKEN, "session:" …)>`:
//! any process of the deployment accepts it, and rotating the admin token signs every
//! session out. Signing out stores the nonce in the database (`revoked_sessions`) until the
//! cookie would have expired, and every process refuses a revoked nonce. It never contains the token. A form's CSRF
//! token is the HMAC of the session's nonce under the same key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use auth::Secret;

/// The cookie's name.
pub const COOKIE: &str = "vqs_admin";
/// How long a login lasts.
pub const LIFETIME_SECONDS: i64 = 12 * 3600;

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's random id (revocable by sign-out).
    pub nonce: String,
    /// When it ends (Unix seconds).
    pub expires: i64,
}

fn mac(key: &Secret, purpose: &str, message: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key length");
    m.update(purpose.as_bytes());
    m.update(b":");
    m.update(message.as_bytes());
    m
}

fn sign(key: &Secret, purpose: &str, message: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, purpose, message).finalize().into_bytes())
}

fn verify(key: &Secret, purpose: &str, message: &str, signature: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(signature) {
        // `verify_slice` compares in constant time.
        Ok(sig) => mac(key, purpose, message).verify_slice(&sig).is_ok(),
        Err(_) => false,
    }
}

/// A new session starting at `now`: the cookie value and the session.
pub fn issue(key: &Secret, now: DateTime<Utc>) -> (String, Session) {
    let session =
        Session { nonce: uuid::Uuid::new_v4().simple().to_string(), expires: now.timestamp() + LIFETIME_SECONDS };
    let body = format!("{}.{}", session.expires, session.nonce);
    (format!("{body}.{}", sign(key, "session", &body)), session)
}

/// The session a cookie value names, if its signature is good and it has not expired.
pub fn check(key: &Secret, value: &str, now: DateTime<Utc>) -> Option<Session> {
    let (body, sig) = value.rsplit_once('.')?;
    let (expires, nonce) = body.split_once('.')?;
    let expires: i64 = expires.parse().ok()?;
    if !verify(key, "session", body, sig) || expires <= now.timestamp() {
        return None;
    }
    Some(Session { nonce: nonce.to_owned(), expires })
}

/// The CSRF token of a session's forms.
pub fn csrf_token(key: &Secret, session: &Session) -> String {
    sign(key, "csrf", &session.nonce)
}

/// True when `given` is the session's CSRF token (constant time).
pub fn csrf_ok(key: &Secret, session: &Session, given: &str) -> bool {
    verify(key, "csrf", &session.nonce, given)
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Secret {
        Secret::new(Some(s.into())).unwrap()
    }

    #[test]
    fn a_session_verifies_until_it_expires_and_only_under_its_key() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let (cookie, session) = issue(&key("k1"), now);
        // The token never shows in the cookie. A key long enough that a random signature
        // cannot spell it by chance (a two-letter one did, about once in a hundred runs).
        let token = "a-long-admin-token-0123456789";
        let (long, _) = issue(&key(token), now);
        assert!(!long.contains(token), "{long}");
        assert_eq!(check(&key("k1"), &cookie, now), Some(session.clone()));
        assert_eq!(check(&key("k2"), &cookie, now), None, "a rotated token signs sessions out");
        let later = now + chrono::Duration::seconds(LIFETIME_SECONDS);
        assert_eq!(check(&key("k1"), &cookie, later), None, "expired");
        // Tampering with the expiry breaks the signature.
        let forged = cookie.replacen(&session.expires.to_string(), &(session.expires + 999_999).to_string(), 1);
        assert_eq!(check(&key("k1"), &forged, now), None);
        for junk in ["", "x", "1.2", "..", "1.n.!!"] {
            assert_eq!(check(&key("k1"), junk, now), None, "{junk}");
        }
        let csrf = csrf_token(&key("k1"), &session);
        assert!(csrf_ok(&key("k1"), &session, &csrf));
        assert!(!csrf_ok(&key("k1"), &session, ""));
        let other = Session { nonce: "other".into(), ..session.clone() };
        assert!(!csrf_ok(&key("k1"), &other, &csrf), "a token is bound to its session");
    }

    #[test]
    fn reads_a_cookie_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; vqs_admin=abc.def; b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("abc.def"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
