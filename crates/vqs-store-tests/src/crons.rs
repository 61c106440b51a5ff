//! Cron runs and named locks.

use vqs::store::*;

use crate::support::*;

fn tick(minute: i64) -> CronRunStartParams {
    CronRunStartParams {
        path: "/c".into(),
        schedule: "* * * * *".into(),
        scheduled_at: at(minute * 60),
        now: at(minute * 60 + 1),
    }
}

pub async fn a_tick_is_claimed_once(s: Store) {
    let first = s.cron_run_start(tick(1)).await.unwrap();
    assert!(first.is_some());
    assert_eq!(s.cron_run_start(tick(1)).await.unwrap(), None, "the same tick again");
    assert!(s.cron_run_start(tick(2)).await.unwrap().is_some(), "the next tick");
    let other = CronRunStartParams { path: "/d".into(), ..tick(1) };
    assert!(s.cron_run_start(other).await.unwrap().is_some(), "another cron's tick");
}

pub async fn runs_finish_and_summarise(s: Store) {
    let ok = s.cron_run_start(tick(1)).await.unwrap().unwrap();
    s.cron_run_finish(CronRunFinishParams { id: ok, status_code: Some(200), success: true, error: None, now: at(62) })
        .await
        .unwrap();
    let bad = s.cron_run_start(tick(2)).await.unwrap().unwrap();
    s.cron_run_finish(CronRunFinishParams {
        id: bad,
        status_code: Some(500),
        success: false,
        error: Some("down".into()),
        now: at(125),
    })
    .await
    .unwrap();
    let runs = s.cron_run_list(CronRunListParams { path: Some("/c".to_owned()), limit: 10 }).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [bad, ok], "newest first");
    assert_eq!((runs[0].outcome.as_str(), runs[0].status_code, runs[0].duration_ms), ("failed", Some(500), Some(4000)));
    assert_eq!(runs[1].outcome, "success");
    let summary = s.cron_run_summary(CronRunSummaryParams::default()).await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].last_run.as_ref().map(|r| r.id), Some(bad));
    assert_eq!(summary[0].last_success_at, Some(at(62)));
}

pub async fn lock_acquire_extend_release_expire(s: Store) {
    let lock = |owner: &str, now| CronLockParams { name: "L".into(), owner: owner.into(), ttl_seconds: 60, now };
    assert!(s.cron_lock_acquire(lock("p1", at(0))).await.unwrap());
    assert!(!s.cron_lock_acquire(lock("p2", at(30))).await.unwrap(), "held");
    assert!(s.cron_lock_extend(lock("p1", at(50))).await.unwrap(), "extended to 110");
    assert!(!s.cron_lock_acquire(lock("p2", at(100))).await.unwrap(), "still held after the first ttl");
    assert!(!s.cron_lock_extend(lock("p2", at(100))).await.unwrap(), "only the owner extends");
    assert!(s.cron_lock_acquire(lock("p2", at(111))).await.unwrap(), "expired: taken over");
    assert!(!s.cron_lock_extend(lock("p1", at(112))).await.unwrap(), "the old owner lost it");
    assert!(
        !s.cron_lock_release(CronLockReleaseParams { name: "L".to_owned(), owner: "p1".to_owned() }).await.unwrap()
    );
    assert!(s.cron_lock_release(CronLockReleaseParams { name: "L".to_owned(), owner: "p2".to_owned() }).await.unwrap());
    assert!(s.cron_lock_acquire(lock("p1", at(113))).await.unwrap(), "free after release");
}
