//! The bodies of the fuzz targets, one module per target, each a `check(data: &[u8])` that
//! panics when an invariant breaks. The main workspace replays the committed corpus through
//! the same files (`crates/vqs/tests/fuzz_corpus.rs`, `apps/web/tests/fuzz_corpus.rs`
//! include them by path), so the logic is written once and runs on stable there.

pub mod cron_expr;
pub mod delivery;
pub mod receive_codec;
pub mod receive_ndjson;
pub mod vercel_json;

/// The web app's receive codec, compiled from its own source file: depending on the `web`
/// crate would build the whole app (sqlx, axum, …) with fuzzing instrumentation. The codec
/// needs only `vqs`, base64, chrono, serde_json and uuid.
#[path = "../../crates/vqs-axum/src/vqs_api/receive_codec.rs"]
pub mod codec;
