//! `export-records`: a batched export with progress — the seed's export pattern.
//!
//! Reads the upstream's records page by page and delivers each page as one numbered batch
//! (`PUT` is idempotent per batch number, so a batch sent twice after a crash lands once),
//! then marks the export complete. After every batch it saves a checkpoint (a retry
//! resumes at the next batch) and reports progress — done of total — where operators see
//! it: `GET /api/admin/progress`, the message's page and the dashboard.
//!
//! Upstream contract: `GET {api_base}/records?limit=N[&after=C]` →
//! `{"records": [...], "next": "C2" | null, "total": N}`;
//! `PUT {api_base}/exports/{export_id}/batches/{n}` with `{"records": [...]}`;
//! `POST {api_base}/exports/{export_id}/complete` with `{"batches": n, "records": m}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use vqs::{JobContext, JobError, Jobbable};

use crate::upstream::{CLIENT, UpstreamError, check, json, url, url_with};

/// Records per batch when the params name none.
pub const DEFAULT_BATCH_SIZE: u32 = 100;

/// What to export.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportRecordsParams {
    /// The upstream API's base URL.
    pub api_base: String,
    /// The export's id at the upstream (also the dedup key).
    pub export_id: String,
    /// Records per batch (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
}

/// Where the export stands, saved after every batch.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    batches: u64,
    exported: u64,
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    records: Vec<serde_json::Value>,
    next: Option<String>,
    total: Option<u64>,
}

/// Exports records in batches, reporting progress (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportRecords;

impl Jobbable for ExportRecords {
    type Params = ExportRecordsParams;
    const TOPIC: &'static str = "export-records";

    fn max_attempts(&self) -> u32 {
        5
    }

    /// 30 minutes.
    fn timeout(&self) -> Duration {
        Duration::from_secs(1800)
    }

    fn dedup_key(&self, p: &ExportRecordsParams) -> Option<String> {
        Some(format!("export-records:{}", p.export_id))
    }

    async fn perform(&self, p: ExportRecordsParams, ctx: JobContext) -> Result<(), JobError> {
        if p.export_id.is_empty() || !p.export_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(JobError::fatal(format!(
                "invalid export_id {:?}: use letters, digits, '-' and '_'",
                p.export_id
            )));
        }
        let limit = p.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).clamp(1, 10_000);
        let mut cp: Checkpoint = ctx.checkpoint().await?.unwrap_or_default();
        if cp.batches > 0 {
            tracing::info!(batches = cp.batches, exported = cp.exported, "resuming the export");
        }
        loop {
            let limit_s = limit.to_string();
            let mut query = vec![("limit", limit_s.as_str())];
            if let Some(after) = &cp.after {
                query.push(("after", after));
            }
            let target = url_with(&p.api_base, "records", &query).map_err(UpstreamError::into_job_error)?;
            let page: Page = fetch(CLIENT.get(target)).await?;
            if !page.records.is_empty() {
                let n = cp.batches + 1;
                let put = CLIENT
                    .put(url(&p.api_base, &format!("exports/{}/batches/{n}", p.export_id)))
                    .json(&json!({ "records": page.records }))
                    .send()
                    .await
                    .map_err(|e| UpstreamError::from(e).into_job_error())?;
                check(&put).map_err(UpstreamError::into_job_error)?;
                cp.batches = n;
                cp.exported += page.records.len() as u64;
                cp.after = page.next.clone().or(cp.after.take());
                ctx.save_checkpoint(&cp).await?;
                let note = format!("batch {n} delivered");
                ctx.report_progress(cp.exported, page.total, Some(&note)).await?;
            }
            if page.next.is_none() || page.records.is_empty() {
                break;
            }
        }
        let done = CLIENT
            .post(url(&p.api_base, &format!("exports/{}/complete", p.export_id)))
            .json(&json!({ "batches": cp.batches, "records": cp.exported }))
            .send()
            .await
            .map_err(|e| UpstreamError::from(e).into_job_error())?;
        check(&done).map_err(UpstreamError::into_job_error)?;
        ctx.report_progress(cp.exported, Some(cp.exported), Some("complete")).await?;
        tracing::info!(batches = cp.batches, records = cp.exported, "export complete");
        Ok(())
    }
}

async fn fetch(req: reqwest::RequestBuilder) -> Result<Page, JobError> {
    let resp = req.send().await.map_err(|e| UpstreamError::from(e).into_job_error())?;
    json(resp).await.map_err(UpstreamError::into_job_error)
}
