//! The v2beta push: a binary-mode CloudEvent (`ce-*` headers, the payload as the body).

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::ExecutionSlot;
use crate::store::LeasedMessage;

/// The header names of a push, parsed once: looking a header up by `&str`, or adding one
/// by `&str`, parses the name every time (and allocates it, for a non-standard one).
mod name {
    use http::HeaderName;

    pub static SPECVERSION: HeaderName = HeaderName::from_static("ce-specversion");
    pub static TYPE: HeaderName = HeaderName::from_static("ce-type");
    pub static ID: HeaderName = HeaderName::from_static("ce-id");
    pub static SOURCE: HeaderName = HeaderName::from_static("ce-source");
    pub static TIME: HeaderName = HeaderName::from_static("ce-time");
    pub static QUEUE_NAME: HeaderName = HeaderName::from_static("ce-vqsqueuename");
    pub static CONSUMER_GROUP: HeaderName = HeaderName::from_static("ce-vqsconsumergroup");
    pub static MESSAGE_ID: HeaderName = HeaderName::from_static("ce-vqsmessageid");
    pub static DELIVERY_COUNT: HeaderName = HeaderName::from_static("ce-vqsdeliverycount");
    pub static RECEIPT_HANDLE: HeaderName = HeaderName::from_static("ce-vqsreceipthandle");
    pub static REGION: HeaderName = HeaderName::from_static("ce-vqsregion");
    pub static CREATED_AT: HeaderName = HeaderName::from_static("ce-vqscreatedat");
    pub static EXPIRES_AT: HeaderName = HeaderName::from_static("ce-vqsexpiresat");
    pub static VISIBILITY_DEADLINE: HeaderName = HeaderName::from_static("ce-vqsvisibilitydeadline");
    pub static CONTENT_TYPE: HeaderName = http::header::CONTENT_TYPE;
    pub static TRACEPARENT: HeaderName = HeaderName::from_static("x-vercel-queue-traceparent");
    pub static TRACESTATE: HeaderName = HeaderName::from_static("x-vercel-queue-tracestate");
    pub static BAGGAGE: HeaderName = HeaderName::from_static("x-vercel-queue-baggage");
}

/// The producer's trace context keys in a message's stored headers, and the push header each
/// travels in.
fn trace_header(key: &str) -> Option<&'static HeaderName> {
    match key {
        "traceparent" => Some(&name::TRACEPARENT),
        "tracestate" => Some(&name::TRACESTATE),
        "baggage" => Some(&name::BAGGAGE),
        _ => None,
    }
}

/// The `ce-type` of a v2beta push.
pub const CE_TYPE_V2BETA: &str = "com.vercel.queue.v2beta";

/// One push, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The message's topic (`ce-vqsqueuename`).
    pub topic: String,
    /// The consumer group the push is for (`ce-vqsconsumergroup`).
    pub consumer_group: String,
    /// The message's id (`ce-vqsmessageid`).
    pub message_id: String,
    /// Absent in routing-only mode: the consumer must lease the message by id.
    pub receipt_handle: Option<String>,
    /// Deliveries of this message to this group so far, this one included (`ce-vqsdeliverycount`).
    pub delivery_count: u32,
    /// When the message was sent (`ce-vqscreatedat`).
    pub created_at: Option<DateTime<Utc>>,
    /// When the message expires unprocessed (`ce-vqsexpiresat`).
    pub expires_at: Option<DateTime<Utc>>,
    /// When this delivery's lease ends unless extended (`ce-vqsvisibilitydeadline`).
    pub visibility_deadline: Option<DateTime<Utc>>,
    /// The region that pushed it (`ce-vqsregion`).
    pub region: Option<String>,
    /// The payload's content type, as the producer sent it.
    pub content_type: Option<String>,
    /// The producer's W3C `traceparent`, continued by the job's span.
    pub traceparent: Option<String>,
    /// The producer's W3C `tracestate` (`x-vercel-queue-tracestate`).
    pub tracestate: Option<String>,
    /// The producer's W3C `baggage` (`x-vercel-queue-baggage`).
    pub baggage: Option<String>,
    /// Other headers the producer sent with the message (lower-case names), pushed as they
    /// are. Not read back by [`Delivery::parse`]: a push's other headers are the transport's.
    pub producer_headers: Vec<(String, String)>,
    /// The payload.
    pub body: Bytes,
    /// The `running` execution the local dispatcher recorded with the lease. Never read from
    /// a header: it only travels inside this process (the web app carries it as a request
    /// extension of an in-process push).
    pub execution_id: Option<i64>,
    /// The attempt number the local dispatcher recorded with the lease (with
    /// `execution_id`). Like it, never read from a header. Without it (a push from Vercel,
    /// or one whose lease recorded no execution) the consumer reads it from the attempts
    /// this database recorded ([`crate::Queue::next_attempt`]).
    pub attempt: Option<u32>,
    /// The execution slot the local dispatcher lent this push (see [`ExecutionSlot`]): the
    /// consumer releases it when the job's code is done. Like `execution_id`, it only travels
    /// inside this process; `None` otherwise.
    pub execution_slot: Option<ExecutionSlot>,
}

/// Why a push could not be parsed. The text names the header and what is wrong with it.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{reason}")]
pub struct DeliveryError {
    /// What is wrong, naming the header.
    pub reason: String,
    /// What could be read before the error, so the message can still be dead-lettered.
    pub topic: Option<String>,
    /// The message's id, if it could be read.
    pub message_id: Option<String>,
    /// The consumer group, if it could be read.
    pub consumer_group: Option<String>,
    /// The receipt handle, if it could be read.
    pub receipt_handle: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| format!("header {name} is not visible ASCII")),
    }
}

fn time(headers: &HeaderMap, name: &HeaderName) -> Result<Option<DateTime<Utc>>, String> {
    match header(headers, name)? {
        None | Some("") => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| format!("header {name} is not an ISO-8601 time ({e}): {s:?}")),
    }
}

fn is_region(s: &str) -> bool {
    let letters = s.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = s.len() - letters;
    (2..=5).contains(&letters) && (1..=2).contains(&digits) && s[letters..].bytes().all(|b| b.is_ascii_digit())
}

impl Delivery {
    /// This delivery's attempt number: the one the local dispatcher recorded with the lease
    /// (or the consumer read from the recorded attempts, for a push that carried none), else
    /// — before the consumer has looked — the delivery count.
    pub fn attempt(&self) -> u32 {
        self.attempt.unwrap_or(self.delivery_count)
    }

    /// Parse a v2beta push from its headers and body.
    pub fn parse(headers: &HeaderMap, body: Bytes) -> Result<Delivery, DeliveryError> {
        // On failure, what could be read, so the message can still be dead-lettered. (Read
        // only then: a push that parses reads each header once.)
        let fail = |reason: String| {
            let get =
                |name: &HeaderName| header(headers, name).ok().flatten().filter(|s| !s.is_empty()).map(str::to_owned);
            DeliveryError {
                reason,
                topic: get(&name::QUEUE_NAME),
                message_id: get(&name::MESSAGE_ID),
                consumer_group: get(&name::CONSUMER_GROUP),
                receipt_handle: get(&name::RECEIPT_HANDLE),
            }
        };
        match header(headers, &name::TYPE) {
            Ok(Some(CE_TYPE_V2BETA)) => {}
            Ok(Some(other)) => {
                return Err(fail(format!(
                    "unsupported ce-type {other:?}: expected {CE_TYPE_V2BETA:?} (a v2beta binary CloudEvent)"
                )));
            }
            Ok(None) => {
                return Err(fail(format!(
                    "missing header ce-type: a queue delivery is a binary CloudEvent with ce-type: {CE_TYPE_V2BETA}"
                )));
            }
            Err(e) => return Err(fail(e)),
        }
        let required = |name: &HeaderName| -> Result<String, String> {
            match header(headers, name)? {
                Some(s) if !s.is_empty() => Ok(s.to_owned()),
                _ => Err(format!("missing header {name}")),
            }
        };
        let parsed = (|| -> Result<Delivery, String> {
            let topic = required(&name::QUEUE_NAME)?;
            let consumer_group = required(&name::CONSUMER_GROUP)?;
            let message_id = required(&name::MESSAGE_ID)?;
            let delivery_count = match header(headers, &name::DELIVERY_COUNT)? {
                None | Some("") => 1,
                Some(s) => match s.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("header ce-vqsdeliverycount must be an integer >= 1, got {s:?}")),
                },
            };
            let region = match header(headers, &name::REGION)? {
                None | Some("") => None,
                Some(r) if is_region(r) => Some(r.to_owned()),
                Some(r) => return Err(format!("header ce-vqsregion {r:?} is not a region like iad1")),
            };
            Ok(Delivery {
                topic,
                consumer_group,
                message_id,
                receipt_handle: header(headers, &name::RECEIPT_HANDLE)?.filter(|s| !s.is_empty()).map(str::to_owned),
                delivery_count,
                created_at: time(headers, &name::CREATED_AT)?,
                expires_at: time(headers, &name::EXPIRES_AT)?,
                visibility_deadline: time(headers, &name::VISIBILITY_DEADLINE)?,
                region,
                content_type: header(headers, &name::CONTENT_TYPE)?.map(str::to_owned),
                traceparent: header(headers, &name::TRACEPARENT)?.map(str::to_owned),
                tracestate: header(headers, &name::TRACESTATE)?.map(str::to_owned),
                baggage: header(headers, &name::BAGGAGE)?.map(str::to_owned),
                producer_headers: Vec::new(),
                body,
                execution_id: None,
                attempt: None,
                execution_slot: None,
            })
        })();
        parsed.map_err(fail)
    }

    /// The push for a leased message, as the platform sends it.
    pub fn from_leased(m: &LeasedMessage, region: &str) -> Delivery {
        let stored: serde_json::Map<String, serde_json::Value> = m
            .headers_json
            .as_deref()
            .and_then(|h| serde_json::from_str::<serde_json::Value>(h).ok())
            .and_then(|v| match v {
                serde_json::Value::Object(o) => Some(o),
                _ => None,
            })
            .unwrap_or_default();
        let get = |k: &str| stored.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let producer_headers = stored
            .iter()
            .filter(|(k, _)| trace_header(k).is_none())
            .filter_map(|(k, v)| v.as_str().map(|v| (k.to_ascii_lowercase(), v.to_owned())))
            .collect();
        Delivery {
            topic: m.topic.clone(),
            consumer_group: m.consumer_group.clone(),
            message_id: m.message_id.clone(),
            receipt_handle: Some(m.receipt_handle.clone()),
            delivery_count: m.delivery_count,
            created_at: Some(m.created_at),
            expires_at: Some(m.expires_at),
            visibility_deadline: Some(m.lease_until),
            region: Some(region.to_owned()),
            content_type: Some(m.content_type.clone()),
            traceparent: get("traceparent"),
            tracestate: get("tracestate"),
            baggage: get("baggage"),
            producer_headers,
            body: Bytes::from(m.payload.clone()),
            execution_id: m.execution_id,
            attempt: m.execution_id.map(|_| m.attempts),
            execution_slot: None,
        }
    }

    /// The headers of this push, in binary CloudEvent form (without the producer's headers).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.fields().into_iter().map(|(n, v)| (n.as_str(), v)).collect()
    }

    /// The headers of this push as a header map, ready for a request: the CloudEvent headers,
    /// then the producer's own (one that is not a valid header, or that would shadow one of
    /// the push's, is left out). Fails on a value that is not a header value (a content type
    /// with a line break: `Queue::send` refuses those).
    pub fn header_map(&self) -> Result<HeaderMap, String> {
        let fields = self.fields();
        let mut map = HeaderMap::with_capacity(fields.len() + self.producer_headers.len());
        for (name, value) in fields {
            let value = HeaderValue::try_from(value).map_err(|e| format!("header {name}: {e}"))?;
            map.append(name.clone(), value);
        }
        for (name, value) in &self.producer_headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str()))
                && !map.contains_key(&name)
            {
                map.append(name, value);
            }
        }
        Ok(map)
    }

    fn fields(&self) -> Vec<(&'static HeaderName, String)> {
        let ts = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut h = Vec::with_capacity(16);
        h.extend([
            (&name::SPECVERSION, "1.0".to_owned()),
            (&name::TYPE, CE_TYPE_V2BETA.to_owned()),
            (&name::ID, self.message_id.clone()),
            (&name::SOURCE, format!("/topic/{}/consumer/{}", self.topic, self.consumer_group)),
            (&name::QUEUE_NAME, self.topic.clone()),
            (&name::CONSUMER_GROUP, self.consumer_group.clone()),
            (&name::MESSAGE_ID, self.message_id.clone()),
            (&name::DELIVERY_COUNT, self.delivery_count.to_string()),
        ]);
        if let Some(rh) = &self.receipt_handle {
            h.push((&name::RECEIPT_HANDLE, rh.clone()));
        }
        if let Some(r) = &self.region {
            h.push((&name::REGION, r.clone()));
        }
        if let Some(t) = &self.created_at {
            let t = ts(t);
            h.push((&name::CREATED_AT, t.clone()));
            h.push((&name::TIME, t));
        }
        if let Some(t) = &self.expires_at {
            h.push((&name::EXPIRES_AT, ts(t)));
        }
        if let Some(t) = &self.visibility_deadline {
            h.push((&name::VISIBILITY_DEADLINE, ts(t)));
        }
        if let Some(ct) = &self.content_type {
            h.push((&name::CONTENT_TYPE, ct.clone()));
        }
        if let Some(tp) = &self.traceparent {
            h.push((&name::TRACEPARENT, tp.clone()));
        }
        if let Some(ts) = &self.tracestate {
            h.push((&name::TRACESTATE, ts.clone()));
        }
        if let Some(b) = &self.baggage {
            h.push((&name::BAGGAGE, b.clone()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    fn sample() -> Delivery {
        Delivery {
            topic: "probe".into(),
            consumer_group: "api_Squeue_Sprobe_Drs".into(),
            message_id: "msg_1".into(),
            receipt_handle: Some("msg_1.abc".into()),
            delivery_count: 2,
            created_at: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            expires_at: Some("2026-01-02T00:00:00Z".parse().unwrap()),
            visibility_deadline: Some("2026-01-01T00:01:00Z".parse().unwrap()),
            region: Some("dev1".into()),
            content_type: Some("application/json".into()),
            traceparent: None,
            tracestate: Some("vendor=1".into()),
            baggage: Some("user=alice".into()),
            producer_headers: Vec::new(),
            body: Bytes::from_static(b"{}"),
            execution_id: None,
            attempt: None,
            execution_slot: None,
        }
    }

    #[test]
    fn round_trips_through_headers() {
        let d = sample();
        let parsed = Delivery::parse(&headers(&d.headers()), d.body.clone()).unwrap();
        assert_eq!(parsed, d);
    }

    #[test]
    fn the_header_map_carries_the_same_headers_then_the_producers_own() {
        let mut d = sample();
        d.producer_headers = vec![
            ("x-tenant".into(), "acme".into()),
            ("ce-type".into(), "shadowing".into()),
            ("bad name".into(), "dropped".into()),
            ("x-bad-value".into(), "line\nbreak".into()),
        ];
        let map = d.header_map().unwrap();
        let pushed: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap())).collect();
        let mut expected: Vec<(&str, String)> = d.headers();
        expected.push(("x-tenant", "acme".into()));
        assert_eq!(pushed, expected.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
        assert_eq!(map["ce-vqsdeliverycount"], "2");
        assert_eq!(map["ce-time"], "2026-01-01T00:00:00.000Z");
        let parsed = Delivery::parse(&map, d.body.clone()).unwrap();
        assert_eq!(parsed, Delivery { producer_headers: Vec::new(), ..d });
    }

    #[test]
    fn a_content_type_that_is_no_header_value_fails_the_header_map() {
        let d = Delivery { content_type: Some("text/plain\r\nx: y".into()), ..sample() };
        assert!(d.header_map().unwrap_err().starts_with("header content-type"));
    }

    #[test]
    fn names_the_missing_header_and_keeps_what_it_read() {
        let mut h = sample().headers();
        h.retain(|(k, _)| *k != "ce-vqsqueuename");
        let err = Delivery::parse(&headers(&h), Bytes::new()).unwrap_err();
        assert_eq!(err.reason, "missing header ce-vqsqueuename");
        assert_eq!(err.message_id.as_deref(), Some("msg_1"));
        assert_eq!(err.receipt_handle.as_deref(), Some("msg_1.abc"));
    }

    #[test]
    fn refuses_bad_counts_types_and_regions() {
        let mut h = sample().headers();
        h.retain(|(k, _)| *k != "ce-vqsdeliverycount");
        h.push(("ce-vqsdeliverycount", "zero".into()));
        let err = Delivery::parse(&headers(&h), Bytes::new()).unwrap_err();
        assert!(err.reason.contains("ce-vqsdeliverycount"), "{}", err.reason);

        let err =
            Delivery::parse(&headers(&[("ce-type", "com.vercel.queue.v1beta".into())]), Bytes::new()).unwrap_err();
        assert!(err.reason.contains("unsupported ce-type"), "{}", err.reason);

        let mut h = sample().headers();
        h.retain(|(k, _)| *k != "ce-vqsregion");
        h.push(("ce-vqsregion", "not a region".into()));
        assert!(Delivery::parse(&headers(&h), Bytes::new()).unwrap_err().reason.contains("ce-vqsregion"));
    }

    #[test]
    fn regions() {
        assert!(is_region("iad1"));
        assert!(is_region("dev1"));
        assert!(is_region("sfo12"));
        assert!(!is_region("i1"));
        assert!(!is_region("iad"));
        assert!(!is_region("IAD1"));
        assert!(!is_region("iad123"));
    }
}
