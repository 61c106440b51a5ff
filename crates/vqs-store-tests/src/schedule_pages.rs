//! Runtime schedules by the thousand: a page at a time by name in byte order (through the
//! store and the facade's cursor), and the bounded counts and overdue read that health and
//! metrics use instead of reading every schedule.

use futures::StreamExt;
use vqs::store::*;
use vqs::{Clock, Queue, Schedule};

use crate::support::*;

/// How many schedules the paging case stores: "a few thousand".
const MANY: usize = 3000;

fn names() -> Vec<String> {
    // Byte order is not alphabetical order: '-' < digits < upper case < '_' < lower case.
    let mut names: Vec<String> = (0..MANY - 6).map(|i| format!("tenant-{i:05}")).collect();
    names.extend(["A", "Z_", "_x", "a", "-dash", "0zero"].map(String::from));
    names
}

async fn store_all(s: &Store, names: &[String]) {
    let results: Vec<_> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let s = s.clone();
            async move {
                let p = ScheduleUpsertParams {
                    schedule: Schedule::new(name, "0 9 * * *", "t"),
                    next_fire_at: Some(at(3600)),
                    due_at: Some(at(3600)),
                    now: at(0),
                };
                s.schedule_upsert(p).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(results.iter().all(|r| r.is_ok()));
}

async fn page(s: &Store, after: Option<&str>, limit: u32) -> Vec<String> {
    let p = ScheduleListParams { after: after.map(String::from), limit };
    s.schedule_list(p).await.unwrap().into_iter().map(|r| r.name).collect()
}

pub async fn thousands_of_schedules_page_by_name_in_byte_order(s: Store) {
    let mut expected = names();
    store_all(&s, &expected).await;
    expected.sort(); // Rust compares strings byte by byte
    assert_eq!(&expected[..6], ["-dash", "0zero", "A", "Z_", "_x", "a"]);

    // Through the store: pages of 7 (not a divisor), each after the last name of the one before.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let names = page(&s, after.as_deref(), 7).await;
        assert!(names.len() <= 7);
        if names.is_empty() {
            break;
        }
        after = names.last().cloned();
        seen.extend(names);
    }
    assert_eq!(seen, expected, "every schedule once, in byte order");
    // A cursor that is no stored name starts after where it would sort.
    assert_eq!(page(&s, Some("tenant-00010x"), 2).await, ["tenant-00011", "tenant-00012"]);
    assert_eq!(page(&s, Some("u"), 2).await, Vec::<String>::new(), "after the last name");
    assert_eq!(page(&s, Some(""), 1).await, ["-dash"]);

    // Through the facade: the cursor of each page is the last name on it, none on the last.
    let schedules = Queue::new(s.clone(), Clock::manual(at(0))).schedules();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let p = schedules.page(after.as_deref(), 1000).await.unwrap();
        pages += 1;
        assert_eq!(
            p.next_after.as_ref(),
            if p.next_after.is_some() { p.schedules.last().map(|r| &r.name) } else { None }
        );
        seen.extend(p.schedules.into_iter().map(|r| r.name));
        match p.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3, "exactly {MANY} / 1000 pages: a full last page names no next one");
    assert_eq!(seen, expected);
    assert_eq!(schedules.count().await.unwrap(), MANY as u64);
    assert_eq!(schedules.list().await.unwrap().len(), MANY, "list still reads every schedule");
    for (after, limit) in [(None, 0), (None, 1001), (Some("a\0b"), 10)] {
        assert!(schedules.page(after, limit).await.is_err(), "{after:?} {limit}");
    }
}

pub async fn counts_and_the_overdue_read_are_bounded(s: Store) {
    let upsert = |name: &str, next: Option<i64>, enabled: bool| {
        let schedule = Schedule { enabled, ..Schedule::new(name, "* * * * *", "t") };
        ScheduleUpsertParams { schedule, next_fire_at: next.map(at), due_at: next.map(at), now: at(0) }
    };
    for (name, next, enabled) in [
        ("a", Some(100), true),
        ("b", Some(50), true),
        ("c", Some(50), true),
        ("d", Some(500), true),
        ("off", Some(10), false),
        ("never", None, true),
    ] {
        s.schedule_upsert(upsert(name, next, enabled)).await.unwrap();
    }
    let count = |overdue_before: Option<i64>, cap: u32| {
        let s = s.clone();
        async move { s.schedule_count(ScheduleCountParams { overdue_before: overdue_before.map(at), cap }).await.unwrap() }
    };
    assert_eq!(count(None, 1000).await, 6);
    assert_eq!(count(None, 4).await, 4, "stops at the cap");
    assert_eq!(count(Some(49), 1000).await, 0);
    assert_eq!(
        count(Some(100), 1000).await,
        3,
        "enabled, at or before: not the disabled one, not the never-firing one"
    );
    assert_eq!(count(Some(100), 2).await, 2);
    let overdue = |before: i64, limit: u32| {
        let s = s.clone();
        async move {
            let rows = s.schedule_overdue(ScheduleOverdueParams { before: at(before), limit }).await.unwrap();
            rows.into_iter().map(|r| r.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(overdue(100, 10).await, ["b", "c", "a"], "the most overdue first, by name among equals");
    assert_eq!(overdue(100, 2).await, ["b", "c"]);
    assert_eq!(overdue(10_000, 10).await, ["b", "c", "a", "d"]);
}
