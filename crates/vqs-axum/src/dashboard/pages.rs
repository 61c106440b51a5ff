//! The dashboard's two pages: the overview (`/admin`) and one message's history
//! (`/admin/messages/{id}`). Each renders its live part on its own for the page's polling.

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use vqs::store::{
    DeliveryState, ExecutionListParams, ExecutionRecord, ExecutionStatus, MessageRecord, ProgressListParams,
    ProgressRecord,
};
use vqs::{CronState, QueueError};

use super::history_pager::{PAGE, before_cursor};
use super::html::{badge, cut, esc, url, when};
use crate::state::VqsState;

/// The overview's filters (`?topic=&status=`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Filters {
    pub topic: Option<String>,
    pub status: Option<String>,
    pub flash: Option<String>,
    /// How many a purge cancelled (with `flash=purged`); a string because flattened query
    /// fields reach serde as strings.
    pub count: Option<String>,
    /// The Schedules section's page: the schedules named after this one.
    pub schedules_after: Option<String>,
    /// The executions' page: those with an id below this one ("Older").
    pub before: Option<String>,
}

fn status_badge(s: ExecutionStatus) -> String {
    let class = match s {
        ExecutionStatus::Success => "ok",
        ExecutionStatus::Failed => "bad",
        ExecutionStatus::Running => "info",
        ExecutionStatus::Snoozed => "info",
        ExecutionStatus::Cancelled => "warn",
    };
    badge(class, s.as_str())
}

fn progress_bar(p: &ProgressRecord) -> String {
    let (pct, text) = match p.total {
        Some(t) if t > 0 => {
            let pct = (p.done.min(t) as f64 * 100.0 / t as f64).round() as u64;
            (pct, format!("{} / {} ({pct}%)", p.done, t))
        }
        _ => (0, format!("{} done", p.done)),
    };
    format!(
        r#"<div class="bar" role="progressbar" aria-valuenow="{pct}" aria-valuemin="0" aria-valuemax="100"><div class="fill w{w}"></div></div><span class="bartext">{text}</span>"#,
        w = pct / 5 * 5,
        text = esc(&text)
    )
}

/// A form that posts to `action` with the CSRF token; `confirm` asks first.
pub fn action_form(action: &str, csrf: &str, label: &str, class: &str, confirm: Option<&str>) -> String {
    let confirm = confirm.map(|c| format!(r#" data-confirm="{}""#, esc(c))).unwrap_or_default();
    format!(
        r#"<form method="post" action="{action}" class="inline"{confirm}><input type="hidden" name="csrf" value="{csrf}"><button type="submit" class="{class}">{label}</button></form>"#,
        action = esc(action),
        csrf = esc(csrf),
        class = esc(class),
        label = esc(label)
    )
}

fn executions_table(rows: &[ExecutionRecord], now: DateTime<Utc>, with_message: bool) -> String {
    if rows.is_empty() {
        return r#"<p class="empty">No executions.</p>"#.into();
    }
    let mut out = String::from(r#"<table class="executions"><thead><tr><th>#</th><th>topic</th>"#);
    if with_message {
        out += "<th>message</th>";
    }
    out += "<th>attempt</th><th>status</th><th>started</th><th>duration</th><th>error</th></tr></thead><tbody>";
    for e in rows {
        let _ = write!(out, r#"<tr data-execution="{0}"><td>{0}</td><td>{1}</td>"#, e.id, esc(&e.topic));
        if with_message {
            let _ = write!(
                out,
                r#"<td><a href="/admin/messages/{}">{}</a></td>"#,
                url(&e.message_id),
                esc(&cut(&e.message_id, 16))
            );
        }
        let _ = write!(
            out,
            r#"<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="error">{}</td></tr>"#,
            e.attempt,
            status_badge(e.status),
            when(e.started_at, now),
            e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_else(|| "–".into()),
            esc(&cut(e.error.as_deref().unwrap_or(""), 400))
        );
    }
    out + "</tbody></table>"
}

/// The overview's live part.
pub async fn overview(state: &VqsState, f: &Filters, csrf: &str) -> Result<String, QueueError> {
    let q = &state.queue;
    let now = q.clock().now();
    let depth = q.depth().await?;
    let recent = q.execution_counts(Duration::from_secs(300)).await?;
    let crons = q.cron_statuses(&state.vercel.crons, state.started_at, 1).await?;
    let schedules = super::schedules::read(state, f).await?;
    let progress = q.progress(ProgressListParams { message_id: None, limit: 20 }).await?;
    let dead = q.dead_letters(50).await?;
    let sync_log = q.sync_log(None).await?;
    let paused: std::collections::BTreeSet<String> =
        q.topic_controls().await?.into_iter().filter(|c| c.paused).map(|c| c.topic).collect();
    let limits = q.limits().await?;
    let paused_groups = q.paused_groups(None).await?;
    let status = match f.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(crate::admin::parse_execution_status(s).map_err(QueueError::Invalid)?),
    };
    let topic = f.topic.clone().filter(|t| !t.is_empty());
    let mut executions = q
        .executions(ExecutionListParams {
            topic,
            status,
            before_id: before_cursor(f)?,
            limit: PAGE + 1,
            ..Default::default()
        })
        .await?;

    let mut out = String::new();
    if let Some(flash) = f.flash.as_deref() {
        let text = match flash {
            "discarded" => "Dead letter discarded.".to_owned(),
            "not-found" => "That dead letter is gone already (replayed or discarded elsewhere).".to_owned(),
            "schedule-gone" => "Not fired: that schedule no longer exists (deleted elsewhere).".to_owned(),
            "schedule-not-fired" => {
                "Not fired: another fire of that schedule at the same instant got there first; look at its last fire."
                    .to_owned()
            }
            // The count is parsed as a number: nothing from the URL is shown as text.
            "paused" => "Topic paused: nothing new starts until it is resumed; running jobs finish.".to_owned(),
            "resumed" => "Topic resumed: its waiting messages start in due order.".to_owned(),
            "group-replayed" | "group-discarded" => {
                let n = f.count.as_deref().and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
                let done = if flash == "group-replayed" { "replayed" } else { "discarded" };
                format!("{n} dead letter{} {done}.", if n == 1 { "" } else { "s" })
            }
            "purged" => match f.count.as_deref().and_then(|c| c.parse::<u64>().ok()) {
                Some(1) => "Purged: 1 pending message cancelled; it will not run.".to_owned(),
                Some(n) => format!("Purged: {n} pending messages cancelled; they will not run."),
                None => String::new(),
            },
            _ => String::new(),
        };
        if !text.is_empty() {
            let _ = write!(out, r#"<p class="flash" id="flash">{}</p>"#, esc(&text));
        }
    }

    // Topics: live counts and the last five minutes.
    out += r#"<section><h2>Topics</h2>"#;
    let mut topics: Vec<String> = state.vercel.queue_triggers.iter().map(|t| t.topic.clone()).collect();
    for d in &depth {
        if !topics.contains(&d.topic) {
            topics.push(d.topic.clone());
        }
    }
    topics.sort();
    // On Vercel, messages wait in Vercel Queues, not in this database: say so rather than
    // show zeros. What ran (executions, dead letters) is this database's either way.
    let elsewhere = q.publishes_elsewhere();
    if elsewhere {
        out += r#"<p class="note" id="depth-elsewhere">Messages wait in Vercel Queues on this deployment: how many are waiting, delayed or in flight there is not visible here (see the project's Queues tab on Vercel). Running, succeeded, failed and dead letters below are this database's.</p>"#;
    }
    let unknown = |n: i64| if elsewhere { "–".to_owned() } else { n.to_string() };
    // Cancelled counts attempts, like succeeded and failed: from the executions of the last
    // five minutes, not `queue_stats`, which reads the whole history and this part is polled.
    out += "<table><thead><tr><th>topic</th><th>waiting</th><th>oldest due</th><th>delayed</th><th>running</th>\
            <th>succeeded (5 min)</th><th>failed (5 min)</th><th>cancelled (5 min)</th><th>dead letters</th><th></th></tr></thead><tbody>";
    for t in &topics {
        let d = depth.iter().find(|d| &d.topic == t).cloned().unwrap_or_default();
        let r = recent.iter().find(|r| &r.topic == t).cloned().unwrap_or_default();
        // Purge asks first on a page of its own that shows how many it would cancel.
        let purge = if !elsewhere && vqs::is_valid_name(t) && d.waiting + d.delayed > 0 {
            format!(r#"<a class="purge" href="/admin/queues/{}/purge">Purge…</a>"#, url(t))
        } else {
            String::new()
        };
        // Pause and resume: for the topics vercel.json consumes (the others cannot be paused).
        let is_paused = paused.contains(t);
        let consumed = crate::admin::require_consumed_topic(&state.vercel, t).is_ok() && vqs::is_valid_name(t);
        let pause = match (consumed, is_paused) {
            (false, _) => String::new(),
            (true, false) => action_form(&format!("/admin/queues/{}/pause", url(t)), csrf, "Pause", "pause", None),
            (true, true) => action_form(&format!("/admin/queues/{}/resume", url(t)), csrf, "Resume", "resume", None),
        };
        let mut badge =
            if is_paused { r#" <span class="badge warn paused">paused</span>"#.to_owned() } else { String::new() };
        // Paused message groups (`web pause <topic> --group G`; resumed the same way).
        let groups: Vec<&str> = paused_groups.iter().filter(|g| &g.topic == t).map(|g| g.group_key.as_str()).collect();
        if !groups.is_empty() {
            let _ = write!(
                badge,
                r#" <span class="badge warn paused-groups" title="resume with: web resume {} --group G">groups paused: {}</span>"#,
                esc(t),
                esc(&groups.join(", "))
            );
        }
        // The limits in force (a default or an override; `web limits` / the admin API change them).
        if let Some(l) = limits.iter().find(|l| &l.topic == t) {
            let mut parts = Vec::new();
            if let Some(c) = l.in_force.concurrency {
                parts.push(format!("≤ {} at once ({})", c.value, source_word(c.source)));
            }
            if let Some(r) = l.in_force.rate_limit {
                parts.push(format!("{}/{} s ({})", r.value.limit, r.value.period_seconds, source_word(r.source)));
            }
            if !parts.is_empty() {
                let _ = write!(badge, r#" <span class="badge limits">{}</span>"#, esc(&parts.join(" · ")));
            }
        }
        // The busiest message groups of a grouped topic: running per group, what waits, why held.
        if consumed {
            let busiest = q.busiest_groups(t).await?;
            if !busiest.is_empty() {
                let list: Vec<String> = busiest
                    .iter()
                    .map(|g| {
                        let more = if g.waiting_more { "+" } else { "" };
                        let held = g.held.map(|h| format!(" ({h})")).unwrap_or_default();
                        format!("{}: {} running, {}{more} waiting{held}", g.group, g.running, g.waiting)
                    })
                    .collect();
                let _ =
                    write!(badge, r#" <span class="badge busiest-groups">groups: {}</span>"#, esc(&list.join(" · ")));
            }
        }
        let _ = write!(
            out,
            r#"<tr data-topic="{tt}"{row_class}><td><a href="/admin?topic={tu}">{tt}</a>{badge}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num{}">{}</td><td class="num cancelled">{}</td><td class="num{}">{}</td><td class="actions">{pause}{purge}</td></tr>"#,
            unknown(d.waiting),
            d.oldest_due_at.map(|t| when(t, now)).unwrap_or_else(|| "–".into()),
            unknown(d.delayed),
            d.running,
            r.success,
            if r.failed > 0 { " warn" } else { "" },
            r.failed,
            r.cancelled,
            if d.dead_letters > 0 { " bad" } else { "" },
            d.dead_letters,
            tt = esc(t),
            tu = url(t),
            row_class = if is_paused { r#" class="paused""# } else { "" },
        );
    }
    out += "</tbody></table></section>";

    // Crons with their heartbeat.
    out += r#"<section><h2>Crons</h2>"#;
    if crons.is_empty() {
        out += r#"<p class="empty">No crons in vercel.json.</p>"#;
    } else {
        out += "<table><thead><tr><th>path</th><th>schedule</th><th>heartbeat</th><th>last run</th><th>last success</th><th>next</th></tr></thead><tbody>";
        for c in &crons {
            let (class, label) = match c.state {
                CronState::Ok => ("ok", "ok"),
                CronState::Late => ("warn", "late"),
                CronState::Failing => ("bad", "failing"),
            };
            let last = c
                .last_run
                .as_ref()
                .map(|r| {
                    let err =
                        r.error.as_deref().map(|e| format!(r#" <span class="error">{}</span>"#, esc(&cut(e, 200))));
                    format!("{} {}{}", when(r.started_at, now), esc(&r.outcome), err.unwrap_or_default())
                })
                .unwrap_or_else(|| "never".into());
            let _ = write!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.path),
                esc(&c.schedule),
                badge(class, label),
                last,
                c.last_success_at.map(|t| when(t, now)).unwrap_or_else(|| "never".into()),
                c.next.first().map(|t| when(*t, now)).unwrap_or_else(|| "–".into()),
            );
        }
        out += "</tbody></table>";
    }
    out += "</section>";

    out += &super::schedules::section(&schedules, f, csrf, !q.publishes_elsewhere(), now);

    // Progress of jobs that report it.
    if !progress.is_empty() {
        out += r#"<section><h2>Progress</h2><table><thead><tr><th>topic</th><th>message</th><th>progress</th><th>note</th><th>updated</th></tr></thead><tbody>"#;
        for p in &progress {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td><a href="/admin/messages/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&p.topic),
                url(&p.message_id),
                esc(&cut(&p.message_id, 16)),
                progress_bar(p),
                esc(&cut(p.note.as_deref().unwrap_or(""), 200)),
                when(p.updated_at, now)
            );
        }
        out += "</tbody></table></section>";
    }

    out += &super::charts::section(state).await?;

    // Dead letters, with replay and discard.
    let _ =
        write!(out, r#"<section id="dead-letters"><h2>Dead letters <span class="count">{}</span></h2>"#, dead.len());
    if dead.is_empty() {
        out += r#"<p class="empty">No dead letters.</p>"#;
    } else {
        out += &super::dead_letter_groups::section(state, csrf).await?;
        out += "<table><thead><tr><th>#</th><th>topic</th><th>message</th><th>attempts</th><th>died</th><th>error</th><th>payload</th><th></th></tr></thead><tbody>";
        for d in &dead {
            let mut payload = cut(&serde_json::to_string(&d.payload).unwrap_or_default(), 200);
            if d.payload_truncated {
                let _ = write!(payload, " ({} bytes in all)", d.payload_bytes);
            }
            let _ = write!(
                out,
                r#"<tr data-dead-letter="{id}"><td>{id}</td><td>{}</td><td><a href="/admin/messages/{}">{}</a></td><td class="num">{}</td><td>{}</td><td class="error">{}</td><td><code>{}</code></td><td class="actions">{}{}</td></tr>"#,
                esc(&d.topic),
                url(&d.message_id),
                esc(&cut(&d.message_id, 16)),
                d.attempts,
                when(d.created_at, now),
                esc(&cut(&d.error, 400)),
                esc(&payload),
                action_form(&format!("/admin/dead-letters/{}/replay", d.id), csrf, "Replay", "primary", None),
                action_form(
                    &format!("/admin/dead-letters/{}/discard", d.id),
                    csrf,
                    "Discard",
                    "danger",
                    Some("Discard this dead letter for good?")
                ),
                id = d.id,
            );
        }
        out += "</tbody></table>";
    }
    out += "</section>";

    // Sync log of incremental sync jobs.
    if !sync_log.is_empty() {
        out += r#"<section><h2>Sync log</h2><table><thead><tr><th>job</th><th>account</th><th>state</th><th>last success</th><th>last attempt</th><th>items</th><th>cursor</th><th>error</th></tr></thead><tbody>"#;
        for s in &sync_log {
            let state = if s.last_error.is_some() { badge("bad", "failing") } else { badge("ok", "ok") };
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td><code>{}</code></td><td class="error">{}</td></tr>"#,
                esc(&s.topic),
                esc(&s.key),
                state,
                s.last_success_at.map(|t| when(t, now)).unwrap_or_else(|| "never".into()),
                when(s.last_attempt_at, now),
                s.items_synced,
                esc(&cut(s.cursor.as_deref().unwrap_or("–"), 40)),
                esc(&cut(s.last_error.as_deref().unwrap_or(""), 300))
            );
        }
        out += "</tbody></table></section>";
    }

    // Recent executions (the filters live outside the refreshed part).
    out += r#"<section id="executions"><h2>Recent executions</h2>"#;
    let pager = super::history_pager::pager(f, &mut executions);
    out += &executions_table(&executions, now, true);
    out += &pager;
    out += "</section>";
    Ok(out)
}

/// The overview's filter form (not refreshed, so typing is never interrupted).
pub fn filter_form(state: &VqsState, f: &Filters) -> String {
    let mut topics: Vec<&str> = state.vercel.queue_triggers.iter().map(|t| t.topic.as_str()).collect();
    topics.sort();
    let current = f.topic.as_deref().unwrap_or("");
    let mut out = String::from(
        r#"<form method="get" action="/admin" class="filters"><label>topic <select name="topic"><option value="">all</option>"#,
    );
    for t in topics {
        let sel = if t == current { " selected" } else { "" };
        let _ = write!(out, r#"<option value="{0}"{sel}>{0}</option>"#, esc(t));
    }
    out += r#"</select></label> <label>status <select name="status"><option value="">all</option>"#;
    for s in crate::admin::EXECUTION_STATUSES.map(ExecutionStatus::as_str) {
        let sel = if f.status.as_deref() == Some(s) { " selected" } else { "" };
        let _ = write!(out, r#"<option value="{s}"{sel}>{s}</option>"#);
    }
    out + r#"</select></label> <button type="submit">Filter</button></form>"#
}

/// One message's live part: its state, deliveries, every attempt with its error, its
/// progress and its dead letter. `None` when there is no such message.
pub async fn message(
    state: &VqsState,
    id: &str,
    flash: Option<&str>,
    csrf: &str,
) -> Result<Option<String>, QueueError> {
    let q = &state.queue;
    let now = q.clock().now();
    let Some(m) = q.message(id).await? else { return Ok(None) };
    let mut attempts = q
        .executions(ExecutionListParams { message_id: Some(id.to_owned()), limit: 1000, ..Default::default() })
        .await?;
    attempts.reverse();
    let progress = q.progress(ProgressListParams { message_id: Some(id.to_owned()), limit: 10 }).await?;
    let dead: Vec<_> = q.dead_letters(1000).await?.into_iter().filter(|d| d.message_id == id).collect();

    let mut out = String::new();
    if let Some((class, text)) = flash.and_then(|f| message_flash(f, &m)) {
        let _ = write!(out, r#"<p class="{class}" id="flash">{}</p>"#, esc(&text));
    }
    let state_label = match (m.deliveries.first().map(|d| d.state), attempts.last().map(|a| a.status)) {
        (Some(DeliveryState::Acked), _) => badge("ok", "succeeded"),
        (Some(DeliveryState::Dead), _) => badge("bad", "dead"),
        (Some(DeliveryState::Cancelled), _) => badge("warn", "cancelled"),
        (Some(DeliveryState::Leased), _) => badge("info", "running"),
        (Some(DeliveryState::Pending), Some(ExecutionStatus::Failed)) => badge("warn", "retrying"),
        (Some(DeliveryState::Pending), Some(ExecutionStatus::Snoozed)) => badge("info", "snoozed"),
        (Some(DeliveryState::Pending), _) => badge("info", "waiting"),
        (None, _) => badge("warn", "no consumer"),
    };
    // Why it is not running (the admin API's `held`).
    let state_label = match crate::admin_pause::held(state, &m).await {
        Ok(Some(why)) => format!("{state_label} {}", badge("warn", &format!("held: {why}"))),
        _ => state_label,
    };
    let _ = write!(
        out,
        r#"<section><h2>Message <code>{}</code> <span id="message-state">{}</span></h2><dl class="facts"><dt>topic</dt><dd>{}</dd><dt>created</dt><dd>{}</dd><dt>expires</dt><dd>{}</dd><dt>idempotency key</dt><dd>{}</dd><dt>group</dt><dd>{}</dd><dt>priority</dt><dd id="message-priority">{}</dd><dt>content type</dt><dd>{}</dd></dl>"#,
        esc(&m.id),
        state_label,
        esc(&m.topic),
        when(m.created_at, now),
        when(m.expires_at, now),
        esc(m.idempotency_key.as_deref().unwrap_or("–")),
        esc(m.group_key.as_deref().unwrap_or("–")),
        m.priority,
        esc(&m.content_type),
    );
    // Run now: a delivery waiting out a delay or a retry's backoff. Cancel: anything that
    // may still run (pending, or leased: running or about to).
    let mut actions = String::new();
    let elsewhere = q.publishes_elsewhere();
    if !elsewhere && m.deliveries.iter().any(|d| d.state == DeliveryState::Pending && d.visible_at > now) {
        actions += &action_form(&format!("/admin/messages/{}/run-now", url(&m.id)), csrf, "Run now", "primary", None);
    }
    if !elsewhere && m.deliveries.iter().any(|d| matches!(d.state, DeliveryState::Pending | DeliveryState::Leased)) {
        actions += &action_form(
            &format!("/admin/messages/{}/cancel", url(&m.id)),
            csrf,
            "Cancel",
            "danger",
            Some("Cancel this message? It will not run; a running job is told to stop."),
        );
    }
    if !actions.is_empty() {
        let _ = write!(out, r#"<p class="actions" id="message-actions">{actions}</p>"#);
    }
    let payload = serde_json::to_string_pretty(&m.payload).unwrap_or_default();
    let _ = write!(out, r#"<h3>Payload</h3><pre class="payload">{}</pre>"#, esc(&cut(&payload, 20_000)));
    out += "<h3>Deliveries</h3><table><thead><tr><th>consumer group</th><th>state</th><th>deliveries</th><th>attempts</th><th>visible at</th></tr></thead><tbody>";
    for d in &m.deliveries {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&d.consumer_group),
            esc(d.state.as_str()),
            d.delivery_count,
            d.attempts,
            when(d.visible_at, now)
        );
    }
    out += "</tbody></table>";
    for p in &progress {
        let _ = write!(out, r#"<h3>Progress</h3><p>{} {}</p>"#, progress_bar(p), esc(p.note.as_deref().unwrap_or("")));
    }
    out += r#"<h3>Attempts</h3>"#;
    out += &executions_table(&attempts, now, false);
    for d in &dead {
        let _ = write!(
            out,
            r#"<h3>Dead letter #{}</h3><p class="error">{}</p><p>{}{}</p>"#,
            d.id,
            esc(&d.error),
            action_form(&format!("/admin/dead-letters/{}/replay", d.id), csrf, "Replay", "primary", None),
            action_form(
                &format!("/admin/dead-letters/{}/discard", d.id),
                csrf,
                "Discard",
                "danger",
                Some("Discard this dead letter for good?")
            ),
        );
    }
    out += "</section>";
    Ok(Some(out))
}

/// The message page's notice after an action (`?flash=`). Only fixed keywords are read from
/// the URL; a refusal is told from the message's state as it is now (a finished delivery
/// stays finished), in the admin API's words.
fn message_flash(flash: &str, m: &MessageRecord) -> Option<(&'static str, String)> {
    let how = finished_how(m);
    let text = match flash {
        "replayed" => return Some(("flash", "Replayed: this is the new message. It runs as soon as a worker is free.".into())),
        "schedule-fired" => {
            return Some(("flash", "Fired: this is the message the schedule published. It runs as soon as a worker is free.".into()));
        }
        "cancelled" => return Some(("flash", "Cancelled: it will not run.".into())),
        "cancelled-running" => {
            return Some(("flash", "Cancelled: its running job was told to stop and is dropped within a second.".into()));
        }
        "made-due" => return Some(("flash", "Due now: it runs as soon as a worker is free.".into())),
        "due-already" => return Some(("flash", "It was due already: it runs as soon as a worker is free.".into())),
        "not-cancelled" => match how {
            None => "Not cancelled: this message is in no consumer group yet (nothing subscribes to its topic), so there is nothing to cancel.".to_owned(),
            Some(how) => format!("Not cancelled: message {} has already finished ({how}): nothing to cancel.", m.id),
        },
        "not-made-due" => {
            if m.deliveries.iter().any(|d| d.state == DeliveryState::Leased) {
                format!("Not made due: message {} is running.", m.id)
            } else {
                match how {
                    None => "Not made due: this message is in no consumer group yet (nothing subscribes to its topic).".to_owned(),
                    Some(how) => format!("Not made due: message {} has finished ({how}): nothing to run.", m.id),
                }
            }
        }
        _ => return None,
    };
    Some(("flash bad", text))
}

/// How each finished delivery of a message ended ("succeeded in g1, cancelled in g2"); `None`
/// when it is in no consumer group.
fn finished_how(m: &MessageRecord) -> Option<String> {
    if m.deliveries.is_empty() {
        return None;
    }
    let how: Vec<String> = m
        .deliveries
        .iter()
        .map(|d| {
            let word = match d.state {
                DeliveryState::Acked => "succeeded",
                DeliveryState::Dead => "dead-lettered",
                DeliveryState::Cancelled => "cancelled",
                DeliveryState::Pending => "pending",
                DeliveryState::Leased => "running",
            };
            format!("{word} in {}", d.consumer_group)
        })
        .collect();
    Some(how.join(", "))
}

/// The purge's confirmation: how many pending messages of `topic` a purge would cancel now
/// (a dry run), and the button that does it.
pub async fn purge_confirm(state: &VqsState, topic: &str, csrf: &str) -> Result<String, QueueError> {
    let n = state.queue.purge(topic, None, true).await?;
    let mut out = format!(r#"<section id="purge"><h2>Purge <code>{}</code></h2>"#, esc(topic));
    if n == 0 {
        out += r#"<p class="empty" id="purge-count">No pending messages: nothing to purge.</p>"#;
    } else {
        let what = if n == 1 { "1 pending message".to_owned() } else { format!("{n} pending messages") };
        let _ = write!(
            out,
            r#"<p id="purge-count">{what} of this topic (in every consumer group) would be cancelled: they will never run. Running jobs are left to finish; messages published from now on are not affected.</p><p>{}</p>"#,
            action_form(
                &format!("/admin/queues/{}/purge", url(topic)),
                csrf,
                &format!("Cancel {what}"),
                "danger",
                None
            ),
        );
    }
    out += r#"<p><a href="/admin">← back, purge nothing</a></p></section>"#;
    Ok(out)
}

/// How a limit in force is labelled: set by an operator or the job's own default.
fn source_word(source: vqs::LimitSource) -> &'static str {
    match source {
        vqs::LimitSource::Override => "override",
        vqs::LimitSource::Default => "default",
    }
}
