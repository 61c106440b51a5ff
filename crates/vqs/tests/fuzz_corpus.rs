//! The committed fuzz corpora of the targets on `vqs`'s parsers, replayed on stable through the
//! fuzz targets' own bodies (`fuzz/src/`, included by path): `cargo test` keeps every input a
//! fuzzer ever kept — and every crash it found — passing. RELIABILITY.md, "Fuzzing".

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/cron_expr.rs"]
mod cron_expr;
#[path = "../../../fuzz/src/delivery.rs"]
mod delivery;
#[path = "../../../fuzz/src/vercel_json.rs"]
mod vercel_json;

#[test]
fn delivery_corpus() {
    corpus::replay("delivery", delivery::check);
}

#[test]
fn cron_expr_corpus() {
    corpus::replay("cron_expr", cron_expr::check);
}

#[test]
fn vercel_json_corpus() {
    corpus::replay("vercel_json", vercel_json::check);
}
