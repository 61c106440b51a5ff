//! Fire times of a runtime schedule in its IANA time zone, by SPEC.md's DST rules ("Runtime
//! schedules"), which are Vixie cron's:
//!
//! - **Fixed-time** schedules (the hour field is a number, list or range: `30 2 * * *`): a
//!   wall-clock time that does not exist (spring forward) fires once, at the first instant
//!   after the gap; one that exists twice (fall back) fires once, at its first occurrence.
//! - **Interval** schedules (the hour field is `*` or has a step: `*/15 * * * *`,
//!   `0 */2 * * *`) follow real instants: every instant whose local time the fields match
//!   fires, once. Wall-clock times in a gap do not exist and do not fire; the repeated hour
//!   is two real hours and each of its matching instants fires (`*/15` keeps firing every
//!   15 real minutes through both changes; `0 */2` fires at 02:00 of each of the two
//!   hours that read 02:00 and has no 02:00 on the day the clock skips it).
//!
//! Croner's own zone support (croner 4.0.3 with a chrono-tz zone) was checked against these
//! rules and gives the same fire times on every DST case tested below (a test keeps that
//! comparison). The mapping is still done here: the fields are matched on naive wall-clock
//! times (croner in UTC, where every time exists once) and mapped to instants with the
//! zone's offsets from chrono-tz, so the rule — SPEC's "hour field `*` or a step" — is vqs's
//! own, written down and tested, not a dependency's undocumented choice that an upgrade
//! could change.

use chrono::offset::LocalResult;
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::CronSchedule;

/// The largest change of a zone's UTC offset at one transition that the search allows for:
/// DST moves clocks by one hour (two in a few places, historically); three is a margin.
const MAX_SHIFT: Duration = Duration::hours(3);

/// Fire times sampled by [`ScheduleTimes::shortest_interval`].
const INTERVAL_SAMPLE: usize = 16;

/// A schedule's cron expression in a time zone: computes its fire times.
#[derive(Debug, Clone)]
pub struct ScheduleTimes {
    cron: CronSchedule,
    tz: Tz,
}

impl ScheduleTimes {
    /// `cron` read in zone `tz`.
    pub fn new(cron: CronSchedule, tz: Tz) -> ScheduleTimes {
        ScheduleTimes { cron, tz }
    }

    /// The cron expression.
    pub fn cron(&self) -> &CronSchedule {
        &self.cron
    }

    /// The time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after`, by the DST rules in the module docs;
    /// `None` when the schedule never fires again (`0 0 31 2 *`).
    pub fn next_fire_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_after = after.with_timezone(&self.tz).naive_local();
        // Fast path, the common case: no offset change near `after` and the next match.
        // Then local time is `instant + offset` throughout, one-to-one and in order, so the
        // next wall-clock match is the next instant.
        let first = self.cron.next_wall_after(local_after)?;
        let offset = |t: DateTime<Utc>| t.with_timezone(&self.tz).naive_local() - t.naive_utc();
        let off = offset(after);
        let candidate = first.and_utc() - off;
        if candidate > after
            && candidate - after <= Duration::days(1)
            && offset(after - MAX_SHIFT) == off
            && offset(candidate + MAX_SHIFT) == off
        {
            return Some(candidate);
        }
        self.search(after, local_after)
    }

    /// The search near an offset change: wall-clock matches from `MAX_SHIFT` before `after`'s
    /// local time (a later instant can read an earlier local time by at most one fall-back),
    /// each mapped to its instants, until no later match can map before the best so far.
    fn search(&self, after: DateTime<Utc>, local_after: NaiveDateTime) -> Option<DateTime<Utc>> {
        let interval = self.cron.hour_interval();
        let mut wall = local_after - MAX_SHIFT;
        let mut best: Option<DateTime<Utc>> = None;
        // Bounded: a per-minute schedule needs about 2 × MAX_SHIFT of minutes here.
        for _ in 0..100_000 {
            let Some(next) = self.cron.next_wall_after(wall) else { break };
            wall = next;
            if best.is_some_and(|b| wall > b.with_timezone(&self.tz).naive_local() + MAX_SHIFT) {
                break;
            }
            let mut consider = |t: DateTime<Utc>| {
                if t > after && best.is_none_or(|b| t < b) {
                    best = Some(t);
                }
            };
            match self.tz.from_local_datetime(&wall) {
                LocalResult::Single(t) => consider(t.with_timezone(&Utc)),
                LocalResult::Ambiguous(a, b) => {
                    let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
                    consider(a.min(b));
                    if interval {
                        consider(a.max(b));
                    }
                }
                LocalResult::None => {
                    if !interval {
                        consider(self.end_of_gap(wall));
                    }
                }
            }
        }
        best
    }

    /// The first instant whose local time is at or after `wall`, a wall-clock time in a gap:
    /// the instant the clock jumps past it.
    fn end_of_gap(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        // Offsets lie within ±15 hours, so `wall` read as UTC ± 15 h brackets it; local time
        // only moves forward across one gap's surroundings.
        // Whole seconds: zone transitions fall on whole seconds.
        let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut lo = wall.and_utc().timestamp() - 15 * 3600;
        let mut hi = wall.and_utc().timestamp() + 15 * 3600;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if at(mid).with_timezone(&self.tz).naive_local() >= wall {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        at(hi)
    }

    /// The shortest gap between consecutive fire times, sampled over the first
    /// `INTERVAL_SAMPLE` fires from a fixed instant (so every process computes the same);
    /// `None` when it fires fewer than twice.
    pub fn shortest_interval(&self) -> Option<Duration> {
        let from = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(); // 2026-01-01T00:00:00Z
        self.next_fires(from, INTERVAL_SAMPLE).windows(2).map(|w| w[1] - w[0]).min()
    }

    /// The next `n` fire times strictly after `after`.
    pub fn next_fires(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n.min(64));
        let mut at = after;
        while out.len() < n {
            match self.next_fire_after(at) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(expr: &str, tz: &str) -> ScheduleTimes {
        ScheduleTimes::new(CronSchedule::parse(expr).unwrap(), tz.parse().unwrap())
    }

    fn fires(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
        let after: DateTime<Utc> = after.parse().unwrap();
        times(expr, tz).next_fires(after, n).iter().map(|t| t.format("%Y-%m-%dT%H:%MZ").to_string()).collect()
    }

    // 2026 changes. New York: spring forward 8 March (02:00 EST → 03:00 EDT, at 07:00Z), fall
    // back 1 November (02:00 EDT → 01:00 EST, at 06:00Z). Berlin: 29 March (02:00 CET → 03:00
    // CEST, at 01:00Z), 25 October (03:00 CEST → 02:00 CET, at 01:00Z).

    #[test]
    fn a_fixed_time_in_the_gap_fires_once_just_after_it() {
        // New York: 02:30 does not exist on 8 March; it fires at 03:00 EDT (07:00Z).
        assert_eq!(
            fires("30 2 * * *", "America/New_York", "2026-03-06T12:00:00Z", 4),
            ["2026-03-07T07:30Z", "2026-03-08T07:00Z", "2026-03-09T06:30Z", "2026-03-10T06:30Z"]
        );
        // Berlin: 02:30 does not exist on 29 March; it fires at 03:00 CEST (01:00Z).
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 4),
            ["2026-03-28T01:30Z", "2026-03-29T01:00Z", "2026-03-30T00:30Z", "2026-03-31T00:30Z"]
        );
        // Several times in the gap fire once together, at its end.
        assert_eq!(
            fires("0,15,30,45 2 * * *", "Europe/Berlin", "2026-03-29T00:50:00Z", 2),
            ["2026-03-29T01:00Z", "2026-03-30T00:00Z"]
        );
    }

    #[test]
    fn a_fixed_time_in_the_repeated_hour_fires_once_at_the_first() {
        // New York: 01:30 happens at 05:30Z (EDT) and 06:30Z (EST) on 1 November: first only.
        assert_eq!(
            fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 3),
            ["2026-11-01T05:30Z", "2026-11-02T06:30Z", "2026-11-03T06:30Z"]
        );
        // Asked from between the two occurrences, the second is not a fire.
        assert_eq!(fires("30 1 * * *", "America/New_York", "2026-11-01T05:45:00Z", 1), ["2026-11-02T06:30Z"]);
        // Berlin: 02:30 happens at 00:30Z (CEST) and 01:30Z (CET) on 25 October.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 3),
            ["2026-10-25T00:30Z", "2026-10-26T01:30Z", "2026-10-27T01:30Z"]
        );
        assert_eq!(fires("30 2 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z", 1), ["2026-10-26T01:30Z"]);
    }

    #[test]
    fn every_fifteen_minutes_follows_real_instants_through_both_changes() {
        for (tz, spring, fall) in [
            ("America/New_York", "2026-03-08T06:30:00Z", "2026-11-01T05:30:00Z"),
            ("Europe/Berlin", "2026-03-29T00:30:00Z", "2026-10-25T00:30:00Z"),
        ] {
            for from in [spring, fall] {
                let start: DateTime<Utc> = from.parse().unwrap();
                let got = times("*/15 * * * *", tz).next_fires(start, 12);
                let want: Vec<_> = (1..=12).map(|i| start + Duration::minutes(15 * i)).collect();
                assert_eq!(got, want, "{tz} from {from}");
            }
        }
    }

    #[test]
    fn every_two_hours_fires_each_instant_that_reads_an_even_hour() {
        // Berlin spring: 00:00 CET (23:00Z), no 02:00, 04:00 CEST (02:00Z).
        assert_eq!(
            fires("0 */2 * * *", "Europe/Berlin", "2026-03-28T22:30:00Z", 3),
            ["2026-03-28T23:00Z", "2026-03-29T02:00Z", "2026-03-29T04:00Z"]
        );
        // Berlin fall: 00:00 CEST (22:00Z), 02:00 CEST (00:00Z), 02:00 CET (01:00Z), 04:00 CET.
        assert_eq!(
            fires("0 */2 * * *", "Europe/Berlin", "2026-10-24T21:30:00Z", 4),
            ["2026-10-24T22:00Z", "2026-10-25T00:00Z", "2026-10-25T01:00Z", "2026-10-25T03:00Z"]
        );
        // New York spring: 00:00 EST (05:00Z), no 02:00, 04:00 EDT (08:00Z).
        assert_eq!(
            fires("0 */2 * * *", "America/New_York", "2026-03-08T04:30:00Z", 2),
            ["2026-03-08T05:00Z", "2026-03-08T08:00Z"]
        );
        // New York fall: 00:00 EDT (04:00Z), 02:00 EST (07:00Z); 01:00 repeats but is odd.
        assert_eq!(
            fires("0 */2 * * *", "America/New_York", "2026-11-01T03:30:00Z", 2),
            ["2026-11-01T04:00Z", "2026-11-01T07:00Z"]
        );
    }

    #[test]
    fn utc_and_quiet_days_are_plain() {
        assert_eq!(fires("0 9 * * 1", "UTC", "2026-01-05T10:07:30Z", 1), ["2026-01-12T09:00Z"]);
        assert_eq!(fires("0 9 * * *", "Asia/Tokyo", "2026-01-05T10:07:30Z", 1), ["2026-01-06T00:00Z"]);
        assert_eq!(fires("0 0 1 1 *", "Europe/Berlin", "2026-01-02T00:00:00Z", 1), ["2026-12-31T23:00Z"]);
        assert!(fires("0 0 31 2 *", "Europe/Berlin", "2026-01-02T00:00:00Z", 1).is_empty());
    }

    /// Croner with chrono-tz agreed on these cases when checked (croner 4.0.3): if an upgrade
    /// changes that, this says so — vqs's answers are the tests above either way.
    #[test]
    fn croner_with_chrono_tz_agreed_when_checked() {
        for (expr, tz, from) in [
            ("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z"),
            ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z"),
            ("0 */2 * * *", "Europe/Berlin", "2026-03-28T22:30:00Z"),
            ("0 */2 * * *", "Europe/Berlin", "2026-10-24T21:30:00Z"),
            ("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:10:00Z"),
            ("*/30 * * * *", "America/New_York", "2026-11-01T04:50:00Z"),
        ] {
            let zone: Tz = tz.parse().unwrap();
            let engine: croner::Cron = expr.parse().unwrap();
            let from: DateTime<Utc> = from.parse().unwrap();
            let mut t = from.with_timezone(&zone);
            let mut theirs = vec![];
            for _ in 0..5 {
                t = engine.find_next_occurrence(&t, false).unwrap();
                theirs.push(t.with_timezone(&Utc));
            }
            assert_eq!(times(expr, tz).next_fires(from, 5), theirs, "{expr} in {tz} from {from}");
        }
    }
}
