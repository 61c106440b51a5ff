//! Receive responses in the two formats the v3 API offers: `multipart/mixed` (one part per
//! message, `Vqs-*` part headers) and `application/x-ndjson` (one JSON object per line,
//! base64 body).

use base64::Engine as _;
use chrono::SecondsFormat;
use serde_json::json;
use vqs::store::LeasedMessage;

/// The response format a receiver asked for with `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveFormat {
    /// `multipart/mixed`: one part per message.
    Multipart,
    /// `application/x-ndjson`: one JSON line per message, payloads in base64.
    Ndjson,
}

impl ReceiveFormat {
    /// From an `Accept` header; `None` when it names neither format.
    pub fn from_accept(accept: &str) -> Option<ReceiveFormat> {
        let accept = accept.to_ascii_lowercase();
        if accept.contains("multipart/mixed") {
            Some(ReceiveFormat::Multipart)
        } else if accept.contains("application/x-ndjson") {
            Some(ReceiveFormat::Ndjson)
        } else {
            None
        }
    }
}

fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Encode leased messages; returns the body and its `Content-Type`.
pub fn encode(format: ReceiveFormat, messages: &[LeasedMessage]) -> (Vec<u8>, String) {
    match format {
        ReceiveFormat::Ndjson => {
            let mut body = Vec::new();
            for m in messages {
                let line = json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "deliveryCount": m.delivery_count,
                    "timestamp": ts(&m.created_at),
                    "expiresAt": ts(&m.expires_at),
                    "contentType": m.content_type,
                    "body": base64::engine::general_purpose::STANDARD.encode(&m.payload),
                });
                body.extend_from_slice(line.to_string().as_bytes());
                body.push(b'\n');
            }
            (body, "application/x-ndjson".into())
        }
        ReceiveFormat::Multipart => {
            let boundary = format!("vqs-{}", uuid::Uuid::new_v4().simple());
            let mut body = Vec::new();
            for m in messages {
                body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                let headers = [
                    ("Content-Type", m.content_type.clone()),
                    ("Vqs-Message-Id", m.message_id.clone()),
                    ("Vqs-Receipt-Handle", m.receipt_handle.clone()),
                    ("Vqs-Delivery-Count", m.delivery_count.to_string()),
                    ("Vqs-Timestamp", ts(&m.created_at)),
                    ("Vqs-Expires-At", ts(&m.expires_at)),
                ];
                for (k, v) in headers {
                    body.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
                }
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(&m.payload);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            (body, format!("multipart/mixed; boundary={boundary}"))
        }
    }
}
