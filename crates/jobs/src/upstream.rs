//! The HTTP client the example jobs use to call their upstream API, and how its failures
//! map to retryable or fatal ones. Not a job: shared by the jobs that call out.

use std::sync::LazyLock;
use std::time::Duration;

use vqs::JobError;

/// One client for the process (connection pooling), with a timeout per request.
pub(crate) static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_else(|_| reqwest::Client::new())
});

/// A failed upstream call: `permanent` when retrying cannot help (the upstream answered
/// 4xx other than 408 and 429), else transient (no answer, 5xx, 408, 429, a bad body).
#[derive(Debug, Clone)]
pub(crate) struct UpstreamError {
    pub message: String,
    pub permanent: bool,
}

impl UpstreamError {
    pub(crate) fn into_job_error(self) -> JobError {
        if self.permanent { JobError::fatal(self.message) } else { JobError::retryable(self.message) }
    }
}

impl From<reqwest::Error> for UpstreamError {
    fn from(e: reqwest::Error) -> Self {
        // Say what failed without the URL's query (it may carry a cursor or a token).
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_decode() {
            "answered a body that is not the expected JSON"
        } else {
            "request failed"
        };
        UpstreamError { message: format!("upstream {what}"), permanent: false }
    }
}

/// The JSON body of a 2xx answer, or the error its status means.
pub(crate) async fn json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, UpstreamError> {
    check(&resp)?;
    Ok(resp.json().await?)
}

/// Ok for a 2xx answer, or the error its status means.
pub(crate) fn check(resp: &reqwest::Response) -> Result<(), UpstreamError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let permanent = status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429;
    Err(UpstreamError { message: format!("upstream answered {status}"), permanent })
}

/// `base` joined with `path` (no double slash).
pub(crate) fn url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// `base` joined with `path`, with the query parameters `query` (encoded).
pub(crate) fn url_with(base: &str, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, UpstreamError> {
    reqwest::Url::parse_with_params(&url(base, path), query)
        .map_err(|e| UpstreamError { message: format!("invalid api_base {base:?}: {e}"), permanent: true })
}
