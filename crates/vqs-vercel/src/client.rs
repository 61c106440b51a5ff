//! `VqsClient`: the v3 data plane of Vercel's Queue Service over HTTP — send, receive,
//! receive by id, acknowledge, change visibility — as `@vercel/queue` 0.6.0 speaks it.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Deserialize;

/// Sent as `User-Agent` on every request.
pub const USER_AGENT: &str = concat!("vqs-vercel/", env!("CARGO_PKG_VERSION"));

/// Where the client sends its requests and with what identity.
#[derive(Clone)]
pub struct VqsClientConfig {
    /// `None`: `https://{region}.vercel-queue.com`, as the SDK. `Some(url)`: every region
    /// goes to this base URL (e.g. the local queue service, `http://127.0.0.1:3000/_vqs`),
    /// as the SDK's `resolveBaseUrl` option does.
    pub base_url: Option<String>,
    /// The region to talk to (`iad1`); a push names its own in `ce-vqsregion`.
    pub region: String,
    /// The bearer token: the deployment's OIDC token on Vercel (see [`crate::oidc_token`]).
    pub token: String,
    /// Sent as `Vqs-Deployment-Id`: sends are delivered to this deployment's consumers.
    /// `None` sends deploymentless messages (the SDK's `deploymentId: null`).
    pub deployment_id: Option<String>,
}

impl std::fmt::Debug for VqsClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VqsClientConfig")
            .field("base_url", &self.base_url)
            .field("region", &self.region)
            .field("token", &"[redacted]")
            .field("deployment_id", &self.deployment_id)
            .finish()
    }
}

/// Options of one send.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// The payload's content type (default `application/json`).
    pub content_type: Option<String>,
    /// Dedup: a second send with this key while the first is kept queues nothing.
    pub idempotency_key: Option<String>,
    /// Deliver no sooner than this many seconds from now.
    pub delay_seconds: Option<u32>,
    /// Keep the message unprocessed at most this long (the service's default when `None`).
    pub retention_seconds: Option<u32>,
    /// The producer's own headers (trace context included), sent with the message as the
    /// SDK's `send(…, { headers })` does. `Authorization`, `Content-Type` and `Vqs-*` are
    /// left out, as the SDK leaves them out.
    pub headers: Vec<(String, String)>,
}

/// True for a producer header the SDK would send (not `Authorization`, `Content-Type`, `Vqs-*`).
fn is_forwardable(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n != "authorization" && n != "content-type" && !n.starts_with("vqs-")
}

/// What a batch send did with one message, in the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResult {
    /// Queued (a dropped duplicate also answers with an id of its own, as a single send).
    Sent {
        /// The id it was queued (or answered) under.
        message_id: String,
    },
    /// Accepted for later (the service's 202 for that message).
    Deferred,
    /// Refused: the status a single send would have had, the reason, and whether trying
    /// again may succeed.
    Failed {
        /// The HTTP status a single send would have had.
        status_code: u16,
        /// Why it was refused.
        error: String,
        /// Whether sending it again may succeed.
        retryable: bool,
    },
}

/// Messages one batch holds at most (as the SDK's `sendBatch`).
pub const MAX_BATCH: usize = 100;

/// A message leased by a receive.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    /// The message's id.
    pub message_id: String,
    /// The lease's handle: acknowledge, extend or release with it.
    pub receipt_handle: String,
    /// Deliveries of this message to this consumer group so far, this one included.
    pub delivery_count: u32,
    /// When the message was sent.
    pub created_at: DateTime<Utc>,
    /// When it expires unprocessed, if the service said.
    pub expires_at: Option<DateTime<Utc>>,
    /// The payload's content type.
    pub content_type: String,
    /// The payload.
    pub body: Bytes,
}

/// What went wrong, with the HTTP status when the service answered.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VqsError {
    /// A region must look like `iad1` (`^[a-z]{2,5}[0-9]{1,2}$`).
    #[error("invalid region {0:?}: a region looks like iad1 (2-5 lower-case letters, 1-2 digits)")]
    InvalidRegion(String),
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid queue service base URL {0:?}: use an absolute http:// or https:// URL")]
    InvalidBaseUrl(String),
    /// The service answered with an error status.
    #[error("{operation}: the queue service answered {status}: {message}")]
    Status {
        /// The call that failed (`send`, `receive`, …).
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// The service's error text.
        message: String,
        /// A receive by id of a duplicate send names the message that counts (409).
        original_message_id: Option<String>,
    },
    /// The service could not be reached.
    #[error("{operation}: the queue service could not be reached: {message}")]
    Transport {
        /// The call that failed.
        operation: &'static str,
        /// The transport's error.
        message: String,
    },
    /// The answer was not what the protocol says.
    #[error("{operation}: unexpected answer from the queue service: {message}")]
    Protocol {
        /// The call that failed.
        operation: &'static str,
        /// What was unexpected.
        message: String,
    },
}

impl VqsError {
    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            VqsError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when trying again later may succeed (unreachable, rate limited, server error).
    pub fn is_transient(&self) -> bool {
        match self {
            VqsError::Transport { .. } => true,
            VqsError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// True for region codes the SDK accepts: `^[a-z]{2,5}[0-9]{1,2}$`.
pub fn is_valid_region(region: &str) -> bool {
    let letters = region.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = region.len() - letters;
    (2..=5).contains(&letters) && (1..=2).contains(&digits) && region[letters..].bytes().all(|b| b.is_ascii_digit())
}

/// A client of one region of the queue service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct VqsClient {
    http: reqwest::Client,
    config: VqsClientConfig,
    base: Url,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NdjsonMessage {
    message_id: String,
    receipt_handle: String,
    delivery_count: u32,
    timestamp: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    content_type: Option<String>,
    body: String,
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<BatchItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchItem {
    status: String,
    message_id: Option<String>,
    status_code: Option<u16>,
    error: Option<String>,
    retryable: Option<bool>,
}

/// Decode an `application/x-ndjson` receive response: one JSON message per non-blank line,
/// the body in base64. `Err` says what is wrong with the first bad line. A pure function of
/// the text, so it is fuzzed on raw bytes (`fuzz/`, target `receive_ndjson`).
pub fn decode_ndjson(text: &str) -> Result<Vec<ReceivedMessage>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let m: NdjsonMessage = serde_json::from_str(line).map_err(|e| format!("bad NDJSON line ({e})"))?;
        let body = base64::engine::general_purpose::STANDARD
            .decode(&m.body)
            .map_err(|e| format!("body is not base64 ({e})"))?;
        out.push(ReceivedMessage {
            message_id: m.message_id,
            receipt_handle: m.receipt_handle,
            delivery_count: m.delivery_count,
            created_at: m.timestamp,
            expires_at: m.expires_at,
            content_type: m.content_type.unwrap_or_else(|| "application/octet-stream".into()),
            body: body.into(),
        });
    }
    Ok(out)
}

/// Ack and visibility changes are retried this many times on a transient failure, as the SDK does.
const ATTEMPTS: u32 = 3;

impl VqsClient {
    /// A client with its own connection pool.
    pub fn new(config: VqsClientConfig) -> Result<VqsClient, VqsError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| VqsError::Transport { operation: "build client", message: e.to_string() })?;
        VqsClient::with_http(http, config)
    }

    /// A client sharing `http`'s connection pool.
    pub fn with_http(http: reqwest::Client, config: VqsClientConfig) -> Result<VqsClient, VqsError> {
        if !is_valid_region(&config.region) {
            return Err(VqsError::InvalidRegion(config.region));
        }
        let base = match &config.base_url {
            Some(b) => Url::parse(b)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| VqsError::InvalidBaseUrl(b.clone()))?,
            None => Url::parse(&format!("https://{}.vercel-queue.com", config.region))
                .map_err(|_| VqsError::InvalidRegion(config.region.clone()))?,
        };
        Ok(VqsClient { http, config, base })
    }

    /// The same client for `region` (a push's `ce-vqsregion`): follow-up calls go where the
    /// message lives.
    pub fn for_region(&self, region: &str) -> Result<VqsClient, VqsError> {
        if region == self.config.region {
            return Ok(self.clone());
        }
        VqsClient::with_http(self.http.clone(), VqsClientConfig { region: region.to_owned(), ..self.config.clone() })
    }

    /// The region this client talks to.
    pub fn region(&self) -> &str {
        &self.config.region
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, topic: &str, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("an http(s) URL has a path");
            path.pop_if_empty().extend(["api", "v3", "topic", topic]).extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let mut r = self
            .http
            .request(method, url)
            .bearer_auth(&self.config.token)
            .header("Vqs-Client-Ts", Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        if let Some(d) = &self.config.deployment_id {
            r = r.header("Vqs-Deployment-Id", d);
        }
        r
    }

    async fn execute(operation: &'static str, request: RequestBuilder) -> Result<Response, VqsError> {
        let resp = request.send().await.map_err(|e| VqsError::Transport { operation, message: e.to_string() })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let field = |k: &str| json.as_ref().and_then(|j| j.get(k)).and_then(|v| v.as_str()).map(str::to_owned);
        let message = field("error").or_else(|| field("message")).unwrap_or_else(|| text.chars().take(500).collect());
        Err(VqsError::Status { operation, status, message, original_message_id: field("originalMessageId") })
    }

    /// `execute` for idempotent settlement calls: a transient failure is tried again, up to
    /// three times in all, a second apart (rate limits: after `Retry-After`, at most 5 s).
    async fn execute_settlement(
        operation: &'static str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, VqsError> {
        let mut attempt = 1;
        loop {
            match Self::execute(operation, make()).await {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "queue service call failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Publish `payload` to `topic`. `Ok(Some(id))` on 201; `Ok(None)` when the service
    /// accepted the message for later (202).
    pub async fn send(&self, topic: &str, payload: Bytes, opts: &SendOptions) -> Result<Option<String>, VqsError> {
        const OP: &str = "send message";
        let mut r = self
            .request(Method::POST, self.url(topic, &[]))
            .header(http::header::CONTENT_TYPE, opts.content_type.as_deref().unwrap_or("application/json"));
        if let Some(k) = &opts.idempotency_key {
            r = r.header("Vqs-Idempotency-Key", k);
        }
        if let Some(s) = opts.delay_seconds {
            r = r.header("Vqs-Delay-Seconds", s.to_string());
        }
        if let Some(s) = opts.retention_seconds {
            r = r.header("Vqs-Retention-Seconds", s.to_string());
        }
        for (name, value) in opts.headers.iter().filter(|(n, _)| is_forwardable(n)) {
            r = r.header(name, value);
        }
        let resp = Self::execute(OP, r.body(payload)).await?;
        if resp.status().as_u16() == 202 {
            return Ok(None);
        }
        let body: serde_json::Value =
            resp.json().await.map_err(|e| VqsError::Protocol { operation: OP, message: e.to_string() })?;
        match body.get("messageId").and_then(|v| v.as_str()) {
            Some(id) => Ok(Some(id.to_owned())),
            None => Err(VqsError::Protocol { operation: OP, message: format!("no messageId in {body}") }),
        }
    }

    /// Publish 1–100 messages to `topic` in one request (`POST …/topic/{topic}/batch`,
    /// `multipart/mixed`, as the SDK's `sendBatch`): one result per message, in order. A
    /// message can fail alone; `Err` when the whole request did.
    pub async fn send_batch(
        &self,
        topic: &str,
        messages: &[(Bytes, SendOptions)],
    ) -> Result<Vec<BatchResult>, VqsError> {
        const OP: &str = "send message batch";
        if messages.is_empty() || messages.len() > MAX_BATCH {
            return Err(VqsError::Protocol {
                operation: OP,
                message: format!("a batch holds 1 to {MAX_BATCH} messages, got {}", messages.len()),
            });
        }
        let boundary = format!("vqs-{}", uuid::Uuid::new_v4());
        let mut body = Vec::new();
        for (payload, opts) in messages {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let mut headers = vec![(
                "Content-Type".to_owned(),
                opts.content_type.clone().unwrap_or_else(|| "application/json".into()),
            )];
            headers.extend(opts.headers.iter().filter(|(n, _)| is_forwardable(n)).cloned());
            if let Some(k) = &opts.idempotency_key {
                headers.push(("Vqs-Idempotency-Key".into(), k.clone()));
            }
            if let Some(s) = opts.retention_seconds {
                headers.push(("Vqs-Retention-Seconds".into(), s.to_string()));
            }
            if let Some(s) = opts.delay_seconds {
                headers.push(("Vqs-Delay-Seconds".into(), s.to_string()));
            }
            for (name, value) in headers {
                if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
                    return Err(VqsError::Protocol {
                        operation: OP,
                        message: format!("header {name:?} cannot be sent in a multipart part"),
                    });
                }
                body.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(payload);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let r = self
            .request(Method::POST, self.url(topic, &["batch"]))
            .header(http::header::CONTENT_TYPE, format!("multipart/mixed; boundary={boundary}"))
            .body(body);
        let resp = Self::execute(OP, r).await?;
        let answer: BatchAnswer =
            resp.json().await.map_err(|e| VqsError::Protocol { operation: OP, message: e.to_string() })?;
        if answer.results.len() != messages.len() {
            return Err(VqsError::Protocol {
                operation: OP,
                message: format!("expected {} results, received {}", messages.len(), answer.results.len()),
            });
        }
        answer
            .results
            .into_iter()
            .map(|r| match r.status.as_str() {
                "sent" => r.message_id.map(|message_id| BatchResult::Sent { message_id }).ok_or_else(|| {
                    VqsError::Protocol { operation: OP, message: "a sent result has no messageId".into() }
                }),
                "deferred" => Ok(BatchResult::Deferred),
                "failed" => Ok(BatchResult::Failed {
                    status_code: r.status_code.unwrap_or(0),
                    error: r.error.unwrap_or_default(),
                    retryable: r.retryable.unwrap_or(false),
                }),
                other => Err(VqsError::Protocol { operation: OP, message: format!("unknown result status {other:?}") }),
            })
            .collect()
    }

    /// Lease up to `max_messages` (1–10) messages of `topic` for `consumer_group`.
    pub async fn receive(
        &self,
        topic: &str,
        consumer_group: &str,
        max_messages: u32,
        visibility_seconds: u32,
    ) -> Result<Vec<ReceivedMessage>, VqsError> {
        let r = self
            .request(Method::POST, self.url(topic, &["consumer", consumer_group]))
            .header(http::header::ACCEPT, "application/x-ndjson")
            .header("Vqs-Max-Messages", max_messages.to_string())
            .header("Vqs-Visibility-Timeout-Seconds", visibility_seconds.to_string());
        let resp = Self::execute("receive messages", r).await?;
        Self::messages("receive messages", resp).await
    }

    /// Lease one message by id (routing-only pushes).
    pub async fn receive_by_id(
        &self,
        topic: &str,
        consumer_group: &str,
        message_id: &str,
        visibility_seconds: u32,
    ) -> Result<ReceivedMessage, VqsError> {
        const OP: &str = "receive message by id";
        let r = self
            .request(Method::POST, self.url(topic, &["consumer", consumer_group, "id", message_id]))
            .header(http::header::ACCEPT, "application/x-ndjson")
            .header("Vqs-Visibility-Timeout-Seconds", visibility_seconds.to_string());
        let resp = Self::execute(OP, r).await?;
        Self::messages(OP, resp)
            .await?
            .pop()
            .ok_or_else(|| VqsError::Protocol { operation: OP, message: "no message in a 200 answer".into() })
    }

    async fn messages(operation: &'static str, resp: Response) -> Result<Vec<ReceivedMessage>, VqsError> {
        if resp.status().as_u16() == 204 {
            return Ok(Vec::new());
        }
        let text = resp.text().await.map_err(|e| VqsError::Transport { operation, message: e.to_string() })?;
        decode_ndjson(&text).map_err(|message| VqsError::Protocol { operation, message })
    }

    /// Acknowledge (`DELETE …/lease/{receiptHandle}`): the message is done for the group.
    pub async fn acknowledge(&self, topic: &str, consumer_group: &str, receipt_handle: &str) -> Result<(), VqsError> {
        let url = self.url(topic, &["consumer", consumer_group, "lease", receipt_handle]);
        Self::execute_settlement("acknowledge message", || self.request(Method::DELETE, url.clone())).await?;
        Ok(())
    }

    /// Change a lease's visibility (`PATCH …/lease/{receiptHandle}`): keep it `seconds` more,
    /// or with a failed attempt, have the message delivered again in `seconds` (0–3600).
    pub async fn change_visibility(
        &self,
        topic: &str,
        consumer_group: &str,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), VqsError> {
        let url = self.url(topic, &["consumer", consumer_group, "lease", receipt_handle]);
        let body = serde_json::json!({ "visibilityTimeoutSeconds": seconds }).to_string();
        Self::execute_settlement("change visibility", || {
            self.request(Method::PATCH, url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: Option<&str>) -> VqsClient {
        VqsClient::new(VqsClientConfig {
            base_url: base.map(str::to_owned),
            region: "iad1".into(),
            token: "t".into(),
            deployment_id: None,
        })
        .unwrap()
    }

    #[test]
    fn urls_follow_the_region_or_the_base_url() {
        let c = client(None);
        assert_eq!(c.url("orders", &[]).as_str(), "https://iad1.vercel-queue.com/api/v3/topic/orders");
        let c = c.for_region("fra1").unwrap();
        assert_eq!(
            c.url("orders", &["consumer", "g", "lease", "a/b c"]).as_str(),
            "https://fra1.vercel-queue.com/api/v3/topic/orders/consumer/g/lease/a%2Fb%20c"
        );
        let c = client(Some("http://127.0.0.1:3000/_vqs/"));
        assert_eq!(c.url("t", &["consumer", "g"]).as_str(), "http://127.0.0.1:3000/_vqs/api/v3/topic/t/consumer/g");
        assert_eq!(c.for_region("lhr1").unwrap().base_url().as_str(), "http://127.0.0.1:3000/_vqs/");
    }

    #[test]
    fn refuses_bad_regions_and_base_urls() {
        let config = |region: &str, base: Option<&str>| VqsClientConfig {
            base_url: base.map(str::to_owned),
            region: region.into(),
            token: "t".into(),
            deployment_id: None,
        };
        assert!(matches!(VqsClient::new(config("IAD1", None)), Err(VqsError::InvalidRegion(_))));
        assert!(matches!(VqsClient::new(config("iad1", Some("localhost:3000"))), Err(VqsError::InvalidBaseUrl(_))));
        assert!(client(None).for_region("x").is_err());
        assert!(!format!("{:?}", config("iad1", None)).contains("\"t\""), "the token is redacted");
    }
}
