//! The operator's actions on messages and topics: cancel and run now on a message's page,
//! purge of a topic (after a page that shows the dry run's count), pause and resume of a
//! topic. Each is a CSRF-checked
//! POST that answers with a redirect to a page whose notice (`?flash=` keyword) says what
//! happened — as replay and discard do — so a reload never repeats it.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use vqs::{QueueError, StoreError};

use super::html::{page, url};
use super::{CsrfForm, csrf_of, pages, refusal, session_of, storage_error};
use crate::state::VqsState;

fn to_message(id: &str, flash: Option<&str>) -> Response {
    let flash = flash.map(|f| format!("?flash={f}")).unwrap_or_default();
    Redirect::to(&format!("/admin/messages/{}{flash}", url(id))).into_response()
}

/// Cancel a message in every consumer group; back to its page, which says what happened.
pub(super) async fn cancel(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(refused) = refusal(&state, &headers, &form).await {
        return refused;
    }
    match state.queue.cancel(&id).await {
        Ok(done) => {
            tracing::info!(message.id = %id, running = done.running.len(), "message cancelled from the dashboard");
            to_message(&id, Some(if done.running.is_empty() { "cancelled" } else { "cancelled-running" }))
        }
        // Finished already (or cancelled by another click first): the page says how it ended.
        Err(QueueError::Conflict(_)) => to_message(&id, Some("not-cancelled")),
        // Pruned meanwhile: its page says there is no such message.
        Err(QueueError::Store(StoreError::NotFound(_))) => to_message(&id, None),
        Err(e) => storage_error(e),
    }
}

/// Make a delayed message (or one waiting for its retry) due now.
pub(super) async fn run_now(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(refused) = refusal(&state, &headers, &form).await {
        return refused;
    }
    match state.queue.run_now(&id).await {
        Ok(0) => to_message(&id, Some("due-already")),
        Ok(_) => {
            tracing::info!(message.id = %id, "message made due from the dashboard");
            to_message(&id, Some("made-due"))
        }
        Err(QueueError::Conflict(_)) => to_message(&id, Some("not-made-due")),
        Err(QueueError::Store(StoreError::NotFound(_))) => to_message(&id, None),
        Err(e) => storage_error(e),
    }
}

/// The purge's confirmation page: the dry run's count and the button. A GET that changes
/// nothing.
pub(super) async fn purge_confirm(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(topic): Path<String>,
) -> Response {
    let Some(s) = session_of(&state, &headers).await else {
        return Redirect::to("/admin").into_response();
    };
    let csrf = csrf_of(&state, &s);
    match pages::purge_confirm(&state, &topic, &csrf).await {
        Ok(body) => {
            let logout = pages::action_form("/admin/logout", &csrf, "Sign out", "link", None);
            super::html(StatusCode::OK, page("Purge", &logout, &format!("<main>{body}</main>")))
        }
        Err(e) => storage_error(e),
    }
}

/// Cancel every pending message of a topic; back to the overview, which says how many.
pub(super) async fn purge(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(topic): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(refused) = refusal(&state, &headers, &form).await {
        return refused;
    }
    match state.queue.purge(&topic, None, false).await {
        Ok(n) => {
            tracing::info!(queue.name = %topic, cancelled = n, "topic purged from the dashboard");
            Redirect::to(&format!("/admin?flash=purged&count={n}")).into_response()
        }
        Err(e) => storage_error(e),
    }
}

/// Pause a topic (nothing new starts; running jobs finish); back to the overview.
pub(super) async fn pause(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(topic): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    set_paused(state, headers, topic, form, true).await
}

/// Resume a paused topic (its backlog starts in due order); back to the overview.
pub(super) async fn resume(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(topic): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    set_paused(state, headers, topic, form, false).await
}

async fn set_paused(
    state: VqsState,
    headers: HeaderMap,
    topic: String,
    form: Result<Form<CsrfForm>, FormRejection>,
    paused: bool,
) -> Response {
    if let Err(refused) = refusal(&state, &headers, &form).await {
        return refused;
    }
    match crate::admin_pause::set_paused(&state.queue, &state.vercel, &topic, paused).await {
        Ok(_) => {
            tracing::info!(queue.name = %topic, paused, "topic {} from the dashboard", if paused { "paused" } else { "resumed" });
            Redirect::to(if paused { "/admin?flash=paused" } else { "/admin?flash=resumed" }).into_response()
        }
        Err(e) if e.status.is_client_error() => storage_error(QueueError::Invalid(e.message)),
        Err(e) => {
            tracing::error!(error = %e.message, "could not pause or resume from the dashboard");
            storage_error(QueueError::Store(StoreError::Database(e.message)))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_id_is_escaped_in_the_redirect() {
        let r = super::to_message("a/b?c", Some("cancelled"));
        assert_eq!(r.headers()[axum::http::header::LOCATION], "/admin/messages/a%2Fb%3Fc?flash=cancelled");
    }
}
