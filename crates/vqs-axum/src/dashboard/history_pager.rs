//! The overview's executions a page at a time: the `before` cursor (an execution id, the
//! last of the previous page — the primary key walked backwards, never an offset) and the
//! "Older" / "Newest" links, which keep the topic and status filters.

use std::fmt::Write;

use vqs::QueueError;
use vqs::store::ExecutionRecord;

use super::html::{esc, url};
use super::pages::Filters;

/// Executions the overview shows a page at a time.
pub(super) const PAGE: u32 = 50;

/// The `before` cursor of the executions' page, or a refusal that says what it must be.
pub(super) fn before_cursor(f: &Filters) -> Result<Option<i64>, QueueError> {
    match f.before.as_deref().filter(|b| !b.is_empty()) {
        None => Ok(None),
        Some(b) => b.parse::<i64>().map(Some).map_err(|_| {
            QueueError::Invalid(format!("invalid before {b:?}: it is an execution id, as the Older link gives it"))
        }),
    }
}

/// The link to the page after `rows` (when there is one: `rows` holds one more than a page),
/// keeping the filters.
fn older_link(f: &Filters, rows: &mut Vec<ExecutionRecord>) -> String {
    if rows.len() <= PAGE as usize {
        rows.truncate(PAGE as usize);
        return String::new();
    }
    rows.truncate(PAGE as usize);
    let last = rows.last().map_or(0, |r| r.id);
    let mut href = format!("/admin?before={last}");
    for (k, v) in [("topic", &f.topic), ("status", &f.status)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            let _ = write!(href, "&{k}={}", url(v));
        }
    }
    format!(r#"<a id="older" href="{}#executions">Older →</a>"#, esc(&href))
}

/// The filters as query parameters (`topic=…&status=…&`).
fn filter_query(f: &Filters) -> String {
    let mut q = String::new();
    for (k, v) in [("topic", &f.topic), ("status", &f.status)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            let _ = write!(q, "{k}={}&", url(v));
        }
    }
    q
}

/// The links under the executions: "Older" when `rows` (a page and one more) has more,
/// "Newest" on any page but the first; `rows` is cut to the page.
pub(super) fn pager(f: &Filters, rows: &mut Vec<ExecutionRecord>) -> String {
    let older = older_link(f, rows);
    let paged = f.before.as_deref().is_some_and(|b| !b.is_empty());
    if !paged && older.is_empty() {
        return String::new();
    }
    let newest = if paged {
        let href = format!("/admin?{}", filter_query(f));
        format!(r#"<a href="{}#executions">← Newest</a> "#, esc(href.trim_end_matches(['&', '?'])))
    } else {
        String::new()
    };
    format!(r#"<p class="pager">{newest}{older}</p>"#)
}
