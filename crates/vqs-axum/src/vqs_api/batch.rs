//! Batch publish (`POST …/topic/{topic}/batch`) as `@vercel/queue`'s `sendBatch` speaks it: a
//! `multipart/mixed` body of 1–100 parts, each with its own `Content-Type`,
//! `Vqs-Idempotency-Key`, `Vqs-Retention-Seconds`, `Vqs-Delay-Seconds` and producer headers;
//! the answer is `{"results": [...]}` in input order, one per part.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// Parts a batch may hold, as the SDK allows.
pub const MAX_BATCH: usize = 100;

/// The boundary named by a `multipart/mixed` content type.
pub fn boundary(content_type: &str) -> Option<&str> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"')).filter(|b| !b.is_empty())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// Split a `multipart/mixed` body into (headers, body) parts. `Err` says what is malformed.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<(HeaderMap, Vec<u8>)>, String> {
    let open = format!("--{boundary}");
    let next = format!("\r\n--{boundary}");
    let mut pos = if body.starts_with(open.as_bytes()) {
        0
    } else {
        find(body, next.as_bytes(), 0).map(|i| i + 2).ok_or("the body has no part delimiter for its boundary")?
    };
    let mut parts = Vec::new();
    loop {
        let after = pos + open.len();
        let rest = body.get(after..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding after a delimiter, then its line break.
        let line_end = find(body, b"\r\n", after).ok_or("a part delimiter is not followed by a line break")?;
        if body[after..line_end].iter().any(|b| !matches!(b, b' ' | b'\t')) {
            return Err("unexpected text after a part delimiter".into());
        }
        let start = line_end + 2;
        let end = find(body, next.as_bytes(), start).ok_or("the body ends without a closing delimiter")?;
        let part = &body[start..end];
        let (head, content) = if part.starts_with(b"\r\n") {
            (&part[..0], &part[2..])
        } else {
            let split = find(part, b"\r\n\r\n", 0).ok_or("a part has no blank line after its headers")?;
            (&part[..split], &part[split + 4..])
        };
        let mut headers = HeaderMap::new();
        for line in head.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let colon = line.iter().position(|b| *b == b':').ok_or("a part header line has no ':'")?;
            let name = HeaderName::from_bytes(line[..colon].trim_ascii())
                .map_err(|_| "a part header has an invalid name".to_owned())?;
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
                .map_err(|_| format!("part header {name} has an invalid value"))?;
            headers.append(name, value);
        }
        parts.push((headers, content.to_vec()));
        if parts.len() > MAX_BATCH {
            return Err(format!("a batch holds 1 to {MAX_BATCH} messages"));
        }
        pos = end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_sdk_sends() {
        let body = b"--vqs-1\r\nContent-Type: application/json\r\nVqs-Idempotency-Key: k\r\n\r\n{\"a\":1}\r\n--vqs-1\r\n\r\nraw\r\nbytes\r\n--vqs-1--\r\n";
        let parts = parse(body, "vqs-1").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0["vqs-idempotency-key"], "k");
        assert_eq!(parts[0].1, b"{\"a\":1}");
        assert!(parts[1].0.is_empty());
        assert_eq!(parts[1].1, b"raw\r\nbytes");
        assert_eq!(boundary("multipart/mixed; boundary=\"vqs-1\""), Some("vqs-1"));
        assert_eq!(boundary("application/json"), None);
        assert!(parse(b"--vqs-1\r\nX: y\r\n\r\nno end", "vqs-1").is_err());
        assert!(parse(b"nothing", "vqs-1").is_err());
    }
}
