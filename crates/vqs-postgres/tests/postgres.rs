//! PostgreSQL-only guarantees, on a real server (`VQS_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432`; a fresh database per test). These fail — never
//! skip — when the server is unreachable. The behaviour suite shared with SQLite runs in
//! `apps/web/tests` with `VQS_TEST_BACKEND=postgres`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use vqs::store::{DeliveryAckParams, DeliveryClaimParams, LeaseParams, SubscriptionEnsureParams};
use vqs::{Clock, Queue, QueueStore, SendOpts};
use vqs_postgres::{PgStore, enqueue_in};

async fn fresh_url() -> String {
    let base = std::env::var("VQS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    vqs_postgres::create_test_database(&base)
        .await
        .unwrap_or_else(|e| panic!("{e}: start PostgreSQL, or set VQS_TEST_POSTGRES_URL"))
}

async fn store(url: &str) -> PgStore {
    let s = PgStore::connect(url).await.unwrap();
    s.migrate().await.unwrap();
    s
}

async fn subscribe(store: &PgStore, topic: &str, group: &str) {
    subscribe_as(store, topic, group, false).await;
}

/// Consumer group `g` subscribed to topic `t`, grouped (its deliveries carry group keys).
async fn subscribe_grouped(store: &PgStore) {
    subscribe_as(store, "t", "g", true).await;
}

async fn subscribe_as(store: &PgStore, topic: &str, group: &str, grouped: bool) {
    store
        .subscription_ensure(SubscriptionEnsureParams {
            grouped,
            topic_pattern: topic.into(),
            consumer_group: group.into(),
            initial_delay_seconds: 0,
            now: chrono::Utc::now(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rolled_back_transaction_leaves_no_job_behind() {
    let url = fresh_url().await;
    let store = store(&url).await;
    subscribe(&store, "probe", "g").await;
    let queue = Queue::new(Arc::new(store.clone()), Clock::system());

    let mut tx = store.pool().begin().await.unwrap();
    let prepared = queue.prepare_send("probe", b"{}".to_vec(), SendOpts::default()).unwrap();
    let rolled_back = enqueue_in(&mut tx, prepared).await.unwrap();
    tx.rollback().await.unwrap();
    assert!(queue.message(&rolled_back.message_id).await.unwrap().is_none(), "rolled back with the data");

    let mut tx = store.pool().begin().await.unwrap();
    let prepared = queue.job(Probe).prepare((), Default::default()).unwrap();
    let committed = enqueue_in(&mut tx, prepared).await.unwrap();
    assert!(queue.message(&committed.message_id).await.unwrap().is_none(), "invisible before commit");
    tx.commit().await.unwrap();
    let m = queue.message(&committed.message_id).await.unwrap().expect("committed with the data");
    assert_eq!(m.deliveries.len(), 1, "fanned out on commit");
}

/// `on_duplicate: replace` inside the caller's transaction: the replace (or the new message
/// that takes the key) commits or rolls back with the caller's data.
#[tokio::test]
async fn a_replace_inside_a_transaction_commits_or_rolls_back_with_it() {
    let url = fresh_url().await;
    let store = store(&url).await;
    subscribe(&store, "probe", "g").await;
    let queue = Queue::new(Arc::new(store.clone()), Clock::system());
    let opts = |payload: &str, delay: u64| {
        (
            payload.as_bytes().to_vec(),
            SendOpts {
                idempotency_key: Some("k".into()),
                on_duplicate: vqs::OnDuplicate::Replace,
                delay: Duration::from_secs(delay),
                ..SendOpts::default()
            },
        )
    };
    let send_in = |payload: &str, delay: u64| {
        let (payload, opts) = opts(payload, delay);
        queue.prepare_send("probe", payload, opts).unwrap()
    };
    let first = queue.send("probe", b"1".to_vec(), opts("1", 0).1).await.unwrap();
    let before = queue.message(&first.message_id).await.unwrap().unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    let r = enqueue_in(&mut tx, send_in("2", 3600)).await.unwrap();
    assert_eq!((r.message_id.as_str(), r.replaced), (first.message_id.as_str(), true));
    tx.rollback().await.unwrap();
    let after = queue.message(&first.message_id).await.unwrap().unwrap();
    assert_eq!(after.payload, serde_json::json!(1), "rolled back: the payload is the old one");
    assert_eq!(after.deliveries[0].visible_at, before.deliveries[0].visible_at, "and the due time too");

    let mut tx = store.pool().begin().await.unwrap();
    let r = enqueue_in(&mut tx, send_in("3", 0)).await.unwrap();
    assert!(r.replaced);
    tx.commit().await.unwrap();
    assert_eq!(queue.message(&first.message_id).await.unwrap().unwrap().payload, serde_json::json!(3));

    // Started: the new message that takes the key rolls back too, the key stays where it was.
    let leased = store
        .delivery_claim(DeliveryClaimParams {
            group_concurrency: None,
            consumer_group: "g".into(),
            topic: None,
            message_id: None,
            limit: 1,
            visibility_seconds: 30,
            start_executions: false,
            lease_holder: None,
            max_leased: None,
            leased_here: 0,
            rate_limit: None,
            group_rate_limit: None,
            now: chrono::Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let mut tx = store.pool().begin().await.unwrap();
    let r = enqueue_in(&mut tx, send_in("4", 0)).await.unwrap();
    assert!(!r.replaced && !r.duplicate && r.message_id != first.message_id);
    tx.rollback().await.unwrap();
    assert!(queue.message(&r.message_id).await.unwrap().is_none(), "the new message rolled back");
    let kept = queue.message(&first.message_id).await.unwrap().unwrap();
    assert_eq!(kept.idempotency_key.as_deref(), Some("k"), "the key stays with the running message");
}

/// A replace that makes a message due wakes every process's dispatchers, as a publish does.
#[tokio::test]
async fn a_replace_in_one_process_wakes_the_others() {
    let url = fresh_url().await;
    let (a, b) = (store(&url).await, store(&url).await);
    subscribe(&a, "debounced", "g").await;
    let queue_a = Queue::new(Arc::new(a.clone()), Clock::system());
    let queue_b = Queue::new(Arc::new(b), Clock::system());
    let _listener = a.forward_wakeups(queue_a.clone());
    let replace = |delay: u64| SendOpts {
        idempotency_key: Some("k".into()),
        on_duplicate: vqs::OnDuplicate::Replace,
        delay: Duration::from_secs(delay),
        ..SendOpts::default()
    };
    let first = queue_b.send("debounced", b"1".to_vec(), replace(3600)).await.unwrap();
    // Replace from B until A's listener is up and hears one (LISTEN starts asynchronously).
    let woke = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let notified = queue_a.published();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let r = queue_b.send("debounced", b"2".to_vec(), replace(0)).await.unwrap();
            assert_eq!((r.message_id.as_str(), r.replaced), (first.message_id.as_str(), true));
            if tokio::time::timeout(Duration::from_millis(500), notified).await.is_ok() {
                return;
            }
        }
    })
    .await;
    assert!(woke.is_ok(), "process A never heard process B's replace");
}

/// Replaces racing claims from other processes (pools of their own), many times over: a
/// message is leased with the payload of the last replace its answer named it in, never an
/// earlier one (a claim that took its snapshot before a replace committed must not lease the
/// message with the payload of that snapshot), and no replace is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaces_racing_claims_on_other_connections_never_lease_a_replaced_payload() {
    let url = fresh_url().await;
    let sender = store(&url).await;
    subscribe(&sender, "debounced", "g").await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut claimers = Vec::new();
    for _ in 0..3 {
        let (s, done) = (store(&url).await, done.clone());
        claimers.push(tokio::spawn(async move {
            let mut leased = Vec::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let now = chrono::Utc::now();
                let got = s
                    .delivery_claim(DeliveryClaimParams {
                        group_concurrency: None,
                        consumer_group: "g".into(),
                        topic: None,
                        message_id: None,
                        limit: 10,
                        visibility_seconds: 300,
                        start_executions: false,
                        lease_holder: None,
                        max_leased: None,
                        leased_here: 0,
                        rate_limit: None,
                        group_rate_limit: None,
                        now,
                    })
                    .await
                    .unwrap();
                for m in got {
                    let n: u32 = String::from_utf8_lossy(&m.payload).parse().unwrap();
                    leased.push((m.message_id.clone(), n));
                    let lease = LeaseParams { consumer_group: m.consumer_group, receipt_handle: m.receipt_handle, now };
                    s.delivery_ack(DeliveryAckParams { lease, execution: None }).await.unwrap();
                }
                if finished {
                    return leased;
                }
            }
        }));
    }
    // Each replace from its own task, a few at a time, numbered in send order.
    let mut answers: Vec<(u32, vqs::SendResult)> = Vec::new();
    for round in 0..100u32 {
        let sends = (0..3u32).map(|j| {
            let s = sender.clone();
            let n = round * 3 + j + 1;
            tokio::spawn(async move {
                let p = vqs::store::MessageSendParams {
                    group_key: None,
                    priority: 0,
                    topic: "debounced".into(),
                    payload: n.to_string().into_bytes(),
                    content_type: "text/plain".into(),
                    idempotency_key: Some("k".into()),
                    delay_seconds: 0,
                    retention_seconds: 3600,
                    headers_json: None,
                    only_group: None,
                    on_duplicate: vqs::OnDuplicate::Replace,
                    now: chrono::Utc::now(),
                };
                (n, s.message_send(p).await.unwrap())
            })
        });
        for r in futures::future::join_all(sends).await {
            answers.push(r.unwrap());
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut leased = std::collections::HashMap::new();
    for c in claimers {
        for (id, n) in c.await.unwrap() {
            assert!(leased.insert(id.clone(), n).is_none(), "{id} leased twice");
        }
    }
    let mut stored = std::collections::HashMap::new();
    for id in leased.keys() {
        let m = sender.message_get(vqs::store::MessageGetParams { id: id.clone() }).await.unwrap().unwrap();
        stored.insert(id.clone(), m.payload.as_str().unwrap().parse::<u32>().unwrap());
    }
    for (id, n) in &leased {
        assert_eq!(
            stored[id], *n,
            "{id} was leased with {n} but holds {}: a replace changed it after its lease",
            stored[id]
        );
    }
    // The sends of one round race each other; a round ends before the next begins.
    let round = |n: u32| (n - 1) / 3;
    for (n, a) in &answers {
        assert!(!a.duplicate);
        let ran = *leased.get(&a.message_id).unwrap_or_else(|| panic!("replace {n}: {} never ran", a.message_id));
        assert!(
            answers.iter().any(|(m, b)| *m == ran && b.message_id == a.message_id),
            "{} ran with {ran}, which no answer gave it",
            a.message_id
        );
        // It ran with this send's payload, or with one that replaced it (of this round or later).
        assert!(round(ran) >= round(*n), "send {n} answered {a:?}, but its message ran with the older {ran}");
    }
}

struct Probe;
impl vqs::Jobbable for Probe {
    type Params = ();
    const TOPIC: &'static str = "probe";
    async fn perform(&self, _: (), _: vqs::JobContext) -> Result<(), vqs::JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn concurrent_claimers_on_separate_connections_never_lease_the_same_message() {
    let url = fresh_url().await;
    let first = store(&url).await;
    subscribe(&first, "work", "g").await;
    let queue = Queue::new(Arc::new(first.clone()), Clock::system());
    for _ in 0..2000 {
        queue.send("work", b"{}".to_vec(), SendOpts::default()).await.unwrap();
    }
    // Six "processes": each its own pool, claiming and acknowledging as fast as it can.
    let mut workers = Vec::new();
    for _ in 0..6 {
        let s = PgStore::connect(&url).await.unwrap();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let now = chrono::Utc::now();
                let batch = s
                    .delivery_claim(DeliveryClaimParams {
                        group_concurrency: None,
                        consumer_group: "g".into(),
                        topic: None,
                        message_id: None,
                        limit: 25,
                        visibility_seconds: 300,
                        start_executions: false,
                        lease_holder: None,
                        max_leased: None,
                        leased_here: 0,
                        rate_limit: None,
                        group_rate_limit: None,
                        now,
                    })
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                for m in batch {
                    let lease = LeaseParams { consumer_group: "g".into(), receipt_handle: m.receipt_handle, now };
                    s.delivery_ack(DeliveryAckParams { lease, execution: None }).await.unwrap();
                    mine.push(m.message_id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 2000, "every message handled");
    assert_eq!(unique.len(), 2000, "none handled twice");
}

/// The limited claim is one statement (`vqs_claim_room` in its LIMIT): claims of a group on
/// separate connections, all at once, never lease past the limit between them, and none
/// leases a row another leased after its statement's snapshot was taken (the `FOR UPDATE`
/// re-check). Each claim asks for 2 under a limit of 3, so the second claim of each race has
/// room for 1 while the first claim's 2 rows may still look pending to its snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limited_claims_on_separate_connections_share_the_limit_and_never_lease_twice() {
    let url = fresh_url().await;
    let first = store(&url).await;
    let groups: Vec<String> = (0..20).map(|i| format!("g{i}")).collect();
    for g in &groups {
        subscribe(&first, "work", g).await;
    }
    let queue = Queue::new(Arc::new(first.clone()), Clock::system());
    for _ in 0..10 {
        queue.send("work", b"{}".to_vec(), SendOpts::default()).await.unwrap();
    }
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(PgStore::connect(&url).await.unwrap());
    }
    for g in &groups {
        let claims = stores.iter().map(|s| {
            s.delivery_claim(DeliveryClaimParams {
                consumer_group: g.clone(),
                topic: None,
                message_id: None,
                limit: 2,
                visibility_seconds: 300,
                start_executions: false,
                lease_holder: None,
                max_leased: Some(3),
                leased_here: 0,
                rate_limit: None,
                group_concurrency: None,
                group_rate_limit: None,
                now: chrono::Utc::now(),
            })
        });
        let leased: Vec<String> = futures::future::join_all(claims)
            .await
            .into_iter()
            .flat_map(|r| r.unwrap().into_iter().map(|m| m.message_id))
            .collect();
        let unique: HashSet<_> = leased.iter().collect();
        assert_eq!(unique.len(), leased.len(), "group {g}: a message leased twice: {leased:?}");
        assert_eq!(leased.len(), 3, "group {g}: exactly the limit leased across 8 connections");
    }
}

#[tokio::test]
async fn a_publish_in_one_process_wakes_the_others_at_once() {
    let url = fresh_url().await;
    let (a, b) = (store(&url).await, store(&url).await);
    let queue_a = Queue::new(Arc::new(a.clone()), Clock::system());
    let queue_b = Queue::new(Arc::new(b), Clock::system());
    let _listener = a.forward_wakeups(queue_a.clone());
    // Publish from B until A's listener is up and hears one (LISTEN starts asynchronously).
    let woke = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let notified = queue_a.published();
            tokio::pin!(notified);
            notified.as_mut().enable();
            queue_b.send("anything", b"{}".to_vec(), SendOpts::default()).await.unwrap();
            if tokio::time::timeout(Duration::from_millis(500), notified).await.is_ok() {
                return;
            }
        }
    })
    .await;
    assert!(woke.is_ok(), "process A never heard process B's publish");
}

#[tokio::test]
async fn the_pool_closes_promptly_after_the_hot_path_held_its_connections() {
    // The group-commit writers and the claim keep connections of their own; `pool.close()`
    // waits for every connection to come back, so they must give theirs back when it is called.
    let url = fresh_url().await;
    let store = store(&url).await;
    subscribe(&store, "probe", "g").await;
    let queue = Queue::new(Arc::new(store.clone()), Clock::system());
    queue.send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap();
    let now = chrono::Utc::now();
    let claim = DeliveryClaimParams {
        group_concurrency: None,
        consumer_group: "g".into(),
        topic: None,
        message_id: None,
        limit: 10,
        visibility_seconds: 60,
        start_executions: true,
        lease_holder: None,
        max_leased: None,
        leased_here: 0,
        rate_limit: None,
        group_rate_limit: None,
        now,
    };
    let m = store.delivery_claim(claim).await.unwrap().pop().unwrap();
    let lease = LeaseParams { consumer_group: "g".into(), receipt_handle: m.receipt_handle, now };
    store.delivery_ack(DeliveryAckParams { lease, execution: None }).await.unwrap();

    let closed = tokio::time::timeout(Duration::from_secs(10), store.pool().close()).await;
    assert!(closed.is_ok(), "pool.close() waited for connections that were never given back");
}

#[tokio::test]
async fn a_cancel_is_announced_to_every_process_once_and_only_when_something_was_cancelled() {
    let url = fresh_url().await;
    let store = store(&url).await;
    subscribe(&store, "probe", "g").await;
    let queue = Queue::new(Arc::new(store.clone()), Clock::system());
    let mut listener = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    listener.listen("vqs_control").await.unwrap();
    let first = queue.send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    let second = queue.send("probe", b"{}".to_vec(), SendOpts::default()).await.unwrap().message_id;
    let cancel = |id: &str| vqs::store::MessageCancelParams {
        message_id: id.to_owned(),
        reason: "cancelled by an operator".into(),
        now: chrono::Utc::now(),
    };
    let heard = async |listener: &mut sqlx::postgres::PgListener| {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await.expect("a notification");
        n.unwrap().payload().to_owned()
    };
    assert_eq!(store.message_cancel(cancel(&first)).await.unwrap().pending, ["g"]);
    assert_eq!(heard(&mut listener).await, format!("cancel:{first}"));
    // Cancelled already: nothing changes, nobody is told.
    assert!(store.message_cancel(cancel(&first)).await.unwrap().pending.is_empty());
    store.message_cancel(cancel(&second)).await.unwrap();
    assert_eq!(heard(&mut listener).await, format!("cancel:{second}"), "the repeated cancel sent nothing");
}

#[tokio::test]
async fn a_claim_reads_the_due_index_however_much_is_waiting() {
    // Users depend on a claim costing the same with 20,000 waiting as with 20: the plan must
    // walk the group's due index and stop after `limit` rows, never read or sort the whole
    // backlog (a filter the planner cannot estimate once made every claim do just that).
    let url = fresh_url().await;
    let store = store(&url).await;
    subscribe(&store, "probe", "g").await;
    subscribe(&store, "other", "g").await;
    sqlx::query(
        "INSERT INTO messages (id, topic, payload, content_type, created_at, deliver_at, expires_at, priority) \
         SELECT 'm' || i, CASE WHEN i % 10 = 0 THEN 'other' ELSE 'probe' END, '\\x00', 'application/json', \
         now(), now(), now() + interval '1 day', CASE WHEN i % 7 = 0 THEN -3 WHEN i % 5 = 0 THEN 5 ELSE 0 END \
         FROM generate_series(1, 20000) i",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let queue = Queue::new(Arc::new(store.clone()), Clock::system());
    queue.pause("other").await.unwrap();
    store.analyze().await.unwrap();
    let claim = |topic: Option<&str>| DeliveryClaimParams {
        consumer_group: "g".into(),
        topic: topic.map(str::to_owned),
        message_id: None,
        limit: 50,
        visibility_seconds: 60,
        start_executions: true,
        lease_holder: None,
        max_leased: None,
        leased_here: 0,
        rate_limit: None,
        group_concurrency: None,
        group_rate_limit: None,
        now: chrono::Utc::now(),
    };
    // Plain, by topic, and under a limit (`vqs_claim_room` in the LIMIT); then the same
    // with a message group paused (the claim's group filter is then evaluated per row).
    let limited = DeliveryClaimParams { max_leased: Some(5), ..claim(None) };
    for (i, params) in [claim(None), claim(Some("probe")), limited, claim(None)].into_iter().enumerate() {
        if i == 3 {
            queue.pause_group("probe", "tenant-1").await.unwrap();
            store.analyze().await.unwrap();
        }
        let plan = store.explain_claim(&params).await.unwrap();
        // The part that picks the rows (what comes after only joins the at most `limit` leased).
        let due = &plan[plan.find("CTE due").unwrap()..plan.find("CTE leased").unwrap()];
        assert!(due.contains("deliveries_due"), "the claim does not read the due index:\n{plan}");
        assert!(!due.contains("Seq Scan on deliveries"), "the claim reads every delivery:\n{plan}");
        assert!(!due.contains("Sort"), "the claim sorts the whole backlog:\n{plan}");
    }
    // And it still holds the paused topic back, and takes the lowest priority first (the
    // index's order: with priorities -3, 0 and 5 waiting, still no Sort above).
    let leased = store.delivery_claim(DeliveryClaimParams { limit: 20000, ..claim(None) }).await.unwrap();
    assert_eq!(leased.len(), 18000);
    assert!(leased.iter().all(|m| m.topic == "probe"));
    let priority = |m: &vqs::store::LeasedMessage| {
        let i: u32 = m.message_id[1..].parse().unwrap();
        if i.is_multiple_of(7) {
            -3
        } else if i.is_multiple_of(5) {
            5
        } else {
            0
        }
    };
    assert!(leased.windows(2).all(|w| priority(&w[0]) <= priority(&w[1])), "lowest priority first");
}

#[tokio::test]
async fn a_paused_group_is_held_on_every_process_and_its_backlog_left_to_the_ready_set() {
    // Tenant A's 5,000 due messages are queued before B's, for a consumer group without
    // group limits. A pause in one process holds A in another process's claims (read from
    // the table), which go through the ready groups (A skipped, its backlog not walked), B
    // runs, a publish into A waits, and the resume drains A in order, each message once.
    let url = fresh_url().await;
    let (one, two) = (store(&url).await, store(&url).await);
    subscribe(&one, "t", "g").await;
    sqlx::query(
        "INSERT INTO messages (id, topic, payload, content_type, created_at, deliver_at, expires_at, group_key) \
         SELECT 'a' || lpad(i::text, 5, '0'), 't', '\\x00', 'application/json', now() - interval '1 hour', \
         now() - interval '1 hour' + i * interval '1 ms', now() + interval '1 day', 'A' \
         FROM generate_series(1, 5000) i",
    )
    .execute(one.pool())
    .await
    .unwrap();
    let (q1, q2) =
        (Queue::new(Arc::new(one.clone()), Clock::system()), Queue::new(Arc::new(two.clone()), Clock::system()));
    let send = |q: &Queue, group: Option<&str>| {
        let (q, opts) = (q.clone(), SendOpts { group: group.map(str::to_owned), ..Default::default() });
        async move { q.send("t", b"{}".to_vec(), opts).await.unwrap().message_id }
    };
    let mut runnable = HashSet::new();
    for _ in 0..5 {
        runnable.insert(send(&q1, Some("B")).await);
        runnable.insert(send(&q1, None).await);
    }
    q1.pause_group("t", "A").await.unwrap();
    let claim = |limit: u32| claim_of_g(limit, None);
    // The other process: B and the ungrouped, one batch, none of A.
    let leased = two.delivery_claim(claim(10)).await.unwrap();
    assert_eq!(leased.iter().map(|m| m.message_id.clone()).collect::<HashSet<_>>(), runnable);
    // Through the ready groups, not the due order: while another claim holds B's group row,
    // B is skipped (a plain claim would take B's new message, ahead in due order).
    let late_b = send(&q1, Some("B")).await;
    let late_plain = send(&q1, None).await;
    // A claim at an earlier instant leases nothing but folds the publishes' wake-ups into
    // the ready set (so the lock below does not hold up the next claim's fold).
    let earlier = DeliveryClaimParams { now: chrono::Utc::now() - chrono::Duration::hours(2), ..claim(10) };
    assert!(two.delivery_claim(earlier).await.unwrap().is_empty());
    let mut holder = one.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM flow_groups WHERE consumer_group = 'g' AND group_key = 'B' FOR UPDATE")
        .fetch_all(&mut *holder)
        .await
        .unwrap();
    let got: Vec<String> = two.delivery_claim(claim(10)).await.unwrap().into_iter().map(|m| m.message_id).collect();
    assert_eq!(got, [late_plain], "B's group is being claimed elsewhere");
    holder.rollback().await.unwrap();
    let got: Vec<String> = two.delivery_claim(claim(10)).await.unwrap().into_iter().map(|m| m.message_id).collect();
    assert_eq!(got, [late_b], "B runs again");
    // Published into A while paused: it waits, in every process.
    let late_a = send(&q2, Some("A")).await;
    assert!(two.delivery_claim(claim(100)).await.unwrap().is_empty(), "A is held");
    assert!(one.delivery_claim(claim(100)).await.unwrap().is_empty(), "A is held");
    // Resumed in the first process: the other drains A in due order, each once.
    assert!(q1.resume_group("t", "A").await.unwrap());
    let mut drained = Vec::new();
    loop {
        let batch = two.delivery_claim(claim(1000)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        drained.extend(batch.into_iter().map(|m| m.message_id));
    }
    assert_eq!(drained.len(), 5001);
    assert_eq!(drained.last(), Some(&late_a));
    assert!(drained[..5000].windows(2).all(|w| w[0] < w[1]), "A in due order");
}

/// A group pause or resume in one process reaches another process's view of the paused
/// groups (what its dispatcher checks a buffered lease against) through `NOTIFY`, without
/// waiting for a poll; a reconnected listener's view is read from the table.
#[tokio::test]
async fn a_group_pause_in_one_process_reaches_the_others_view_at_once() {
    let url = fresh_url().await;
    let (a, b) = (store(&url).await, store(&url).await);
    let queue_a = Queue::new(Arc::new(a.clone()), Clock::system());
    let queue_b = Queue::new(Arc::new(b), Clock::system());
    let _listener = a.forward_wakeups(queue_a.clone());
    let group = "tenant/7 é";
    // Pause and resume from B until A's listener is up and hears one (LISTEN starts
    // asynchronously); then each change is heard within the wait, never by a poll (none runs).
    let heard = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            queue_b.pause_group("t", group).await.unwrap();
            if wait_until(|| queue_a.group_paused_known("t", group), Duration::from_millis(500)).await {
                return;
            }
            queue_b.resume_group("t", group).await.unwrap();
        }
    })
    .await;
    assert!(heard.is_ok(), "process A never heard process B's group pause");
    assert!(!queue_a.group_paused_known("u", group), "the same group of another topic is not paused");
    queue_b.resume_group("t", group).await.unwrap();
    assert!(wait_until(|| !queue_a.group_paused_known("t", group), Duration::from_secs(5)).await, "the resume");
    // A view read from the table (as after a reconnect) has what is stored.
    queue_b.pause_group("t", "X").await.unwrap();
    let c = Queue::new(Arc::new(store(&url).await), Clock::system());
    assert!(!c.group_paused_known("t", "X"), "not read yet");
    c.read_paused_groups().await.unwrap();
    assert!(c.group_paused_known("t", "X"));
}

/// Whether `check` holds within `limit`, looking every 5 ms.
async fn wait_until(check: impl Fn() -> bool, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    check()
}

/// A consumer group whose subscription stays grouped after its group limit or pause ended
/// claims in one plain statement, which folds no wake-ups: its publishes and settlements'
/// wake-ups are folded by maintenance instead of piling up, and its groups stay claimable
/// by a grouped claim later.
#[tokio::test]
async fn maintenance_folds_the_wake_ups_no_grouped_claim_is_folding() {
    let url = fresh_url().await;
    let one = store(&url).await;
    subscribe_grouped(&one).await;
    let q = Queue::new(Arc::new(one.clone()), Clock::system());
    for i in 0..20 {
        let opts = SendOpts { group: Some(format!("tenant-{}", i % 5)), ..Default::default() };
        q.send("t", b"{}".to_vec(), opts).await.unwrap();
    }
    // Plain claims and acknowledgements: each leaves a wake-up nobody folds.
    for m in one.delivery_claim(claim_of_g(10, None)).await.unwrap() {
        let lease =
            LeaseParams { consumer_group: "g".into(), receipt_handle: m.receipt_handle, now: chrono::Utc::now() };
        one.delivery_ack(DeliveryAckParams { lease, execution: None }).await.unwrap();
    }
    let wakeups = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM flow_group_wakeups WHERE consumer_group = 'g'")
            .fetch_one(one.pool())
            .await
            .unwrap()
    };
    assert!(wakeups().await >= 10, "publishes and acknowledgements woke the groups");

    let p = vqs::store::MaintenanceParams {
        now: chrono::Utc::now(),
        execution_retention_seconds: 86_400,
        max_executions: 1_000_000,
        message_retention_seconds: 86_400,
        max_messages: 1_000_000,
        cron_run_retention_seconds: 86_400,
        max_cron_runs: 1_000_000,
        dead_letter_retention_seconds: 86_400,
        batch: 1000,
    };
    one.maintenance_run(p).await.unwrap();
    assert_eq!(wakeups().await, 0, "folded by maintenance");
    // Grouped again (a limit of one per group): the ten left are claimable, one per group.
    let got = one.delivery_claim(claim_of_g(100, Some(1))).await.unwrap();
    assert_eq!(got.len(), 5, "one of each of the five groups");
}

/// A claim of up to `limit` for consumer group `g`, now, recording no attempt, with
/// `per_group` as its group concurrency.
fn claim_of_g(limit: u32, per_group: Option<u32>) -> DeliveryClaimParams {
    DeliveryClaimParams {
        consumer_group: "g".into(),
        topic: None,
        message_id: None,
        limit,
        visibility_seconds: 60,
        start_executions: false,
        lease_holder: None,
        max_leased: None,
        leased_here: 0,
        rate_limit: None,
        group_concurrency: per_group,
        group_rate_limit: None,
        now: chrono::Utc::now(),
    }
}

/// A grouped claim parks each group it visits from its statement's snapshot, which predates
/// the function's locks. Another claim can park one of those groups in between, having
/// folded the wake-up of a publish this snapshot does not see. The older claim must not
/// then park the group from what it saw (nothing: out of the ready set, the publish
/// stranded until something else woke the group); it tells the row changed by its `xmin`
/// and leaves the group ready for the next claim (migration 0033).
#[tokio::test]
async fn a_claim_parking_from_an_older_snapshot_never_strands_a_group_another_claim_parked() {
    use sqlx::Connection;
    let url = fresh_url().await;
    let (one, two) = (store(&url).await, store(&url).await);
    subscribe_grouped(&two).await;
    let t0 = chrono::Utc::now();
    let secs = move |s: i64| t0 + chrono::Duration::seconds(s);
    let send = |delay: u32, now| vqs::store::MessageSendParams {
        topic: "t".into(),
        payload: b"{}".to_vec(),
        content_type: "application/json".into(),
        idempotency_key: None,
        delay_seconds: delay,
        retention_seconds: 86_400,
        headers_json: None,
        only_group: None,
        on_duplicate: Default::default(),
        group_key: Some("G".into()),
        priority: 0,
        now,
    };
    let at = |limit, now, max_leased| DeliveryClaimParams { now, max_leased, ..claim_of_g(limit, Some(2)) };
    // G has a row: a message of it was claimed and acknowledged.
    two.message_send(send(0, t0)).await.unwrap();
    let first = two.delivery_claim(at(10, t0, None)).await.unwrap();
    let lease = LeaseParams { consumer_group: "g".into(), receipt_handle: first[0].receipt_handle.clone(), now: t0 };
    two.delivery_ack(DeliveryAckParams { lease, execution: None }).await.unwrap();

    // Claim A (limited: it takes the consumer group's claim lock first) starts, and waits
    // for that lock with its snapshot taken.
    let mut blocker = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('vqs-claim:g'))").execute(&mut blocker).await.unwrap();
    let a = tokio::spawn(async move { one.delivery_claim(at(10, secs(150), Some(100))).await });
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' \
             AND query LIKE '%vqs_group_rooms%'",
        )
        .fetch_one(two.pool())
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Meanwhile P is published into G, due at 100 s, and claim B (unlimited: no lock) folds
    // P's wake-up and visits G at 50 s: nothing is due, so B parks G until P is due.
    let p = two.message_send(send(100, secs(1))).await.unwrap().message_id;
    assert!(two.delivery_claim(at(10, secs(50), None)).await.unwrap().is_empty(), "P is not due at 50 s");
    // A goes on at 150 s: G is ready; A's snapshot does not hold P, so A leases nothing.
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    assert!(a.await.unwrap().unwrap().is_empty(), "A's snapshot predates P");
    // The next claim takes P.
    let next = two.delivery_claim(at(10, secs(200), None)).await.unwrap();
    assert_eq!(next.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), [p.as_str()], "P is not stranded");
}

/// Grouped claims of consumer group `g` (group concurrency 1) until one leases nothing;
/// returns how many were leased.
async fn lease_all_grouped(store: &PgStore) -> usize {
    let mut leased = 0;
    loop {
        match store.delivery_claim(claim_of_g(500, Some(1))).await.unwrap().len() {
            0 => return leased,
            got => leased += got,
        }
    }
}

/// A grouped claim of many groups runs as two statements at once, each up to half the limit
/// on a connection of its own. Together they must lease what one statement would: no group
/// twice, no more than the limit, the best priorities first and first in the batch, and the
/// next claim finds the rest.
#[tokio::test]
async fn a_grouped_claim_run_as_two_statements_takes_each_group_once_and_the_best_priorities_first() {
    let url = fresh_url().await;
    let store = store(&url).await;
    subscribe_grouped(&store).await;
    let q = Queue::new(Arc::new(store.clone()), Clock::system());
    // 50 groups at priority 5, published first (the oldest), then 50 at priority 0; two
    // messages each, the group named in the payload.
    let sends = |prefix: &'static str, priority: i16| {
        (0..100).map(move |i| {
            let group = format!("{prefix}{}", i % 50);
            let opts = SendOpts { group: Some(group.clone()), priority: Some(priority), ..Default::default() };
            (group.into_bytes(), opts)
        })
    };
    q.send_many("t", sends("low", 5)).await.unwrap();
    q.send_many("t", sends("high", 0)).await.unwrap();
    let groups = |batch: &[vqs::store::LeasedMessage]| -> Vec<String> {
        batch.iter().map(|m| String::from_utf8(m.payload.clone()).unwrap()).collect()
    };

    let first = groups(&store.delivery_claim(claim_of_g(64, Some(1))).await.unwrap());
    assert_eq!(first.len(), 64, "a full claim: 100 groups are ready");
    let distinct: HashSet<&String> = first.iter().collect();
    assert_eq!(distinct.len(), 64, "a group leased twice at a group concurrency of 1: {first:?}");
    let high = first.iter().take_while(|g| g.starts_with("high")).count();
    assert_eq!(high, 50, "every priority-0 group first, before any priority-5 one: {first:?}");

    let second = groups(&store.delivery_claim(claim_of_g(64, Some(1))).await.unwrap());
    assert_eq!(second.len(), 36, "the other 36 priority-5 groups, each once: {second:?}");
    assert!(second.iter().all(|g| g.starts_with("low") && !distinct.contains(g)), "{second:?}");
    let all: HashSet<&String> = first.iter().chain(&second).collect();
    assert_eq!(all.len(), 100, "every group once");
    assert!(store.delivery_claim(claim_of_g(64, Some(1))).await.unwrap().is_empty(), "every group is full");
}

/// Split in two, the first half stops at its limit in the middle of a group, which it holds
/// locked until it commits: the room left there is claimed too, as one statement would.
#[tokio::test]
async fn a_grouped_claim_run_as_two_statements_leaves_no_room_unclaimed() {
    let url = fresh_url().await;
    let store = store(&url).await;
    subscribe_grouped(&store).await;
    let q = Queue::new(Arc::new(store.clone()), Clock::system());
    // 20 groups of 5 messages at a group concurrency of 3: 60 can start. The first half of a
    // claim of 64 takes 32: ten groups' 3, and 2 of the eleventh.
    let opts = |i: usize| SendOpts { group: Some(format!("g{:02}", i % 20)), ..Default::default() };
    q.send_many("t", (0..100).map(|i| (format!("g{:02}", i % 20).into_bytes(), opts(i)))).await.unwrap();
    let batch = store.delivery_claim(claim_of_g(64, Some(3))).await.unwrap();
    let mut per_group = std::collections::BTreeMap::<String, usize>::new();
    for m in &batch {
        *per_group.entry(String::from_utf8(m.payload.clone()).unwrap()).or_default() += 1;
    }
    assert_eq!(batch.len(), 60, "{per_group:?}");
    assert!(per_group.len() == 20 && per_group.values().all(|&n| n == 3), "{per_group:?}");
    // And as unkeyed messages (one group whose room is the claim's): the whole limit.
    q.send_many("t", (0..100).map(|_| (b"{}".to_vec(), SendOpts::default()))).await.unwrap();
    assert_eq!(store.delivery_claim(claim_of_g(64, Some(3))).await.unwrap().len(), 64);
}

#[tokio::test]
async fn the_cached_claim_plans_find_rows_by_key_whatever_the_statistics_said() {
    // The hot path plans each statement once per connection and keeps the plan: a claim
    // planned while the tables were empty, or while statistics showed a few message groups
    // where there are now a thousand, must not read a whole consumer group (every delivery
    // it ever had, history included, or every message group) on each later claim: no lookup
    // by a table's primary key may be bounded by the consumer group alone, the lease must not
    // join its rows back through a hash, and the park finds its rows where it saw them.
    let url = fresh_url().await;
    let store = store(&url).await;
    let check = |plan: String, when: &str, per_group: Option<u32>| {
        let lines: Vec<&str> = plan.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let by_pkey = line.contains("deliveries_pkey") || line.contains("flow_groups_pkey");
            let Some(cond) = lines.get(i + 1).filter(|_| by_pkey) else { continue };
            assert!(
                !cond.contains("Index Cond: (consumer_group = "),
                "{when}: a lookup by primary key is bounded by the consumer group alone (grouped: {per_group:?}):\n{plan}"
            );
        }
        let leased = &plan[plan.find("CTE leased").unwrap()..plan.find("CTE abandoned").unwrap()];
        assert!(!leased.contains("Hash"), "{when}: the lease joins back by a hash (grouped: {per_group:?}):\n{plan}");
        if per_group.is_some() {
            let parked = &plan[plan.find("CTE parked").unwrap()..];
            assert!(
                parked.contains("Tid Scan on flow_groups f"),
                "{when}: the park does not find its rows by TID:\n{plan}"
            );
        }
    };
    for per_group in [None, Some(1)] {
        check(store.explain_claim_as_cached(&claim_of_g(10, per_group)).await.unwrap(), "empty", per_group);
    }
    // Three groups analysed, then a thousand more.
    subscribe_grouped(&store).await;
    let q = Queue::new(Arc::new(store.clone()), Clock::system());
    let opts = |g: String| SendOpts { group: Some(g), ..Default::default() };
    let claim_all = async |n: usize| {
        q.send_many("t", (0..n).map(|i| (b"{}".to_vec(), opts(format!("g{n}-{i}"))))).await.unwrap();
        lease_all_grouped(&store).await;
    };
    claim_all(3).await;
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    claim_all(1000).await;
    for per_group in [None, Some(1)] {
        let plan = store.explain_claim_as_cached(&claim_of_g(10, per_group)).await.unwrap();
        check(plan, "three groups analysed, a thousand now", per_group);
    }
}

/// A grouped claim counts each visited group's live leases (`vqs_group_rooms`), a statement
/// PL/pgSQL plans once per connection. Planned generically while statistics showed no lease
/// in flight — as after a backlog was loaded and analysed — the count read every lease of
/// the consumer group through `deliveries_leased` and filtered it by group, once per group
/// visited (160 leases read per group, 5–7 ms of a claim in the flow workload). It must
/// read only the group's own rows, however many jobs are in flight (migration 0034).
#[tokio::test]
async fn a_grouped_claim_counts_a_groups_leases_without_reading_every_lease_of_the_consumer_group() {
    use sqlx::Connection;
    let url = fresh_url().await;
    let store = store(&url).await;
    subscribe_grouped(&store).await;
    let q = Queue::new(Arc::new(store.clone()), Clock::system());
    // 1,000 groups of one message each, analysed before anything is leased; then all leased.
    let opts = |g: String| SendOpts { group: Some(g), ..Default::default() };
    q.send_many("t", (0..1000).map(|i| (b"{}".to_vec(), opts(format!("g{i}"))))).await.unwrap();
    store.analyze().await.unwrap();
    assert_eq!(lease_all_grouped(&store).await, 1000, "every group's message leased");
    // One more group becomes ready; its count is planned generically, as on the claim's
    // connection, and run.
    q.send("t", b"{}".to_vec(), opts("late".into())).await.unwrap();
    // Called once first: the session compiles the function and plans its statements (and
    // reads the catalogs), then the second call is measured.
    let rooms = "SELECT * FROM vqs_group_rooms('g', now(), 1, 10, false, NULL, 0, NULL, '', NULL, NULL)";
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!("SET plan_cache_mode = force_generic_plan; SELECT vqs_fold_wakeups('g'); {rooms}"))
        .execute(&mut conn)
        .await
        .unwrap();
    // The index entries of `deliveries` the call reads, as this transaction's statistics
    // count them: every lease in flight when the count reads them all (1,000), the group's
    // own few otherwise.
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    let visited: Vec<String> =
        sqlx::query_scalar(&format!("SELECT key FROM ({rooms}) r")).fetch_all(&mut conn).await.unwrap();
    let (read, by_index): (i64, String) = sqlx::query_as(
        "SELECT COALESCE(SUM(n), 0)::int8, COALESCE(string_agg(name || '=' || n, ', '), '') FROM \
         (SELECT c.relname::text AS name, pg_stat_get_xact_tuples_returned(c.oid) AS n \
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'deliveries'::regclass) r",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
    assert_eq!(visited, ["late"], "the one ready group is visited");
    assert!(read < 50, "{read} index entries of deliveries read to count one group's leases ({by_index})");
}
