//! # vqs-vercel — Vercel's Queue Service from Rust
//!
//! [`VqsClient`] speaks the v3 data plane (`send`, `receive`, `receive_by_id`,
//! `acknowledge`, `change_visibility`) as `@vercel/queue` 0.6.0 does: a bearer OIDC token
//! ([`oidc_token`]: the `x-vercel-oidc-token` request header, else `VERCEL_OIDC_TOKEN`),
//! the `Vqs-Deployment-Id` header, and region routing (`https://{region}.vercel-queue.com`,
//! [`VqsClient::for_region`] for a push's `ce-vqsregion`). [`VercelQueueService`] is the
//! core's `QueueService` over it: the queue handler settles a delivery that came from
//! Vercel through it, while executions and dead letters stay in the app's database.
//!
//! No TLS unless the `rustls` feature is on (the web app's `vercel` feature turns it on):
//! without it the client speaks plain HTTP only — enough for the local queue service.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vqs_vercel::VqsError> {
//! use vqs_vercel::{SendOptions, VqsClient, VqsClientConfig};
//! let client = VqsClient::new(VqsClientConfig {
//!     base_url: Some("http://127.0.0.1:3000/_vqs".into()), // None on Vercel
//!     region: "iad1".into(),
//!     token: "dev-queue".into(),
//!     deployment_id: None,
//! })?;
//! let id = client.send("probe", "{}".into(), &SendOptions::default()).await?;
//! println!("sent {id:?}");
//! # Ok(()) }
//! ```
//!
//! A function that serves a request takes its token from the request, else the environment:
//!
//! ```
//! let mut headers = http::HeaderMap::new();
//! headers.insert(vqs_vercel::OIDC_TOKEN_HEADER, "from-request".parse().unwrap());
//! let token = vqs_vercel::oidc_token(&headers, std::env::var("VERCEL_OIDC_TOKEN").ok().as_deref());
//! assert_eq!(token.as_deref(), Some("from-request"));
//! ```

#![warn(missing_docs)]

mod client;
mod oidc;
mod service;

pub use client::{
    BatchResult, MAX_BATCH, ReceivedMessage, SendOptions, USER_AGENT, VqsClient, VqsClientConfig, VqsError,
    decode_ndjson, is_valid_region,
};
pub use oidc::{OIDC_TOKEN_HEADER, oidc_token};
pub use service::{VercelQueueService, service_error};
