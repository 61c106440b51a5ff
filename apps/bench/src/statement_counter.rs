//! Counting the SQL statements the process executes, from outside the engine: sqlx reports
//! every statement as a `sqlx::query` tracing event (at DEBUG), and a layer here counts
//! them. Installed only for the round-trip workload; otherwise the events stay disabled and
//! cost nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

static STATEMENTS: AtomicU64 = AtomicU64::new(0);
static BEGINS: AtomicU64 = AtomicU64::new(0);
static COMMITS: AtomicU64 = AtomicU64::new(0);

/// Statements counted so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statements {
    /// Every statement, `BEGIN` and `COMMIT` included.
    pub all: u64,
    pub begins: u64,
    pub commits: u64,
}

impl std::ops::Sub for Statements {
    type Output = Statements;
    fn sub(self, o: Statements) -> Statements {
        Statements { all: self.all - o.all, begins: self.begins - o.begins, commits: self.commits - o.commits }
    }
}

pub fn snapshot() -> Statements {
    Statements {
        all: STATEMENTS.load(Ordering::Acquire),
        begins: BEGINS.load(Ordering::Acquire),
        commits: COMMITS.load(Ordering::Acquire),
    }
}

/// The benchmark's logging: the web binary's default filter (`info,sqlx=warn`; `RUST_LOG`
/// overrides) on stderr, so the in-process worker pays for its spans as `web serve` does —
/// less sqlx's pool warnings, which a burst of 1,000 concurrent sends on a 16-connection
/// pool (slow acquires) and a dropped database (connections closed under the pool) make
/// by design here, and the start-up lines of each measurement's worker. Plus the statement counter when `count_statements`.
pub fn init_tracing(count_statements: bool) {
    use std::io::IsTerminal;
    let default = "info,sqlx=warn,sqlx::pool=error,sqlx_core::pool=error,sqlx::query=error,web::runtime=warn,vqs_axum::workers=warn";
    let fmt = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)));
    let counter = count_statements.then(|| Counter.with_filter(filter_fn(|m| m.target() == "sqlx::query")));
    tracing_subscriber::registry().with(fmt).with(counter).init();
}

struct Counter;

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut summary = Summary(None);
        event.record(&mut summary);
        STATEMENTS.fetch_add(1, Ordering::AcqRel);
        let word = summary.0.unwrap_or_default();
        if word.eq_ignore_ascii_case("begin") {
            BEGINS.fetch_add(1, Ordering::AcqRel);
        } else if word.eq_ignore_ascii_case("commit") {
            COMMITS.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The first word of the event's `summary` field (sqlx puts the statement's first words there).
struct Summary(Option<String>);

impl Visit for Summary {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.0 = value.split_whitespace().next().map(str::to_owned);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            let text = format!("{value:?}");
            self.0 = text.trim_matches('"').split_whitespace().next().map(str::to_owned);
        }
    }
}
