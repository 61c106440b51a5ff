//! The dead letters grouped by topic and error (the error's first line), each group with
//! "Retry all" and "Discard all": CSRF-checked POSTs that act on every dead letter of the
//! group (`vqs::Queue::dead_letter_group_act`) and answer with a redirect whose notice says
//! how many this click acted on — a reload never repeats it.

use std::fmt::Write;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use vqs::{DeadLetterGroupAction, QueueError};

use super::html::{cut, esc, when};
use super::{CsrfForm, refusal, storage_error};
use crate::state::VqsState;

/// Groups the overview shows at most.
const GROUPS_SHOWN: u32 = 20;

/// The overview's "by error" table; empty when there are no dead letters.
pub(super) async fn section(state: &VqsState, csrf: &str) -> Result<String, QueueError> {
    let q = &state.queue;
    let groups = q.dead_letter_groups(GROUPS_SHOWN).await?;
    if groups.is_empty() {
        return Ok(String::new());
    }
    let now = q.clock().now();
    let mut out = String::from(
        r#"<h3>By error</h3><table id="dead-letter-groups"><thead><tr><th>topic</th><th>error (first line)</th><th>dead letters</th><th>oldest</th><th>newest</th><th></th></tr></thead><tbody>"#,
    );
    for g in &groups {
        let form = |path: &str, label: &str, class: &str, confirm: &str| {
            format!(
                r#"<form method="post" action="/admin/dead-letters/groups/{path}" class="inline" data-confirm="{confirm}"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="topic" value="{topic}"><input type="hidden" name="error" value="{error}"><button type="submit" class="{class}">{label}</button></form>"#,
                confirm = esc(confirm),
                csrf = esc(csrf),
                topic = esc(&g.topic),
                error = esc(&g.error),
            )
        };
        let _ = write!(
            out,
            r#"<tr data-dead-letter-group><td>{}</td><td class="error">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td class="actions">{}{}</td></tr>"#,
            esc(&g.topic),
            esc(&cut(&g.error, 200)),
            g.count,
            when(g.oldest_at, now),
            when(g.newest_at, now),
            form("retry", "Retry all", "primary", &format!("Replay all {} dead letters of this group?", g.count)),
            form(
                "discard",
                "Discard all",
                "danger",
                &format!("Discard all {} dead letters of this group for good?", g.count)
            ),
        );
    }
    out += "</tbody></table><h3>Newest</h3>";
    Ok(out)
}

#[derive(Debug, Deserialize)]
pub(super) struct GroupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    error: String,
}

pub(super) async fn retry(
    State(state): State<VqsState>,
    headers: HeaderMap,
    form: Result<Form<GroupForm>, FormRejection>,
) -> Response {
    act(state, headers, form, DeadLetterGroupAction::Replay).await
}

pub(super) async fn discard(
    State(state): State<VqsState>,
    headers: HeaderMap,
    form: Result<Form<GroupForm>, FormRejection>,
) -> Response {
    act(state, headers, form, DeadLetterGroupAction::Discard).await
}

async fn act(
    state: VqsState,
    headers: HeaderMap,
    form: Result<Form<GroupForm>, FormRejection>,
    action: DeadLetterGroupAction,
) -> Response {
    let csrf = form.as_ref().map(|f| f.csrf.clone()).unwrap_or_default();
    if let Err(refused) = refusal(&state, &headers, &Ok(Form(CsrfForm { csrf }))).await {
        return refused;
    }
    let Ok(Form(f)) = form else {
        return storage_error(QueueError::Invalid("send the form with the group's topic and error".into()));
    };
    match state.queue.dead_letter_group_act(&f.topic, &f.error, action).await {
        Ok(n) => {
            tracing::info!(queue.name = %f.topic, acted = n, ?action, "dead-letter group settled from the dashboard");
            let flash = match action {
                DeadLetterGroupAction::Replay => "group-replayed",
                DeadLetterGroupAction::Discard => "group-discarded",
            };
            Redirect::to(&format!("/admin?flash={flash}&count={n}#dead-letters")).into_response()
        }
        Err(e) => storage_error(e),
    }
}
