//! The export asserted where it lands: a real OTLP/HTTP receiver (an axum route decoding the
//! protobuf request, as a collector does) gets the job spans of a request → job → job chain,
//! linked into one trace.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use prost::Message;
use serde::{Deserialize, Serialize};
use tracing_subscriber::prelude::*;
use vqs::testing::DrainOpts;
use vqs::{JobContext, JobError, Jobbable, QueueHandler, TraceContext};
use vqs_testing::TestQueue;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
}

/// Charges an order, then enqueues its receipt.
struct Charge;
impl Jobbable for Charge {
    type Params = Order;
    const TOPIC: &'static str = "charge";
    async fn perform(&self, order: Order, ctx: JobContext) -> Result<(), JobError> {
        ctx.queue().job(Receipt).perform_later(order).await.map_err(JobError::retryable)?;
        Ok(())
    }
}

/// Sends a receipt; fails its first attempt.
struct Receipt;
impl Jobbable for Receipt {
    type Params = Order;
    const TOPIC: &'static str = "receipt";
    async fn perform(&self, _: Order, ctx: JobContext) -> Result<(), JobError> {
        if ctx.attempt() == 1 { Err(JobError::retryable("mail server busy")) } else { Ok(()) }
    }
}

async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
                for rs in req.resource_spans {
                    let service = rs.resource.iter().flat_map(|r| &r.attributes).find(|a| a.key == "service.name");
                    assert!(matches!(&service.and_then(|a| a.value.clone()).and_then(|v| v.value), Some(AnyValue::StringValue(s)) if s == "otel-test"));
                    for ss in rs.scope_spans {
                        sink.lock().unwrap().extend(ss.spans);
                    }
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1/traces"), spans)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.clone()).and_then(|v| match v.value {
        Some(AnyValue::StringValue(s)) => Some(s),
        Some(AnyValue::IntValue(i)) => Some(i.to_string()),
        _ => None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_s_job_and_the_job_it_enqueues_are_exported_as_one_trace() {
    let (endpoint, received) = receiver().await;
    let config = vqs_otel::OtlpConfig { endpoint: Some(endpoint), service_name: "otel-test".into() };
    let (layer, export) = vqs_otel::job_spans(config).unwrap();
    let _subscriber = tracing_subscriber::registry().with(layer).set_default();

    let tq = TestQueue::sqlite(vec![QueueHandler::new(Charge), QueueHandler::new(Receipt)]).await.unwrap();
    // The request that enqueues the order, in a trace of its own (as the app's middleware does
    // for a request carrying `traceparent`).
    let request = TraceContext::new_root();
    request.clone().scope(tq.queue().job(Charge).perform_later(Order { id: 7 })).await.unwrap();
    let report = tq.drain(DrainOpts::with_scheduled()).await.unwrap();
    assert_eq!((report.succeeded, report.failed), (2, 1), "{report:?}");
    export.flush().await.unwrap();

    let spans = received.lock().unwrap().clone();
    assert_eq!(spans.len(), 3, "one span per attempt: {spans:#?}");
    let by_topic = |t: &str| {
        spans.iter().filter(|s| attr(s, "messaging.destination.name").as_deref() == Some(t)).collect::<Vec<_>>()
    };
    let (charge, receipts) = (by_topic("charge"), by_topic("receipt"));
    assert_eq!((charge.len(), receipts.len()), (1, 2));
    // One trace: the request's.
    for s in &spans {
        assert_eq!(hex(&s.trace_id), request.trace_id, "{s:#?}");
        assert_eq!(s.kind, SpanKind::Consumer as i32);
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    }
    // The charge's parent is the request's span; each receipt attempt's parent is the charge.
    assert_eq!(hex(&charge[0].parent_span_id), request.parent_id);
    assert_eq!(charge[0].name, "process charge");
    for r in &receipts {
        assert_eq!(hex(&r.parent_span_id), hex(&charge[0].span_id));
    }
    // The failed attempt says so; the retry is attempt 2 and succeeded.
    let failed: Vec<_> =
        receipts.iter().filter(|r| r.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32)).collect();
    assert_eq!(failed.len(), 1, "{receipts:#?}");
    assert_eq!(attr(failed[0], "vqs.job.attempt").as_deref(), Some("1"));
    assert!(failed[0].status.as_ref().unwrap().message.contains("mail server busy"));
    assert_eq!(export.dropped(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_malformed_endpoint_is_refused_at_start() {
    let config = vqs_otel::OtlpConfig { endpoint: Some("not a url\0".into()), service_name: "x".into() };
    let err = vqs_otel::job_spans(config).unwrap_err();
    assert!(err.to_string().contains("endpoint"), "{err}");
}
