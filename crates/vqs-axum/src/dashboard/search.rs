//! Search: the header's box on every signed-in page finds a message by its id or by the
//! idempotency key it holds (any topic). One match opens it; several are listed, newest
//! first; none says so and what can be searched.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use vqs::QueueError;
use vqs::store::DeliveryState;

use super::html::{badge, esc, page, url, when};
use super::{csrf_of, header_right, html, session_of, storage_error};
use crate::state::VqsState;

/// The search box, for the header.
pub fn search_box() -> &'static str {
    r#"<form class="search" action="/admin/search" method="get" role="search"><input type="search" name="q" placeholder="message id or idempotency key" aria-label="Search messages by id or idempotency key" maxlength="256"></form>"#
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

pub async fn search(State(state): State<VqsState>, headers: HeaderMap, Query(query): Query<SearchQuery>) -> Response {
    let Some(s) = session_of(&state, &headers).await else {
        return Redirect::to("/admin").into_response();
    };
    let q = query.q.unwrap_or_default();
    let found = match state.queue.search_messages(&q).await {
        Ok(found) => found,
        Err(QueueError::Invalid(why)) => return results(&state, &s, StatusCode::BAD_REQUEST, &q, &[], Some(&why)),
        Err(e) => return storage_error(e),
    };
    if let [one] = found.as_slice() {
        return Redirect::to(&format!("/admin/messages/{}", url(&one.id))).into_response();
    }
    results(&state, &s, StatusCode::OK, &q, &found, None)
}

fn results(
    state: &VqsState,
    s: &super::Session,
    status: StatusCode,
    q: &str,
    found: &[vqs::store::MessageRecord],
    refused: Option<&str>,
) -> Response {
    let now = state.queue.clock().now();
    let mut body = String::from(r#"<main><p><a href="/admin">← all topics</a></p>"#);
    match (refused, found.is_empty()) {
        (Some(why), _) => {
            let _ = write!(body, r#"<p class="flash bad">{}</p>"#, esc(why));
        }
        (None, true) => {
            let _ = write!(
                body,
                r#"<p class="flash">Nothing found for <code>{}</code>: search for a message id (<code>msg_…</code>) or the exact idempotency key a message was sent with, while the message is kept.</p>"#,
                esc(q)
            );
        }
        (None, false) => {
            let _ = write!(
                body,
                r#"<h2>{} messages for <code>{}</code></h2><table class="search-results"><thead><tr><th>message</th><th>topic</th><th>state</th><th>key</th><th>sent</th></tr></thead><tbody>"#,
                found.len(),
                esc(q)
            );
            for m in found {
                let state = match m.deliveries.first().map(|d| d.state) {
                    Some(DeliveryState::Acked) => badge("ok", "succeeded"),
                    Some(DeliveryState::Dead) => badge("bad", "dead"),
                    Some(DeliveryState::Cancelled) => badge("warn", "cancelled"),
                    Some(DeliveryState::Leased) => badge("info", "running"),
                    Some(DeliveryState::Pending) => badge("info", "waiting"),
                    None => badge("warn", "no consumer"),
                };
                let _ = write!(
                    body,
                    r#"<tr><td><a href="/admin/messages/{}"><code>{}</code></a></td><td>{}</td><td>{state}</td><td><code>{}</code></td><td>{}</td></tr>"#,
                    url(&m.id),
                    esc(&m.id),
                    esc(&m.topic),
                    esc(m.idempotency_key.as_deref().unwrap_or("")),
                    esc(&when(m.created_at, now)),
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    body.push_str("</main>");
    html(status, page("Search", &header_right(&csrf_of(state, s)), &body))
}
