//! Target `receive_ndjson`: `vqs_vercel::decode_ndjson`, the client's decoder of a receive
//! response, on raw bytes (made text as `reqwest`'s `Response::text` does, lossily).
//!
//! Invariants: decoding never panics; an accepted response has one message per non-blank
//! line.

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(messages) = vqs_vercel::decode_ndjson(&text) {
        assert_eq!(messages.len(), text.lines().filter(|l| !l.trim().is_empty()).count());
    }
}
