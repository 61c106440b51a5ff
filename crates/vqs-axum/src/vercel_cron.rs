//! Cron runs called by Vercel Cron, tracked as the local scheduler tracks its own.
//!
//! On Vercel no scheduler runs in the app: Vercel Cron calls each `crons` path itself, with
//! `x-vercel-cron-schedule: <expression>` and `Authorization: Bearer $CRON_SECRET`. Without
//! this layer those runs would leave no `cron_runs` row — every cron would show `late` on
//! the dashboard and in `/api/health` — and a tick Vercel delivers twice (it may) would run
//! twice. With it, an authorised call for a `crons` entry claims its tick (the latest time
//! the schedule names, at or before now) under the same unique key the scheduler uses: the
//! first call runs the route and records how it ended; a second call of the same tick is
//! answered `200 {"skipped": …}` without running it.
//!
//! Only the Vercel app function installs it: locally the scheduler claims the tick before it
//! calls the route, with the same headers.

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use vqs::CronSchedule;
use vqs::store::{CronRunFinishParams, CronRunStartParams};

use crate::state::VqsState;

/// `router` with Vercel Cron's calls tracked in the database (see the module docs).
pub fn track_cron_runs(router: Router, state: VqsState) -> Router {
    router.layer(axum::middleware::from_fn_with_state(state, track))
}

async fn track(State(state): State<VqsState>, req: Request, next: Next) -> Response {
    let Some(schedule) = req.headers().get("x-vercel-cron-schedule").and_then(|v| v.to_str().ok()) else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    let known = state.vercel.crons.iter().any(|c| c.path == path && c.schedule == schedule);
    // Only a call that will be let in claims a tick: an outsider must not be able to spend
    // a tick before Vercel's call arrives.
    let authorised = state.cron_auth.secret().is_some_and(|s| s.matches_bearer(req.headers()));
    if !known || !authorised || req.method() != Method::GET {
        return next.run(req).await;
    }
    let Ok(parsed) = CronSchedule::parse(schedule) else {
        return next.run(req).await; // vercel.json was validated at start-up; cannot happen
    };
    let (path, schedule) = (path.to_owned(), schedule.to_owned());
    let now = state.queue.clock().now();
    let scheduled_at = latest_tick(&parsed, now);
    let claimed = state
        .queue
        .cron_run_start(CronRunStartParams { path: path.clone(), schedule: schedule.clone(), scheduled_at, now })
        .await;
    let run_id = match claimed {
        Ok(Some(id)) => id,
        Ok(None) => {
            tracing::info!(cron.path = %path, tick = %scheduled_at, "Vercel Cron called a tick that already ran: skipped");
            let body = json!({ "skipped": "this tick already ran", "scheduled_at": scheduled_at });
            return (StatusCode::OK, Json(body)).into_response();
        }
        Err(e) => {
            // Tracking must not stop the cron: run it untracked, and say so.
            tracing::warn!(cron.path = %path, error = %e, "could not record a Vercel Cron run; running it untracked");
            return next.run(req).await;
        }
    };
    let response = next.run(req).await;
    let status = response.status();
    let success = status.is_success();
    let error = (!success).then(|| format!("answered {}", status.as_u16()));
    let finish = CronRunFinishParams {
        id: run_id,
        status_code: Some(status.as_u16()),
        success,
        error,
        now: state.queue.clock().now(),
    };
    if let Err(e) = state.queue.cron_run_finish(finish).await {
        tracing::warn!(cron.path = %path, error = %e, "could not record the end of a Vercel Cron run");
    }
    response
}

/// The latest instant `schedule` names at or before `now` (whole minutes, UTC). Vercel fires
/// within the minute (Pro) or within the hour (Hobby) after it.
pub fn latest_tick(schedule: &CronSchedule, now: DateTime<Utc>) -> DateTime<Utc> {
    let mut window = chrono::Duration::minutes(2);
    // Widen the look-back until it holds a tick (a yearly schedule needs ~9 widenings).
    for _ in 0..12 {
        if let Some(from) = now.checked_sub_signed(window)
            && let Some(mut tick) = schedule.next_after(from).filter(|t| *t <= now)
        {
            while let Some(later) = schedule.next_after(tick).filter(|t| *t <= now) {
                tick = later;
            }
            return tick;
        }
        window = window * 4;
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_latest_tick_at_or_before_now() {
        let at = |h, m, s| Utc.with_ymd_and_hms(2026, 12, 2, h, m, s).unwrap();
        let hourly = CronSchedule::parse("0 * * * *").unwrap();
        assert_eq!(latest_tick(&hourly, at(14, 0, 30)), at(14, 0, 0));
        assert_eq!(latest_tick(&hourly, at(14, 59, 59)), at(14, 0, 0));
        let five = CronSchedule::parse("*/5 * * * *").unwrap();
        assert_eq!(latest_tick(&five, at(14, 7, 0)), at(14, 5, 0));
        let daily = CronSchedule::parse("0 3 * * *").unwrap();
        assert_eq!(latest_tick(&daily, at(2, 0, 0)), Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap());
    }
}
