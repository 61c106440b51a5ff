//! Configuration from the environment: the only place the app reads env vars.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};

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
    /// How long a pushed delivery is leased before it is redelivered (`VQS_LEASE_SECONDS`,
    /// default 60, as Vercel). A consumer extends the lease when its job's timeout needs more.
    pub lease_seconds: u32,
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
            .field("lease_seconds", &self.lease_seconds)
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
            lease_seconds: match std::env::var("VQS_LEASE_SECONDS") {
                Ok(v) => v
                    .parse()
                    .ok()
                    .filter(|n| (1..=3600).contains(n))
                    .with_context(|| format!("VQS_LEASE_SECONDS must be 1 to 3600 seconds, got {v:?}"))?,
                Err(_) => 60,
            },
        })
    }
}
