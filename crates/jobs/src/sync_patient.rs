use serde::{Deserialize, Serialize};
use vqs::{JobContext, JobError, Jobbable};

/// What to sync: every patient changed in one hourly window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncPatientParams {
    /// The window's start, RFC 3339 (the cron passes the hour it fired in).
    pub window_start: String,
    /// Patients to sync in this window.
    #[serde(default)]
    pub patient_ids: Vec<String>,
}

/// Progress saved between attempts, so a retry resumes after the last synced patient.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    done: usize,
}

/// Syncs patients changed in a window; enqueued hourly by `/api/cron/sync-patients`.
///
/// Dedup key: the window, so a cron tick delivered twice queues one sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncPatient;

impl Jobbable for SyncPatient {
    type Params = SyncPatientParams;
    const TOPIC: &'static str = "sync-patient";

    fn max_attempts(&self) -> u32 {
        5
    }

    fn dedup_key(&self, p: &SyncPatientParams) -> Option<String> {
        Some(format!("sync-patient:{}", p.window_start))
    }

    async fn perform(&self, params: SyncPatientParams, ctx: JobContext) -> Result<(), JobError> {
        let mut cursor: Cursor = ctx.checkpoint().await?.unwrap_or_default();
        for id in params.patient_ids.iter().skip(cursor.done) {
            if id.trim().is_empty() {
                return Err(JobError::fatal(format!("patient #{} has an empty id", cursor.done + 1)));
            }
            tracing::info!(patient.id = %id, window = %params.window_start, "patient synced");
            cursor.done += 1;
            ctx.save_checkpoint(&cursor).await?;
        }
        Ok(())
    }
}
