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
    /// What a Vercel deployment (and the Vercel-facing tests) read.
    pub vercel: VercelEnv,
}

/// The environment of a deployment on Vercel, and where the local dispatcher pushes to
/// functions this process does not serve.
#[derive(Clone, Default)]
pub struct VercelEnv {
    /// `VERCEL_OIDC_TOKEN`: the bearer for Vercel's queue service when a request carries no
    /// `x-vercel-oidc-token` header.
    pub oidc_token: Option<String>,
    /// `VERCEL_DEPLOYMENT_ID`: sends are delivered to this deployment's consumers.
    pub deployment_id: Option<String>,
    /// `VERCEL_REGION`: the queue service region to publish to (default `iad1`).
    pub region: Option<String>,
    /// `VQS_VERCEL_QUEUE_URL`: send Vercel-bound queue calls to this base URL instead of
    /// `https://{region}.vercel-queue.com` (e.g. `http://127.0.0.1:3000/_vqs`, to run a
    /// Vercel function against the local queue service); the SDK's `resolveBaseUrl`.
    pub queue_base_url: Option<String>,
    /// `VQS_FUNCTION_URLS`: a JSON object from a `functions` key of vercel.json to the URL
    /// the local dispatcher pushes to, for consumer functions another process serves
    /// (e.g. `{"api/queue/orders.js": "http://127.0.0.1:4001/api/queue/orders"}`).
    pub function_urls: BTreeMap<String, String>,
}

impl std::fmt::Debug for VercelEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VercelEnv")
            .field("oidc_token", &self.oidc_token.as_ref().map(|_| "[set]"))
            .field("deployment_id", &self.deployment_id)
            .field("region", &self.region)
            .field("queue_base_url", &self.queue_base_url)
            .field("function_urls", &self.function_urls)
            .finish()
    }
}

impl VercelEnv {
    /// Read the variables of [`VercelEnv`].
    pub fn from_env() -> Result<VercelEnv> {
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
            .field("vercel", &self.vercel)
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

fn env_duration(name: &str, default: Duration) -> Result<Duration> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_duration(&v)
            .filter(|d| !d.is_zero())
            .with_context(|| format!("{name} must be a duration like 90s, 30m, 12h or 7d, got {v:?}")),
        _ => Ok(default),
    }
}

fn env_count(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().with_context(|| format!("{name} must be a whole number (0 = no limit), got {v:?}"))
        }
        _ => Ok(default),
    }
}

/// The retention policy from `VQS_RETENTION_*` and `VQS_PRUNE_BATCH` (defaults: [`RetentionConfig::default`]).
pub fn retention_from_env() -> Result<RetentionConfig> {
    let d = RetentionConfig::default();
    let batch = env_count("VQS_PRUNE_BATCH", u64::from(d.batch))?;
    if !(1..=100_000).contains(&batch) {
        bail!("VQS_PRUNE_BATCH must be 1 to 100000 rows, got {batch}");
    }
    Ok(RetentionConfig {
        executions: env_duration("VQS_RETENTION_EXECUTIONS", d.executions)?,
        max_executions: env_count("VQS_RETENTION_EXECUTIONS_MAX", d.max_executions)?,
        messages: env_duration("VQS_RETENTION_MESSAGES", d.messages)?,
        max_messages: env_count("VQS_RETENTION_MESSAGES_MAX", d.max_messages)?,
        cron_runs: env_duration("VQS_RETENTION_CRON_RUNS", d.cron_runs)?,
        max_cron_runs: env_count("VQS_RETENTION_CRON_RUNS_MAX", d.max_cron_runs)?,
        dead_letters: env_duration("VQS_RETENTION_DEAD_LETTERS", d.dead_letters)?,
        batch: batch as u32,
    })
}

fn secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

impl Config {
    /// Read the environment (see the README's configuration table).
    pub fn from_env() -> Result<Config> {
        let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
        let port: u16 = match std::env::var("PORT") {
            Ok(p) => p.parse().with_context(|| format!("PORT must be a port number, got {p:?}"))?,
            Err(_) => 3000,
        };
        let addr = format!("{host}:{port}")
            .parse::<SocketAddr>()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .with_context(|| format!("HOST must be an IP address, got {host:?}"))?;
        Ok(Config {
            database_url: std::env::var("DATABASE_URL")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            addr,
            vercel_json: std::env::var("VQS_VERCEL_JSON").map(PathBuf::from).unwrap_or_else(|_| "vercel.json".into()),
            cron_secret: secret("CRON_SECRET"),
            is_local_dev: std::env::var("IS_LOCAL_DEV").is_ok_and(|v| v == "true"),
            queue_secret: secret("VQS_QUEUE_SECRET"),
            admin_token: secret("VQS_ADMIN_TOKEN"),
            metrics_token: secret("VQS_METRICS_TOKEN"),
            retention: retention_from_env()?,
            lease_seconds: match std::env::var("VQS_LEASE_SECONDS") {
                Ok(v) => v
                    .parse()
                    .ok()
                    .filter(|n| (1..=3600).contains(n))
                    .with_context(|| format!("VQS_LEASE_SECONDS must be 1 to 3600 seconds, got {v:?}"))?,
                Err(_) => 60,
            },
            retry_delay_seconds: match std::env::var("VQS_RETRY_DELAY_SECONDS") {
                Ok(v) => Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=3600).contains(n))
                        .with_context(|| format!("VQS_RETRY_DELAY_SECONDS must be 1 to 3600 seconds, got {v:?}"))?,
                ),
                Err(_) => None,
            },
            vercel: VercelEnv::from_env()?,
        })
    }
}

/// `VQS_DATABASE_POOL_SIZE`: the PostgreSQL connections one process may open (4 to 1000),
/// split between the main pool and the hot path's; `default` when unset.
pub fn database_pool_size(default: vqs_postgres::PgPoolSize) -> Result<vqs_postgres::PgPoolSize> {
    match std::env::var("VQS_DATABASE_POOL_SIZE") {
        Ok(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= 1000)
            .and_then(vqs_postgres::PgPoolSize::total)
            .with_context(|| format!("VQS_DATABASE_POOL_SIZE must be 4 to 1000 connections, got {v:?}")),
        Err(_) => Ok(default),
    }
}

/// `VQS_FUNCTION_MAX_DURATION`: the longest a Vercel Function of this app can run, in
/// seconds (its `maxDuration`; default 800, the most a Rust function gets on any plan). An
/// attempt of a pushed job still `running` after that is closed by the maintenance cron.
pub fn function_max_duration() -> Result<Duration> {
    match std::env::var("VQS_FUNCTION_MAX_DURATION") {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=86_400).contains(n))
            .map(Duration::from_secs)
            .with_context(|| format!("VQS_FUNCTION_MAX_DURATION must be 1 to 86400 seconds, got {v:?}")),
        Err(_) => Ok(Duration::from_secs(800)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
