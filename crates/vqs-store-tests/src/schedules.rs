//! Runtime schedules: rows, the due query, and a fire claimed, recorded and published once.

use vqs::Schedule;
use vqs::store::*;

use crate::support::*;

fn upsert(s: Schedule, next: Option<i64>, now: i64) -> ScheduleUpsertParams {
    ScheduleUpsertParams { schedule: s, next_fire_at: next.map(at), now: at(now) }
}

fn due_fire(r: &ScheduleRecord, next: Option<i64>, now: i64) -> ScheduleFireParams {
    ScheduleFireParams {
        name: r.name.clone(),
        tick: r.next_fire_at.unwrap(),
        kind: ScheduleFireKind::Due { updated_at: r.updated_at, next_fire_at: next.map(at) },
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
    let names: Vec<_> = s.schedule_list(ScheduleListParams {}).await.unwrap().into_iter().map(|r| r.name).collect();
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
        retention_seconds: 86_400,
        now: at(now),
    };
    let ScheduleFired::Fired { message_id, .. } = s.schedule_fire(trigger("manual", 5)).await.unwrap() else {
        panic!("a trigger fires, even a disabled schedule");
    };
    assert_eq!(s.schedule_fire(trigger("manual", 5)).await.unwrap(), ScheduleFired::AlreadyFired);
    assert_eq!(s.schedule_fire(trigger("nobody", 5)).await.unwrap(), ScheduleFired::NotFound);
    let r = get(&s, "manual").await.unwrap();
    assert_eq!(r.next_fire_at, Some(at(1_000)), "not moved");
    assert_eq!((r.last_tick, r.last_message_id), (Some(at(5)), Some(message_id)));
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
