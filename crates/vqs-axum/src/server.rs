//! The HTTP server loop of `serve`: hyper's HTTP/1 connection builder behind a manual accept
//! loop (axum's `serve-with-hyper` example), because `axum::serve` has no connection limits.
//!
//! - at most [`ServerLimits::max_connections`] connections are open; past it, new ones wait
//!   in the kernel's backlog until one closes;
//! - a request's headers must arrive within [`ServerLimits::header_timeout`] (hyper starts
//!   that clock when the connection opens and again each time it waits for the next request,
//!   so a half-sent or trickled header, and an idle keep-alive connection, are closed);
//! - a connection with no request in flight for [`ServerLimits::idle_timeout`] is closed;
//! - a request body must arrive whole within [`ServerLimits::body_timeout`] (408) and be at
//!   most [`ServerLimits::max_body_bytes`] (413), both with a JSON body saying so;
//! - on shutdown the listener closes, every connection is asked to finish its request and
//!   close, and whatever is still open after [`ServerLimits::shutdown_grace`] is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Connection limits and the shutdown grace (`VQS_HTTP_*`, `VQS_SHUTDOWN_GRACE_SECONDS`; the
/// README's Configuration table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// `VQS_HTTP_HEADER_TIMEOUT_SECONDS`: a request's headers arrive within this. Default 10 s.
    pub header_timeout: Duration,
    /// `VQS_HTTP_BODY_TIMEOUT_SECONDS`: a request's body arrives within this. Default 60 s.
    pub body_timeout: Duration,
    /// `VQS_HTTP_IDLE_TIMEOUT_SECONDS`: a connection with no request in flight for this long
    /// is closed. Default 60 s (the header timeout closes a silent one sooner).
    pub idle_timeout: Duration,
    /// `VQS_HTTP_MAX_CONNECTIONS`: connections open at most. Default 1000.
    pub max_connections: usize,
    /// `VQS_HTTP_MAX_BODY_BYTES`: the largest request body. Default 100 MiB (the largest payload).
    pub max_body_bytes: usize,
    /// `VQS_SHUTDOWN_GRACE_SECONDS`: after SIGTERM, in-flight requests and jobs get this long
    /// to finish; then the process exits anyway. Default 25 s.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1000,
            max_body_bytes: vqs::MAX_PAYLOAD_BYTES,
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// Serve `router` on `listener` until `shutdown` resolves; then close the listener, ask each
/// connection to finish, and return within the grace period whatever the clients do.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let router = with_body_limits(router, &limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let router = router.clone();
        let closing = closing.clone();
        let limits = limits.clone();
        connections.spawn(async move {
            serve_connection(stream, remote, router, &limits, closing).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!(connections = open, "closing connections");
    }
    let drained =
        tokio::time::timeout(limits.shutdown_grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace_s = limits.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace: dropped"
        );
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: &ServerLimits,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (activity_tx, mut activity) = watch::channel(());
    let counter = in_flight.clone();
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        let router = router.clone();
        let counter = counter.clone();
        let activity = activity_tx.clone();
        counter.fetch_add(1, Ordering::SeqCst);
        let _ = activity.send(());
        async move {
            let response = router.oneshot(req).await;
            counter.fetch_sub(1, Ordering::SeqCst);
            let _ = activity.send(());
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        let idle = tokio::time::sleep(limits.idle_timeout);
        tokio::select! {
            _ = conn.as_mut() => return,
            Ok(()) = activity.changed() => {}
            _ = idle, if in_flight.load(Ordering::SeqCst) == 0 => {
                tracing::debug!(peer = %remote, "idle connection closed");
                return;
            }
            _ = closing.changed(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Every request's body is read whole, within the body timeout and the size limit, before
/// a handler sees it.
fn with_body_limits(router: Router, limits: &ServerLimits) -> Router {
    let limits = Arc::new(limits.clone());
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let limits = limits.clone();
        async move { read_body(req, next, &limits).await }
    }))
}

fn refusal(status: StatusCode, error: String) -> Response {
    (status, [(http::header::CONNECTION, "close")], axum::Json(json!({ "error": error }))).into_response()
}

async fn read_body(req: Request, next: Next, limits: &ServerLimits) -> Response {
    let max = limits.max_body_bytes;
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {max} bytes: send a smaller body (the limit is VQS_HTTP_MAX_BODY_BYTES)"),
        )
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    if declared == Some(0) || (declared.is_none() && !req.headers().contains_key(http::header::TRANSFER_ENCODING)) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if is_length_limit(&e) => return too_large(),
        Ok(Err(e)) => return refusal(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")),
        Err(_) => {
            return refusal(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s (VQS_HTTP_BODY_TIMEOUT_SECONDS)",
                    limits.body_timeout.as_secs()
                ),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
