//! The OIDC token a Vercel function presents to the queue service.

/// The request header through which Vercel hands a function its OIDC token.
pub const OIDC_TOKEN_HEADER: &str = "x-vercel-oidc-token";

/// The token, looked up as `@vercel/oidc` does: the `x-vercel-oidc-token` header of the
/// request being served first (fresh per invocation), else the `VERCEL_OIDC_TOKEN`
/// environment variable — which the app reads and passes in as `env_token`, since this
/// library reads no environment.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// assert_eq!(vqs_vercel::oidc_token(&headers, Some("from-env")).as_deref(), Some("from-env"));
/// headers.insert("x-vercel-oidc-token", "from-request".parse().unwrap());
/// assert_eq!(vqs_vercel::oidc_token(&headers, Some("from-env")).as_deref(), Some("from-request"));
/// assert_eq!(vqs_vercel::oidc_token(&http::HeaderMap::new(), Some("  ")), None);
/// ```
pub fn oidc_token(request_headers: &http::HeaderMap, env_token: Option<&str>) -> Option<String> {
    let from_header = request_headers.get(OIDC_TOKEN_HEADER).and_then(|v| v.to_str().ok());
    from_header.or(env_token).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned)
}
