use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;
use web::config::{LogFormat, log_colours, log_filter, log_format};

/// mimalloc rather than glibc's malloc: a job's push allocates a few hundred small objects
/// across threads (headers, strings, futures), and glibc's arenas spent a third of the app's
/// CPU on them (`malloc_consolidate`, `_int_free`; perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let format = match log_format() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let filter = EnvFilter::try_new(log_filter()).unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(log_colours());
    let logs = match format {
        // One JSON object per line; the fields of the enclosing spans (`job.topic`, `job.id`,
        // `trace.id`, …) ride along on every event logged inside a job.
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).boxed(),
        LogFormat::Text => logs.boxed(),
    };
    // The filter applies to everything, as `fmt().with_env_filter` did (the job spans the
    // OpenTelemetry layer exports are INFO, target `vqs`: a RUST_LOG that keeps `vqs` at info
    // keeps them).
    let registry = tracing_subscriber::registry().with(filter).with(logs);
    // Job spans to an OpenTelemetry collector: built with `--features otel`, on when
    // OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set.
    #[cfg(feature = "otel")]
    let (registry, otel) = match web::config::otel_config() {
        Some(config) => match vqs_otel::job_spans(config) {
            Ok((layer, export)) => (registry.with(Some(layer)), Some(export)),
            Err(e) => {
                eprintln!("error: {e}: check OTEL_EXPORTER_OTLP_ENDPOINT");
                return std::process::ExitCode::FAILURE;
            }
        },
        None => (registry.with(None), None),
    };
    registry.init();
    let cli = web::cli::Cli::parse();
    let result = match web::Config::from_env() {
        Ok(config) => web::cli::run(cli, config).await,
        Err(e) => Err(e),
    };
    #[cfg(feature = "otel")]
    if let Some(export) = otel
        && let Err(e) = export.flush().await
    {
        eprintln!("warning: {e}");
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
