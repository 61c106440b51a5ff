//! Target `delivery`: `vqs::Delivery::parse` on a push as text — header lines `name: value`,
//! a blank line, then the body — so the seed corpus reads like the pushes it stands for.
//!
//! Invariants: parsing never panics; an accepted push has its required fields, a count of at
//! least 1 and a region like `iad1`; a refused one names what it could read before failing;
//! and an accepted push re-emitted with `Delivery::headers` (what the dispatcher sends) parses
//! back to the same push, times truncated to the millisecond the wire carries.

use bytes::Bytes;
use chrono::{DateTime, Timelike, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use vqs::Delivery;

/// Split `data` into headers and body. Lines the `http` crate would not accept as a header
/// (no `:`, a bad name or value) are skipped, as an HTTP server would never pass them on.
pub fn split(data: &[u8]) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    let mut rest = data;
    loop {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
        if rest.is_empty() {
            break;
        }
    }
    (headers, Bytes::copy_from_slice(rest))
}

/// `t` truncated to the millisecond, a leap second (`…:60.123Z`, nanoseconds past 10⁹) kept
/// as one (`duration_trunc` refuses times past 2262; a timestamp would fold the leap second
/// into the next minute).
fn millis(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.map(|t| t.with_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).expect("fewer nanoseconds are valid"))
}

pub fn check(data: &[u8]) {
    let (headers, body) = split(data);
    let first = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty());
    match Delivery::parse(&headers, body.clone()) {
        Err(e) => {
            assert!(!e.reason.is_empty(), "a refusal says why");
            assert_eq!(e.topic.as_deref(), first("ce-vqsqueuename"), "partial topic");
            assert_eq!(e.message_id.as_deref(), first("ce-vqsmessageid"), "partial message id");
        }
        Ok(d) => {
            assert!(!d.topic.is_empty() && !d.consumer_group.is_empty() && !d.message_id.is_empty());
            assert!(d.delivery_count >= 1);
            assert_eq!(d.body, body);
            if let Some(r) = &d.region {
                assert!(region_like(r), "accepted region {r:?}");
            }
            // Re-emit as the dispatcher would, parse again.
            let mut again = HeaderMap::new();
            for (name, value) in d.headers() {
                let value = HeaderValue::from_str(&value).expect("an accepted value is a valid header value");
                again.append(name, value);
            }
            // A time at the edge of year 9999 with a negative offset lands in year 10000 in
            // UTC, which RFC 3339 cannot write: the re-emitted push then fails to parse, and
            // that is correct (such a push never comes from the platform).
            let in_range =
                |t: &Option<DateTime<Utc>>| t.is_none_or(|t| (0..=9999).contains(&chrono::Datelike::year(&t)));
            if !(in_range(&d.created_at) && in_range(&d.expires_at) && in_range(&d.visibility_deadline)) {
                return;
            }
            let d2 = Delivery::parse(&again, body).expect("a re-emitted push parses");
            let want = Delivery {
                created_at: millis(d.created_at),
                expires_at: millis(d.expires_at),
                visibility_deadline: millis(d.visibility_deadline),
                ..d
            };
            assert_eq!(d2, want, "re-emitted push parses back the same");
        }
    }
}

/// `^[a-z]{2,5}[0-9]{1,2}$`, written out here: `vqs`'s own check is private and this file is
/// also compiled into `vqs`'s tests, which cannot depend on `vqs-vercel`.
fn region_like(s: &str) -> bool {
    let letters = s.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = s.len() - letters;
    (2..=5).contains(&letters) && (1..=2).contains(&digits) && s[letters..].bytes().all(|b| b.is_ascii_digit())
}
