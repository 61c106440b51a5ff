//! `serve`: the app and its workers until a shutdown signal (SIGTERM or Ctrl-C), or until a
//! background task fails for good.

use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::server::ServerLimits;
use crate::state::VqsState;
use crate::workers::Workers;

/// A background task kept panicking and was not restarted: the process should exit non-zero
/// so that an orchestrator restarts it (`/api/health/live` answers 503 meanwhile).
#[derive(Debug, thiserror::Error)]
#[error(
    "the background task {name} kept panicking and was not restarted (last cause: {cause}): exiting so it can be restarted"
)]
pub struct TaskFailed {
    /// The task's name.
    pub name: String,
    /// Its last panic.
    pub cause: String,
}

/// Serve `router` on `listener` with `limits` while `workers` run, until SIGTERM / Ctrl-C (or
/// a background task of `state` fails for good). Connections and jobs then wind down together
/// within `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: &VqsState,
    workers: Workers,
    limits: ServerLimits,
) -> Result<(), TaskFailed> {
    let grace = limits.shutdown_grace;
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel();
    let stop = {
        let tasks = state.tasks.clone();
        let workers_stop = workers.stopper();
        async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                t = tasks.failed() => {
                    let _ = failed_tx.send(t);
                }
            }
            tracing::info!(grace_s = grace.as_secs(), "shutting down: finishing in-flight requests and deliveries");
            // Connections and jobs wind down together, within one grace period.
            let _ = stopping_tx.send(tokio::time::Instant::now());
            let _ = workers_stop.send(true);
        }
    };
    crate::server::run(listener, router, limits, stop).await;
    let deadline = stopping.await.unwrap_or_else(|_| tokio::time::Instant::now()) + grace + Duration::from_secs(1);
    if tokio::time::timeout_at(deadline, workers.stop()).await.is_err() {
        tracing::warn!("background work still running after the shutdown grace: exiting anyway");
    }
    if let Ok(t) = failed_rx.await {
        return Err(TaskFailed { name: t.name.to_string(), cause: t.last_panic.unwrap_or_else(|| "unknown".into()) });
    }
    Ok(())
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
