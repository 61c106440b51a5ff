//! Settling a delivery closes the attempt's execution in the same write, on both backends:
//! an execution never reads `success` beside a message still leased, and an attempt is
//! closed even when its lease was lost on the way.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::TestApp;
use vqs::store::{
    DeliveryAckParams, DeliveryClaimParams, DeliveryDeadLetterParams, DeliveryReleaseParams, DeliveryRetryParams,
    DeliveryState, ExecutionFinishParams, ExecutionListParams, ExecutionStartParams, ExecutionStatus, LeaseParams,
    LeasedMessage, StoreError,
};
use vqs::{Clock, SendOpts};

fn t0() -> DateTime<Utc> {
    "2026-03-02T08:00:00Z".parse().unwrap()
}

/// A probe message, claimed with a 60 s lease, and the `running` execution of its attempt.
async fn leased_attempt(app: &TestApp) -> (LeasedMessage, i64) {
    let group = app.consumer("probe").consumer_group;
    app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap();
    let m = claim(app, &group).await.expect("a message is due");
    let id = app
        .queue()
        .store()
        .execution_start(ExecutionStartParams {
            topic: "probe".into(),
            message_id: m.message_id.clone(),
            consumer_group: group,
            attempt: m.delivery_count,
            now: app.clock.now(),
        })
        .await
        .unwrap();
    (m, id)
}

async fn claim(app: &TestApp, group: &str) -> Option<LeasedMessage> {
    lease_due(app, group, 1, false).await.pop()
}

/// Lease up to `limit` due messages of `group` for 60 s, recording their attempts with the
/// lease when `start_executions` (as the local dispatcher does).
async fn lease_due(app: &TestApp, group: &str, limit: u32, start_executions: bool) -> Vec<LeasedMessage> {
    let params = DeliveryClaimParams {
        consumer_group: group.into(),
        topic: None,
        message_id: None,
        limit,
        visibility_seconds: 60,
        start_executions,
        lease_holder: None,
        now: app.clock.now(),
    };
    app.queue().store().delivery_claim(params).await.unwrap()
}

fn lease(app: &TestApp, m: &LeasedMessage) -> LeaseParams {
    LeaseParams {
        consumer_group: m.consumer_group.clone(),
        receipt_handle: m.receipt_handle.clone(),
        now: app.clock.now(),
    }
}

fn finish(app: &TestApp, id: i64, status: ExecutionStatus, error: Option<&str>) -> Option<ExecutionFinishParams> {
    Some(ExecutionFinishParams { id, status, error: error.map(str::to_owned), began_at: None, now: app.clock.now() })
}

async fn execution_of(app: &TestApp, message_id: &str) -> vqs::store::ExecutionRecord {
    let rows = app
        .queue()
        .executions(ExecutionListParams { message_id: Some(message_id.into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one attempt: {rows:?}");
    rows.into_iter().next().unwrap()
}

async fn delivery_state(app: &TestApp, message_id: &str) -> DeliveryState {
    app.queue().message(message_id).await.unwrap().unwrap().deliveries[0].state
}

#[tokio::test]
async fn an_ack_closes_the_attempt_with_it() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let (m, id) = leased_attempt(&app).await;
    app.clock.advance(Duration::from_millis(1500));
    let execution = finish(&app, id, ExecutionStatus::Success, None);
    app.queue().store().delivery_ack(DeliveryAckParams { lease: lease(&app, &m), execution }).await.unwrap();

    let e = execution_of(&app, &m.message_id).await;
    assert_eq!((e.status, e.duration_ms), (ExecutionStatus::Success, Some(1500)));
    assert_eq!(delivery_state(&app, &m.message_id).await, DeliveryState::Acked);
}

#[tokio::test]
async fn a_retry_and_a_dead_letter_close_the_attempt_with_them() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let (m, id) = leased_attempt(&app).await;
    let execution = finish(&app, id, ExecutionStatus::Failed, Some("upstream said 503"));
    let retry = DeliveryRetryParams { lease: lease(&app, &m), delay: Duration::from_secs(100), execution };
    app.queue().store().delivery_retry(retry).await.unwrap();
    let e = execution_of(&app, &m.message_id).await;
    assert_eq!((e.status, e.error.as_deref()), (ExecutionStatus::Failed, Some("upstream said 503")));
    assert_eq!(delivery_state(&app, &m.message_id).await, DeliveryState::Pending);

    let (m, id) = leased_attempt(&app).await;
    let execution = finish(&app, id, ExecutionStatus::Failed, Some("fatal: no such account"));
    let dead = DeliveryDeadLetterParams { lease: lease(&app, &m), reason: "fatal: no such account".into(), execution };
    app.queue().store().delivery_dead_letter(dead).await.unwrap();
    assert_eq!(execution_of(&app, &m.message_id).await.status, ExecutionStatus::Failed);
    assert_eq!(delivery_state(&app, &m.message_id).await, DeliveryState::Dead);
}

#[tokio::test]
async fn an_attempt_is_closed_even_when_its_message_was_acknowledged_meanwhile() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let (m, id) = leased_attempt(&app).await;
    // Someone else acknowledged it (e.g. a consumer through /_vqs with the same handle).
    app.queue().store().delivery_ack(DeliveryAckParams { lease: lease(&app, &m), execution: None }).await.unwrap();

    let execution = finish(&app, id, ExecutionStatus::Success, None);
    let r = app.queue().store().delivery_ack(DeliveryAckParams { lease: lease(&app, &m), execution }).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert_eq!(
        execution_of(&app, &m.message_id).await.status,
        ExecutionStatus::Success,
        "the attempt is not left running"
    );
}

#[tokio::test]
async fn a_late_settle_does_not_overwrite_an_abandoned_attempt() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let (m, id) = leased_attempt(&app).await;
    // The lease runs out and another consumer takes the message: attempt 1 is abandoned.
    app.clock.advance(Duration::from_secs(61));
    let again = claim(&app, &m.consumer_group).await.expect("redelivered after the lease");
    assert_eq!(again.delivery_count, 2);

    let execution = finish(&app, id, ExecutionStatus::Success, None);
    let r = app.queue().store().delivery_ack(DeliveryAckParams { lease: lease(&app, &m), execution }).await;
    assert!(matches!(r, Err(StoreError::LeaseLost(_))), "{r:?}");
    let e = execution_of(&app, &m.message_id).await;
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert!(e.error.unwrap().starts_with("abandoned"), "the verdict of the takeover stands");
    assert_eq!(delivery_state(&app, &m.message_id).await, DeliveryState::Leased, "the new lease is untouched");
}

#[tokio::test]
async fn the_local_dispatcher_records_the_attempt_with_its_lease() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let consumer = app.consumer("probe");
    assert!(consumer.starts_executions, "probe's route is served by this app");
    let id = app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;

    let first = lease_due(&app, &consumer.consumer_group, 10, true).await.pop().unwrap();
    let e = execution_of(&app, &id).await;
    assert_eq!(Some(e.id), first.execution_id);
    assert_eq!((e.attempt, e.status, e.started_at), (1, ExecutionStatus::Running, t0()));

    // The process dies; the lease runs out; the next lease closes attempt 1 and opens attempt 2.
    app.clock.advance(Duration::from_secs(61));
    let second = lease_due(&app, &consumer.consumer_group, 10, true).await.pop().unwrap();
    let rows = app
        .queue()
        .executions(ExecutionListParams { message_id: Some(id.clone()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    let by_attempt: Vec<_> = rows.iter().rev().map(|e| (e.attempt, e.status, e.error.is_some())).collect();
    assert_eq!(by_attempt, vec![(1, ExecutionStatus::Failed, true), (2, ExecutionStatus::Running, false)]);
    assert_eq!(second.execution_id, Some(rows[0].id));
    assert!(rows[1].error.as_deref().unwrap().starts_with("abandoned"));
}

/// A consumer that answers every push with one status, without touching the message.
struct Answering(u16);

#[async_trait::async_trait]
impl vqs::Pusher for Answering {
    async fn push(&self, _route: &str, _delivery: vqs::Delivery) -> Result<u16, String> {
        Ok(self.0)
    }
}

#[tokio::test]
async fn a_push_that_fails_closes_the_attempt_recorded_with_its_lease() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let id = app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    let pushed = vqs::dispatch_due(app.queue(), &app.consumer("probe"), &Answering(503), "dev1", 10).await.unwrap();
    assert_eq!(pushed, 1);
    let e = execution_of(&app, &id).await;
    assert_eq!((e.status, e.error.as_deref()), (ExecutionStatus::Failed, Some("consumer answered 503")));
    assert_eq!(delivery_state(&app, &id).await, DeliveryState::Pending, "due again after retryAfterSeconds");
}

#[tokio::test]
async fn an_attempt_recorded_with_its_lease_times_the_job_from_when_it_began() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let consumer = app.consumer("probe");
    let id = app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    let m = lease_due(&app, &consumer.consumer_group, 1, true).await.pop().unwrap();
    // It waited 2 s for a free slot, then ran for 1 s.
    app.clock.advance(Duration::from_secs(2));
    let began_at = Some(app.clock.now());
    app.clock.advance(Duration::from_secs(1));
    let execution = Some(ExecutionFinishParams {
        id: m.execution_id.unwrap(),
        status: ExecutionStatus::Success,
        error: None,
        began_at,
        now: app.clock.now(),
    });
    app.queue().store().delivery_ack(DeliveryAckParams { lease: lease(&app, &m), execution }).await.unwrap();
    // started_at is when the attempt was recorded (its lease); the duration is the job's own.
    let e = execution_of(&app, &id).await;
    assert_eq!(
        (e.started_at, e.finished_at, e.duration_ms),
        (t0(), Some(t0() + chrono::Duration::seconds(3)), Some(1000))
    );
}

#[tokio::test]
async fn a_lease_given_back_unused_spends_no_attempt() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let consumer = app.consumer("probe");
    let id = app.queue().send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    // Leased ahead of a free slot, then given back without being pushed (twice over).
    for _ in 0..2 {
        let m = lease_due(&app, &consumer.consumer_group, 1, true).await.pop().unwrap();
        assert_eq!(m.delivery_count, 1);
        let p = DeliveryReleaseParams { lease: lease(&app, &m), execution_id: m.execution_id };
        app.queue().store().delivery_release(p).await.unwrap();
        let message = app.queue().message(&id).await.unwrap().unwrap();
        let d = &message.deliveries[0];
        assert_eq!((d.state, d.delivery_count, d.visible_at), (DeliveryState::Pending, 0, app.clock.now()));
        let rows = app
            .queue()
            .executions(ExecutionListParams { message_id: Some(id.clone()), limit: 10, ..Default::default() })
            .await
            .unwrap();
        assert!(rows.is_empty(), "no attempt was made: {rows:?}");
    }
    // The first real delivery is attempt 1; a stale handle cannot release it.
    let m = lease_due(&app, &consumer.consumer_group, 1, true).await.pop().unwrap();
    assert_eq!(m.delivery_count, 1);
    let stale = LeaseParams { receipt_handle: format!("{id}.0000"), ..lease(&app, &m) };
    let r = app.queue().store().delivery_release(DeliveryReleaseParams { lease: stale, execution_id: None }).await;
    assert!(matches!(r, Err(StoreError::LeaseLost(_))), "{r:?}");
    assert_eq!(execution_of(&app, &id).await.status, ExecutionStatus::Running);
}

/// Thousands of failures settling at once (a batch whose retries all come due together):
/// every retry, dead letter and release lands, each on its own lease, with its attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failures_settles_every_lease() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let consumer = app.consumer("probe");
    let n = 1500;
    let sends = (0..n)
        .map(|i| vqs::store::MessageSendParams {
            topic: "probe".into(),
            payload: format!("{{\"i\":{i}}}").into_bytes(),
            content_type: "application/json".into(),
            headers_json: None,
            idempotency_key: (i % 2 == 0).then(|| format!("key-{i}")),
            delay_seconds: 0,
            retention_seconds: 86_400,
            only_group: None,
            now: app.clock.now(),
        })
        .collect();
    app.queue().store().message_send_many(vqs::store::MessageSendManyParams { messages: sends }).await.unwrap();
    let leased = lease_due(&app, &consumer.consumer_group, n, true).await;
    assert_eq!(leased.len(), n as usize);

    // Each message's fate by its `i`: retried, dead-lettered or released.
    let index =
        |m: &LeasedMessage| serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["i"].as_u64().unwrap();
    let settled = futures::future::join_all(leased.iter().map(|m| {
        let i = index(m);
        let store = app.queue().store().clone();
        let lease = lease(&app, m);
        let execution = finish(&app, m.execution_id.unwrap(), ExecutionStatus::Failed, Some("upstream said 503"));
        async move {
            match i % 3 {
                0 => {
                    store
                        .delivery_retry(DeliveryRetryParams { lease, delay: Duration::from_secs(100), execution })
                        .await
                }
                1 => {
                    let reason = "gave up after 1 of 1 attempts: upstream said 503".into();
                    store.delivery_dead_letter(DeliveryDeadLetterParams { lease, reason, execution }).await
                }
                _ => store.delivery_release(DeliveryReleaseParams { lease, execution_id: m.execution_id }).await,
            }
        }
    }))
    .await;
    let failed: Vec<_> = settled.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "{} of {n} failed, e.g. {:?}", failed.len(), failed.first());

    let letters = app.queue().dead_letters(2 * n).await.unwrap();
    assert_eq!(letters.len(), n as usize / 3);
    for m in &leased {
        let i = index(m);
        let message = app.queue().message(&m.message_id).await.unwrap().unwrap();
        let d = &message.deliveries[0];
        let rows = app
            .queue()
            .executions(ExecutionListParams { message_id: Some(m.message_id.clone()), limit: 10, ..Default::default() })
            .await
            .unwrap();
        let attempts: Vec<_> = rows.iter().map(|e| (e.status, e.error.as_deref())).collect();
        match i % 3 {
            0 => {
                assert_eq!((d.state, d.delivery_count), (DeliveryState::Pending, 1));
                assert_eq!(d.visible_at, t0() + chrono::Duration::seconds(100));
                assert_eq!(attempts, vec![(ExecutionStatus::Failed, Some("upstream said 503"))]);
            }
            1 => {
                assert_eq!((d.state, d.delivery_count), (DeliveryState::Dead, 1));
                assert_eq!(attempts, vec![(ExecutionStatus::Failed, Some("upstream said 503"))]);
                let letter = letters.iter().find(|l| l.message_id == m.message_id).expect("its dead letter");
                let payload: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                assert_eq!((&letter.payload, letter.attempts), (&payload, 1));
            }
            _ => {
                assert_eq!((d.state, d.delivery_count, d.visible_at), (DeliveryState::Pending, 0, t0()));
                assert!(attempts.is_empty(), "{attempts:?}");
            }
        }
    }
    // Every message keeps its key for its retention: dead-lettered, retried or released.
    let send = |i: u32| vqs::SendOpts { idempotency_key: Some(format!("key-{i}")), ..Default::default() };
    assert!(app.queue().send("probe", b"{}".to_vec(), send(4)).await.unwrap().duplicate, "4 was dead-lettered");
    assert!(app.queue().send("probe", b"{}".to_vec(), send(0)).await.unwrap().duplicate, "0 waits for its retry");
    assert!(app.queue().send("probe", b"{}".to_vec(), send(2)).await.unwrap().duplicate, "2 was released");
}

/// Thousands of acknowledgements settling at once, each closing its own attempt: every
/// execution gets its own duration and status, and a receipt handle naming another lease's
/// token — mixed into the same burst — acknowledges nothing and fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_acknowledgements_closes_each_attempt_with_its_own_values() {
    let app = TestApp::with_clock(Clock::manual(t0())).await;
    let consumer = app.consumer("probe");
    let n = 1200u32;
    let messages = (0..n).map(|i| (format!("{{\"i\":{i}}}").into_bytes(), SendOpts::default()));
    app.queue().send_many("probe", messages).await.unwrap();
    let leased = lease_due(&app, &consumer.consumer_group, n, true).await;
    assert_eq!(leased.len(), n as usize);
    app.clock.advance(Duration::from_secs(10));
    let index =
        |m: &LeasedMessage| serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["i"].as_u64().unwrap();
    // The job of message i began i ms after the lease; every 7th message also gets an ack with
    // the next lease's token, before or after its own.
    let forged = |k: usize| {
        let (m, other) = (&leased[k], &leased[(k + 1) % leased.len()]);
        let token = other.receipt_handle.rsplit_once('.').unwrap().1;
        LeaseParams { receipt_handle: format!("{}.{token}", m.message_id), ..lease(&app, m) }
    };
    let acks = leased.iter().enumerate().flat_map(|(k, m)| {
        let i = index(m);
        let began = t0() + chrono::Duration::milliseconds(i as i64);
        let execution = Some(ExecutionFinishParams {
            id: m.execution_id.unwrap(),
            status: ExecutionStatus::Success,
            error: None,
            began_at: Some(began),
            now: app.clock.now(),
        });
        let genuine = DeliveryAckParams { lease: lease(&app, m), execution };
        let fake = (k % 7 == 0).then(|| DeliveryAckParams { lease: forged(k), execution: None });
        // Sometimes the forged handle comes first.
        let (genuine, fake) = (Some((true, genuine)), fake.map(|f| (false, f)));
        if k % 2 == 0 { [genuine, fake] } else { [fake, genuine] }.into_iter().flatten()
    });
    let store = app.queue().store().clone();
    let results = futures::future::join_all(acks.map(|(genuine, p)| {
        let store = store.clone();
        async move { (genuine, store.delivery_ack(p).await) }
    }))
    .await;
    for (genuine, r) in &results {
        if *genuine {
            assert!(r.is_ok(), "a genuine ack failed: {r:?}");
        } else {
            assert!(r.is_err(), "an ack with another lease's token was taken");
        }
    }
    for m in &leased {
        let e = execution_of(&app, &m.message_id).await;
        let expected = 10_000 - index(m) as i64;
        assert_eq!((e.status, e.duration_ms), (ExecutionStatus::Success, Some(expected)), "{}", m.message_id);
        assert_eq!(delivery_state(&app, &m.message_id).await, DeliveryState::Acked);
    }
}
