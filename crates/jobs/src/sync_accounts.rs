//! `sync-accounts`: incremental sync of many accounts from an upstream API — the seed's
//! sync pattern.
//!
//! - **Incremental**: each account's cursor is kept in the sync log (`ctx.sync_log`); a run
//!   asks the upstream only for what changed since, page by page.
//! - **Resumable**: progress within a run (accounts done, the page cursor of the account
//!   in progress) is the message's checkpoint, so a retry resumes instead of starting over.
//! - **Isolated**: one failing account never stops the others. It is recorded in the sync
//!   log (`last_error`), the others go on, and the attempt then fails: retryably (only the
//!   failed accounts run again), or fatally when every failure is permanent (the upstream
//!   answered 4xx: fix it there, then replay the dead letter).
//! - **Dry run**: `dry_run: true` reads everything and writes nothing — no cursor moves, no
//!   sync log entry, no checkpoint — and reports what it would have synced.
//!
//! Upstream contract: `GET {api_base}/accounts/{account}/changes?limit=N[&cursor=C]` →
//! `{"items": [...], "next_cursor": "C2", "has_more": bool}`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vqs::{JobContext, JobError, Jobbable};

use crate::upstream::{CLIENT, UpstreamError, json, url_with};

/// Page size when the params name none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// What to sync.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncAccountsParams {
    /// The upstream API's base URL.
    pub api_base: String,
    /// The accounts to sync, each on its own.
    pub accounts: Vec<String>,
    /// Read, count and report; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Items per upstream page (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
}

/// Progress of one message, saved after every page.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    /// Accounts finished by an earlier attempt of this message.
    done: BTreeSet<String>,
    /// The page cursor of an account in progress.
    cursors: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<serde_json::Value>,
    next_cursor: Option<String>,
    #[serde(default)]
    has_more: bool,
}

/// Syncs accounts incrementally from an upstream API (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncAccounts;

impl Jobbable for SyncAccounts {
    type Params = SyncAccountsParams;
    const TOPIC: &'static str = "sync-accounts";

    fn max_attempts(&self) -> u32 {
        5
    }

    /// 10 minutes.
    fn timeout(&self) -> Duration {
        Duration::from_secs(600)
    }

    // No dedup key: a key dedups for the message's whole retention (24 h, as on Vercel), so
    // one derived from the accounts would drop every later incremental sync of them for a
    // day. A caller that wants one sync per window passes a key naming the window
    // (`PerformOpts::idempotency_key`, e.g. `sync-accounts:acme:2026-01-05T10`).

    async fn perform(&self, params: SyncAccountsParams, ctx: JobContext) -> Result<(), JobError> {
        if params.accounts.iter().any(|a| a.trim().is_empty()) {
            return Err(JobError::fatal("an account name is empty"));
        }
        let mut cp: Checkpoint =
            if params.dry_run { Checkpoint::default() } else { ctx.checkpoint().await?.unwrap_or_default() };
        let total = params.accounts.len() as u64;
        let mut failures: Vec<(String, UpstreamError)> = Vec::new();
        let mut items_total = 0u64;
        for account in &params.accounts {
            if cp.done.contains(account) {
                continue;
            }
            match sync_one(&params, account, &mut cp, &ctx).await {
                Ok(n) => {
                    items_total += n;
                    tracing::info!(account, items = n, dry_run = params.dry_run, "account synced");
                    cp.done.insert(account.clone());
                    cp.cursors.remove(account);
                    if !params.dry_run {
                        ctx.save_checkpoint(&cp).await?;
                    }
                }
                Err(Failure::Upstream(e)) => {
                    tracing::warn!(account, error = %e.message, "account failed; the others go on");
                    if !params.dry_run {
                        ctx.sync_log_failure(account, &e.message).await?;
                    }
                    failures.push((account.clone(), e));
                }
                Err(Failure::Job(e)) => return Err(e),
            }
            let done = cp.done.len() as u64 + failures.len() as u64;
            let note = format!(
                "{} synced, {} failed{}",
                cp.done.len(),
                failures.len(),
                if params.dry_run {
                    format!(" (dry run: {items_total} items would be applied)")
                } else {
                    String::new()
                }
            );
            ctx.report_progress(done, Some(total), Some(&note)).await?;
        }
        if failures.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = failures.iter().map(|(a, e)| format!("{a}: {}", e.message)).collect();
        let message = format!("{} of {} accounts failed: {}", failures.len(), total, listed.join("; "));
        if failures.iter().all(|(_, e)| e.permanent) {
            Err(JobError::fatal(message))
        } else {
            Err(JobError::retryable(message))
        }
    }
}

enum Failure {
    /// This account failed; the others go on.
    Upstream(UpstreamError),
    /// The queue's own storage failed: the attempt stops.
    Job(JobError),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        Failure::Upstream(e)
    }
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        Failure::Job(e)
    }
}

/// Sync one account from where it left off; returns how many items it applied.
async fn sync_one(
    p: &SyncAccountsParams,
    account: &str,
    cp: &mut Checkpoint,
    ctx: &JobContext,
) -> Result<u64, Failure> {
    let mut cursor = match cp.cursors.get(account) {
        Some(c) => Some(c.clone()),
        None => ctx.sync_log(account).await?.and_then(|e| e.cursor),
    };
    let limit = p.page_size.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, 10_000);
    let mut items = 0u64;
    loop {
        let limit_s = limit.to_string();
        let mut query = vec![("limit", limit_s.as_str())];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let target = url_with(&p.api_base, &format!("accounts/{account}/changes"), &query)?;
        let page: Page = json(CLIENT.get(target).send().await.map_err(UpstreamError::from)?).await?;
        // Apply the items here — idempotently, since a retry may see a page again. This
        // example only counts them.
        items += page.items.len() as u64;
        if page.next_cursor.is_some() {
            cursor = page.next_cursor;
        }
        if !p.dry_run
            && let Some(c) = &cursor
        {
            cp.cursors.insert(account.to_owned(), c.clone());
            ctx.save_checkpoint(&*cp).await?;
        }
        if !page.has_more {
            break;
        }
    }
    if !p.dry_run {
        ctx.sync_log_success(account, cursor, items).await?;
    }
    Ok(items)
}
