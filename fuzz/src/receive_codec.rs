//! Target `receive_codec`: a round trip through the local `/_vqs` receive codec
//! (`crates/vqs-axum/src/vqs_api/receive_codec.rs`, encode only). Arbitrary leased messages are
//! encoded, then decoded — NDJSON by the project's own client decoder
//! (`vqs_vercel::decode_ndjson`), `multipart/mixed` by the small strict parser below — and
//! must come back the same: ids, count, times (to the millisecond the wire carries),
//! content type and payload byte for byte, whatever the payload holds (CRLFs, `--vqs-…`
//! lines, anything).
//!
//! Messages are built as the store can hold them: ids and receipt handles as the store makes
//! them (header-safe text), content types as `Queue::prepare_send` accepts them
//! (`vqs::is_valid_content_type`; before that check, a CRLF in one forged part headers — the
//! first thing this target found), times between 1970 and 9999.

use arbitrary::{Arbitrary, Unstructured};
use chrono::{DateTime, Utc};
use vqs::store::LeasedMessage;

use super::codec::{ReceiveFormat, encode};

#[derive(Arbitrary, Debug)]
struct Message {
    message_id: String,
    receipt_handle: String,
    delivery_count: u32,
    created_ms: u64,
    expires_ms: u64,
    content_type: String,
    payload: Vec<u8>,
}

/// The last millisecond of year 9999: RFC 3339 has four-digit years.
const MAX_MS: u64 = 253_402_300_799_999;

fn time(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis((ms % (MAX_MS + 1)) as i64).expect("in range")
}

/// Header-safe text, as the store's ids are: no control characters, no non-ASCII.
fn header_safe(s: &str, fallback: &str) -> String {
    let s: String = s.chars().filter(|c| c.is_ascii_graphic()).collect();
    if s.is_empty() { fallback.to_owned() } else { s }
}

fn leased(m: Message) -> LeasedMessage {
    let content_type =
        if vqs::is_valid_content_type(&m.content_type) { m.content_type } else { "application/json".to_owned() };
    LeasedMessage {
        message_id: header_safe(&m.message_id, "msg"),
        topic: "t".into(),
        consumer_group: "g".into(),
        payload: m.payload,
        content_type,
        headers_json: None,
        delivery_count: m.delivery_count,
        attempts: 0,
        receipt_handle: header_safe(&m.receipt_handle, "rh"),
        created_at: time(m.created_ms),
        expires_at: time(m.expires_ms),
        lease_until: time(m.expires_ms),
        execution_id: None,
        group_key: None,
    }
}

/// One message as a decoder gives it back.
#[derive(Debug, PartialEq)]
struct Decoded {
    message_id: String,
    receipt_handle: String,
    delivery_count: u32,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    content_type: String,
    payload: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// A strict `multipart/mixed` reader for what the codec writes: `--B CRLF`, the six part
/// headers, `CRLF`, the payload up to `CRLF --B`, …, `--B-- CRLF` and nothing after.
fn decode_multipart(body: &[u8], content_type: &str) -> Result<Vec<Decoded>, String> {
    let boundary = content_type.strip_prefix("multipart/mixed; boundary=").ok_or("not multipart/mixed")?;
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(format!("bad boundary {boundary:?}"));
    }
    let open = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    let mut out = Vec::new();
    let mut at = 0;
    if !body.starts_with(open.as_bytes()) {
        return Err("no opening boundary".into());
    }
    at += open.len();
    loop {
        let rest = &body[at..];
        if rest == b"--\r\n" {
            return Ok(out);
        }
        if !rest.starts_with(b"\r\n") {
            return Err(format!("junk after a boundary at {at}"));
        }
        at += 2;
        let end = find(body, b"\r\n\r\n", at).ok_or("part headers never end")?;
        let head = std::str::from_utf8(&body[at..end]).map_err(|_| "part headers are not UTF-8")?;
        let mut fields = std::collections::BTreeMap::new();
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(": ").ok_or_else(|| format!("bad header line {line:?}"))?;
            if fields.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(format!("header {k} twice"));
            }
        }
        let mut take = |k: &str| fields.remove(k).ok_or_else(|| format!("no {k}"));
        let t = |s: String| DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|e| e.to_string());
        let decoded = Decoded {
            content_type: take("Content-Type")?,
            message_id: take("Vqs-Message-Id")?,
            receipt_handle: take("Vqs-Receipt-Handle")?,
            delivery_count: take("Vqs-Delivery-Count")?.parse().map_err(|e| format!("count: {e}"))?,
            created_at: t(take("Vqs-Timestamp")?)?,
            expires_at: t(take("Vqs-Expires-At")?)?,
            payload: Vec::new(),
        };
        if let Some(k) = fields.keys().next() {
            return Err(format!("unexpected header {k}"));
        }
        let start = end + 4;
        let stop = find(body, delim.as_bytes(), start).ok_or("part never ends")?;
        out.push(Decoded { payload: body[start..stop].to_vec(), ..decoded });
        at = stop + delim.len();
    }
}

fn decode_ndjson(body: &[u8]) -> Result<Vec<Decoded>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "NDJSON is not UTF-8")?;
    Ok(vqs_vercel::decode_ndjson(text)?
        .into_iter()
        .map(|m| Decoded {
            message_id: m.message_id,
            receipt_handle: m.receipt_handle,
            delivery_count: m.delivery_count,
            created_at: m.created_at,
            expires_at: m.expires_at.expect("the codec always writes expiresAt"),
            content_type: m.content_type,
            payload: m.body.to_vec(),
        })
        .collect())
}

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(ndjson) = bool::arbitrary(&mut u) else { return };
    let Ok(messages) = Vec::<Message>::arbitrary_take_rest(u) else { return };
    let messages: Vec<LeasedMessage> = messages.into_iter().map(leased).collect();
    let want: Vec<Decoded> = messages
        .iter()
        .map(|m| Decoded {
            message_id: m.message_id.clone(),
            receipt_handle: m.receipt_handle.clone(),
            delivery_count: m.delivery_count,
            created_at: m.created_at,
            expires_at: m.expires_at,
            content_type: m.content_type.clone(),
            payload: m.payload.clone(),
        })
        .collect();
    let format = if ndjson { ReceiveFormat::Ndjson } else { ReceiveFormat::Multipart };
    let (body, content_type) = encode(format, &messages);
    let got = match format {
        ReceiveFormat::Ndjson => {
            assert_eq!(content_type, "application/x-ndjson");
            decode_ndjson(&body)
        }
        ReceiveFormat::Multipart => decode_multipart(&body, &content_type),
    };
    assert_eq!(got, Ok(want), "round trip through {format:?}");
}
