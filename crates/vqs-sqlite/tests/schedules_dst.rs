//! Runtime schedules through DST changes on a real SQLite file, with a manual clock: three
//! schedulers (three `Queue`s on one store) call `fire_due` together every minute across a
//! change, and each tick the DST rules name fires once — one message each.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use vqs::store::MessageListParams;
use vqs::{Clock, Queue, Schedule};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Upsert `schedules` at `from`, then step the clock one minute at a time to `to`, three
/// schedulers firing together at each step. Every fire made, as (name, tick), in order.
async fn drive(schedules: &[(&str, &str, &str)], from: &str, to: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("vqs.db").display());
    let store = vqs_sqlite::SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn vqs::QueueStore> = Arc::new(store);
    let clock = Clock::manual(at(from));
    let queues: Vec<Queue> = (0..3).map(|_| Queue::new(store.clone(), clock.clone())).collect();
    let schedulers: Vec<vqs::Schedules> = queues.iter().map(Queue::schedules).collect();
    for (name, cron, tz) in schedules {
        queues[0].schedules().upsert(Schedule::new(*name, *cron, *name).in_timezone(*tz)).await.unwrap();
    }
    let mut fires = vec![];
    while clock.now() <= at(to) {
        let (a, b, c) =
            tokio::join!(schedulers[0].fire_due(100), schedulers[1].fire_due(100), schedulers[2].fire_due(100));
        for report in [a, b, c] {
            let report = report.unwrap();
            assert_eq!(report.failed, 0, "{report:?}");
            for f in report.fired {
                assert_eq!(f.tick, clock.now(), "{} fires on its tick, not late", f.name);
                fires.push((f.tick, f.name));
            }
        }
        clock.advance(Duration::from_secs(60));
    }
    fires.sort();
    // One message per fire, under the tick's key.
    for (name, _, _) in schedules {
        let ids = store.message_list(MessageListParams { topic: name.to_string(), limit: 1000 }).await.unwrap();
        assert_eq!(ids.len(), fires.iter().filter(|(_, n)| n == name).count(), "{name}: one message per fire");
    }
    fires.into_iter().map(|(t, n)| (n, t.format("%Y-%m-%dT%H:%MZ").to_string())).collect()
}

fn expect(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect()
}

#[tokio::test]
async fn berlin_spring_forward_fires_each_tick_once() {
    // 29 March 2026: 02:00 CET becomes 03:00 CEST at 01:00Z.
    let fires = drive(
        &[
            ("fixed", "30 2 * * *", "Europe/Berlin"),
            ("quarter", "*/15 * * * *", "Europe/Berlin"),
            ("twohourly", "0 */2 * * *", "Europe/Berlin"),
        ],
        "2026-03-28T23:50:00Z",
        "2026-03-29T02:10:00Z",
    )
    .await;
    let mut want = expect(&[("fixed", "2026-03-29T01:00Z"), ("twohourly", "2026-03-29T02:00Z")]);
    for t in ["00:00", "00:15", "00:30", "00:45", "01:00", "01:15", "01:30", "01:45", "02:00"] {
        want.push(("quarter".into(), format!("2026-03-29T{t}Z")));
    }
    let mut got = fires;
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn berlin_fall_back_fires_each_tick_once() {
    // 25 October 2026: 03:00 CEST becomes 02:00 CET at 01:00Z; 02:00–03:00 happens twice.
    let mut got = drive(
        &[
            ("fixed", "30 2 * * *", "Europe/Berlin"),
            ("quarter", "*/15 * * * *", "Europe/Berlin"),
            ("twohourly", "0 */2 * * *", "Europe/Berlin"),
        ],
        "2026-10-24T23:50:00Z",
        "2026-10-25T02:10:00Z",
    )
    .await;
    let mut want = expect(&[
        ("fixed", "2026-10-25T00:30Z"),
        ("twohourly", "2026-10-25T00:00Z"),
        ("twohourly", "2026-10-25T01:00Z"),
    ]);
    for t in ["00:00", "00:15", "00:30", "00:45", "01:00", "01:15", "01:30", "01:45", "02:00"] {
        want.push(("quarter".into(), format!("2026-10-25T{t}Z")));
    }
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn new_york_gap_and_repeated_hour_fire_once() {
    // 8 March 2026: 02:00 EST becomes 03:00 EDT at 07:00Z; 02:30 fires at 07:00Z.
    let got =
        drive(&[("fixed", "30 2 * * *", "America/New_York")], "2026-03-08T06:00:00Z", "2026-03-08T08:00:00Z").await;
    assert_eq!(got, expect(&[("fixed", "2026-03-08T07:00Z")]));
    // 1 November 2026: 01:00–02:00 happens twice (05:00Z EDT, 06:00Z EST); 01:30 fires at the first.
    let got =
        drive(&[("fixed", "30 1 * * *", "America/New_York")], "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z").await;
    assert_eq!(got, expect(&[("fixed", "2026-11-01T05:30Z")]));
}

#[tokio::test]
async fn missed_ticks_are_not_replayed_and_edits_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("vqs.db").display());
    let store = vqs_sqlite::SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let clock = Clock::manual(at("2026-01-05T10:00:30Z"));
    let queue = Queue::new(Arc::new(store), clock.clone());
    let schedules = queue.schedules();
    let (r, next) = schedules.upsert(Schedule::new("m", "* * * * *", "t")).await.unwrap();
    assert_eq!(next.len(), vqs::SCHEDULE_NEXT_SHOWN);
    assert_eq!(r.next_fire_at, Some(at("2026-01-05T10:01:00Z")));
    // Down for an hour: one catch-up fire, then the next tick from now.
    clock.advance(Duration::from_secs(3600));
    let report = schedules.fire_due(100).await.unwrap();
    assert_eq!(report.fired.len(), 1);
    assert_eq!(report.fired[0].tick, at("2026-01-05T10:01:00Z"));
    assert_eq!(schedules.get("m").await.unwrap().unwrap().next_fire_at, Some(at("2026-01-05T11:01:00Z")));
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
    assert!(schedules.delete("m").await.unwrap());
    assert!(schedules.list().await.unwrap().is_empty());
}
