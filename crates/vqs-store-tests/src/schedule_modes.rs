//! Runtime schedules beyond a plain fire: a tick claimed for a remote publish (recorded
//! without a message, listed as unsent until its message is reported), a missed tick
//! skipped, the due query reading the jittered due time, a delete taking the fire records
//! with it; and through the facade with a manual clock, jitter and catch-up.

use std::time::Duration;

use chrono::{DateTime, Utc};
use vqs::store::*;
use vqs::{Clock, Queue, Schedule};

use crate::support::*;

fn upsert(s: Schedule, next: i64, due: i64, now: i64) -> ScheduleUpsertParams {
    ScheduleUpsertParams { schedule: s, next_fire_at: Some(at(next)), due_at: Some(at(due)), now: at(now) }
}

fn fire(r: &ScheduleRecord, mode: ScheduleFireMode, next: i64, now: i64) -> ScheduleFireParams {
    ScheduleFireParams {
        name: r.name.clone(),
        tick: r.next_fire_at.unwrap(),
        kind: ScheduleFireKind::Due {
            updated_at: r.updated_at,
            next_fire_at: Some(at(next)),
            next_due_at: Some(at(next)),
        },
        mode,
        retention_seconds: 86_400,
        now: at(now),
    }
}

async fn get(s: &Store, name: &str) -> ScheduleRecord {
    s.schedule_get(ScheduleGetParams { name: name.into() }).await.unwrap().unwrap()
}

async fn unsent(s: &Store, since: i64, until: i64) -> Vec<(String, DateTime<Utc>)> {
    let p = ScheduleUnsentParams { since: at(since), until: at(until), limit: 100 };
    s.schedule_unsent(p).await.unwrap().into_iter().map(|u| (u.name, u.tick)).collect()
}

async fn published(s: &Store, topic: &str) -> usize {
    s.message_list(MessageListParams { topic: topic.into(), limit: 1_000 }).await.unwrap().len()
}

pub async fn a_claimed_fire_is_unsent_until_its_message_is_reported(s: Store) {
    subscribe(&s, "t", "g").await;
    let sched = Schedule::new("c", "* * * * *", "t").with_payload(serde_json::json!({"tenant": "acme"}));
    let r = s.schedule_upsert(upsert(sched, 60, 60, 0)).await.unwrap();
    let claimed = s.schedule_fire(fire(&r, ScheduleFireMode::Claim, 120, 61)).await.unwrap();
    assert_eq!(claimed, ScheduleFired::Claimed { topic: "t".into(), payload: r#"{"tenant":"acme"}"#.into() });
    assert_eq!(published(&s, "t").await, 0, "the caller publishes elsewhere");
    // Claimed once: a racing claim of the same tick finds it fired.
    assert_eq!(s.schedule_fire(fire(&r, ScheduleFireMode::Claim, 120, 61)).await.unwrap(), ScheduleFired::AlreadyFired);
    let after = get(&s, "c").await;
    assert_eq!((after.next_fire_at, after.due_at, after.last_tick), (Some(at(120)), Some(at(120)), Some(at(60))));
    assert_eq!(after.last_message_id, None);
    // Unsent while no message is reported, within the window asked for.
    assert_eq!(unsent(&s, 0, 100).await, [("c".to_owned(), at(60))]);
    assert!(unsent(&s, 62, 100).await.is_empty(), "recorded at 61, outside 62..=100");
    assert!(unsent(&s, 0, 60).await.is_empty(), "outside 0..=60");
    let sent = ScheduleFireSentParams { name: "c".into(), tick: at(60), message_id: "msg_remote_1".into() };
    s.schedule_fire_sent(sent.clone()).await.unwrap();
    assert!(unsent(&s, 0, 100).await.is_empty());
    assert_eq!(get(&s, "c").await.last_message_id.as_deref(), Some("msg_remote_1"));
    // Reporting again, or for a fire never recorded, changes nothing and fails nothing.
    s.schedule_fire_sent(ScheduleFireSentParams { message_id: "msg_other".into(), ..sent.clone() }).await.unwrap();
    s.schedule_fire_sent(ScheduleFireSentParams { tick: at(9_999), ..sent }).await.unwrap();
    assert_eq!(get(&s, "c").await.last_message_id.as_deref(), Some("msg_remote_1"));
    // A trigger claims too, and a late report of an older fire does not rename the last message.
    let trigger = ScheduleFireParams {
        name: "c".into(),
        tick: at(90),
        kind: ScheduleFireKind::Trigger,
        mode: ScheduleFireMode::Claim,
        retention_seconds: 60,
        now: at(90),
    };
    assert!(matches!(s.schedule_fire(trigger).await.unwrap(), ScheduleFired::Claimed { .. }));
    assert_eq!(unsent(&s, 0, 100).await, [("c".to_owned(), at(90))]);
    // A deleted schedule's unsent fires are gone with it.
    assert!(s.schedule_delete(ScheduleDeleteParams { name: "c".into() }).await.unwrap());
    assert!(unsent(&s, 0, 100).await.is_empty());
}

pub async fn a_skipped_tick_moves_on_and_publishes_nothing(s: Store) {
    subscribe(&s, "t", "g").await;
    let r = s.schedule_upsert(upsert(Schedule::new("k", "* * * * *", "t"), 60, 60, 0)).await.unwrap();
    assert_eq!(s.schedule_fire(fire(&r, ScheduleFireMode::Skip, 600, 590)).await.unwrap(), ScheduleFired::Skipped);
    let after = get(&s, "k").await;
    assert_eq!((after.next_fire_at, after.due_at), (Some(at(600)), Some(at(600))));
    assert_eq!((after.last_tick, after.last_fired_at), (None, None), "a missed tick is not a fire");
    assert_eq!(published(&s, "t").await, 0);
    assert!(unsent(&s, 0, 1_000).await.is_empty(), "nothing to publish later either");
    // Recorded: the same tick cannot be fired after all.
    assert_eq!(
        s.schedule_fire(fire(&r, ScheduleFireMode::Publish, 600, 591)).await.unwrap(),
        ScheduleFired::AlreadyFired
    );
    assert_eq!(published(&s, "t").await, 0);
}

pub async fn the_due_query_reads_the_jittered_due_time(s: Store) {
    subscribe(&s, "t", "g").await;
    s.schedule_upsert(upsert(Schedule::new("j", "* * * * *", "t"), 60, 95, 0)).await.unwrap();
    s.schedule_upsert(upsert(Schedule::new("plain", "* * * * *", "t"), 60, 60, 0)).await.unwrap();
    let due = |now: i64| {
        let s = s.clone();
        async move {
            let p = ScheduleDueParams { now: at(now), limit: 10 };
            s.schedule_due(p).await.unwrap().into_iter().map(|r| r.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(due(80).await, ["plain"], "the tick has come, its jittered time has not");
    assert_eq!(due(95).await, ["plain", "j"], "the most overdue first");
    // Firing moves both the tick and the due time; the tick is still the one published.
    let r = get(&s, "j").await;
    let fired = s.schedule_fire(fire(&r, ScheduleFireMode::Publish, 120, 96)).await.unwrap();
    let ScheduleFired::Fired { message_id, .. } = fired else { panic!("{fired:?}") };
    let m = s.message_get(MessageGetParams { id: message_id }).await.unwrap().unwrap();
    assert_eq!(m.idempotency_key, Some(vqs::schedule_idempotency_key("j", at(60))));
    assert_eq!(due(100).await, ["plain"]);
}

/// Through the facade: 200 tenants' schedules at 09:00 with a minute of jitter fire spread
/// over that minute, each under its 09:00 key; a schedule without catch-up skips the tick it
/// missed while nothing ran, one with catch-up fires it once.
pub async fn jitter_spreads_fires_and_catch_up_can_be_off(s: Store) {
    subscribe(&s, "daily", "g").await;
    subscribe(&s, "m", "g").await;
    let nine: DateTime<Utc> = "2026-01-05T09:00:00Z".parse().unwrap();
    let clock = Clock::manual(nine - chrono::Duration::seconds(30));
    let schedules = Queue::new(s.clone(), clock.clone()).schedules();
    for i in 0..200 {
        let tenant = Schedule { jitter_seconds: 60, ..Schedule::new(format!("tenant-{i}"), "0 9 * * *", "daily") };
        let (r, _) = schedules.upsert(tenant).await.unwrap();
        assert_eq!(r.next_fire_at, Some(nine));
        assert!(r.due_at.unwrap() >= nine && r.due_at.unwrap() < nine + chrono::Duration::seconds(60));
    }
    let mut seconds_with_fires = 0;
    let mut fired = 0;
    for _ in 0..100 {
        let report = schedules.fire_due(1_000).await.unwrap();
        assert_eq!((report.failed, report.skipped), (0, 0), "{report:?}");
        for f in &report.fired {
            assert_eq!(f.tick, nine, "the tick, not the jittered time");
        }
        seconds_with_fires += usize::from(!report.fired.is_empty());
        fired += report.fired.len();
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(fired, 200, "each once");
    assert!(seconds_with_fires > 30, "spread over the minute: fires in {seconds_with_fires} seconds");
    assert_eq!(published(&s, "daily").await, 200);

    // Catch-up off vs on, down for ten minutes.
    let start = clock.now();
    let off = Schedule { catch_up: false, ..Schedule::new("no-catch-up", "* * * * *", "m") };
    schedules.upsert(off).await.unwrap();
    schedules.upsert(Schedule::new("catch-up", "* * * * *", "m")).await.unwrap();
    clock.advance(Duration::from_secs(600));
    let report = schedules.fire_due(100).await.unwrap();
    assert_eq!(report.missed, 1, "{report:?}");
    assert_eq!(report.fired.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["catch-up"]);
    assert_eq!(published(&s, "m").await, 1);
    let skipped = schedules.get("no-catch-up").await.unwrap().unwrap();
    assert!(skipped.next_fire_at.unwrap() > clock.now(), "moved on from now: {skipped:?}");
    assert_eq!(skipped.last_tick, None);
    // Back on time: a tick found due within the grace fires, catch-up or not.
    clock.advance(Duration::from_secs(60));
    let report = schedules.fire_due(100).await.unwrap();
    assert_eq!((report.fired.len(), report.missed), (2, 0), "{report:?}");
    assert!(report.fired.iter().all(|f| f.tick > start));
}
