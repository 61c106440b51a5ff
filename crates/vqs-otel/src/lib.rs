//! # vqs-otel — job spans to OpenTelemetry, opt-in
//!
//! vqs carries W3C trace context from the request that enqueued a job to the job, and from
//! a job to the jobs it enqueues (`vqs::TraceContext`). This crate exports each job run as
//! an OpenTelemetry span over OTLP/HTTP (protobuf), with that context: the span's trace id
//! is the producer's, its parent is the producer's span, and the jobs it enqueues name it as
//! their parent — so a collector (Jaeger, Tempo, Honeycomb, …) shows the request, the job
//! and the jobs after it as one trace. Kind `CONSUMER`, named `process <topic>`, with the
//! messaging attributes (`messaging.destination.name`, `messaging.message.id`, …), the
//! attempt, and status `ERROR` with the error when the attempt failed.
//!
//! It is a `tracing` layer: nothing else of the app's tracing changes, and apps that do
//! not add it pay nothing (the core knows no OpenTelemetry).
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! # #[tokio::main] async fn main() -> Result<(), vqs_otel::OtelError> {
//! // The endpoint and headers from OTEL_EXPORTER_OTLP_* (as every OpenTelemetry SDK), or:
//! let (layer, export) = vqs_otel::job_spans(vqs_otel::OtlpConfig {
//!     endpoint: Some("http://127.0.0.1:4318/v1/traces".into()),
//!     service_name: "my-app".into(),
//! })?;
//! tracing_subscriber::registry().with(tracing_subscriber::fmt::layer()).with(layer).init();
//! // … serve …
//! export.flush().await?; // before exit: send what is buffered
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use tokio::sync::{mpsc, oneshot};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Spans held for export at most; beyond, new ones are dropped (and counted), never blocking a job.
pub const BUFFER: usize = 8192;
/// Spans sent in one request at most.
pub const BATCH: usize = 512;
/// How long a span waits for others to share its request.
pub const BATCH_WAIT: Duration = Duration::from_millis(500);

/// Where to export.
#[derive(Debug, Clone, Default)]
pub struct OtlpConfig {
    /// The OTLP/HTTP traces URL (`…/v1/traces`). `None`: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else `http://localhost:4318/v1/traces`.
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

/// Why the exporter could not start, or a flush failed.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The OTLP exporter refused its configuration (a malformed endpoint, …).
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(String),
    /// The collector did not take the spans.
    #[error("OpenTelemetry export failed: {0}")]
    Export(String),
    /// The export task is gone (the runtime shut down).
    #[error("the OpenTelemetry export task has stopped")]
    Stopped,
}

/// Build the layer and start its export task (call inside a tokio runtime).
pub fn job_spans(config: OtlpConfig) -> Result<(JobSpans, Exporting), OtelError> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = config.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let mut exporter = builder.build().map_err(|e| OtelError::Exporter(e.to_string()))?;
    exporter.set_resource(&Resource::builder().with_service_name(config.service_name).build());
    let (tx, rx) = mpsc::channel(BUFFER);
    let dropped = Arc::new(AtomicU64::new(0));
    tokio::spawn(export_loop(exporter, rx));
    Ok((JobSpans { tx: tx.clone(), dropped: dropped.clone() }, Exporting { tx, dropped }))
}

enum Msg {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<Result<(), String>>),
}

async fn export_loop(exporter: opentelemetry_otlp::SpanExporter, mut rx: mpsc::Receiver<Msg>) {
    while let Some(first) = rx.recv().await {
        let (mut batch, mut flush) = (Vec::new(), None);
        match first {
            Msg::Span(s) => batch.push(*s),
            Msg::Flush(reply) => flush = Some(reply),
        }
        // Gather what arrives soon after, up to a batch; a flush sends at once.
        while flush.is_none() && batch.len() < BATCH {
            match tokio::time::timeout(BATCH_WAIT, rx.recv()).await {
                Ok(Some(Msg::Span(s))) => batch.push(*s),
                Ok(Some(Msg::Flush(reply))) => flush = Some(reply),
                Ok(None) | Err(_) => break,
            }
        }
        let result = if batch.is_empty() { Ok(()) } else { exporter.export(batch).await.map_err(|e| e.to_string()) };
        if let Err(e) = &result {
            // Logged outside any job span, so it is never exported itself.
            tracing::warn!(error = %e, "could not export job spans to the OpenTelemetry collector");
        }
        if let Some(reply) = flush {
            let _ = reply.send(result);
        }
    }
}

/// The running export: flush it before the process exits.
#[derive(Debug, Clone)]
pub struct Exporting {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl Exporting {
    /// Send every span finished so far, and wait for the collector's answer.
    pub async fn flush(&self) -> Result<(), OtelError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Msg::Flush(reply)).await.map_err(|_| OtelError::Stopped)?;
        answer.await.map_err(|_| OtelError::Stopped)?.map_err(OtelError::Export)
    }

    /// Spans dropped because the buffer was full (the collector slower than the jobs).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Span(_) => "Span",
            Msg::Flush(_) => "Flush",
        })
    }
}

/// The `tracing` layer: turns each closed vqs `job` span into an OpenTelemetry span.
#[derive(Debug, Clone)]
pub struct JobSpans {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

/// What a `job` span carries (see `vqs::QueueHandler`), and what happened in it.
#[derive(Debug, Default)]
struct JobRun {
    topic: String,
    message_id: String,
    consumer_group: String,
    execution_id: Option<String>,
    attempt: Option<u64>,
    trace_id: String,
    span_id: String,
    parent_id: Option<String>,
    error: Option<String>,
    start: Option<SystemTime>,
}

impl Visit for JobRun {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "job.attempt" => self.attempt = Some(value),
            name => self.set(name, value.to_string()),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field.name(), format!("{value:?}"));
    }
}

impl JobRun {
    fn set(&mut self, name: &str, value: String) {
        match name {
            "job.topic" => self.topic = value,
            "job.id" => self.execution_id = Some(value),
            "message.id" => self.message_id = value,
            "queue.consumer_group" => self.consumer_group = value,
            "trace.id" => self.trace_id = value,
            "trace.span_id" => self.span_id = value,
            "trace.parent_id" => self.parent_id = Some(value),
            _ => {}
        }
    }

    fn into_span(self, end: SystemTime) -> Option<SpanData> {
        let trace_id = TraceId::from_hex(&self.trace_id).ok().filter(|t| *t != TraceId::INVALID)?;
        let span_id = SpanId::from_hex(&self.span_id).ok().filter(|s| *s != SpanId::INVALID)?;
        let parent = self.parent_id.as_deref().and_then(|p| SpanId::from_hex(p).ok()).unwrap_or(SpanId::INVALID);
        let mut attributes = vec![
            KeyValue::new("messaging.system", "vqs"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", self.topic.clone()),
            KeyValue::new("messaging.message.id", self.message_id),
            KeyValue::new("messaging.consumer.group.name", self.consumer_group),
        ];
        if let Some(attempt) = self.attempt {
            attributes.push(KeyValue::new("vqs.job.attempt", i64::try_from(attempt).unwrap_or(i64::MAX)));
        }
        if let Some(id) = self.execution_id {
            attributes.push(KeyValue::new("vqs.execution.id", id));
        }
        Some(SpanData {
            span_context: SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, TraceState::default()),
            parent_span_id: parent,
            parent_span_is_remote: parent != SpanId::INVALID,
            span_kind: SpanKind::Consumer,
            name: Cow::Owned(format!("process {}", self.topic)),
            start_time: self.start.unwrap_or(end),
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: self.error.map_or(Status::Unset, Status::error),
            instrumentation_scope: InstrumentationScope::builder("vqs").build(),
        })
    }
}

/// The error an event reports, if it reports one: its `error` or `reason` field, or the
/// message of a warning or an error.
#[derive(Default)]
struct EventError {
    error: Option<String>,
    message: Option<String>,
}

impl Visit for EventError {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field.name(), format!("{value:?}"));
    }
}

impl EventError {
    fn record(&mut self, name: &str, value: String) {
        match name {
            "error" | "reason" => self.error = Some(value),
            "message" => self.message = Some(value),
            _ => {}
        }
    }
}

fn is_job_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.name() == "job" && meta.target().starts_with("vqs")
}

impl<S> Layer<S> for JobSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if !is_job_span(attrs.metadata()) {
            return;
        }
        let mut run = JobRun { start: Some(SystemTime::now()), ..JobRun::default() };
        attrs.record(&mut run);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(run);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(run) = span.extensions_mut().get_mut::<JobRun>()
        {
            values.record(run);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else { return };
        for span in scope {
            let mut ext = span.extensions_mut();
            let Some(run) = ext.get_mut::<JobRun>() else { continue };
            let mut found = EventError::default();
            event.record(&mut found);
            let serious = *event.metadata().level() <= Level::WARN;
            if let Some(e) = found.error.or(if serious { found.message } else { None }) {
                run.error = Some(e);
            }
            return;
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(run) = span.extensions_mut().remove::<JobRun>() else { return };
        if let Some(data) = run.into_span(SystemTime::now())
            && self.tx.try_send(Msg::Span(Box::new(data))).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
