//! A runtime schedule (SPEC.md, "Runtime schedules"): a row, not a deploy. `{ name, cron,
//! timezone, topic, payload, enabled }`; each tick enqueues `topic` with `payload` under the
//! idempotency key `schedule:<name>:<tick RFC 3339 UTC>`.
//!
//! Validation happens here, before anything is written, and every refusal says which field
//! is wrong and what to do. The cron expression is read by the same parser as `vercel.json`
//! crons (Vercel's five fields); the time zone is an IANA name (chrono-tz's database).

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::schedule_times::ScheduleTimes;
use crate::{CronSchedule, QueueError, check_storable, check_storable_long, is_valid_name};

/// Longest schedule name, in bytes.
pub const MAX_SCHEDULE_NAME_BYTES: usize = 128;

/// Largest schedule payload (its JSON text), in bytes: a schedule is read on every due
/// query, so its payload is small — put big data somewhere the job can fetch it.
pub const MAX_SCHEDULE_PAYLOAD_BYTES: usize = 64 * 1024;

/// The time zone a schedule without one uses.
pub const DEFAULT_TIMEZONE: &str = "UTC";

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_owned()
}

fn default_enabled() -> bool {
    true
}

fn default_payload() -> serde_json::Value {
    serde_json::Value::Null
}

/// Longest jitter, in seconds: an hour.
pub const MAX_SCHEDULE_JITTER_SECONDS: u32 = 3600;

/// A runtime schedule, as stored and as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Letters, digits, `-` and `_`; at most [`MAX_SCHEDULE_NAME_BYTES`] bytes.
    pub name: String,
    /// Five fields in Vercel's dialect, read in `timezone`.
    pub cron: String,
    /// An IANA time zone name (`Europe/Berlin`); `UTC` by default.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// The topic each fire enqueues to.
    pub topic: String,
    /// The JSON payload of each fire's message.
    #[serde(default = "default_payload")]
    pub payload: serde_json::Value,
    /// A disabled schedule keeps its row and never fires.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// After downtime (no process fired schedules), fire the one most recent missed tick
    /// (true, the default) or none (false: a tick more than [`crate::SCHEDULE_MISSED_AFTER`]
    /// late is recorded `missed` and skipped). Ticks are never replayed one by one.
    #[serde(default = "default_enabled")]
    pub catch_up: bool,
    /// Fire each tick up to this many seconds after it (0 to
    /// [`MAX_SCHEDULE_JITTER_SECONDS`], less than the schedule's interval), by an offset
    /// fixed per (name, tick): schedules sharing a tick (every tenant's 09:00) are spread
    /// instead of publishing at once. The idempotency key still names the tick.
    #[serde(default)]
    pub jitter_seconds: u32,
}

impl Schedule {
    /// A schedule in UTC with a `null` payload, enabled.
    pub fn new(name: impl Into<String>, cron: impl Into<String>, topic: impl Into<String>) -> Schedule {
        Schedule {
            name: name.into(),
            cron: cron.into(),
            timezone: default_timezone(),
            topic: topic.into(),
            payload: default_payload(),
            enabled: true,
            catch_up: true,
            jitter_seconds: 0,
        }
    }

    /// This schedule in zone `tz`.
    pub fn in_timezone(mut self, tz: impl Into<String>) -> Schedule {
        self.timezone = tz.into();
        self
    }

    /// This schedule with `payload`.
    pub fn with_payload(mut self, payload: serde_json::Value) -> Schedule {
        self.payload = payload;
        self
    }

    /// Check every field; on success, the schedule's fire-time calculator. Refusals are
    /// [`QueueError::Invalid`] naming the field and what to change.
    ///
    /// ```
    /// let s = vqs::Schedule::new("digest", "0 9 * * *", "emails").in_timezone("Mars/Olympus");
    /// assert!(s.validate().unwrap_err().to_string().contains("Mars/Olympus"));
    /// ```
    pub fn validate(&self) -> Result<ScheduleTimes, QueueError> {
        validate_schedule_name(&self.name)?;
        let cron = CronSchedule::parse(&self.cron)
            .map_err(|e| QueueError::Invalid(format!("invalid schedule {:?}: {e}", self.name)))?;
        let tz = parse_timezone(&self.timezone)?;
        if !is_valid_name(&self.topic) {
            return Err(QueueError::Invalid(format!(
                "invalid topic {:?} for schedule {:?}: use letters, digits, '-' and '_' (1 to {} bytes)",
                self.topic,
                self.name,
                crate::MAX_KEY_BYTES
            )));
        }
        let text = self.payload_text();
        if text.len() > MAX_SCHEDULE_PAYLOAD_BYTES {
            return Err(QueueError::Invalid(format!(
                "invalid payload for schedule {:?}: it is {} bytes of JSON; the limit is {MAX_SCHEDULE_PAYLOAD_BYTES} bytes",
                self.name,
                text.len()
            )));
        }
        // JSON escapes a NUL inside a string as \u0000, but the text is checked anyway: what
        // is stored must be storable on both databases.
        check_storable_long("schedule payload", &text)?;
        let times = ScheduleTimes::new(cron, tz);
        self.validate_jitter(&times)?;
        Ok(times)
    }

    /// Jitter must stay under an hour and under the schedule's shortest interval, or a
    /// jittered fire could land after the next tick.
    fn validate_jitter(&self, times: &ScheduleTimes) -> Result<(), QueueError> {
        let jitter = self.jitter_seconds;
        if jitter == 0 {
            return Ok(());
        }
        if jitter > MAX_SCHEDULE_JITTER_SECONDS {
            return Err(QueueError::Invalid(format!(
                "invalid jitter_seconds {jitter} for schedule {:?}: use 0 to {MAX_SCHEDULE_JITTER_SECONDS}",
                self.name
            )));
        }
        if let Some(gap) = times.shortest_interval()
            && i64::from(jitter) >= gap.num_seconds()
        {
            return Err(QueueError::Invalid(format!(
                "invalid jitter_seconds {jitter} for schedule {:?}: it fires every {} s at the shortest, \
                 so jitter must be less than that",
                self.name,
                gap.num_seconds()
            )));
        }
        Ok(())
    }

    /// When the tick `tick` fires: `tick` plus an offset below `jitter_seconds`, the same
    /// for every process (a hash of the name and the tick, whole milliseconds).
    pub fn due_at(&self, tick: DateTime<Utc>) -> DateTime<Utc> {
        if self.jitter_seconds == 0 {
            return tick;
        }
        // FNV-1a: small, stable across builds and platforms (std's hasher is not).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.name.bytes().chain(tick.timestamp_millis().to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let offset_ms = h % (u64::from(self.jitter_seconds) * 1000);
        tick + chrono::Duration::milliseconds(offset_ms as i64)
    }

    /// The payload as stored: its JSON text.
    pub fn payload_text(&self) -> String {
        self.payload.to_string()
    }
}

/// Refuse a schedule name that is empty, too long or has other characters than letters,
/// digits, `-` and `_`.
pub fn validate_schedule_name(name: &str) -> Result<(), QueueError> {
    check_storable("schedule name", name)?;
    if name.is_empty()
        || name.len() > MAX_SCHEDULE_NAME_BYTES
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(QueueError::Invalid(format!(
            "invalid schedule name {name:?}: use letters, digits, '-' and '_' (1 to {MAX_SCHEDULE_NAME_BYTES} bytes)"
        )));
    }
    Ok(())
}

/// An IANA time zone by its exact name (`America/New_York`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, QueueError> {
    // The longest IANA name is about 30 bytes; a longer one is not echoed back whole.
    if name.len() > 64 {
        return Err(QueueError::Invalid(format!(
            "unknown time zone ({} bytes long): use an IANA name such as \"UTC\" or \"Europe/Berlin\"",
            name.len()
        )));
    }
    name.parse::<Tz>().map_err(|_| {
        QueueError::Invalid(format!(
            "unknown time zone {name:?}: use an IANA name such as \"UTC\", \"Europe/Berlin\" or \"America/New_York\""
        ))
    })
}

/// The idempotency key of a schedule's fire at `tick`: `schedule:<name>:<tick RFC 3339 UTC>`
/// (`schedule:digest:2026-03-08T07:00:00Z`), so a tick enqueues once however many processes
/// race for it.
pub fn schedule_idempotency_key(name: &str, tick: DateTime<Utc>) -> String {
    format!("schedule:{name}:{}", tick.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(s: Schedule) -> String {
        s.validate().unwrap_err().to_string()
    }

    #[test]
    fn a_good_schedule_is_accepted_with_defaults() {
        let s: Schedule =
            serde_json::from_value(serde_json::json!({"name": "d", "cron": "0 9 * * *", "topic": "t"})).unwrap();
        assert_eq!(s.timezone, "UTC");
        assert!(s.enabled);
        assert_eq!(s.payload, serde_json::Value::Null);
        let times = s.validate().unwrap();
        assert_eq!(times.timezone(), chrono_tz::UTC);
        assert!(Schedule::new("a".repeat(128), "* * * * *", "t").in_timezone("Europe/Berlin").validate().is_ok());
    }

    #[test]
    fn bad_input_is_refused_with_the_field_named() {
        let ok = || Schedule::new("digest", "0 9 * * *", "emails");
        let cases = [
            (Schedule { name: String::new(), ..ok() }, "invalid schedule name"),
            (Schedule { name: "a".repeat(129), ..ok() }, "1 to 128 bytes"),
            (Schedule { name: "a b".into(), ..ok() }, "invalid schedule name \"a b\""),
            (Schedule { name: "a\0b".into(), ..ok() }, "NUL"),
            (Schedule { cron: "0 9 * * MON".into(), ..ok() }, "names are not allowed"),
            (Schedule { cron: "@daily".into(), ..ok() }, "macros"),
            (Schedule { timezone: "Mars/Olympus".into(), ..ok() }, "unknown time zone \"Mars/Olympus\""),
            (Schedule { timezone: "europe/berlin".into(), ..ok() }, "unknown time zone"),
            (Schedule { timezone: String::new(), ..ok() }, "unknown time zone"),
            (Schedule { timezone: "x".repeat(100_000), ..ok() }, "100000 bytes long"),
            (Schedule { timezone: "UTC\0".into(), ..ok() }, "unknown time zone"),
            (Schedule { topic: "a.b".into(), ..ok() }, "invalid topic \"a.b\""),
            (Schedule { topic: String::new(), ..ok() }, "invalid topic"),
            (ok().with_payload(serde_json::json!("x".repeat(70_000))), "the limit is 65536 bytes"),
            (Schedule { jitter_seconds: 3601, ..ok() }, "use 0 to 3600"),
            (Schedule { jitter_seconds: u32::MAX, ..ok() }, "use 0 to 3600"),
            (Schedule { cron: "*/5 * * * *".into(), jitter_seconds: 300, ..ok() }, "every 300 s at the shortest"),
        ];
        for (s, want) in cases {
            let e = refusal(s.clone());
            assert!(e.contains(want), "{s:?}: {e}");
        }
        // A NUL in the payload is JSON-escaped, so it is storable.
        assert!(ok().with_payload(serde_json::json!({"a": "x\0y"})).validate().is_ok());
    }

    #[test]
    fn jitter_is_a_fixed_offset_below_the_bound_per_name_and_tick() {
        let tick: DateTime<Utc> = "2026-03-08T09:00:00Z".parse().unwrap();
        let plain = Schedule::new("a", "0 9 * * *", "t");
        assert_eq!(plain.due_at(tick), tick);
        let mut offsets = std::collections::BTreeSet::new();
        for i in 0..200 {
            let s = Schedule { name: format!("tenant-{i}"), jitter_seconds: 60, ..plain.clone() };
            let due = s.due_at(tick);
            assert!(due >= tick && due < tick + chrono::Duration::seconds(60), "{due}");
            assert_eq!(due, s.due_at(tick), "the same on every call (every process)");
            offsets.insert((due - tick).num_seconds());
        }
        // 200 schedules spread over a minute land in many different seconds.
        assert!(offsets.len() > 30, "{offsets:?}");
        assert!(Schedule { cron: "*/5 * * * *".into(), jitter_seconds: 299, ..plain }.validate().is_ok());
    }

    #[test]
    fn the_idempotency_key_names_the_schedule_and_the_tick_in_utc() {
        let tick: DateTime<Utc> = "2026-03-08T07:00:00Z".parse().unwrap();
        assert_eq!(schedule_idempotency_key("digest", tick), "schedule:digest:2026-03-08T07:00:00Z");
        let tick: DateTime<Utc> = "2026-03-08T07:00:00.250Z".parse().unwrap();
        assert_eq!(schedule_idempotency_key("d", tick), "schedule:d:2026-03-08T07:00:00.250Z");
    }
}
