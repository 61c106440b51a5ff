//! Target `cron_expr`: `vqs::CronSchedule::parse` on the first line of the input, then, for an
//! accepted schedule, the next fire times after a few instants (and after the instant on the
//! second line, when it is an RFC 3339 time).
//!
//! Invariants: parsing never panics; an accepted expression is five fields with no name,
//! macro, `#` or `?` (Vercel's CLI dialect; numbers may be written as JavaScript reads them,
//! `0x1F`, `1e1`); every next fire time is strictly later, on a whole minute, and the
//! upcoming times increase; `longest_gap` never panics.

use chrono::{DateTime, Timelike, Utc};
use vqs::CronSchedule;

const FROM: [&str; 5] = [
    "2026-01-05T10:07:30Z",
    "1970-01-01T00:00:00Z",
    "2028-02-28T23:59:59.999Z",
    "2026-12-31T23:59:00Z",
    "9999-12-31T23:00:00Z",
];

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (expr, rest) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(schedule) = CronSchedule::parse(expr) else { return };
    assert_eq!(schedule.as_str(), expr);
    // Text after a second `/` in a list item is ignored, as Vercel's CLI ignores it
    // (`[range, step] = part.split("/")`): the invariants hold for what is read.
    let read = significant(expr);
    assert!(!read.contains(['#', '?', '@']), "accepted {expr:?}");
    let upper = read.to_ascii_uppercase();
    for name in ["MON", "SUN", "JAN", "DEC", "L", "W"] {
        assert!(!upper.split(|c: char| !c.is_ascii_alphabetic()).any(|w| w == name), "accepted {expr:?}");
    }

    let extra = DateTime::parse_from_rfc3339(rest.trim()).ok().map(|t| t.with_timezone(&Utc));
    let from = FROM.iter().map(|s| s.parse::<DateTime<Utc>>().expect("a fixed instant")).chain(extra);
    for t in from {
        let times = schedule.upcoming(t, 3);
        let mut prev = t;
        for next in &times {
            assert!(*next > prev, "{expr:?}: {next} is not after {prev}");
            assert_eq!((next.second(), next.nanosecond()), (0, 0), "{expr:?}: {next} is not on a whole minute");
            prev = *next;
        }
        assert_eq!(schedule.next_after(t), times.first().copied());
        let _ = schedule.longest_gap(t);
    }
}

/// `expr` without what the dialect ignores: each list item up to its second `/`.
fn significant(expr: &str) -> String {
    let item = |part: &str| {
        let mut pieces = part.splitn(3, '/');
        match (pieces.next(), pieces.next()) {
            (Some(range), Some(step)) => format!("{range}/{step}"),
            (range, _) => range.unwrap_or_default().to_owned(),
        }
    };
    let field = |f: &str| f.split(',').map(item).collect::<Vec<_>>().join(",");
    expr.split(char::is_whitespace).map(field).collect::<Vec<_>>().join(" ")
}
