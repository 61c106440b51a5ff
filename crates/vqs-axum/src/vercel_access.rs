//! How this app reaches Vercel's queue service: the client settings from the environment,
//! a client per delivery (the push's region, the request's OIDC token).

use http::HeaderMap;
use vqs::Queue;
use vqs_vercel::{VercelQueueService, VqsClient, VqsClientConfig, VqsError, oidc_token};

use std::collections::BTreeMap;

/// The environment of a deployment on Vercel, and where the local dispatcher pushes to
/// functions this process does not serve.
#[derive(Clone, Default)]
pub struct VercelEnv {
    /// `VERCEL_OIDC_TOKEN`: the bearer for Vercel's queue service when a request carries no
    /// `x-vercel-oidc-token` header.
    pub oidc_token: Option<String>,
    /// `VERCEL_DEPLOYMENT_ID`: sends are delivered to this deployment's consumers.
    pub deployment_id: Option<String>,
    /// `VERCEL_REGION`: the queue service region to publish to (default `iad1`).
    pub region: Option<String>,
    /// `VQS_VERCEL_QUEUE_URL`: send Vercel-bound queue calls to this base URL instead of
    /// `https://{region}.vercel-queue.com` (e.g. `http://127.0.0.1:3000/_vqs`, to run a
    /// Vercel function against the local queue service); the SDK's `resolveBaseUrl`.
    pub queue_base_url: Option<String>,
    /// `VQS_FUNCTION_URLS`: a JSON object from a `functions` key of vercel.json to the URL
    /// the local dispatcher pushes to, for consumer functions another process serves
    /// (e.g. `{"api/queue/orders.js": "http://127.0.0.1:4001/api/queue/orders"}`).
    pub function_urls: BTreeMap<String, String>,
}

impl std::fmt::Debug for VercelEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VercelEnv")
            .field("oidc_token", &self.oidc_token.as_ref().map(|_| "[set]"))
            .field("deployment_id", &self.deployment_id)
            .field("region", &self.region)
            .field("queue_base_url", &self.queue_base_url)
            .field("function_urls", &self.function_urls)
            .finish()
    }
}

/// The region used when neither a push nor `VERCEL_REGION` names one (as the SDK).
pub const DEFAULT_REGION: &str = "iad1";

/// Settings and a shared connection pool for calls to Vercel's queue service.
#[derive(Clone, Debug)]
pub struct VercelAccess {
    http: reqwest::Client,
    env: VercelEnv,
}

impl VercelAccess {
    /// Access to Vercel's Queue Service with the credentials of `env`.
    pub fn new(env: VercelEnv) -> Result<VercelAccess, reqwest::Error> {
        let http = reqwest::Client::builder().user_agent(vqs_vercel::USER_AGENT).build()?;
        Ok(VercelAccess { http, env })
    }

    /// A client for `region` (default: `VERCEL_REGION`, else iad1) with `token`.
    pub fn client(&self, token: String, region: Option<&str>) -> Result<VqsClient, VqsError> {
        let region = region.or(self.env.region.as_deref()).unwrap_or(DEFAULT_REGION).to_owned();
        VqsClient::with_http(
            self.http.clone(),
            VqsClientConfig {
                base_url: self.env.queue_base_url.clone(),
                region,
                token,
                deployment_id: self.env.deployment_id.clone(),
            },
        )
    }

    /// The OIDC token for a request: its `x-vercel-oidc-token` header, else `VERCEL_OIDC_TOKEN`.
    pub fn token(&self, headers: &HeaderMap) -> Option<String> {
        oidc_token(headers, self.env.oidc_token.as_deref())
    }

    /// The queue service of one delivery: settle in `region` with the request's token;
    /// dead letters go to `queue`'s database.
    pub fn service(&self, queue: &Queue, token: String, region: Option<&str>) -> Result<VercelQueueService, VqsError> {
        Ok(VercelQueueService::for_queue(self.client(token, region)?, queue))
    }
}

tokio::task_local! {
    /// The `x-vercel-oidc-token` of the request being served (see [`with_request_token`]).
    static REQUEST_OIDC_TOKEN: Option<String>;
}

/// Middleware for the public function on Vercel: makes the request's `x-vercel-oidc-token`
/// available to [`VercelPublisher`] while the request is handled.
pub async fn with_request_token(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let token = req.headers().get(vqs_vercel::OIDC_TOKEN_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    REQUEST_OIDC_TOKEN.scope(token, next.run(req)).await
}

/// Publishing on Vercel: `perform_later` sends to Vercel's queue service (which pushes to
/// the deployment's consumer functions), with the OIDC token of the request being served,
/// else `VERCEL_OIDC_TOKEN`. Executions and dead letters stay in the app's database.
#[derive(Clone)]
pub struct VercelPublisher {
    access: VercelAccess,
    /// The app's database (publishing locally): executions and dead letters go there.
    local: Queue,
}

impl std::fmt::Debug for VercelPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VercelPublisher").field("access", &self.access).finish_non_exhaustive()
    }
}

impl VercelPublisher {
    /// `local`: the app's queue over its own database (executions and dead letters stay there).
    pub fn new(access: VercelAccess, local: Queue) -> Self {
        VercelPublisher { access, local }
    }

    fn service(&self) -> Result<VercelQueueService, vqs::ServiceError> {
        let from_request = REQUEST_OIDC_TOKEN.try_with(Clone::clone).ok().flatten();
        let token = from_request.or_else(|| self.access.env.oidc_token.clone()).ok_or_else(|| {
            vqs::ServiceError::Refused(
                "no OIDC token for Vercel's queue service: no x-vercel-oidc-token header and VERCEL_OIDC_TOKEN is unset"
                    .into(),
            )
        })?;
        let client = self.access.client(token, None).map_err(|e| vqs::ServiceError::Refused(e.to_string()))?;
        Ok(VercelQueueService::for_queue(client, &self.local))
    }
}

#[async_trait::async_trait]
impl vqs::QueueService for VercelPublisher {
    async fn send(&self, p: vqs::store::MessageSendParams) -> Result<vqs::SendResult, vqs::ServiceError> {
        self.service()?.send(p).await
    }
    async fn receive_by_id(&self, p: vqs::ReceiveByIdParams) -> Result<vqs::store::LeasedMessage, vqs::ServiceError> {
        self.service()?.receive_by_id(p).await
    }
    async fn acknowledge(
        &self,
        lease: &vqs::ServiceLease,
        closing: Option<vqs::store::ExecutionFinishParams>,
    ) -> Result<(), vqs::ServiceError> {
        self.service()?.acknowledge(lease, closing).await
    }
    async fn extend(&self, lease: &vqs::ServiceLease, seconds: u32) -> Result<(), vqs::ServiceError> {
        self.service()?.extend(lease, seconds).await
    }
    async fn retry_after(
        &self,
        lease: &vqs::ServiceLease,
        seconds: u32,
        closing: Option<vqs::store::ExecutionFinishParams>,
    ) -> Result<(), vqs::ServiceError> {
        self.service()?.retry_after(lease, seconds, closing).await
    }
    async fn dead_letter(
        &self,
        lease: &vqs::ServiceLease,
        letter: vqs::DeadLetter,
        closing: Option<vqs::store::ExecutionFinishParams>,
    ) -> Result<(), vqs::ServiceError> {
        self.service()?.dead_letter(lease, letter, closing).await
    }
    fn renews_leases(&self) -> bool {
        true
    }
}
