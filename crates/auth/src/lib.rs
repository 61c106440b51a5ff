//! The cron-secret guard: cron routes need `Authorization: Bearer <CRON_SECRET>`.
//!
//! ```
//! use axum::{Router, routing::get};
//! use auth::{CronAuth, with_cron_secret};
//!
//! // The app reads CRON_SECRET and IS_LOCAL_DEV once, at start-up, and passes the values in.
//! let guard = CronAuth::from_values(Some("s3cret".into()), false);
//! let app: Router = Router::new().route("/api/cron/sync", with_cron_secret(get(|| async { "ok" }), guard));
//! ```
//!
//! | request | answer |
//! | --- | --- |
//! | `Authorization: Bearer <CRON_SECRET>` | the handler runs |
//! | missing, wrong, other scheme, extra spaces | 401, the handler does not run |
//! | `CRON_SECRET` unset (and not the local-dev case) | 401 for every request (fail closed) |
//! | `IS_LOCAL_DEV=true` and the TCP peer is loopback, or an in-process call marked [`TrustedLocalCall`] | the handler runs without a secret |
//!
//! Nothing a client can send opens a route without the secret: `Host`, `X-Forwarded-For`,
//! `X-Real-IP`, `Forwarded`, `User-Agent: vercel-cron/1.0`, `x-vercel-*` are all ignored.
//! The secret is compared in constant time and never logged or echoed.

#![warn(missing_docs)]

mod cron_auth;
mod secret;

pub use cron_auth::{CronAuth, TrustedLocalCall, require_cron_secret, with_cron_secret};
pub use secret::Secret;
