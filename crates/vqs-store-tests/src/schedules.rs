//! Runtime schedules: rows, the due query, and a fire claimed, recorded and published once;
//! and the facade (`queue.schedules()`) on the store with a manual clock: three schedulers
//! firing together every minute across DST changes fire each tick the rules name, once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use vqs::store::*;
use vqs::{Clock, Queue, Schedule};

use crate::support::*;

fn upsert(s: Schedule, next: Option<i64>, now: i64) -> ScheduleUpsertParams {
    ScheduleUpsertParams { schedule: s, next_fire_at: next.map(at), due_at: next.map(at), now: at(now) }
}

fn due_fire(r: &ScheduleRecord, next: Option<i64>, now: i64) -> ScheduleFireParams {
    ScheduleFireParams {
        name: r.name.clone(),
        tick: r.next_fire_at.unwrap(),
        kind: ScheduleFireKind::Due { updated_at: r.updated_at, next_fire_at: next.map(at), next_due_at: next.map(at) },
        mode: ScheduleFireMode::Publish,
        retention_seconds: 86_400,
        now: at(now),
    }
}

async fn due(s: &Store, now: i64) -> Vec<String> {
    s.schedule_due(ScheduleDueParams { now: at(now), limit: 100 }).await.unwrap().into_iter().map(|r| r.name).collect()
}

async fn get(s: &Store, name: &str) -> Option<ScheduleRecord> {
    s.schedule_get(ScheduleGetParams { name: name.into() }).await.unwrap()
}

pub async fn upsert_get_list_delete_round_trip(s: Store) {
    let digest = Schedule::new("digest", "0 9 * * *", "emails")
        .in_timezone("Europe/Berlin")
        .with_payload(serde_json::json!({"kind": "daily", "n": 1}));
    let r = s.schedule_upsert(upsert(digest.clone(), Some(100), 1)).await.unwrap();
    assert_eq!(r.schedule(), digest);
    assert_eq!((r.next_fire_at, r.created_at, r.updated_at), (Some(at(100)), at(1), at(1)));
    assert_eq!((r.last_tick, r.last_fired_at, r.last_message_id.clone()), (None, None, None));
    assert_eq!(get(&s, "digest").await, Some(r.clone()));
    // An update replaces the definition, keeps created_at.
    let edited = Schedule { enabled: false, cron: "0 10 * * *".into(), ..digest };
    let r2 = s.schedule_upsert(upsert(edited.clone(), Some(200), 5)).await.unwrap();
    assert_eq!(r2.schedule(), edited);
    assert_eq!((r2.next_fire_at, r2.created_at, r2.updated_at), (Some(at(200)), at(1), at(5)));
    s.schedule_upsert(upsert(Schedule::new("a-first", "* * * * *", "t"), None, 6)).await.unwrap();
    let names: Vec<_> = s
        .schedule_list(ScheduleListParams { after: None, limit: 10 })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a-first", "digest"]);
    assert!(s.schedule_delete(ScheduleDeleteParams { name: "digest".into() }).await.unwrap());
    assert!(!s.schedule_delete(ScheduleDeleteParams { name: "digest".into() }).await.unwrap(), "gone already");
    assert_eq!(get(&s, "digest").await, None);
}

pub async fn due_is_enabled_and_overdue_oldest_first(s: Store) {
    s.schedule_upsert(upsert(Schedule::new("late", "* * * * *", "t"), Some(50), 0)).await.unwrap();
    s.schedule_upsert(upsert(Schedule::new("later", "* * * * *", "t"), Some(10), 0)).await.unwrap();
    s.schedule_upsert(upsert(Schedule::new("future", "* * * * *", "t"), Some(500), 0)).await.unwrap();
    s.schedule_upsert(upsert(Schedule::new("never", "0 0 31 2 *", "t"), None, 0)).await.unwrap();
    let off = Schedule { enabled: false, ..Schedule::new("off", "* * * * *", "t") };
    s.schedule_upsert(upsert(off, Some(1), 0)).await.unwrap();
    assert_eq!(due(&s, 9).await, Vec::<String>::new());
    assert_eq!(due(&s, 50).await, ["later", "late"], "at or before now, the most overdue first");
    assert_eq!(due(&s, 10_000).await, ["later", "late", "future"], "disabled and never-firing ones never");
    let one = s.schedule_due(ScheduleDueParams { now: at(10_000), limit: 1 }).await.unwrap();
    assert_eq!(one.len(), 1);
}

pub async fn a_tick_fires_once_under_three_concurrent_callers(s: Store) {
    subscribe(&s, "reports", "g").await;
    let sched = Schedule::new("nightly", "0 2 * * *", "reports").with_payload(serde_json::json!({"full": true}));
    let r = s.schedule_upsert(upsert(sched, Some(60), 0)).await.unwrap();
    let fire = || {
        let s = s.clone();
        let p = due_fire(&r, Some(120), 61);
        async move { s.schedule_fire(p).await.unwrap() }
    };
    let (a, b, c) = tokio::join!(fire(), fire(), fire());
    let outcomes = [a, b, c];
    let fired: Vec<_> = outcomes.iter().filter(|o| matches!(o, ScheduleFired::Fired { .. })).collect();
    assert_eq!(fired.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == ScheduleFired::AlreadyFired).count(), 2, "{outcomes:?}");
    let ScheduleFired::Fired { message_id, duplicate } = fired[0].clone() else { unreachable!() };
    assert!(!duplicate);
    let ids = s.message_list(MessageListParams { topic: "reports".into(), limit: 10 }).await.unwrap();
    assert_eq!(ids.len(), 1, "exactly one message");
    assert_eq!(ids[0], message_id);
    let m = s.message_get(MessageGetParams { id: message_id.clone() }).await.unwrap().unwrap();
    assert_eq!(m.idempotency_key.as_deref(), Some(vqs::schedule_idempotency_key("nightly", at(60)).as_str()));
    assert_eq!(m.payload, serde_json::json!({"full": true}));
    // The fire is kept on the schedule, and the next tick is the caller's.
    let after = get(&s, "nightly").await.unwrap();
    assert_eq!(after.next_fire_at, Some(at(120)));
    assert_eq!((after.last_tick, after.last_fired_at), (Some(at(60)), Some(at(61))));
    assert_eq!(after.last_message_id, Some(message_id));
    // The same tick again, from a stale read: already fired.
    assert_eq!(s.schedule_fire(due_fire(&r, Some(120), 62)).await.unwrap(), ScheduleFired::AlreadyFired);
}

pub async fn an_edit_or_delete_between_due_and_fire_answers_changed(s: Store) {
    subscribe(&s, "t", "g").await;
    let sched = Schedule::new("e", "* * * * *", "t");
    let read = s.schedule_upsert(upsert(sched.clone(), Some(60), 0)).await.unwrap();
    // Edited (same next tick, new payload): the read is stale.
    s.schedule_upsert(upsert(sched.clone().with_payload(serde_json::json!(2)), Some(60), 30)).await.unwrap();
    assert_eq!(s.schedule_fire(due_fire(&read, Some(120), 61)).await.unwrap(), ScheduleFired::Changed);
    // Disabled: nothing fires.
    let fresh = get(&s, "e").await.unwrap();
    s.schedule_upsert(upsert(Schedule { enabled: false, ..sched.clone() }, Some(60), 40)).await.unwrap();
    assert_eq!(s.schedule_fire(due_fire(&fresh, Some(120), 61)).await.unwrap(), ScheduleFired::Changed);
    // Deleted: nothing fires.
    let fresh = s.schedule_upsert(upsert(sched, Some(60), 50)).await.unwrap();
    s.schedule_delete(ScheduleDeleteParams { name: "e".into() }).await.unwrap();
    assert_eq!(s.schedule_fire(due_fire(&fresh, Some(120), 61)).await.unwrap(), ScheduleFired::Changed);
    let ids = s.message_list(MessageListParams { topic: "t".into(), limit: 10 }).await.unwrap();
    assert!(ids.is_empty(), "nothing published: {ids:?}");
}

pub async fn a_trigger_fires_now_and_leaves_the_next_tick(s: Store) {
    subscribe(&s, "t", "g").await;
    let off = Schedule { enabled: false, ..Schedule::new("manual", "0 0 1 1 *", "t") };
    s.schedule_upsert(upsert(off, Some(1_000), 0)).await.unwrap();
    let trigger = |name: &str, now: i64| ScheduleFireParams {
        name: name.into(),
        tick: at(now),
        kind: ScheduleFireKind::Trigger,
        mode: ScheduleFireMode::Publish,
        retention_seconds: 86_400,
        now: at(now),
    };
    let ScheduleFired::Fired { message_id, .. } = s.schedule_fire(trigger("manual", 5)).await.unwrap() else {
        panic!("a trigger fires, even a disabled schedule");
    };
    assert_eq!(s.schedule_fire(trigger("manual", 5)).await.unwrap(), ScheduleFired::AlreadyFired);
    // Sixteen triggers at one instant: one fires.
    let race = (0..16).map(|_| {
        let s = s.clone();
        async move { s.schedule_fire(trigger("manual", 7)).await.unwrap() }
    });
    let outcomes = futures::future::join_all(race).await;
    assert_eq!(outcomes.iter().filter(|o| matches!(o, ScheduleFired::Fired { .. })).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == ScheduleFired::AlreadyFired).count(), 15, "{outcomes:?}");
    assert_eq!(s.schedule_fire(trigger("nobody", 5)).await.unwrap(), ScheduleFired::NotFound);
    let r = get(&s, "manual").await.unwrap();
    assert_eq!(r.next_fire_at, Some(at(1_000)), "not moved");
    assert_eq!(r.last_tick, Some(at(7)));
    assert_ne!(r.last_message_id, Some(message_id), "the later trigger's message");
}

/// A trigger at the very instant of a due tick records that tick: the due fire then
/// publishes nothing but still moves the schedule on, or it would be due forever.
pub async fn a_due_tick_already_triggered_moves_on(s: Store) {
    subscribe(&s, "t", "g").await;
    let r = s.schedule_upsert(upsert(Schedule::new("x", "* * * * *", "t"), Some(60), 0)).await.unwrap();
    let trigger = ScheduleFireParams {
        name: "x".into(),
        tick: at(60),
        kind: ScheduleFireKind::Trigger,
        mode: ScheduleFireMode::Publish,
        retention_seconds: 60,
        now: at(60),
    };
    assert!(matches!(s.schedule_fire(trigger).await.unwrap(), ScheduleFired::Fired { .. }));
    assert_eq!(s.schedule_fire(due_fire(&r, Some(120), 61)).await.unwrap(), ScheduleFired::AlreadyFired);
    assert_eq!(get(&s, "x").await.unwrap().next_fire_at, Some(at(120)));
    assert_eq!(due(&s, 100).await, Vec::<String>::new());
    let ids = s.message_list(MessageListParams { topic: "t".into(), limit: 10 }).await.unwrap();
    assert_eq!(ids.len(), 1);
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Upsert `schedules` (name, cron, zone; the topic is the name) at `from`, then step the
/// clock a minute at a time to `to`, three schedulers (three `Queue`s on the store) firing
/// together at each step; delete them at the end. Every fire, as (name, tick), sorted.
async fn drive(s: &Store, schedules: &[(&str, &str, &str)], from: &str, to: &str) -> Vec<(String, String)> {
    let count = |topic: &str| {
        let p = MessageListParams { topic: topic.to_owned(), limit: 1000 };
        async move { s.message_list(p).await.unwrap().len() }
    };
    let mut before = vec![];
    for (name, _, _) in schedules {
        before.push(count(name).await);
    }
    let clock = Clock::manual(utc(from));
    let schedulers: Vec<vqs::Schedules> = (0..3).map(|_| Queue::new(s.clone(), clock.clone()).schedules()).collect();
    for (name, cron, tz) in schedules {
        schedulers[0].upsert(Schedule::new(*name, *cron, *name).in_timezone(*tz)).await.unwrap();
    }
    let mut fires = vec![];
    while clock.now() <= utc(to) {
        let (a, b, c) =
            tokio::join!(schedulers[0].fire_due(100), schedulers[1].fire_due(100), schedulers[2].fire_due(100));
        for report in [a, b, c] {
            let report = report.unwrap();
            assert_eq!(report.failed, 0, "{report:?}");
            for f in report.fired {
                assert_eq!(f.tick, clock.now(), "{} fires on its tick, not late", f.name);
                fires.push((f.name, f.tick.format("%Y-%m-%dT%H:%MZ").to_string()));
            }
        }
        clock.advance(Duration::from_secs(60));
    }
    for ((name, _, _), before) in schedules.iter().zip(before) {
        let published = count(name).await - before;
        assert_eq!(published, fires.iter().filter(|(n, _)| n == name).count(), "{name}: one message per fire");
        assert!(schedulers[0].delete(name).await.unwrap());
    }
    fires.sort();
    fires
}

fn expect(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = list.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    v.sort();
    v
}

fn quarters(prefix: &str, name: &str) -> Vec<(String, String)> {
    ["00:00", "00:15", "00:30", "00:45", "01:00", "01:15", "01:30", "01:45", "02:00"]
        .iter()
        .map(|t| (name.to_owned(), format!("{prefix}T{t}Z")))
        .collect()
}

pub async fn dst_changes_fire_each_tick_once_across_three_schedulers(s: Store) {
    // Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST at 01:00Z. 02:30 fires once at the
    // end of the gap; every 15 minutes goes on in real time; the even hours have no 02:00.
    let got = drive(
        &s,
        &[
            ("b-fixed", "30 2 * * *", "Europe/Berlin"),
            ("b-quarter", "*/15 * * * *", "Europe/Berlin"),
            ("b-even", "0 */2 * * *", "Europe/Berlin"),
        ],
        "2026-03-28T23:50:00Z",
        "2026-03-29T02:10:00Z",
    )
    .await;
    let mut want = expect(&[("b-fixed", "2026-03-29T01:00Z"), ("b-even", "2026-03-29T02:00Z")]);
    want.extend(quarters("2026-03-29", "b-quarter"));
    want.sort();
    assert_eq!(got, want, "Berlin spring forward");
    // Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET at 01:00Z. 02:30 fires at the
    // first; the two real hours that read 02:00 each fire the even-hour schedule.
    let got = drive(
        &s,
        &[
            ("b-fixed", "30 2 * * *", "Europe/Berlin"),
            ("b-quarter", "*/15 * * * *", "Europe/Berlin"),
            ("b-even", "0 */2 * * *", "Europe/Berlin"),
        ],
        "2026-10-24T23:50:00Z",
        "2026-10-25T02:10:00Z",
    )
    .await;
    let mut want =
        expect(&[("b-fixed", "2026-10-25T00:30Z"), ("b-even", "2026-10-25T00:00Z"), ("b-even", "2026-10-25T01:00Z")]);
    want.extend(quarters("2026-10-25", "b-quarter"));
    want.sort();
    assert_eq!(got, want, "Berlin fall back");
    // New York, 8 March 2026: 02:00 EST becomes 03:00 EDT at 07:00Z.
    let got =
        drive(&s, &[("ny-fixed", "30 2 * * *", "America/New_York")], "2026-03-08T06:00:00Z", "2026-03-08T08:00:00Z")
            .await;
    assert_eq!(got, expect(&[("ny-fixed", "2026-03-08T07:00Z")]), "New York spring forward");
    // New York, 1 November 2026: 01:00–02:00 happens twice (05:00Z EDT, 06:00Z EST).
    let got =
        drive(&s, &[("ny-fixed", "30 1 * * *", "America/New_York")], "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z")
            .await;
    assert_eq!(got, expect(&[("ny-fixed", "2026-11-01T05:30Z")]), "New York fall back");
}

/// Through the facade: missed ticks are not replayed, disabling stops fires, bad input is
/// refused with nothing written, a trigger fires now.
pub async fn the_facade_skips_missed_ticks_and_refuses_bad_input(s: Store) {
    let clock = Clock::manual(utc("2026-01-05T10:00:30Z"));
    let queue = Queue::new(s.clone(), clock.clone());
    let schedules = queue.schedules();
    let (r, next) = schedules.upsert(Schedule::new("m", "* * * * *", "t")).await.unwrap();
    assert_eq!(next.len(), vqs::SCHEDULE_NEXT_SHOWN);
    assert_eq!(r.next_fire_at, Some(utc("2026-01-05T10:01:00Z")));
    // Down for an hour: one catch-up fire, then the next tick from now.
    clock.advance(Duration::from_secs(3600));
    let report = schedules.fire_due(100).await.unwrap();
    assert_eq!(report.fired.len(), 1);
    assert_eq!(report.fired[0].tick, utc("2026-01-05T10:01:00Z"));
    assert_eq!(schedules.get("m").await.unwrap().unwrap().next_fire_at, Some(utc("2026-01-05T11:01:00Z")));
    assert!(schedules.fire_due(100).await.unwrap().fired.is_empty());
    // Disabled: never due. Deleted: gone.
    schedules.upsert(Schedule { enabled: false, ..Schedule::new("m", "* * * * *", "t") }).await.unwrap();
    clock.advance(Duration::from_secs(600));
    assert_eq!(schedules.fire_due(100).await.unwrap(), vqs::ScheduleFireReport::default());
    // Bad input: refused, nothing written.
    let e = schedules.upsert(Schedule::new("z", "0 9 * * *", "t").in_timezone("Mars/Olympus")).await.unwrap_err();
    assert!(e.to_string().contains("unknown time zone \"Mars/Olympus\""), "{e}");
    assert!(schedules.get("z").await.unwrap().is_none());
    // A trigger fires now.
    assert!(matches!(schedules.trigger("m").await.unwrap(), vqs::store::ScheduleFired::Fired { .. }));
    assert_eq!(schedules.trigger("nobody").await.unwrap(), vqs::store::ScheduleFired::NotFound);
    // Hostile names are refused, not sent to the database.
    for bad in ["a\0b", "", &"n".repeat(10_000)] {
        assert!(matches!(schedules.get(bad).await, Err(vqs::QueueError::Invalid(_))), "{bad:?}");
        assert!(matches!(schedules.delete(bad).await, Err(vqs::QueueError::Invalid(_))), "{bad:?}");
        assert!(matches!(schedules.trigger(bad).await, Err(vqs::QueueError::Invalid(_))), "{bad:?}");
    }
    assert!(schedules.delete("m").await.unwrap());
    assert!(schedules.list().await.unwrap().is_empty());
}

/// A fire prunes its schedule's fire records older than the retention before its tick.
pub async fn a_fire_prunes_its_old_fire_records(s: Store) {
    subscribe(&s, "t", "g").await;
    s.schedule_upsert(upsert(Schedule::new("p", "0 0 1 1 *", "t"), Some(1_000_000), 0)).await.unwrap();
    let trigger = |secs: i64| ScheduleFireParams {
        name: "p".into(),
        tick: at(secs),
        kind: ScheduleFireKind::Trigger,
        mode: ScheduleFireMode::Publish,
        retention_seconds: 60,
        now: at(secs),
    };
    assert!(matches!(s.schedule_fire(trigger(5)).await.unwrap(), ScheduleFired::Fired { .. }));
    assert_eq!(s.schedule_fire(trigger(5)).await.unwrap(), ScheduleFired::AlreadyFired, "kept");
    let later = 5 + SCHEDULE_FIRE_RETENTION_SECONDS + 1;
    assert!(matches!(s.schedule_fire(trigger(later)).await.unwrap(), ScheduleFired::Fired { .. }));
    // The record of the first is gone: that instant could fire again (its message's
    // idempotency key still dedups it while the message is kept).
    assert!(matches!(s.schedule_fire(trigger(5)).await.unwrap(), ScheduleFired::Fired { .. }));
}
