//! The overview's Schedules section and its "Fire now" button.
//!
//! The section shows one page of runtime schedules by name ([`SCHEDULES_ON_PAGE`], the
//! cursor in `?schedules_after=`, kept by the page's polling since it re-reads the page's
//! own URL) with a link to the next, and above it how many schedules there are by
//! heartbeat — counted without reading them all (`vqs::ScheduleHealth`), so the overview
//! stays cheap with ten thousand schedules. "Fire now" is a CSRF-checked POST like the other
//! actions, answered with a redirect: to the message the fire published, or back here with
//! a notice saying why nothing was fired.

use std::fmt::Write;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use vqs::store::ScheduleFired;
use vqs::{CronState, QueueError, ScheduleHealth, SchedulePageStatus};

use super::html::{badge, esc, url, when};
use super::pages::{Filters, action_form};
use super::{CsrfForm, refusal, storage_error};
use crate::state::VqsState;

/// Schedules per page of the section.
pub const SCHEDULES_ON_PAGE: u32 = 50;

/// Next fire times shown per schedule.
const NEXT_ON_PAGE: usize = 3;

/// What the section shows: one page and the counts by heartbeat.
pub struct SchedulesView {
    page: SchedulePageStatus,
    health: ScheduleHealth,
}

/// Read the page the filters name (`schedules_after`) and the counts; a cursor that could
/// not be a name is refused (`QueueError::Invalid`, a 400 page).
pub async fn read(state: &VqsState, f: &Filters) -> Result<SchedulesView, QueueError> {
    let schedules = state.queue.schedules();
    let page = schedules.page_statuses(f.schedules_after.as_deref(), SCHEDULES_ON_PAGE, NEXT_ON_PAGE).await?;
    let health = schedules.health(0).await?;
    Ok(SchedulesView { page, health })
}

fn heartbeat(state: CronState) -> String {
    match state {
        CronState::Ok => badge("ok", "ok"),
        CronState::Late => badge("warn", "late"),
        CronState::Failing => badge("bad", "failing"),
    }
}

/// `/admin` with the current filters and the schedules page starting after `after`.
fn page_link(f: &Filters, after: Option<&str>) -> String {
    let mut query = Vec::new();
    for (key, value) in [("topic", &f.topic), ("status", &f.status)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            query.push(format!("{key}={}", url(v)));
        }
    }
    if let Some(a) = after {
        query.push(format!("schedules_after={}", url(a)));
    }
    let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
    format!("/admin{query}#schedules")
}

/// The section: counts, one page of schedules with their next fires in UTC and in their
/// zone, last fire (linked to its message), heartbeat and "Fire now"; links to the first
/// and the next page.
pub fn section(view: &SchedulesView, f: &Filters, csrf: &str, can_fire: bool, now: DateTime<Utc>) -> String {
    let h = &view.health;
    let mut out = format!(r#"<section id="schedules"><h2>Schedules <span class="count">{}</span></h2>"#, h.total);
    if h.total == 0 && f.schedules_after.is_none() {
        out += r#"<p class="empty">No runtime schedules.</p></section>"#;
        return out;
    }
    let _ = write!(
        out,
        r#"<p id="schedule-counts">{} ok · {} late · {} failing{}</p>"#,
        h.ok,
        h.late,
        h.failing,
        if h.unchecked > 0 { format!(" · {} overdue, not examined", h.unchecked) } else { String::new() }
    );
    let schedules = &view.page.schedules;
    if schedules.is_empty() {
        out += r#"<p class="empty">No schedules on this page.</p>"#;
    } else {
        out += "<table><thead><tr><th>name</th><th>cron</th><th>timezone</th><th>topic</th><th>enabled</th><th>next (UTC)</th><th>next (its zone)</th><th>last fire</th><th>heartbeat</th><th></th></tr></thead><tbody>";
    }
    for s in schedules {
        let tz = vqs::parse_timezone(&s.timezone).ok();
        let utc: Vec<String> = s.next.iter().map(|t| esc(&t.format("%Y-%m-%d %H:%M:%S UTC").to_string())).collect();
        let local: Vec<String> = match tz {
            Some(tz) => {
                s.next.iter().map(|t| esc(&t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string())).collect()
            }
            None => vec!["unknown zone".into()],
        };
        let last = s
            .last_fire
            .map(|t| {
                let tick =
                    s.last_tick.map(|k| format!(" (tick {})", esc(&k.format("%Y-%m-%d %H:%M:%S UTC").to_string())));
                let message = s
                    .last_message_id
                    .as_deref()
                    .map(|m| format!(r#" <a class="last-message" href="/admin/messages/{}">message</a>"#, url(m)));
                format!("{}{}{}", when(t, now), tick.unwrap_or_default(), message.unwrap_or_default())
            })
            .unwrap_or_else(|| "never".into());
        let fire = if can_fire {
            action_form(
                &format!("/admin/schedules/{}/fire", url(&s.name)),
                csrf,
                "Fire now",
                "primary",
                Some(&format!("Fire schedule {} now? Its topic gets one message; its next tick is unchanged.", s.name)),
            )
        } else {
            String::new()
        };
        let none = || "–".to_owned();
        let _ = write!(
            out,
            r#"<tr data-schedule="{name}"><td>{name}</td><td><code>{}</code></td><td class="timezone">{}</td><td>{}</td><td>{}</td><td class="next-utc">{}</td><td class="next-local">{}</td><td class="last-fire">{}</td><td>{}</td><td class="actions">{fire}</td></tr>"#,
            esc(&s.cron),
            esc(&s.timezone),
            esc(&s.topic),
            if s.enabled { "yes" } else { "no" },
            if utc.is_empty() { none() } else { utc.join("<br>") },
            if utc.is_empty() { none() } else { local.join("<br>") },
            last,
            heartbeat(s.state),
            name = esc(&s.name),
        );
    }
    if !schedules.is_empty() {
        out += "</tbody></table>";
    }
    let mut nav = Vec::new();
    if f.schedules_after.as_deref().is_some_and(|a| !a.is_empty()) {
        nav.push(format!(r#"<a id="schedules-first" href="{}">← first page</a>"#, page_link(f, None)));
    }
    if let Some(next) = view.page.next_after.as_deref() {
        nav.push(format!(r#"<a id="schedules-next" href="{}">next page →</a>"#, page_link(f, Some(next))));
    }
    if !nav.is_empty() {
        let _ = write!(out, r#"<p class="pager">{}</p>"#, nav.join(" "));
    }
    out += "</section>";
    out
}

/// "Fire now": fire the schedule (tick = now, enabled or not, its next tick unchanged) and
/// open the message it published; back to the section with a notice when nothing was fired.
pub(super) async fn fire(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(refused) = refusal(&state, &headers, &form).await {
        return refused;
    }
    match state.queue.schedules().trigger(&name).await {
        Ok(ScheduleFired::Fired { message_id, .. }) => {
            tracing::info!(schedule = %name, message.id = %message_id, "schedule fired from the dashboard");
            Redirect::to(&format!("/admin/messages/{}?flash=schedule-fired", url(&message_id))).into_response()
        }
        Ok(ScheduleFired::NotFound) => Redirect::to("/admin?flash=schedule-gone#schedules").into_response(),
        // `Claimed` and `Skipped` answer other fire modes; a trigger reports `Fired` itself.
        Ok(
            ScheduleFired::AlreadyFired
            | ScheduleFired::Changed
            | ScheduleFired::Claimed { .. }
            | ScheduleFired::Skipped,
        ) => Redirect::to("/admin?flash=schedule-not-fired#schedules").into_response(),
        Err(e) => storage_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_links_keep_the_filters_and_escape_the_cursor() {
        let f = Filters { topic: Some("probe".into()), status: Some(String::new()), ..Default::default() };
        assert_eq!(page_link(&f, Some("a&b")), "/admin?topic=probe&schedules_after=a%26b#schedules");
        assert_eq!(page_link(&Filters::default(), None), "/admin#schedules");
    }
}
