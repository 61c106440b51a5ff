//! Vercel's side, against the local queue service speaking the same v3 API: the Rust
//! client's conformance (send, receive, receive by id, acknowledge, change visibility) and a
//! queue-consumer function that settles its pushes over HTTP (ack, retry-after, dead letter,
//! receive by id) while its executions and dead letters stay in its own database.

mod common;

use std::net::SocketAddr;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use common::{QUEUE_SECRET, TestApp};
use http::StatusCode;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vqs::{Delivery, Pusher};
use vqs_axum::PushSource;
use vqs_axum::vercel_access::VercelAccess;
use vqs_vercel::{SendOptions, VqsClient, VqsClientConfig, VqsError};
use web::config::VercelEnv;

/// The local app served on a socket: the stand-in for `https://<region>.vercel-queue.com`.
async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    format!("http://{addr}/_vqs")
}

fn client(base: &str, token: &str) -> VqsClient {
    VqsClient::new(VqsClientConfig {
        base_url: Some(base.to_owned()),
        region: "iad1".into(),
        token: token.into(),
        deployment_id: Some("dpl_test".into()),
    })
    .unwrap()
}

#[tokio::test]
async fn the_client_sends_receives_acknowledges_and_changes_visibility() {
    let service = TestApp::new().await;
    let base = serve(&service).await;
    let c = client(&base, QUEUE_SECRET);

    let id = c.send("orders", r#"{"n":1}"#.into(), &SendOptions::default()).await.unwrap().unwrap();
    let got = c.receive("orders", "conf", 10, 30).await.unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!((m.message_id.as_str(), m.delivery_count, m.body.as_ref()), (id.as_str(), 1, &br#"{"n":1}"#[..]));
    assert_eq!(m.content_type, "application/json");
    assert!(c.receive("orders", "conf", 10, 30).await.unwrap().is_empty(), "leased: nothing more");

    // Visibility 0 releases the lease: delivered again, count 2.
    c.change_visibility("orders", "conf", &m.receipt_handle, 0).await.unwrap();
    let again = c.receive("orders", "conf", 1, 30).await.unwrap().pop().unwrap();
    assert_eq!(again.delivery_count, 2);
    // The first receipt handle no longer holds the lease.
    let lost = c.acknowledge("orders", "conf", &m.receipt_handle).await.unwrap_err();
    assert_eq!(lost.status(), Some(409), "{lost}");
    let too_long = c.change_visibility("orders", "conf", &again.receipt_handle, 7200).await.unwrap_err();
    assert_eq!(too_long.status(), Some(400), "{too_long}");
    c.acknowledge("orders", "conf", &again.receipt_handle).await.unwrap();
    let gone = c.acknowledge("orders", "conf", &again.receipt_handle).await.unwrap_err();
    assert_eq!(gone.status(), Some(404), "{gone}");
}

#[tokio::test]
async fn the_client_receives_by_id_and_honours_delay_idempotency_and_auth() {
    let service = TestApp::new().await;
    let base = serve(&service).await;
    let c = client(&base, QUEUE_SECRET);

    let keyed = SendOptions { idempotency_key: Some("k-1".into()), ..SendOptions::default() };
    let id = c.send("orders", "a".into(), &keyed).await.unwrap().unwrap();
    c.send("orders", "b".into(), &keyed).await.unwrap();
    let delayed = SendOptions { delay_seconds: Some(600), ..SendOptions::default() };
    c.send("orders", "later".into(), &delayed).await.unwrap();
    let m = c.receive_by_id("orders", "byid", &id, 30).await.unwrap();
    assert_eq!(m.body.as_ref(), b"a");
    let locked = c.receive_by_id("orders", "byid", &id, 30).await.unwrap_err();
    assert_eq!(locked.status(), Some(409), "{locked}");
    c.acknowledge("orders", "byid", &m.receipt_handle).await.unwrap();
    assert_eq!(c.receive_by_id("orders", "byid", &id, 30).await.unwrap_err().status(), Some(410));
    assert_eq!(c.receive_by_id("orders", "byid", "msg_nope", 30).await.unwrap_err().status(), Some(404));
    assert!(
        c.receive("orders", "byid", 10, 30).await.unwrap().is_empty(),
        "the duplicate was dropped, the delayed one waits"
    );

    let refused = client(&base, "wrong").send("orders", "x".into(), &SendOptions::default()).await.unwrap_err();
    assert!(matches!(refused, VqsError::Status { status: 401, .. }), "{refused}");
    assert!(!refused.to_string().contains(QUEUE_SECRET));
}

/// A queue-consumer function on "Vercel": its own database, pushes settled over HTTP.
async fn function(base: &str, env_token: Option<&str>) -> (TestApp, Router) {
    let app = TestApp::new().await;
    let mut state = app.state.clone();
    let env = VercelEnv {
        oidc_token: env_token.map(str::to_owned),
        queue_base_url: Some(base.to_owned()),
        ..VercelEnv::default()
    };
    state.push_source = PushSource::Vercel(VercelAccess::new(env).unwrap());
    let router = web::app(state);
    (app, router)
}

/// Vercel's push: the delivery as binary CloudEvent headers, no secret, no in-process mark.
struct ToFunction {
    router: Router,
    token: Option<&'static str>,
    drop_receipt_handle: bool,
}

#[async_trait]
impl Pusher for ToFunction {
    async fn push(&self, route: &str, delivery: Delivery) -> Result<u16, String> {
        let mut req = http::Request::post(route);
        for (name, value) in delivery.headers() {
            if !(self.drop_receipt_handle && name == "ce-vqsreceipthandle") {
                req = req.header(name, value);
            }
        }
        if let Some(t) = self.token {
            req = req.header("x-vercel-oidc-token", t);
        }
        let resp = self.router.clone().oneshot(req.body(Body::from(delivery.body)).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        eprintln!("function answered {status}: {}", String::from_utf8_lossy(&body));
        Ok(status)
    }
}

/// The service's probe consumer, pushing to a function served elsewhere: the function
/// records its own attempts (in its own database), so the lease records none.
fn remote_consumer(service: &TestApp) -> vqs::ConsumerConfig {
    vqs::ConsumerConfig { starts_executions: false, ..service.consumer("probe") }
}

async fn push(service: &TestApp, function: &Router, token: Option<&'static str>) -> usize {
    let pusher = ToFunction { router: function.clone(), token, drop_receipt_handle: false };
    vqs::dispatch_due(service.queue(), &remote_consumer(service), &pusher, "iad1", 10).await.unwrap()
}

async fn delivery_state(service: &TestApp, id: &str) -> (String, u32) {
    let m = service.queue().message(id).await.unwrap().unwrap();
    let d = &m.deliveries[0];
    (d.state.as_str().to_owned(), d.delivery_count)
}

#[tokio::test]
async fn a_consumer_function_acknowledges_on_vercel_and_records_the_run_in_its_own_database() {
    let service = TestApp::new().await;
    let base = serve(&service).await;
    let (func, router) = function(&base, None).await;
    let id = client(&base, QUEUE_SECRET).send("probe", "{}".into(), &SendOptions::default()).await.unwrap().unwrap();
    assert_eq!(push(&service, &router, Some(QUEUE_SECRET)).await, 1);
    assert_eq!(delivery_state(&service, &id).await, ("acked".into(), 1));
    assert_eq!(func.attempts(&id).await, vec![(1, "success".to_owned())]);
    assert!(service.attempts(&id).await.is_empty(), "the queue service runs nothing");
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_the_backoff_and_a_fatal_one_dead_lettered_locally() {
    let service = TestApp::new().await;
    let base = serve(&service).await;
    let (func, router) = function(&base, Some(QUEUE_SECRET)).await;
    let c = client(&base, QUEUE_SECRET);

    let failing = c.send("probe", r#"{"fail_attempts":1}"#.into(), &SendOptions::default()).await.unwrap().unwrap();
    let before = chrono::Utc::now();
    assert_eq!(push(&service, &router, None).await, 1, "the env token is used without a header");
    assert_eq!(func.attempts(&failing).await, vec![(1, "failed".to_owned())]);
    // PATCH visibility to the backoff: (10·1)² = 100 s.
    let m = service.queue().message(&failing).await.unwrap().unwrap();
    let due = m.deliveries[0].visible_at - before;
    assert!((95..=105).contains(&due.num_seconds()), "due in {due}");

    let fatal = c.send("probe", r#"{"fatal":true}"#.into(), &SendOptions::default()).await.unwrap().unwrap();
    assert_eq!(push(&service, &router, None).await, 1);
    assert_eq!(delivery_state(&service, &fatal).await.0, "acked");
    let dead = func.queue().dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].message_id.as_str(), dead[0].topic.as_str()), (fatal.as_str(), "probe"));
    assert_eq!(dead[0].payload, serde_json::json!({"fatal": true}));
    assert!(dead[0].error.starts_with("fatal:"), "{}", dead[0].error);
    assert!(service.queue().dead_letters(10).await.unwrap().is_empty());

    // The dead letter keeps the message's trace context, so a replay continues the trace.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let opts = vqs::SendOpts {
        headers_json: Some(serde_json::json!({ "traceparent": tp }).to_string()),
        ..vqs::SendOpts::default()
    };
    service.queue().send("probe", br#"{"fatal":true}"#.to_vec(), opts).await.unwrap();
    assert_eq!(push(&service, &router, None).await, 1);
    let dead = func.queue().dead_letters(10).await.unwrap();
    func.queue().dead_letter_replay(dead[0].id).await.unwrap();
    let claim = vqs::store::DeliveryClaimParams {
        group_concurrency: None,
        consumer_group: dead[0].consumer_group.clone(),
        topic: Some("probe".into()),
        message_id: None,
        limit: 10,
        visibility_seconds: 60,
        start_executions: false,
        lease_holder: None,
        max_leased: None,
        leased_here: 0,
        rate_limit: None,
        group_rate_limit: None,
        now: chrono::Utc::now(),
    };
    let replayed = func.queue().store().delivery_claim(claim).await.unwrap();
    let headers = replayed[0].headers_json.as_deref().expect("the replay carries the trace headers");
    assert_eq!(serde_json::from_str::<serde_json::Value>(headers).unwrap()["traceparent"], tp);
}

#[tokio::test]
async fn a_routing_only_push_is_received_by_id_and_no_token_settles_nothing() {
    let service = TestApp::new().await;
    let base = serve(&service).await;
    let (func, router) = function(&base, None).await;
    let id = client(&base, QUEUE_SECRET).send("probe", "{}".into(), &SendOptions::default()).await.unwrap().unwrap();

    // No token anywhere: 500, the platform will retry; nothing ran, nothing settled.
    let no_token = ToFunction { router: router.clone(), token: None, drop_receipt_handle: false };
    let pushed = vqs::dispatch_due(service.queue(), &remote_consumer(&service), &no_token, "iad1", 10).await.unwrap();
    assert_eq!(pushed, 1);
    assert!(func.attempts(&id).await.is_empty());
    assert_eq!(delivery_state(&service, &id).await.0, "pending", "given back after the failed push");

    // A push without a receipt handle: the function leases the message by id itself.
    let id = client(&base, QUEUE_SECRET).send("probe", "{}".into(), &SendOptions::default()).await.unwrap().unwrap();
    let delivery = Delivery {
        topic: "probe".into(),
        consumer_group: service.consumer("probe").consumer_group,
        message_id: id.clone(),
        receipt_handle: None,
        delivery_count: 1,
        created_at: None,
        expires_at: None,
        visibility_deadline: None,
        region: Some("iad1".into()),
        content_type: None,
        traceparent: None,
        tracestate: None,
        baggage: None,
        producer_headers: Vec::new(),
        body: Default::default(),
        execution_id: None,
        attempt: None,
        execution_slot: None,
    };
    let routing_only = ToFunction { router, token: Some(QUEUE_SECRET), drop_receipt_handle: true };
    assert_eq!(routing_only.push("/api/queue/probe", delivery).await.unwrap(), StatusCode::OK.as_u16());
    assert_eq!(func.attempts(&id).await, vec![(1, "success".to_owned())]);
    assert_eq!(delivery_state(&service, &id).await.0, "acked");
}

/// The client's batch send against the local service: one result per message, in order;
/// a refused message fails alone; a duplicate answers with a fresh id, whose receive by id
/// names the original (409), as Vercel answers.
#[tokio::test]
async fn the_client_sends_a_batch_and_reads_each_result() {
    let service = TestApp::new().await;
    let base = serve(&service).await;
    let c = client(&base, QUEUE_SECRET);
    let keyed = SendOptions { idempotency_key: Some("k-1".into()), ..SendOptions::default() };
    let traced = SendOptions {
        headers: vec![("x-tenant".into(), "acme".into()), ("Vqs-Delay-Seconds".into(), "999".into())],
        ..SendOptions::default()
    };
    let results = c
        .send_batch(
            "orders",
            &[
                ("a".into(), keyed.clone()),
                ("b".into(), keyed),
                ("c".into(), SendOptions { retention_seconds: Some(10), ..SendOptions::default() }),
                ("d".into(), traced),
            ],
        )
        .await
        .unwrap();
    let id = |r: &vqs_vercel::BatchResult| match r {
        vqs_vercel::BatchResult::Sent { message_id } => message_id.clone(),
        other => panic!("not sent: {other:?}"),
    };
    let (first, dup, last) = (id(&results[0]), id(&results[1]), id(&results[3]));
    assert_ne!(first, dup, "a fresh id for the duplicate");
    assert!(
        matches!(&results[2], vqs_vercel::BatchResult::Failed { status_code: 400, retryable: false, error } if error.contains("retention")),
        "{:?}",
        results[2]
    );
    let dropped = c.receive_by_id("orders", "g", &dup, 30).await.unwrap_err();
    assert!(
        matches!(&dropped, VqsError::Status { status: 409, original_message_id: Some(o), .. } if *o == first),
        "{dropped}"
    );
    let got: Vec<String> = c.receive("orders", "g", 10, 30).await.unwrap().into_iter().map(|m| m.message_id).collect();
    assert_eq!(got.len(), 2, "a and d; Vqs-* producer headers are never sent: d is not delayed");
    assert!(got.contains(&first) && got.contains(&last));
    let empty = c.send_batch("orders", &[]).await.unwrap_err();
    assert!(matches!(empty, VqsError::Protocol { .. }), "{empty}");
}

/// SPEC.md, "Attempts vs deliveries", on Vercel: the platform counts deliveries only (a
/// receive that ran nothing, a lease renewed, a cold start past the lease all raise it); the
/// attempt is read from the runs the function's own database recorded.
#[tokio::test]
async fn on_vercel_a_delivery_that_ran_nothing_spends_no_attempt() {
    let service = TestApp::new().await;
    let base = serve(&service).await;
    let (func, router) = function(&base, Some(QUEUE_SECRET)).await;
    let c = client(&base, QUEUE_SECRET);
    let group = remote_consumer(&service).consumer_group;

    let id = c.send("probe", "{}".into(), &SendOptions::default()).await.unwrap().unwrap();
    // Two deliveries that run nothing, each given back.
    for n in 1..=2 {
        let m = c.receive("probe", &group, 1, 30).await.unwrap().pop().unwrap();
        assert_eq!(m.delivery_count, n);
        c.change_visibility("probe", &group, &m.receipt_handle, 0).await.unwrap();
    }
    assert_eq!(push(&service, &router, None).await, 1);
    assert_eq!(delivery_state(&service, &id).await, ("acked".into(), 3), "the third delivery ran it");
    assert_eq!(func.attempts(&id).await, vec![(1, "success".to_owned())], "its first attempt");

    // A failed run is an attempt: the next run of that delivery is attempt 2.
    let failing = c.send("probe", r#"{"fail_attempts":1}"#.into(), &SendOptions::default()).await.unwrap().unwrap();
    let m = c.receive("probe", &group, 1, 30).await.unwrap().pop().unwrap();
    c.change_visibility("probe", &group, &m.receipt_handle, 0).await.unwrap();
    assert_eq!(push(&service, &router, None).await, 1);
    assert_eq!(func.attempts(&failing).await, vec![(1, "failed".to_owned())], "delivery 2, attempt 1");
    assert_eq!(func.queue().next_attempt(&failing, &group).await.unwrap(), 2);
    assert_eq!(func.queue().next_attempt(&failing, "another-group").await.unwrap(), 1, "attempts are per group");
}

#[tokio::test]
async fn on_vercel_a_cancelled_message_is_acknowledged_unrun_when_it_arrives() {
    let service = TestApp::new().await;
    let base = serve(&service).await;
    let (func, router) = function(&base, Some(QUEUE_SECRET)).await;
    let c = client(&base, QUEUE_SECRET);
    // The deployment's queue, as the public function has it: publishing to Vercel's service.
    let vercel =
        std::sync::Arc::new(vqs_vercel::VercelQueueService::for_queue(client(&base, QUEUE_SECRET), func.queue()));
    let deployed = func.queue().publishing_to(vercel);

    let id = c.send("probe", r#"{"sleep_ms":1}"#.into(), &SendOptions::default()).await.unwrap().unwrap();
    let done = deployed.cancel(&id).await.unwrap();
    assert!(done.remote, "{done:?}");
    let again = deployed.cancel(&id).await.unwrap_err().to_string();
    assert!(again.contains("already cancelled"), "{again}");
    // Purge, run now and replace cannot reach Vercel's messages: refused, saying why.
    assert!(deployed.purge("probe", None, true).await.unwrap_err().to_string().contains("Vercel"));
    assert!(deployed.run_now(&id).await.unwrap_err().to_string().contains("Vercel"));

    assert_eq!(push(&service, &router, None).await, 1);
    assert_eq!(delivery_state(&service, &id).await, ("acked".into(), 1), "acknowledged on Vercel");
    assert_eq!(func.attempts(&id).await, vec![(1, "cancelled".to_owned())], "recorded, not run");
    // Another message is untouched.
    let other = c.send("probe", "{}".into(), &SendOptions::default()).await.unwrap().unwrap();
    assert_eq!(push(&service, &router, None).await, 1);
    assert_eq!(func.attempts(&other).await, vec![(1, "success".to_owned())]);
}

/// SPEC.md, "Flow control", on Vercel: the platform pushes whatever is due, so a function
/// whose topic is paused (in its own database, by another process) defers the push — the
/// message comes back after `vqs::PAUSED_DEFER` — and runs nothing: no attempt spent, no
/// execution recorded. After the resume, the next delivery runs it as attempt 1.
#[tokio::test]
async fn on_vercel_a_push_over_the_rate_limit_is_deferred_without_spending_an_attempt() {
    let clock = vqs::Clock::manual(chrono::Utc::now());
    let service = TestApp::with_clock(clock.clone()).await;
    let base = serve(&service).await;
    let (func, router) = function(&base, Some(QUEUE_SECRET)).await;
    // Set by an operator's CLI on the function's database: one start an hour.
    let operator = web::runtime::open_queue(&func.database_url, vqs::Clock::system()).await.unwrap();
    let rate = vqs::RateLimit { limit: 1, period_seconds: 3600 };
    let patch = vqs::TopicLimitsPatch { rate_limit: Some(Some(rate)), ..Default::default() };
    operator.set_limits("probe", patch).await.unwrap();

    let c = client(&base, QUEUE_SECRET);
    let first = c.send("probe", "{}".into(), &SendOptions::default()).await.unwrap().unwrap();
    assert_eq!(push(&service, &router, None).await, 1);
    assert_eq!(func.attempts(&first).await, vec![(1, "success".to_owned())], "the bucket's one start");
    let second = c.send("probe", "{}".into(), &SendOptions::default()).await.unwrap().unwrap();
    let before = clock.now();
    assert_eq!(push(&service, &router, None).await, 1);
    assert!(func.attempts(&second).await.is_empty(), "held: nothing ran, nothing recorded");
    let m = service.queue().message(&second).await.unwrap().unwrap();
    assert_eq!((m.deliveries[0].state.as_str(), m.deliveries[0].delivery_count), ("leased", 1));
    let due = (m.deliveries[0].visible_at - before).num_seconds();
    assert!((3500..=3605).contains(&due), "deferred until the bucket allows a start: {due} s");

    func.queue().clear_limits("probe").await.unwrap();
    clock.advance(std::time::Duration::from_secs(3601));
    assert_eq!(push(&service, &router, None).await, 1);
    assert_eq!(func.attempts(&second).await, vec![(1, "success".to_owned())], "the deferral spent no attempt");
}

#[tokio::test]
async fn on_vercel_a_push_for_a_paused_topic_is_deferred_without_spending_an_attempt() {
    // The platform's clock, moved past the deferral rather than waited for.
    let clock = vqs::Clock::manual(chrono::Utc::now());
    let service = TestApp::with_clock(clock.clone()).await;
    let base = serve(&service).await;
    let (func, router) = function(&base, Some(QUEUE_SECRET)).await;
    // Paused by another process (an operator's CLI): this function learns it from its database.
    let operator = web::runtime::open_queue(&func.database_url, vqs::Clock::system()).await.unwrap();
    operator.pause("probe").await.unwrap();

    let id = client(&base, QUEUE_SECRET).send("probe", "{}".into(), &SendOptions::default()).await.unwrap().unwrap();
    let before = clock.now();
    assert_eq!(push(&service, &router, None).await, 1);
    assert!(func.attempts(&id).await.is_empty(), "nothing ran, nothing recorded");
    let m = service.queue().message(&id).await.unwrap().unwrap();
    // Deferred as Vercel does it: the lease's visibility extended (no new attempt, one delivery).
    assert_eq!((m.deliveries[0].state.as_str(), m.deliveries[0].delivery_count), ("leased", 1));
    let due = (m.deliveries[0].visible_at - before).num_seconds();
    let defer = vqs::PAUSED_DEFER.as_secs() as i64;
    assert!((defer - 5..=defer + 5).contains(&due), "deferred by {due} s, not {defer} s");

    func.queue().resume("probe").await.unwrap();
    clock.advance(vqs::PAUSED_DEFER + std::time::Duration::from_secs(1));
    assert_eq!(push(&service, &router, None).await, 1);
    assert_eq!(func.attempts(&id).await, vec![(1, "success".to_owned())], "the deferral spent no attempt");
    assert_eq!(delivery_state(&service, &id).await, ("acked".into(), 2), "two deliveries, one run");
}
