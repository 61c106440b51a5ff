//! Paused message groups of a topic (`group_pauses`, migration 0024): the claim reads the
//! table itself (`claim_statement.rs`, `flow_groups.rs`), so a pause holds on every process at once.

use sqlx::{PgPool, Row};
use std::collections::HashSet;
use std::sync::Arc;
use vqs::store::*;

use crate::rows::*;

/// The claim's filter (after the conditions on `d` and `m`): no delivery of a paused group
/// of its topic. With no paused group at all it is one init plan per statement; the planner
/// rates the OR at one half at worst (`m.group_key IS NULL` is most rows' case), so the
/// claim keeps reading the due index (the plan test `a_claim_reads_the_due_index…`).
pub(crate) const CLAIM_FILTER: &str = " AND (NOT EXISTS (SELECT 1 FROM group_pauses) \
     OR NOT EXISTS (SELECT 1 FROM group_pauses gp WHERE gp.topic = d.topic \
     AND gp.group_key = (SELECT g.group_key FROM messages g WHERE g.id = d.message_id)))";

/// Pause (insert, idempotent) or resume (delete) one group of a topic. A resume wakes the
/// group in every grouped consumer group that has it (a wake-up the next claim folds in:
/// a paused group was parked out of the ready set).
pub(crate) async fn group_pause_set(pool: &PgPool, p: GroupPauseSetParams) -> Result<Option<GroupPause>, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let out = if p.paused {
        sqlx::query(
            "INSERT INTO group_pauses (topic, group_key, paused_at) VALUES ($1, $2, $3) \
             ON CONFLICT (topic, group_key) DO UPDATE SET paused_at = group_pauses.paused_at \
             RETURNING topic, group_key, paused_at",
        )
        .bind(&p.topic)
        .bind(&p.group_key)
        .bind(p.now)
        .fetch_one(&mut *tx)
        .await
        .map(|r| Some(GroupPause { topic: r.get(0), group_key: r.get(1), paused_at: r.get(2) }))
        .map_err(db_err)?
    } else {
        let removed = sqlx::query(
            "DELETE FROM group_pauses WHERE topic = $1 AND group_key = $2 RETURNING topic, group_key, paused_at",
        )
        .bind(&p.topic)
        .bind(&p.group_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .map(|r| GroupPause { topic: r.get(0), group_key: r.get(1), paused_at: r.get(2) });
        if removed.is_some() {
            sqlx::query(
                "INSERT INTO flow_group_wakeups (consumer_group, group_key, due_at) \
                 SELECT consumer_group, group_key, $2 FROM flow_groups WHERE group_key = $1",
            )
            .bind(&p.group_key)
            .bind(p.now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        removed
    };
    // Every process's view of the paused groups (`Queue::group_paused_known`) hears of it at
    // the commit: `gpause:<topic>/<group>` (a topic has no `/`).
    sqlx::query("SELECT pg_notify('vqs_control', $1 || $2 || '/' || $3)")
        .bind(if p.paused { "gpause:" } else { "gresume:" })
        .bind(&p.topic)
        .bind(&p.group_key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(out)
}

pub(crate) async fn group_pause_list(pool: &PgPool, p: GroupPauseListParams) -> Result<Vec<GroupPause>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, group_key, paused_at FROM group_pauses WHERE ($1::text IS NULL OR topic = $1) AND ($3::text IS NULL OR group_key = $3) \
         ORDER BY topic, group_key LIMIT $2",
    )
    .bind(&p.topic)
    .bind(i64::from(p.limit))
    .bind(&p.group_key)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(|r| GroupPause { topic: r.get(0), group_key: r.get(1), paused_at: r.get(2) }).collect())
}

/// How old [`ClaimsByGroup`]'s answer gets before a claim starts the next read (in the
/// background).
const CLAIMS_BY_GROUP_READ_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a background read of [`ClaimsByGroup`] may take before it counts as failed.
const BACKGROUND_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The consumer groups whose claim goes through the ready groups with no limit per group
/// (`lease.rs`, `delivery_claim`): subscribed grouped (their deliveries carry their group key) to a topic
/// with a paused message group. Their claim then skips the paused group in the ready set
/// instead of reading past its backlog in due order.
///
/// Read again when a claim finds the answer a second old (one small join; the plain claim
/// stays one statement), and at once after this store pauses or resumes a group or changes
/// a subscription. Until another process's pause reaches it, the plain claim holds the group
/// back by its filter ([`CLAIM_FILTER`], in every claim statement), so a stale answer costs
/// speed, never correctness. For the same reason the claim never waits for that read: it
/// goes by the last answer while the next is read in the background (a claim that waited for
/// it — a pool connection, then the join — held back every job its claim would have started,
/// once a second: the latency workload's slowest samples, BENCHMARKS.md). So after an idle
/// spell the first claim goes by an answer as old as the spell, and the claims a moment later
/// by a fresh one. Only a claim with no answer at all (the first, or the first after
/// [`ClaimsByGroup::forget`]) reads before it claims.
#[derive(Debug, Default)]
pub(crate) struct ClaimsByGroup {
    state: std::sync::Mutex<ClaimsByGroupState>,
}

#[derive(Debug, Default)]
struct ClaimsByGroupState {
    /// The last answer, and when the read that gave it started.
    known: Option<(std::time::Instant, Arc<HashSet<String>>)>,
    /// A background read is under way (one at a time).
    refreshing: bool,
    /// Bumped by [`ClaimsByGroup::forget`]: a read that started before it is not kept.
    generation: u64,
}

impl ClaimsByGroup {
    fn lock(&self) -> std::sync::MutexGuard<'_, ClaimsByGroupState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forget the last read: the next claim reads again before it claims.
    pub(crate) fn forget(&self) {
        let mut state = self.lock();
        state.known = None;
        state.generation += 1;
    }

    /// Does `consumer_group` claim through the ready groups (see the type)?
    pub(crate) async fn contains(self: &Arc<Self>, pool: &PgPool, consumer_group: &str) -> Result<bool, StoreError> {
        let pool = pool.clone();
        let groups = self.answer(move || read_claims_by_group(pool)).await?;
        Ok(groups.contains(consumer_group))
    }

    /// The answer to go by now: read with `read` when there is none; else the last one,
    /// with `read` started in the background when it is a second old.
    async fn answer<F, R>(self: &Arc<Self>, read: F) -> Result<Arc<HashSet<String>>, StoreError>
    where
        F: FnOnce() -> R,
        R: std::future::Future<Output = Result<HashSet<String>, StoreError>> + Send + 'static,
    {
        let (known, generation, refresh) = {
            let mut state = self.lock();
            let stale = state.known.as_ref().is_some_and(|(at, _)| at.elapsed() >= CLAIMS_BY_GROUP_READ_EVERY);
            let refresh = stale && !state.refreshing;
            state.refreshing |= refresh;
            (state.known.as_ref().map(|(_, groups)| groups.clone()), state.generation, refresh)
        };
        let Some(known) = known else {
            let read_at = std::time::Instant::now();
            let groups = Arc::new(read().await?);
            self.keep(generation, read_at, groups.clone());
            return Ok(groups);
        };
        if refresh {
            // Clears `refreshing` however the task ends: done, panicked, or dropped unrun
            // (a runtime shutting down), so later reads are never blocked by this one.
            let (refreshing, reading) = (Refreshing(self.clone()), read());
            tokio::spawn(async move {
                let this = &refreshing.0;
                let read_at = std::time::Instant::now();
                // Bounded, so that a read stuck on a dead connection cannot keep every later
                // one from starting.
                let read = tokio::time::timeout(BACKGROUND_READ_TIMEOUT, reading).await.unwrap_or_else(|_| {
                    Err(StoreError::Database(format!("no answer in {} s", BACKGROUND_READ_TIMEOUT.as_secs())))
                });
                match read {
                    Ok(groups) => this.keep(generation, read_at, Arc::new(groups)),
                    Err(e) => {
                        // The last answer stays (it costs speed at worst); try again in a second.
                        tracing::warn!(error = %e, "could not read which consumer groups have a paused message group; going by the last read");
                        let mut state = this.lock();
                        let current = state.generation == generation;
                        if let Some((at, _)) = state.known.as_mut().filter(|_| current) {
                            *at = read_at;
                        }
                    }
                }
            });
        }
        Ok(known)
    }

    /// Keep a read's answer, unless the view was forgotten since it started.
    fn keep(&self, generation: u64, read_at: std::time::Instant, groups: Arc<HashSet<String>>) {
        let mut state = self.lock();
        if state.generation == generation {
            state.known = Some((read_at, groups));
        }
    }
}

/// Owned by a background read of [`ClaimsByGroup`]: clears its `refreshing` when dropped.
struct Refreshing(Arc<ClaimsByGroup>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.lock().refreshing = false;
    }
}

async fn read_claims_by_group(pool: PgPool) -> Result<HashSet<String>, StoreError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT s.consumer_group FROM group_pauses gp JOIN subscriptions s \
         ON s.grouped AND (s.topic_pattern = gp.topic OR (s.is_prefix AND starts_with(gp.topic, s.prefix)))",
    )
    .fetch_all(&pool)
    .await
    .map_err(db_err)?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    //! The policy of [`ClaimsByGroup`]'s answer: when a claim waits for the read, and when
    //! it goes by the last answer. (What the read returns is the PostgreSQL suites'.)

    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use futures::FutureExt;
    use tokio::sync::oneshot;
    use vqs::store::StoreError;

    use super::ClaimsByGroup;

    type Read = Result<HashSet<String>, StoreError>;

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// A read that answers when the test says so.
    fn held_read() -> (oneshot::Sender<Read>, impl FnOnce() -> futures::future::BoxFuture<'static, Read>) {
        let (tx, rx) = oneshot::channel::<Read>();
        (tx, move || async move { rx.await.unwrap_or_else(|_| Err(StoreError::Database("dropped".into()))) }.boxed())
    }

    /// A read that must not start: it panics where `answer` calls it.
    fn no_read(why: &'static str) -> impl FnOnce() -> futures::future::BoxFuture<'static, Read> {
        move || panic!("{why}")
    }

    /// A view whose answer is `names`, read two seconds ago.
    fn stale(names: &[&str]) -> Arc<ClaimsByGroup> {
        let view = Arc::new(ClaimsByGroup::default());
        let two_seconds_ago =
            Instant::now().checked_sub(Duration::from_secs(2)).expect("the clock is two seconds past its start");
        view.lock().known = Some((two_seconds_ago, Arc::new(set(names))));
        view
    }

    /// The view answers `names` at once, without starting a read (`why` says what it would mean).
    fn answers_without_reading(view: &Arc<ClaimsByGroup>, names: &[&str], why: &'static str) {
        let answer = view.answer(no_read(why)).now_or_never();
        assert_eq!(*answer.expect("the claim waited for a read").unwrap(), set(names));
    }

    async fn refreshed(view: &ClaimsByGroup) {
        for _ in 0..1_000 {
            if !view.lock().refreshing {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the background read never finished");
    }

    #[tokio::test]
    async fn with_no_answer_yet_the_claim_waits_for_the_read() {
        let view = Arc::new(ClaimsByGroup::default());
        let (tx, read) = held_read();
        let mut answer = Box::pin(view.answer(read));
        assert!((&mut answer).now_or_never().is_none(), "answered before the read did");
        tx.send(Ok(set(&["cg"]))).unwrap();
        assert_eq!(*answer.await.unwrap(), set(&["cg"]));
    }

    #[tokio::test]
    async fn a_claim_goes_by_the_last_answer_while_a_second_old_one_is_read_again() {
        let view = stale(&["old"]);
        let (tx, read) = held_read();
        let answer = view.answer(read).now_or_never().expect("the claim waited for the read");
        assert_eq!(*answer.unwrap(), set(&["old"]));
        // One background read at a time: a second claim meanwhile starts none.
        answers_without_reading(&view, &["old"], "a second read started");
        tx.send(Ok(set(&["new"]))).unwrap();
        refreshed(&view).await;
        answers_without_reading(&view, &["new"], "read again at once");
    }

    #[tokio::test]
    async fn a_read_that_started_before_a_forget_is_not_kept() {
        let view = stale(&["old"]);
        let (tx, read) = held_read();
        view.answer(read).now_or_never().expect("waited").unwrap();
        view.forget();
        tx.send(Ok(set(&["before the pause"]))).unwrap();
        refreshed(&view).await;
        let after = view.answer(|| async { Ok(set(&["after the pause"])) }.boxed()).await.unwrap();
        assert_eq!(*after, set(&["after the pause"]), "the forgotten view was read again before the claim");
    }

    #[tokio::test]
    async fn a_failed_background_read_keeps_the_last_answer_for_another_second() {
        let view = stale(&["old"]);
        view.answer(|| async { Err(StoreError::Database("connection refused".into())) }.boxed())
            .now_or_never()
            .expect("waited")
            .unwrap();
        refreshed(&view).await;
        answers_without_reading(&view, &["old"], "read again at once after a failure");
    }

    #[tokio::test(start_paused = true)]
    async fn a_background_read_that_never_answers_gives_way_after_its_time_limit() {
        let view = stale(&["old"]);
        let (_never_sent, read) = held_read();
        view.answer(read).now_or_never().expect("waited").unwrap();
        assert!(view.lock().refreshing);
        // The paused clock moves on by itself while nothing else can run.
        tokio::time::sleep(super::BACKGROUND_READ_TIMEOUT + Duration::from_secs(1)).await;
        refreshed(&view).await;
        answers_without_reading(&view, &["old"], "read again at once after a timeout");
    }

    #[tokio::test]
    async fn a_background_read_that_panics_does_not_block_the_next() {
        let view = stale(&["old"]);
        view.answer(|| async { panic!("the read panicked") }.boxed()).now_or_never().expect("waited").unwrap();
        refreshed(&view).await;
        let (tx, read) = held_read();
        view.answer(read).now_or_never().expect("waited").unwrap();
        tx.send(Ok(set(&["new"]))).expect("a second background read started");
        refreshed(&view).await;
        assert_eq!(*view.answer(no_read("read again")).await.unwrap(), set(&["new"]));
    }
}
