//! Configuration from the environment: the only place the app reads env vars.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use vqs::RetentionConfig;

/// The default database: a SQLite file under `.vqs/` in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://.vqs/vqs.db";

/// Everything the app reads from its environment.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub addr: SocketAddr,
    pub vercel_json: PathBuf,
    pub cron_secret: Option<String>,
    pub is_local_dev: bool,
    pub queue_secret: Option<String>,
    pub admin_token: Option<String>,
    /// `VQS_METRICS_TOKEN`: a read-only bearer token for `GET /metrics` (the admin token works too).
    pub metrics_token: Option<String>,
    /// What retention keeps (`VQS_RETENTION_*`, `VQS_PRUNE_BATCH`).
    pub retention: RetentionConfig,
    /// How long a pushed delivery is leased before it is redelivered (`VQS_LEASE_SECONDS`,
    /// default 60, as Vercel). A consumer extends the lease when its job's timeout needs more.
    pub lease_seconds: u32,
    /// `VQS_RETRY_DELAY_SECONDS`: when set, every job's failed attempt is retried after this
    /// many seconds instead of its own retry policy (`(10 · n)²` s by default). For fault and
    /// load drills that must see retries happen within a test; leave it unset in production.
    pub retry_delay_seconds: Option<u32>,
    /// Crash rescue's heartbeat (`VQS_HEARTBEAT_SECONDS`, default 10; `VQS_DEAD_AFTER_SECONDS`,
    /// default 45, more than two beats): a process silent that long has its jobs redelivered.
    pub lifeline: vqs::LifelineConfig,
    /// What a Vercel deployment (and the Vercel-facing tests) read.
    pub vercel: VercelEnv,
    /// Connection limits and the shutdown grace of `serve` (`VQS_HTTP_*`, `VQS_SHUTDOWN_GRACE_SECONDS`).
    pub server: vqs_axum::ServerLimits,
    /// `VQS_GROUP_CONCURRENCY` (`probe=1,sync-patient=4`): a topic's group concurrency in
    /// place of its job's `Jobbable::group_concurrency` (drills and tests; the job type is
    /// the place for a default).
    pub group_concurrency: BTreeMap<String, u32>,
    /// `VQS_STATS_ROLLUP_SECONDS` (1–3600, default 60): how often the dashboard's per-minute
    /// figures are rolled up from the executions.
    pub stats_rollup_seconds: u32,
    /// `VQS_WORKER_CONCURRENCY` (1–10,000): jobs of each queue trigger this process runs at
    /// once, at most (never more than the trigger's `maxConcurrency`, which limits every
    /// process together). Unset: the trigger's `maxConcurrency`, else 100.
    pub worker_concurrency: Option<u32>,
}

pub use vqs_axum::VercelEnv;

/// Read the variables of [`VercelEnv`].
pub fn vercel_env_from_env() -> Result<VercelEnv> {
    let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let function_urls = match var("VQS_FUNCTION_URLS") {
        None => BTreeMap::new(),
        Some(v) => serde_json::from_str::<BTreeMap<String, String>>(&v).with_context(|| {
            "VQS_FUNCTION_URLS must be a JSON object from a vercel.json functions key to a URL, \
             like {\"api/queue/orders.js\": \"http://127.0.0.1:4001/api/queue/orders\"}"
        })?,
    };
    for (key, url) in &function_urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("VQS_FUNCTION_URLS[{key:?}] must be an http:// or https:// URL, got {url:?}");
        }
    }
    Ok(VercelEnv {
        oidc_token: var("VERCEL_OIDC_TOKEN"),
        deployment_id: var("VERCEL_DEPLOYMENT_ID"),
        region: var("VERCEL_REGION"),
        queue_base_url: var("VQS_VERCEL_QUEUE_URL"),
        function_urls,
    })
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &Option<String>| if s.is_some() { "[set]" } else { "[unset]" };
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("addr", &self.addr)
            .field("vercel_json", &self.vercel_json)
            .field("cron_secret", &set(&self.cron_secret))
            .field("is_local_dev", &self.is_local_dev)
            .field("queue_secret", &set(&self.queue_secret))
            .field("admin_token", &set(&self.admin_token))
            .field("metrics_token", &set(&self.metrics_token))
            .field("retention", &self.retention)
            .field("lease_seconds", &self.lease_seconds)
            .field("retry_delay_seconds", &self.retry_delay_seconds)
            .field("lifeline", &self.lifeline)
            .field("vercel", &self.vercel)
            .field("server", &self.server)
            .field("group_concurrency", &self.group_concurrency)
            .field("stats_rollup_seconds", &self.stats_rollup_seconds)
            .field("worker_concurrency", &self.worker_concurrency)
            .finish()
    }
}

/// The URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:[redacted]{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// How logs are written: human-readable lines (default) or one JSON object per line
/// (`VQS_LOG_FORMAT=json`). Read before anything else, so start-up errors use it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `VQS_LOG_FORMAT`: `text` (default) or `json`.
pub fn log_format() -> Result<LogFormat> {
    match std::env::var("VQS_LOG_FORMAT").as_deref() {
        Err(_) | Ok("") | Ok("text") => Ok(LogFormat::Text),
        Ok("json") => Ok(LogFormat::Json),
        Ok(other) => bail!("VQS_LOG_FORMAT must be text or json, got {other:?}"),
    }
}

/// Where job spans go (`--features otel`): on when `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (the exporter reads them, and
/// `OTEL_EXPORTER_OTLP_HEADERS`, as every OpenTelemetry SDK does); `OTEL_SERVICE_NAME`
/// names the service (default `vqs-web`).
#[cfg(feature = "otel")]
pub fn otel_config() -> Option<vqs_otel::OtlpConfig> {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return None;
    }
    let service_name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty());
    Some(vqs_otel::OtlpConfig { endpoint: None, service_name: service_name.unwrap_or_else(|| "vqs-web".into()) })
}

/// Whether the text logs are coloured: only on a terminal, and not when `NO_COLOR` is set
/// (no-color.org). Logs piped to a file, a collector or Vercel's log viewer get no escape
/// codes.
pub fn log_colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The `RUST_LOG` filter, or the default.
pub fn log_filter() -> String {
    std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "info,sqlx=warn".into())
}

/// A duration: a whole number with a unit, `s`, `m`, `h` or `d` (`90s`, `12h`, `7d`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit = match s.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = s[..s.len() - 1].parse().ok()?;
    n.checked_mul(unit).map(Duration::from_secs)
}

/// A variable's value: `None` when unset or blank; an error naming it when it is not UTF-8
/// (read as unset, a mistyped byte would silently give the default).
fn var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => bail!("{name} is not valid UTF-8: {v:?}"),
    }
}

/// The longest retention a setting may ask for: 10 years (a longer one is a typo, and dates
/// that far back are where date arithmetic overflows).
pub const MAX_RETENTION_SETTING: Duration = Duration::from_secs(3650 * 86_400);
/// The largest count limit a setting may ask for.
pub const MAX_COUNT_SETTING: u64 = 1_000_000_000_000;

/// A duration setting: `value` parsed by [`parse_duration`], within `min..=max`; the error
/// names the variable, the value and the range.
pub fn duration_setting(name: &str, value: &str, min: Duration, max: Duration) -> Result<Duration> {
    let range = format!("{} to {}", show_duration(min), show_duration(max));
    match parse_duration(value) {
        Some(d) if (min..=max).contains(&d) => Ok(d),
        _ => bail!(
            "{name} must be a duration from {range} (a whole number with s, m, h or d: 90s, 30m, 12h, 7d), got {value:?}"
        ),
    }
}

fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// A whole-number setting within `min..=max` (`what` names the unit: "seconds", "rows", …);
/// the error names the variable, the value and the range.
pub fn number_setting(name: &str, value: &str, min: u64, max: u64, what: &str) -> Result<u64> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => bail!("{name} must be a whole number of {what} from {min} to {max}, got {value:?}"),
    }
}

fn env_duration(name: &str, default: Duration) -> Result<Duration> {
    match var(name)? {
        Some(v) => duration_setting(name, &v, Duration::from_secs(1), MAX_RETENTION_SETTING),
        None => Ok(default),
    }
}

fn env_number(name: &str, default: u64, min: u64, max: u64, what: &str) -> Result<u64> {
    match var(name)? {
        Some(v) => number_setting(name, &v, min, max, what),
        None => Ok(default),
    }
}

fn env_count(name: &str, default: u64) -> Result<u64> {
    env_number(name, default, 0, MAX_COUNT_SETTING, "rows (0 = no limit)")
}

/// The retention policy from `VQS_RETENTION_*` and `VQS_PRUNE_BATCH` (defaults: [`RetentionConfig::default`]).
pub fn retention_from_env() -> Result<RetentionConfig> {
    let d = RetentionConfig::default();
    let batch = env_number("VQS_PRUNE_BATCH", u64::from(d.batch), 1, 100_000, "rows")?;
    Ok(RetentionConfig {
        executions: env_duration("VQS_RETENTION_EXECUTIONS", d.executions)?,
        max_executions: env_count("VQS_RETENTION_EXECUTIONS_MAX", d.max_executions)?,
        messages: env_duration("VQS_RETENTION_MESSAGES", d.messages)?,
        max_messages: env_count("VQS_RETENTION_MESSAGES_MAX", d.max_messages)?,
        cron_runs: env_duration("VQS_RETENTION_CRON_RUNS", d.cron_runs)?,
        max_cron_runs: env_count("VQS_RETENTION_CRON_RUNS_MAX", d.max_cron_runs)?,
        dead_letters: env_duration("VQS_RETENTION_DEAD_LETTERS", d.dead_letters)?,
        batch: u32::try_from(batch).unwrap_or(u32::MAX),
    })
}

/// The connection limits and shutdown grace of `serve` (defaults: [`vqs_axum::ServerLimits::default`]).
pub fn server_limits_from_env() -> Result<vqs_axum::ServerLimits> {
    let d = vqs_axum::ServerLimits::default();
    let seconds = |name: &str, default: Duration, max: u64| -> Result<Duration> {
        env_number(name, default.as_secs(), 1, max, "seconds").map(Duration::from_secs)
    };
    Ok(vqs_axum::ServerLimits {
        header_timeout: seconds("VQS_HTTP_HEADER_TIMEOUT_SECONDS", d.header_timeout, 3600)?,
        body_timeout: seconds("VQS_HTTP_BODY_TIMEOUT_SECONDS", d.body_timeout, 3600)?,
        idle_timeout: seconds("VQS_HTTP_IDLE_TIMEOUT_SECONDS", d.idle_timeout, 3600)?,
        max_connections: usize::try_from(env_number(
            "VQS_HTTP_MAX_CONNECTIONS",
            d.max_connections as u64,
            1,
            1_000_000,
            "connections",
        )?)
        .unwrap_or(usize::MAX),
        max_body_bytes: usize::try_from(env_number(
            "VQS_HTTP_MAX_BODY_BYTES",
            d.max_body_bytes as u64,
            1024,
            1 << 30,
            "bytes",
        )?)
        .unwrap_or(usize::MAX),
        shutdown_grace: seconds("VQS_SHUTDOWN_GRACE_SECONDS", d.shutdown_grace, 3600)?,
    })
}

fn secret(name: &str) -> Result<Option<String>> {
    var(name)
}

impl Config {
    /// Read the environment (see the README's configuration table).
    pub fn from_env() -> Result<Config> {
        let host = var("HOST")?.unwrap_or_else(|| "127.0.0.1".into());
        let port = match var("PORT")? {
            Some(p) => u16::try_from(number_setting("PORT", &p, 0, 65_535, "a port")?).unwrap_or(3000),
            None => 3000,
        };
        let addr = format!("{host}:{port}")
            .parse::<SocketAddr>()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .with_context(|| format!("HOST must be an IP address, got {host:?}"))?;
        Ok(Config {
            database_url: var("DATABASE_URL")?.unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            addr,
            vercel_json: std::env::var("VQS_VERCEL_JSON").map(PathBuf::from).unwrap_or_else(|_| "vercel.json".into()),
            cron_secret: secret("CRON_SECRET")?,
            is_local_dev: std::env::var("IS_LOCAL_DEV").is_ok_and(|v| v == "true"),
            queue_secret: secret("VQS_QUEUE_SECRET")?,
            admin_token: secret("VQS_ADMIN_TOKEN")?,
            metrics_token: secret("VQS_METRICS_TOKEN")?,
            retention: retention_from_env()?,
            lease_seconds: u32::try_from(env_number("VQS_LEASE_SECONDS", 60, 1, 3600, "seconds")?).unwrap_or(60),
            retry_delay_seconds: match var("VQS_RETRY_DELAY_SECONDS")? {
                Some(v) => u32::try_from(number_setting("VQS_RETRY_DELAY_SECONDS", &v, 1, 3600, "seconds")?).ok(),
                None => None,
            },
            lifeline: lifeline_from_env()?,
            vercel: vercel_env_from_env()?,
            server: server_limits_from_env()?,
            group_concurrency: group_concurrency_from_env()?,
            stats_rollup_seconds: u32::try_from(env_number("VQS_STATS_ROLLUP_SECONDS", 60, 1, 3600, "seconds")?)
                .unwrap_or(60),
            worker_concurrency: match var("VQS_WORKER_CONCURRENCY")? {
                Some(v) => u32::try_from(number_setting("VQS_WORKER_CONCURRENCY", &v, 1, 10_000, "jobs")?).ok(),
                None => None,
            },
        })
    }
}

/// `VQS_GROUP_CONCURRENCY`: comma-separated `topic=N`, N from 1 to 10,000.
fn group_concurrency_from_env() -> Result<BTreeMap<String, u32>> {
    let Some(v) = var("VQS_GROUP_CONCURRENCY")? else { return Ok(BTreeMap::new()) };
    parse_group_concurrency(&v)
}

/// `topic=N,topic=N` as a map; the error names the variable and what to write.
pub fn parse_group_concurrency(v: &str) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((topic, n)) = part.split_once('=') else {
            bail!(
                "VQS_GROUP_CONCURRENCY must be topic=N pairs separated by commas (probe=1,sync-patient=4), got {part:?}"
            );
        };
        let n = number_setting("VQS_GROUP_CONCURRENCY", n.trim(), 1, 10_000, "leases per group")?;
        out.insert(topic.trim().to_owned(), u32::try_from(n).unwrap_or(1));
    }
    Ok(out)
}

/// Secrets shorter than this are warned about at start-up.
pub const MIN_SECRET_LEN: usize = 16;

impl Config {
    /// What is weak about the secrets: one shorter than [`MIN_SECRET_LEN`], or one value
    /// used for two purposes (a leak of one then grants the other's powers too). Each
    /// warning names the variables, never a value. `web serve` logs them at start-up.
    pub fn secret_warnings(&self) -> Vec<String> {
        let secrets = [
            ("VQS_ADMIN_TOKEN", &self.admin_token),
            ("VQS_QUEUE_SECRET", &self.queue_secret),
            ("CRON_SECRET", &self.cron_secret),
            ("VQS_METRICS_TOKEN", &self.metrics_token),
        ];
        let set: Vec<(&str, auth::Secret)> =
            secrets.iter().filter_map(|(name, v)| Some((*name, auth::Secret::new((*v).clone())?))).collect();
        let mut warnings = Vec::new();
        for (name, secret) in &set {
            let len = secret.expose().chars().count();
            if len < MIN_SECRET_LEN {
                warnings.push(format!(
                    "{name} is only {len} characters long: use at least {MIN_SECRET_LEN} random characters \
                     (e.g. `openssl rand -hex 32`)"
                ));
            }
        }
        for (i, (a, sa)) in set.iter().enumerate() {
            for (b, sb) in &set[i + 1..] {
                // Constant time, as every comparison of a secret.
                if sa.matches(sb.expose()) {
                    warnings.push(format!(
                        "{a} and {b} have the same value: a leak of one grants the other's access too; \
                         give each its own random value"
                    ));
                }
            }
        }
        warnings
    }
}

/// `VQS_HEARTBEAT_SECONDS` (1 to 60, default 10) and `VQS_DEAD_AFTER_SECONDS` (default 45,
/// up to 3600, longer than two heartbeats).
fn lifeline_from_env() -> Result<vqs::LifelineConfig> {
    let seconds = |name: &str, default: Duration, max: u64| -> Result<Duration> {
        match var(name)? {
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .map(Duration::from_secs)
                .with_context(|| format!("{name} must be 1 to {max} seconds, got {v:?}")),
            None => Ok(default),
        }
    };
    let lifeline = vqs::LifelineConfig {
        beat: seconds("VQS_HEARTBEAT_SECONDS", vqs::DEFAULT_BEAT_INTERVAL, 60)?,
        dead_after: seconds("VQS_DEAD_AFTER_SECONDS", vqs::DEFAULT_DEAD_AFTER, 3600)?,
    };
    lifeline.check().map_err(|e| anyhow::anyhow!("VQS_HEARTBEAT_SECONDS / VQS_DEAD_AFTER_SECONDS: {e}"))?;
    Ok(lifeline)
}

/// `VQS_DATABASE_POOL_SIZE`: the PostgreSQL connections one process may open (4 to 1000),
/// split between the main pool and the hot path's; `default` when unset.
pub fn database_pool_size(default: vqs_postgres::PgPoolSize) -> Result<vqs_postgres::PgPoolSize> {
    match var("VQS_DATABASE_POOL_SIZE")? {
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= 1000)
            .and_then(vqs_postgres::PgPoolSize::total)
            .with_context(|| format!("VQS_DATABASE_POOL_SIZE must be 4 to 1000 connections, got {v:?}")),
        None => Ok(default),
    }
}

/// `VQS_FUNCTION_MAX_DURATION`: the longest a Vercel Function of this app can run, in
/// seconds (its `maxDuration`; default 800, the most a Rust function gets on any plan). An
/// attempt of a pushed job still `running` after that is closed by the maintenance cron.
pub fn function_max_duration() -> Result<Duration> {
    match var("VQS_FUNCTION_MAX_DURATION")? {
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=86_400).contains(n))
            .map(Duration::from_secs)
            .with_context(|| format!("VQS_FUNCTION_MAX_DURATION must be 1 to 86400 seconds, got {v:?}")),
        None => Ok(Duration::from_secs(800)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_shared_secrets_are_warned_about_by_name_only() {
        let config = |admin: &str, queue: &str, cron: &str| Config {
            database_url: DEFAULT_DATABASE_URL.into(),
            addr: "127.0.0.1:3000".parse().unwrap(),
            vercel_json: "vercel.json".into(),
            cron_secret: Some(cron.into()),
            is_local_dev: false,
            queue_secret: Some(queue.into()),
            admin_token: Some(admin.into()),
            metrics_token: None,
            retention: RetentionConfig::default(),
            lease_seconds: 60,
            retry_delay_seconds: None,
            lifeline: Default::default(),
            vercel: VercelEnv::default(),
            server: Default::default(),
            group_concurrency: BTreeMap::new(),
            stats_rollup_seconds: 60,
            worker_concurrency: None,
        };
        let strong = "0123456789abcdef0123";
        assert!(config(strong, &format!("{strong}q"), &format!("{strong}c")).secret_warnings().is_empty());
        let w = config("hunter2", &format!("{strong}q"), &format!("{strong}c")).secret_warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("VQS_ADMIN_TOKEN is only 7 characters long"), "{w:?}");
        let w = config(strong, strong, &format!("{strong}c")).secret_warnings();
        assert_eq!(
            w,
            vec![format!(
                "VQS_ADMIN_TOKEN and VQS_QUEUE_SECRET have the same value: a leak of one grants the other's access too; \
             give each its own random value"
            )]
        );
        for w in config("hunter2", "hunter2", "hunter2").secret_warnings() {
            assert!(!w.contains("hunter2"), "{w}");
        }
        assert_eq!(config("hunter2", "hunter2", "hunter2").secret_warnings().len(), 3 + 3);
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("12h"), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        for bad in ["", "7", "d", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
