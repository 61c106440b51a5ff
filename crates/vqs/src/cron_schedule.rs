//! Cron expressions in Vercel's dialect: what Vercel accepts is accepted, what it refuses is
//! refused with the reason, and fire times mean what they mean on Vercel (UTC).
//!
//! The dialect is the Vercel CLI's (see `cron_dialect`): five fields — minute 0–59, hour
//! 0–23, day of month 1–31, month 1–12, day of week 0–7 (0 and 7 are Sunday) — each a comma
//! list of `*`, numbers and ranges `a-b`, each with an optional `/step`. No names (`MON`,
//! `JAN`), no `L`, `W`, `#`, `?`, no `@daily` macros, no seconds or years. The fields are
//! handed to the cron engine as explicit value lists, so what fires is what the dialect read.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A validated schedule.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    cron: croner::Cron,
    /// False for a schedule whose days of month occur in none of its months
    /// (`0 0 31 2 *`): `next_after` answers `None` at once instead of searching
    /// thousands of years for a day that does not exist.
    fires: bool,
    /// The hour field is `*` or has a step: a runtime schedule in a time zone follows real
    /// instants across DST changes instead of the fixed-time rules (see `schedule_times`).
    hour_interval: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.expr)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron schedule {expr:?}: {reason}")]
pub struct CronScheduleError {
    /// The schedule as written.
    pub expr: String,
    /// What is wrong with it, and what to write instead.
    pub reason: String,
}

impl CronSchedule {
    /// Validate `expr` in Vercel's dialect.
    pub fn parse(expr: &str) -> Result<CronSchedule, CronScheduleError> {
        let fail = |reason: String| CronScheduleError { expr: expr.to_owned(), reason };
        let parsed = crate::cron_dialect::parse(expr).map_err(fail)?;
        let canonical: Vec<String> = (0..5)
            .map(|i| {
                if parsed.star[i] {
                    return "*".to_owned();
                }
                let mut values = parsed.values[i].clone();
                if i == 4 {
                    // Sunday is 0 and 7: one value for the engine.
                    values.iter_mut().filter(|v| **v == 7).for_each(|v| *v = 0);
                    values.sort_unstable();
                    values.dedup();
                }
                values.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            })
            .collect();
        // Vixie cron: both day fields restricted → either matches, unless one starts with '*'.
        let dom_and_dow = parsed.star_prefix[2] || parsed.star_prefix[4];
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .dom_and_dow(dom_and_dow)
            .build()
            .parse(&canonical.join(" "))
            .map_err(|e| fail(e.to_string()))?;
        let fires = can_fire(&parsed.values[2], &parsed.values[3], parsed.star[4] || dom_and_dow);
        let hour_interval = parsed.star_prefix[1] || parsed.stepped[1];
        Ok(CronSchedule { expr: expr.to_owned(), cron, fires, hour_interval })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first fire time strictly after `t` (UTC, on a whole minute); `None` when there is
    /// none, e.g. for `0 0 31 2 *` (Vercel accepts it; it never fires).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.fires {
            return None;
        }
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The first wall-clock time strictly after `t` that the fields match, read as a local
    /// time with no zone: what a runtime schedule maps into its time zone.
    pub(crate) fn next_wall_after(&self, t: chrono::NaiveDateTime) -> Option<chrono::NaiveDateTime> {
        self.next_after(t.and_utc()).map(|d| d.naive_utc())
    }

    /// True when the hour field is `*` or has a step (`*/2`, `1/3`): such a schedule follows
    /// real instants across DST changes.
    pub(crate) fn hour_interval(&self) -> bool {
        self.hour_interval
    }

    /// The next `n` fire times strictly after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// The longest gap between consecutive fire times over the next few fires after `t`:
    /// how long a healthy cron may go without running.
    pub fn longest_gap(&self, t: DateTime<Utc>) -> Duration {
        let times = self.upcoming(t, 8);
        times.windows(2).filter_map(|w| (w[1] - w[0]).to_std().ok()).max().unwrap_or(Duration::from_secs(24 * 3600))
    }
}

/// Whether a schedule has a day of month that occurs in one of its months. When the day of
/// month must match (day of week `*`, or both required by Vixie's `*` rule), only then can
/// it fire — every real date falls on each weekday some year; when either day field may
/// match, it always can.
fn can_fire(days: &[u32], months: &[u32], day_of_month_required: bool) -> bool {
    const DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !day_of_month_required {
        return true;
    }
    let first_day = days.iter().copied().min().unwrap_or(1);
    months.iter().any(|&m| (m as usize).checked_sub(1).and_then(|i| DAYS.get(i)).is_some_and(|&d| first_day <= d))
}

impl FromStr for CronSchedule {
    type Err = CronScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSchedule::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn next(expr: &str, from: &str) -> String {
        CronSchedule::parse(expr).unwrap().next_after(at(from)).unwrap().to_rfc3339()
    }

    #[test]
    fn every_field_form_fires_when_vercel_would() {
        // 2026-01-05 is a Monday.
        let from = "2026-01-05T10:07:30Z";
        assert_eq!(next("* * * * *", from), "2026-01-05T10:08:00+00:00");
        assert_eq!(next("0 * * * *", from), "2026-01-05T11:00:00+00:00");
        assert_eq!(next("*/15 * * * *", from), "2026-01-05T10:15:00+00:00");
        assert_eq!(next("10-20/5 * * * *", from), "2026-01-05T10:10:00+00:00");
        assert_eq!(next("5,50 * * * *", from), "2026-01-05T10:50:00+00:00");
        assert_eq!(next("0 5 * * *", from), "2026-01-06T05:00:00+00:00");
        assert_eq!(next("0 0 * * *", from), "2026-01-06T00:00:00+00:00");
        // Mondays at 09:00: 2026-01-05 is a Monday, already past 09:00 at 10:07.
        assert_eq!(next("0 9 * * 1", from), "2026-01-12T09:00:00+00:00");
        assert_eq!(next("0 9 * * 1", "2026-01-05T08:59:00Z"), "2026-01-05T09:00:00+00:00");
        assert_eq!(next("0 9-17 * * *", from), "2026-01-05T11:00:00+00:00");
        assert_eq!(next("0 0 1 * *", from), "2026-02-01T00:00:00+00:00");
        assert_eq!(next("0 0 1 6 *", from), "2026-06-01T00:00:00+00:00");
        assert_eq!(next("0 0 * 3-4 *", from), "2026-03-01T00:00:00+00:00");
        // Day of week: Sunday is 0 and 7.
        assert_eq!(next("0 0 * * 0", from), "2026-01-11T00:00:00+00:00");
        assert_eq!(next("0 0 * * 7", from), "2026-01-11T00:00:00+00:00");
        assert_eq!(next("0 0 * * 1-5", from), "2026-01-06T00:00:00+00:00");
        assert_eq!(next("0 0 * * 6", from), "2026-01-10T00:00:00+00:00");
        assert_eq!(next("0 0 29 2 *", from), "2028-02-29T00:00:00+00:00");
    }

    /// What the Vercel CLI (`vercel` 64, `validateCronSchedule`) accepts and vqs refused.
    #[test]
    fn accepts_what_the_vercel_cli_accepts() {
        let from = "2026-01-05T10:07:30Z"; // a Monday
        // `a/n`: from a to the field's end every n.
        assert_eq!(next("5/15 * * * *", from), "2026-01-05T10:20:00+00:00");
        assert_eq!(next("5/15 * * * *", "2026-01-05T10:50:00Z"), "2026-01-05T11:05:00+00:00");
        // A step larger than the range keeps its start only.
        assert_eq!(next("*/90 * * * *", from), "2026-01-05T11:00:00+00:00");
        assert_eq!(next("0 */25 * * *", from), "2026-01-06T00:00:00+00:00");
        // Numbers as JavaScript's Number() reads them.
        assert_eq!(next("07 * * * *", from), "2026-01-05T11:07:00+00:00");
        assert_eq!(next("+8 * * * *", from), "2026-01-05T10:08:00+00:00");
        assert_eq!(next("9.0 * * * *", from), "2026-01-05T10:09:00+00:00");
        assert_eq!(next("0x1E * * * *", from), "2026-01-05T10:30:00+00:00");
        assert_eq!(next("1e1 * * * *", from), "2026-01-05T10:10:00+00:00");
        assert_eq!(next("*/5/7 * * * *", from), "2026-01-05T10:10:00+00:00", "after a second '/' is ignored");
        assert_eq!(next("1,,2 * * * *", from), "2026-01-05T11:00:00+00:00", "an empty value is 0");
        // Both day fields: either matches (the 20th, or a Monday) ...
        assert_eq!(next("0 0 20 * 1", from), "2026-01-12T00:00:00+00:00");
        assert_eq!(next("0 0 20 * 1", "2026-01-13T00:00:00Z"), "2026-01-19T00:00:00+00:00");
        assert_eq!(next("0 0 20 * 1", "2026-01-19T00:00:00Z"), "2026-01-20T00:00:00+00:00");
        // ... unless one starts with '*' (Vixie): odd days that are Mondays.
        assert_eq!(next("0 0 */2 * 1", from), "2026-01-19T00:00:00+00:00");
        // Unicode spaces split fields as JavaScript's \s does.
        assert_eq!(next("0\u{3000}* * * *", from), "2026-01-05T11:00:00+00:00");
        assert!(CronSchedule::parse(&format!("{} * * * *", "0,".repeat(123) + "0")).is_ok());
        assert!(CronSchedule::parse(&format!("{} * * * *", "0,".repeat(124) + "0")).is_err(), "257 characters");
    }

    #[test]
    fn refuses_what_vercel_refuses_and_says_why() {
        let cases = [
            ("0 0 * * MON", "names are not allowed"),
            ("0 0 * JAN *", "names are not allowed"),
            ("0 0 L * *", "L and W are not supported"),
            ("0 0 15W * *", "L and W are not supported"),
            ("0 0 * * 1#2", "'#' is not supported"),
            ("0 0 ? * 1", "'?' is not supported"),
            ("@daily", "macros like @daily"),
            ("0 0 0 * * *", "seconds and years"),
            ("0 0 * *", "expected 5 fields"),
            ("60 * * * *", "out of range for the minute field (0-59)"),
            ("0 24 * * *", "out of range for the hour field"),
            ("0 0 0 * *", "out of range for the day of month field (1-31)"),
            ("0 0 * 13 *", "out of range for the month field"),
            ("0 0 * * 8", "out of range for the day of week field (0-7)"),
            ("*/0 * * * *", "at least 1"),
            ("*/ * * * *", "at least 1"),
            ("*/1.5 * * * *", "at least 1"),
            ("30-10 * * * *", "from low to high"),
            ("-5 * * * *", "not a range"),
            ("1-2-3 * * * *", "not a range"),
            ("0 0 ,1 * *", "out of range for the day of month field"),
            ("1.5 * * * *", "not a whole number"),
            ("Infinity * * * *", "names are not allowed"),
            ("0 0 * * 0x8", "out of range for the day of week field"),
            // Found by the `cron_expr` fuzz target: the CLI ignores text after a second `/`,
            // NUL included, but a NUL cannot be stored with a cron run.
            ("/1/?\0 * * 2 *", "control character"),
        ];
        for (expr, want) in cases {
            let e = CronSchedule::parse(expr).unwrap_err().to_string();
            assert!(e.contains(want), "{expr}: {e}");
        }
    }

    /// Found by the `cron_expr` fuzz target: a schedule whose day never occurs in its months
    /// made every `next_after` search for seconds (croner gives up only years later).
    #[test]
    fn a_schedule_that_never_fires_answers_none_at_once() {
        let from = at("2026-01-05T10:07:30Z");
        for expr in ["0 0 31 4,6,9,11 *", "0 0 30 2 *", "0 0 30-31 2 *", "0 0 31 4-6/2 *"] {
            let s = CronSchedule::parse(expr).unwrap();
            let started = std::time::Instant::now();
            assert_eq!(s.next_after(from), None, "{expr}");
            assert!(s.upcoming(from, 3).is_empty(), "{expr}");
            assert!(started.elapsed() < Duration::from_millis(50), "{expr}: {:?}", started.elapsed());
        }
        // Still fires: a 31st in some month, the 29th of February in leap years, steps.
        assert_eq!(next("0 0 31 2,3 *", "2026-01-05T10:07:30Z"), "2026-03-31T00:00:00+00:00");
        assert_eq!(next("0 0 29 2 *", "2026-01-05T10:07:30Z"), "2028-02-29T00:00:00+00:00");
        assert_eq!(next("0 0 */10 2 *", "2026-01-05T10:07:30Z"), "2026-02-01T00:00:00+00:00");
        assert_eq!(next("0 0 30-31 1-2 *", "2026-01-31T10:07:30Z"), "2027-01-30T00:00:00+00:00");
    }

    #[test]
    fn upcoming_and_gaps() {
        let s = CronSchedule::parse("0 * * * *").unwrap();
        let t = at("2026-01-05T10:30:00Z");
        assert_eq!(s.upcoming(t, 2), vec![at("2026-01-05T11:00:00Z"), at("2026-01-05T12:00:00Z")]);
        assert_eq!(s.longest_gap(t), Duration::from_secs(3600));
        assert_eq!(CronSchedule::parse("0 0 * * *").unwrap().longest_gap(t), Duration::from_secs(86400));
    }
}
