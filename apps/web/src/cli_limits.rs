//! `web limits`, `web limits set <topic> …`, `web limits clear <topic>`: the admin API's
//! limits checks and answers (`vqs_axum::admin_limits`), from the command line.

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

use crate::cli::{LimitsAction, print, s};
use crate::config::Config;

/// A `--concurrency` style value as the admin API's JSON: `none` is null, a number is a
/// number (the API's parser then says what is wrong with it).
fn count_arg(flag: &str, v: &str) -> Result<Value> {
    if v.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    let n: u64 = v.trim().parse().map_err(|_| {
        anyhow!("--{flag} must be a whole number from 1 to {} (or none to clear it), not {v:?}", vqs::MAX_LIMIT)
    })?;
    Ok(json!(n))
}

/// A `--rate N/S` value as the admin API's JSON `{"limit": N, "period_seconds": S}`.
fn rate_arg(flag: &str, v: &str) -> Result<Value> {
    if v.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    let bad = || anyhow!("--{flag} must be N/S, starts per period in seconds, e.g. 10/60 (or none), not {v:?}");
    let (n, s) = v.split_once('/').ok_or_else(bad)?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    let s: u64 = s.trim().parse().map_err(|_| bad())?;
    Ok(json!({ "limit": n, "period_seconds": s }))
}

/// The human view of one topic's limits.
fn limits_text(v: &Value) -> String {
    let f = &v["in_force"];
    let one = |x: &Value| -> String {
        if x.is_null() {
            return "-".into();
        }
        let source = s(&x["source"]);
        match x.get("value") {
            Some(n) => format!("{n} ({source})"),
            None => format!("{}/{}s ({source})", s(&x["limit"]), s(&x["period_seconds"])),
        }
    };
    format!(
        "{:<20} {:<22} {:<26} {:<22} {}\n",
        s(&v["topic"]),
        one(&f["concurrency"]),
        one(&f["rate_limit"]),
        one(&f["group_concurrency"]),
        one(&f["group_rate_limit"])
    )
}

fn limits_header() -> String {
    format!("{:<20} {:<22} {:<26} {:<22} {}\n", "topic", "concurrency", "rate", "group concurrency", "group rate")
}

/// `web limits …`: the admin API's checks and answers.
pub(crate) async fn run(queue: &vqs::Queue, config: &Config, action: Option<LimitsAction>, json: bool) -> Result<()> {
    use vqs_axum::admin_limits::{clear_limits, limits_json_all, parse_patch, set_limits};
    let v = match action {
        None => limits_json_all(queue).await.map_err(|e| anyhow!("{}", e.message))?,
        Some(LimitsAction::Set { topic, concurrency, rate, group_concurrency, group_rate }) => {
            let mut body = serde_json::Map::new();
            if let Some(c) = concurrency {
                body.insert("concurrency".into(), count_arg("concurrency", &c)?);
            }
            if let Some(r) = rate {
                body.insert("rate_limit".into(), rate_arg("rate", &r)?);
            }
            if let Some(c) = group_concurrency {
                body.insert("group_concurrency".into(), count_arg("group-concurrency", &c)?);
            }
            if let Some(r) = group_rate {
                body.insert("group_rate_limit".into(), rate_arg("group-rate", &r)?);
            }
            if body.is_empty() {
                bail!("name at least one of --concurrency, --rate, --group-concurrency, --group-rate");
            }
            let vercel = crate::runtime::load_vercel(&config.vercel_json)?;
            let patch = parse_patch(&serde_json::to_vec(&body)?).map_err(|e| anyhow!("{}", e.message))?;
            set_limits(queue, &vercel, &topic, patch).await.map_err(|e| anyhow!("{}", e.message))?
        }
        Some(LimitsAction::Clear { topic }) => {
            let vercel = crate::runtime::load_vercel(&config.vercel_json)?;
            clear_limits(queue, &vercel, &topic).await.map_err(|e| anyhow!("{}", e.message))?
        }
    };
    print(json, &v, |v| match v.get("limits") {
        Some(all) => {
            let mut out = limits_header();
            for t in all.as_array().into_iter().flatten() {
                out += &limits_text(t);
            }
            out
        }
        None => limits_header() + &limits_text(v),
    });
    Ok(())
}
