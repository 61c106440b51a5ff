//! Corpus replay for the main workspace's tests: every file of `fuzz/corpus/<target>/` through
//! the target's `check`, on stable, without libFuzzer. Included by path from
//! `crates/vqs/tests/fuzz_corpus.rs` and `apps/web/tests/fuzz_corpus.rs`.

use std::path::{Path, PathBuf};

/// Run every file of the target's corpus through `check`; panic naming each file that
/// panicked, and when the corpus is missing or empty (a replay of nothing proves nothing).
pub fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the {target} corpus {} cannot be read: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the {target} corpus {} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).expect("a corpus file");
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{} of {} {target} inputs failed: {failed:#?}", failed.len(), files.len());
}
