//! Reading runtime schedules a page at a time ([`Schedules::page`]): thousands of them (one
//! per tenant is the common case) are listed by name through the primary key, each page
//! naming the cursor of the next, so no reader ever holds them all.

use serde::Serialize;

use crate::store::{ScheduleCountParams, ScheduleListParams, ScheduleRecord};
use crate::{MAX_SCHEDULE_NAME_BYTES, QueueError, Schedules};

/// The page size when none is asked for.
pub const SCHEDULE_PAGE_DEFAULT: u32 = 100;

/// The largest page [`Schedules::page`] answers.
pub const SCHEDULE_PAGE_MAX: u32 = 1000;

/// Counts of schedules stop here: a count is at most this (a bounded read however many
/// rows there are).
pub const SCHEDULE_COUNT_CAP: u32 = 1_000_000;

/// One page of schedules by name (byte order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchedulePage {
    /// The schedules on this page, by name.
    pub schedules: Vec<ScheduleRecord>,
    /// The cursor of the next page (the last name on this one), `None` on the last page.
    pub next_after: Option<String>,
}

/// Check a page's cursor and size: `after` is a name as a previous page's `next_after`
/// gave it (no NUL, at most [`MAX_SCHEDULE_NAME_BYTES`] bytes; empty means the first
/// page), `limit` from 1 to [`SCHEDULE_PAGE_MAX`]. The refusal says what to send instead
/// and never echoes a long cursor back.
pub fn check_schedule_page(after: Option<&str>, limit: u32) -> Result<Option<String>, QueueError> {
    if !(1..=SCHEDULE_PAGE_MAX).contains(&limit) {
        return Err(QueueError::Invalid(format!(
            "invalid limit {limit}: ask for 1 to {SCHEDULE_PAGE_MAX} schedules per page (default {SCHEDULE_PAGE_DEFAULT})"
        )));
    }
    let Some(after) = after.filter(|a| !a.is_empty()) else { return Ok(None) };
    if after.contains('\0') {
        return Err(QueueError::Invalid(
            "invalid after: it contains a NUL character (\\0); pass the next_after of the previous page".into(),
        ));
    }
    if after.len() > MAX_SCHEDULE_NAME_BYTES {
        return Err(QueueError::Invalid(format!(
            "invalid after: it is {} bytes long, and a schedule name is at most {MAX_SCHEDULE_NAME_BYTES} bytes; \
             pass the next_after of the previous page",
            after.len()
        )));
    }
    Ok(Some(after.to_owned()))
}

impl Schedules {
    /// Up to `limit` schedules whose names come after `after` (exclusive, byte order;
    /// `None` or empty for the first page), with the cursor of the next page. Refused
    /// (nothing read) when `limit` is not 1 to [`SCHEDULE_PAGE_MAX`] or `after` could not
    /// be a name.
    pub async fn page(&self, after: Option<&str>, limit: u32) -> Result<SchedulePage, QueueError> {
        let after = check_schedule_page(after, limit)?;
        // One more than asked says whether there is a next page.
        let p = ScheduleListParams { after, limit: limit + 1 };
        let mut schedules = self.queue().store().schedule_list(p).await?;
        let next_after = if schedules.len() > limit as usize {
            schedules.truncate(limit as usize);
            schedules.last().map(|r| r.name.clone())
        } else {
            None
        };
        Ok(SchedulePage { schedules, next_after })
    }

    /// Every schedule, read a page of [`SCHEDULE_PAGE_MAX`] at a time ([`Schedules::list`]).
    pub(crate) async fn read_all(&self) -> Result<Vec<ScheduleRecord>, QueueError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.page(after.as_deref(), SCHEDULE_PAGE_MAX).await?;
            all.extend(page.schedules);
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// How many schedules there are (at most [`SCHEDULE_COUNT_CAP`]).
    pub async fn count(&self) -> Result<u64, QueueError> {
        let p = ScheduleCountParams { overdue_before: None, cap: SCHEDULE_COUNT_CAP };
        Ok(self.queue().store().schedule_count(p).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_1_to_1000_after_a_storable_name() {
        assert_eq!(check_schedule_page(None, 1).unwrap(), None);
        assert_eq!(check_schedule_page(Some(""), 1000).unwrap(), None, "empty: the first page");
        assert_eq!(check_schedule_page(Some("tenant-7"), 100).unwrap().as_deref(), Some("tenant-7"));
        for limit in [0, 1001, u32::MAX] {
            let e = check_schedule_page(None, limit).unwrap_err().to_string();
            assert!(e.contains("1 to 1000"), "{e}");
        }
        let e = check_schedule_page(Some("a\0b"), 10).unwrap_err().to_string();
        assert!(e.contains("NUL"), "{e}");
        let long = "x".repeat(100_000);
        let e = check_schedule_page(Some(&long), 10).unwrap_err().to_string();
        assert!(e.contains("100000 bytes long") && e.len() < 300, "not echoed: {}", e.len());
    }
}
