//! Tracing: the producer's W3C `traceparent` reaches the job's span and every message the
//! job publishes; `VQS_LOG_FORMAT=json` writes one JSON object per line whose span carries
//! the stable fields `job.topic`, `job.id`, `job.attempt`, `message.id` and `trace.id`;
//! text logs written to a pipe carry no colour codes; an in-process push runs in its
//! producer's trace from the app's trace layer on.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

use common::TestApp;
use serde_json::Value;
use vqs::store::{DeliveryClaimParams, SubscriptionEnsureParams};
use vqs::{Delivery, JobContext, JobError, Jobbable, QueueHandler, SendOpts, TraceContext};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PRODUCER_SPAN}-01")
}

/// A job that enqueues a probe, as a job handing work on does.
struct Chain;

impl Jobbable for Chain {
    type Params = serde_json::Value;
    const TOPIC: &'static str = "chain";
    async fn perform(&self, _: serde_json::Value, ctx: JobContext) -> Result<(), JobError> {
        ctx.queue().job(jobs::Probe).perform_later(jobs::ProbeParams::default()).await.map_err(JobError::retryable)?;
        Ok(())
    }
}

async fn claim_one(app: &TestApp, group: &str) -> vqs::store::LeasedMessage {
    let claimed = app
        .queue()
        .store()
        .delivery_claim(DeliveryClaimParams {
            group_concurrency: None,
            consumer_group: group.into(),
            topic: None,
            message_id: None,
            limit: 1,
            visibility_seconds: 60,
            start_executions: false,
            lease_holder: None,
            max_leased: None,
            leased_here: 0,
            rate_limit: None,
            group_rate_limit: None,
            now: app.clock.now(),
        })
        .await
        .unwrap();
    claimed.into_iter().next().expect("a message to claim")
}

fn traceparent_of(m: &vqs::store::LeasedMessage) -> Option<TraceContext> {
    let headers: Value = serde_json::from_str(m.headers_json.as_deref()?).ok()?;
    TraceContext::parse(headers["traceparent"].as_str()?)
}

#[tokio::test]
async fn a_producers_trace_reaches_the_job_and_the_jobs_it_enqueues() {
    let app = TestApp::new().await;
    let store = app.queue().store();
    let now = app.clock.now();
    store
        .subscription_ensure(SubscriptionEnsureParams {
            grouped: false,
            topic_pattern: "chain".into(),
            consumer_group: "chain-group".into(),
            initial_delay_seconds: 0,
            now,
        })
        .await
        .unwrap();
    let headers = serde_json::json!({ "traceparent": traceparent() }).to_string();
    let opts = SendOpts { headers_json: Some(headers), ..SendOpts::default() };
    app.queue().send("chain", b"{}".to_vec(), opts).await.unwrap();

    let leased = claim_one(&app, "chain-group").await;
    let delivery = Delivery::from_leased(&leased, "dev1");
    assert_eq!(delivery.traceparent.as_deref(), Some(traceparent().as_str()), "the push carries the producer's trace");
    let outcome = QueueHandler::new(Chain).handle(app.queue(), Ok(delivery)).await;
    assert_eq!(outcome, vqs::ConsumerOutcome::Succeeded);

    // The probe the job published: same trace, the job's own span as its parent.
    let probe = claim_one(&app, &app.consumer("probe").consumer_group).await;
    let child = traceparent_of(&probe).expect("the enqueued message carries a traceparent");
    assert_eq!(child.trace_id, TRACE_ID);
    assert_ne!(child.parent_id, PRODUCER_SPAN, "the job is a span of its own");

    // Outside any job, a publish carries no trace context of its own making.
    let plain = app.queue().send("chain", b"{}".to_vec(), SendOpts::default()).await.unwrap();
    let m = claim_one(&app, "chain-group").await;
    assert_eq!(m.message_id, plain.message_id);
    assert_eq!(m.headers_json, None);
}

#[tokio::test]
async fn a_request_with_a_traceparent_enqueues_in_its_trace() {
    let app = TestApp::new().await;
    let req = http::Request::post("/api/admin/messages")
        .header("authorization", format!("Bearer {}", common::ADMIN_TOKEN))
        .header("content-type", "application/json")
        .header("traceparent", traceparent())
        .body(axum::body::Body::from(r#"{"topic":"probe","payload":{}}"#))
        .unwrap();
    assert_eq!(app.call(req).await.0, http::StatusCode::CREATED);
    let m = claim_one(&app, &app.consumer("probe").consumer_group).await;
    assert_eq!(traceparent_of(&m).expect("traceparent stored").trace_id, TRACE_ID);
}

/// An in-process push (the dispatcher's, through the app's router) carries its producer's
/// trace in its delivery rather than in a header: the app's trace layer still runs the
/// request in that trace, as it does a request over HTTP with a `traceparent`.
#[tokio::test]
async fn the_trace_layer_runs_an_in_process_push_in_its_producers_trace() {
    use tower::ServiceExt;
    let app = TestApp::new().await;
    let seen = axum::Router::new().route(
        "/seen",
        axum::routing::post(|| async { TraceContext::current().map(|t| t.trace_id).unwrap_or_default() }),
    );
    let router = vqs_axum::app(app.state.clone(), seen);
    let headers = serde_json::json!({ "traceparent": traceparent() }).to_string();
    let opts = SendOpts { headers_json: Some(headers), ..SendOpts::default() };
    app.queue().send("probe", b"{}".to_vec(), opts).await.unwrap();
    let leased = claim_one(&app, &app.consumer("probe").consumer_group).await;
    let mut req = http::Request::post("/seen").body(axum::body::Body::empty()).unwrap();
    req.extensions_mut().insert(vqs_axum::InProcessPush(Delivery::from_leased(&leased, "dev1")));
    let resp = router.oneshot(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    assert_eq!(std::str::from_utf8(&body).unwrap(), TRACE_ID);
}

#[tokio::test]
async fn json_logs_carry_the_job_span_fields_and_no_secret() {
    let app = TestApp::new().await;
    let headers = serde_json::json!({ "traceparent": traceparent() }).to_string();
    let opts = SendOpts { headers_json: Some(headers), ..SendOpts::default() };
    let id = app.queue().send("probe", br#"{"fatal":true}"#.to_vec(), opts).await.unwrap().message_id;

    // Read the log until the job's dead-lettered event, which is written just after the
    // dead-letter commits: waiting on the store instead would race it.
    let secrets = [
        ("VQS_ADMIN_TOKEN", common::ADMIN_TOKEN),
        ("VQS_QUEUE_SECRET", common::QUEUE_SECRET),
        ("CRON_SECRET", common::CRON_SECRET),
    ];
    let stderr = serve_log_until(&app, "json", &secrets, "\"dead-lettered\"").await;
    for (_, secret) in secrets {
        assert!(!stderr.contains(secret), "a secret reached the log");
    }
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "vqs listening"));
    let dead = lines
        .iter()
        .find(|l| l["fields"]["message"] == "dead-lettered")
        .unwrap_or_else(|| panic!("no dead-lettered event in {stderr}"));
    let span = &dead["span"];
    assert_eq!(span["name"], "job");
    assert_eq!(span["job.topic"], "probe");
    assert_eq!(span["job.attempt"], 1);
    assert_eq!(span["message.id"], id.as_str());
    assert_eq!(span["trace.id"], TRACE_ID);
    assert_eq!(span["trace.parent_id"], PRODUCER_SPAN);
    let execution = app.queue().executions(Default::default()).await.unwrap()[0].id;
    assert_eq!(span["job.id"], execution, "job.id is the execution row's id");
}

/// Text logs written to a pipe (a file, a collector, Vercel's log viewer) carry no terminal
/// colour codes.
#[tokio::test]
async fn text_logs_to_a_pipe_have_no_colour_codes() {
    let app = TestApp::new().await;
    let stderr = serve_log_until(&app, "text", &[], "vqs listening").await;
    assert!(stderr.contains(" INFO "), "a text log line: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in a piped log: {stderr:?}");
}

/// `web serve` on `app`'s database with `VQS_LOG_FORMAT=format` (and `env`), its stderr a
/// pipe (`NO_COLOR` unset): the log up to and including the first line containing `until`.
async fn serve_log_until(app: &TestApp, format: &str, env: &[(&str, &str)], until: &str) -> String {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .arg("serve")
        .env("DATABASE_URL", &app.database_url)
        .env("VQS_VERCEL_JSON", common::repo_root().join("vercel.json"))
        .env("VQS_LOG_FORMAT", format)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info,sqlx=warn")
        .env_remove("NO_COLOR")
        .env("PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start web serve");
    let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout_at(deadline.into(), log.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line with {until} within 60 s in {stderr}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the server exited; its log: {stderr}"));
        stderr.push_str(&line);
        stderr.push('\n');
        if line.contains(until) {
            break;
        }
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    stderr
}
