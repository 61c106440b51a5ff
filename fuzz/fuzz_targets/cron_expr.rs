#![no_main]
// The body is vqs_fuzz::cron_expr::check, which the corpus replay test in the main workspace
// calls too (see RELIABILITY.md, "Fuzzing").
libfuzzer_sys::fuzz_target!(|data: &[u8]| vqs_fuzz::cron_expr::check(data));
