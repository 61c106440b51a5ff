//! Pushes to consumer functions this process does not serve: the dispatcher's `Pusher`
//! for a route given as a URL (`VQS_FUNCTION_URLS`), e.g. a Node function using
//! `@vercel/queue`'s `handleCallback`, or a consumer route of another deployment.

use std::time::Duration;

use async_trait::async_trait;
use vqs::{Delivery, Pusher};

use crate::in_process::InProcessPusher;

/// Pushes over HTTP to a URL, with `Authorization: Bearer <VQS_QUEUE_SECRET>` when one is
/// set (a vqs consumer route over HTTP requires it; a Node `handleCallback` ignores it).
#[derive(Clone)]
pub struct HttpPusher {
    http: reqwest::Client,
    secret: Option<auth::Secret>,
}

impl std::fmt::Debug for HttpPusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPusher").field("secret", &self.secret.as_ref().map(|_| "[set]")).finish()
    }
}

impl HttpPusher {
    /// `timeout`: how long a push may take before it counts as failed (the lease's length
    /// is a sound choice: past it the message is redelivered anyway).
    pub fn new(secret: Option<auth::Secret>, timeout: Duration) -> Result<HttpPusher, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(HttpPusher { http, secret })
    }
}

#[async_trait]
impl Pusher for HttpPusher {
    async fn push(&self, url: &str, delivery: Delivery) -> Result<u16, String> {
        let mut req = self.http.post(url).headers(delivery.header_map()?);
        if let Some(s) = &self.secret {
            req = req.bearer_auth(s.expose());
        }
        let resp = req.body(delivery.body).send().await.map_err(|e| e.to_string())?;
        Ok(resp.status().as_u16())
    }
}

/// The dispatcher's pusher: a route path goes through the router in process, a URL over HTTP.
#[derive(Clone, Debug)]
pub struct AppPusher {
    /// Pushes to a route of this app, through its router.
    pub in_process: InProcessPusher,
    /// Pushes to a consumer served elsewhere, over HTTP.
    pub http: HttpPusher,
}

#[async_trait]
impl Pusher for AppPusher {
    async fn push(&self, route: &str, delivery: Delivery) -> Result<u16, String> {
        if route.starts_with("http://") || route.starts_with("https://") {
            self.http.push(route, delivery).await
        } else {
            self.in_process.push(route, delivery).await
        }
    }
}
