use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde_json::json;

use crate::Secret;

/// Marks a request made in process by the app itself (the local cron scheduler). A request
/// extension: nothing sent over HTTP can set it. It counts as a loopback peer for the
/// `IS_LOCAL_DEV` bypass, and for nothing else.
#[derive(Clone, Copy, Debug)]
pub struct TrustedLocalCall;

/// The guard's configuration: the secret and the local-dev switch, as values.
#[derive(Clone, Debug)]
pub struct CronAuth {
    secret: Option<Secret>,
    local_dev: bool,
}

impl CronAuth {
    /// `secret` is `CRON_SECRET` (blank = unset); `is_local_dev` is `IS_LOCAL_DEV == "true"`.
    pub fn from_values(secret: Option<String>, is_local_dev: bool) -> CronAuth {
        CronAuth { secret: Secret::new(secret), local_dev: is_local_dev }
    }

    /// The secret, to send it (the local scheduler calls routes as Vercel does).
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// True when `IS_LOCAL_DEV` lets loopback callers skip the secret.
    pub fn is_local_dev(&self) -> bool {
        self.local_dev
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

fn refuse(message: &str) -> Response {
    let mut resp = (StatusCode::UNAUTHORIZED, Json(json!({ "error": message }))).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// The middleware: let the request through to the handler, or answer 401.
pub async fn require_cron_secret(State(auth): State<CronAuth>, req: Request, next: Next) -> Response {
    if auth.local_dev {
        let trusted = req.extensions().get::<TrustedLocalCall>().is_some();
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        if trusted || peer.is_some_and(is_loopback) {
            return next.run(req).await;
        }
    }
    let Some(secret) = &auth.secret else {
        tracing::warn!(reason = "no CRON_SECRET configured", "cron request refused");
        return refuse(
            "this server has no CRON_SECRET configured, so cron routes refuse every request: set CRON_SECRET",
        );
    };
    if secret.matches_bearer(req.headers()) {
        return next.run(req).await;
    }
    let reason =
        if req.headers().contains_key(header::AUTHORIZATION) { "wrong credentials" } else { "missing credentials" };
    tracing::info!(reason, "cron request refused");
    refuse("missing or wrong Authorization: send Authorization: Bearer <CRON_SECRET>")
}

/// Guard one cron route (`route_layer`, so unknown paths stay 404).
pub fn with_cron_secret<S>(route: MethodRouter<S>, auth: CronAuth) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route.route_layer(middleware::from_fn_with_state(auth, require_cron_secret))
}
