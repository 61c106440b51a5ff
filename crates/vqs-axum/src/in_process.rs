//! Pushes from the local dispatcher go through the app's own router, without a socket.

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vqs::{CronInvoker, CronResponse, Delivery, Pusher};

use crate::queue_route::InProcessPush;

/// A [`Pusher`] that calls the router in process: same routes, same checks, the delivery
/// handed over as it is ([`InProcessPush`]) rather than as headers to parse again.
#[derive(Clone, Debug)]
pub struct InProcessPusher {
    router: Router,
}

impl InProcessPusher {
    /// A pusher calling `router` in process.
    pub fn new(router: Router) -> Self {
        InProcessPusher { router }
    }
}

#[async_trait]
impl Pusher for InProcessPusher {
    async fn push(&self, route_path: &str, delivery: Delivery) -> Result<u16, String> {
        // The delivery rides along whole, its execution slot included (for the consumer to
        // release when the job is done); the route reads no headers of it.
        let mut req = http::Request::post(route_path).body(Body::empty()).map_err(|e| e.to_string())?;
        req.extensions_mut().insert(InProcessPush(delivery));
        let resp = self.router.clone().oneshot(req).await.map_err(|e| e.to_string())?;
        Ok(resp.status().as_u16())
    }
}

/// A [`CronInvoker`] that calls the router in process as Vercel Cron calls a deployment:
/// `GET <path>`, `User-Agent: vercel-cron/1.0`, `x-vercel-cron-schedule`, and the bearer
/// `CRON_SECRET` when one is set. The request is marked [`auth::TrustedLocalCall`], which
/// only matters when `IS_LOCAL_DEV=true`.
#[derive(Clone, Debug)]
pub struct InProcessCronInvoker {
    router: Router,
    auth: auth::CronAuth,
}

impl InProcessCronInvoker {
    /// An invoker calling `router` in process, with the cron secret of `auth`.
    pub fn new(router: Router, auth: auth::CronAuth) -> Self {
        InProcessCronInvoker { router, auth }
    }
}

#[async_trait]
impl CronInvoker for InProcessCronInvoker {
    async fn invoke(&self, path: &str, schedule: &str) -> Result<CronResponse, String> {
        let mut req = http::Request::get(path)
            .header(http::header::USER_AGENT, "vercel-cron/1.0")
            .header("x-vercel-cron-schedule", schedule);
        if let Some(secret) = self.auth.secret() {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {}", secret.expose()));
        }
        let mut req = req.body(Body::empty()).map_err(|e| e.to_string())?;
        req.extensions_mut().insert(auth::TrustedLocalCall);
        let resp = self.router.clone().oneshot(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body_excerpt: String = String::from_utf8_lossy(&body).chars().take(500).collect();
        Ok(CronResponse { status, body_excerpt })
    }
}
