//! Refusals at the HTTP edge: an explicit status and a JSON body that says what to fix.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vqs::{QueueError, StoreError};

/// An error answer: `{"error": "<what is wrong and what to do>"}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong and what to do, the body's `error`.
    pub message: String,
}

impl ApiError {
    /// An answer of `status` saying `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }

    /// 400: the request is wrong; `message` says how.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: `message` names what does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
}

/// Allow a request only with `Authorization: Bearer <secret>`; `var` names the setting
/// (`VQS_ADMIN_TOKEN`) and `what` the service, for the refusal's message. An unset secret
/// refuses everything (fail closed).
pub fn require_bearer(
    secret: Option<&auth::Secret>,
    headers: &axum::http::HeaderMap,
    var: &str,
    what: &str,
) -> Result<(), ApiError> {
    match secret {
        None => Err(ApiError::unauthorized(format!(
            "this server has no {var} configured, so {what} refuses every request: set {var}"
        ))),
        Some(s) if s.matches_bearer(headers) => Ok(()),
        Some(_) => {
            Err(ApiError::unauthorized(format!("missing or wrong Authorization: send Authorization: Bearer <{var}>")))
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::LeaseLost(m) => ApiError::new(StatusCode::CONFLICT, m),
            StoreError::Locked(id) => {
                ApiError::new(StatusCode::CONFLICT, format!("message {id} is leased by another consumer"))
            }
            StoreError::AlreadyAcknowledged(id) => {
                ApiError::new(StatusCode::GONE, format!("message {id} was already acknowledged"))
            }
            e => {
                tracing::error!(error = %e, "storage error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the database could not complete the request; see the server log",
                )
            }
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Invalid(m) => ApiError::bad_request(m),
            QueueError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            QueueError::Store(s) => s.into(),
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
