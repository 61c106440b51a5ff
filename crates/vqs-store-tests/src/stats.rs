//! The per-minute rollup behind the dashboard's charts: each execution counted once, in the
//! minute it finished, however many passes run and however many at once.

use chrono::{DateTime, Utc};
use vqs::store::*;

use crate::support::*;

async fn started(s: &Store, topic: &str, secs: i64) -> i64 {
    let p = ExecutionStartParams {
        topic: topic.into(),
        message_id: format!("msg_{topic}_{secs}"),
        consumer_group: "a".into(),
        attempt: 1,
        now: at(secs),
    };
    s.execution_start(p).await.unwrap()
}

async fn finished(s: &Store, id: i64, status: ExecutionStatus, secs: i64) {
    let p = ExecutionFinishParams { id, status, error: None, began_at: None, now: at(secs) };
    s.execution_finish(p).await.unwrap();
}

fn pass(now: i64, depth: &[(&str, i64)]) -> StatsRollupParams {
    StatsRollupParams {
        now: at(now),
        batch: 1000,
        depth: depth.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        prune_before: at(-86_400),
    }
}

/// (topic, minute, finished, failed, depth) of every minute since `since`.
async fn minutes(s: &Store, since: DateTime<Utc>) -> Vec<(String, i64, i64, i64, Option<i64>)> {
    let rows = s.stats_series(StatsSeriesParams { topic: None, since }).await.unwrap();
    rows.into_iter()
        .map(|r| {
            let minute = (r.minute - crate::t0()).num_minutes();
            (r.topic, minute, r.figures.finished, r.figures.failed, r.depth)
        })
        .collect()
}

pub async fn the_rollup_counts_each_execution_once_in_the_minute_it_finished(s: Store) {
    let e1 = started(&s, "t", 1).await;
    finished(&s, e1, ExecutionStatus::Success, 3).await;
    let e2 = started(&s, "t", 2).await;
    finished(&s, e2, ExecutionStatus::Failed, 70).await;
    let e3 = started(&s, "t", 5).await;
    let e4 = started(&s, "u", 10).await;
    finished(&s, e4, ExecutionStatus::Success, 10).await;

    let r = s.stats_rollup(pass(600, &[("t", 7)])).await.unwrap();
    assert_eq!((r.counted, r.pending, r.skipped), (3, 1, false));
    let t = |m: i64, f: i64, x: i64, d: Option<i64>| ("t".to_owned(), m, f, x, d);
    let u = ("u".to_owned(), 0, 1, 0, None);
    assert_eq!(minutes(&s, at(0)).await, vec![t(0, 1, 0, None), t(1, 1, 1, None), t(10, 0, 0, Some(7)), u.clone()]);
    let all = s.stats_series(StatsSeriesParams { topic: Some("t".into()), since: at(0) }).await.unwrap();
    assert_eq!(all[1].figures.max_ms, 68_000, "the failed attempt ran 68 s");
    assert_eq!(vqs::stats::percentile(&all[0].figures, 0.5), Some(2_000));

    // Again: nothing new, nothing counted twice.
    assert_eq!(s.stats_rollup(pass(601, &[])).await.unwrap().counted, 0);
    assert_eq!(minutes(&s, at(0)).await.len(), 4);

    // The running one finishes: counted once, in its minute.
    finished(&s, e3, ExecutionStatus::Success, 200).await;
    let r = s.stats_rollup(pass(602, &[])).await.unwrap();
    assert_eq!((r.counted, r.pending), (1, 0));
    assert_eq!(minutes(&s, at(0)).await[2], t(3, 1, 0, None));

    // Old minutes are pruned.
    let prune = StatsRollupParams { prune_before: at(120), ..pass(603, &[]) };
    s.stats_rollup(prune).await.unwrap();
    assert_eq!(minutes(&s, at(0)).await, vec![t(3, 1, 0, None), t(10, 0, 0, Some(7))]);
}

pub async fn eight_rollups_at_once_count_each_execution_once(s: Store) {
    for i in 0..60 {
        let id = started(&s, "t", i).await;
        finished(&s, id, ExecutionStatus::Success, i + 1).await;
    }
    let passes = (0..8).map(|_| {
        let s = s.clone();
        async move {
            let mut n = 0;
            loop {
                let r = s.stats_rollup(StatsRollupParams { batch: 7, ..pass(600, &[]) }).await.unwrap();
                n += r.counted;
                if !r.more && !r.skipped {
                    return n;
                }
                tokio::task::yield_now().await;
            }
        }
    });
    let counted: u64 = futures::future::join_all(passes).await.into_iter().sum();
    assert_eq!(counted, 60);
    let total: i64 = minutes(&s, at(0)).await.iter().map(|m| m.2).sum();
    assert_eq!(total, 60, "each execution in the figures once");
}
