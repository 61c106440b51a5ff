//! Invariants stated as absences in ARCHITECTURE.md, checked (rust-analyzer's tidy idea).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn dependencies(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    // The [dependencies] table only (dev-dependencies may use anything).
    let start = text.find("[dependencies]").map(|i| i + "[dependencies]".len()).unwrap_or(text.len());
    let rest = &text[start..];
    rest[..rest.find("\n[").unwrap_or(rest.len())].to_owned()
}

#[test]
fn the_core_knows_no_database_and_no_web_framework() {
    let deps = dependencies(&root().join("crates/vqs/Cargo.toml"));
    for banned in ["sqlx", "axum", "hyper", "tower", "rusqlite", "tokio-postgres", "reqwest"] {
        assert!(!deps.contains(banned), "crates/vqs depends on {banned}");
    }
    // Metrics go through the `metrics` facade; exporting them is the app's business.
    for banned in ["metrics-exporter", "prometheus", "opentelemetry"] {
        assert!(!deps.contains(banned), "crates/vqs depends on {banned}: emit through the metrics facade instead");
    }
    let mut files = Vec::new();
    rust_files(&root().join("crates/vqs/src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for banned in ["sqlx::", "axum::", "std::env::var", "env::var("] {
            assert!(!text.contains(banned), "{} mentions {banned}", f.display());
        }
    }
}

#[test]
fn sql_lives_only_in_backends_and_migrations() {
    for dir in ["crates/vqs/src", "crates/jobs/src", "crates/auth/src", "crates/vqs-axum/src", "apps/web/src"] {
        let mut files = Vec::new();
        rust_files(&root().join(dir), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // sqlx's query functions and macros (not `sqlx::query` alone: that is also the
            // target of sqlx's statement log events, which the benchmark counts).
            for banned in
                ["sqlx::query(", "sqlx::query_", "sqlx::query!", "INSERT INTO", "UPDATE deliveries", "DELETE FROM"]
            {
                assert!(!text.contains(banned), "{} contains SQL ({banned})", f.display());
            }
        }
    }
}

#[test]
fn the_axum_library_names_no_database_and_no_backend() {
    let deps = dependencies(&root().join("crates/vqs-axum/Cargo.toml"));
    for banned in ["sqlx", "vqs-sqlite", "vqs-postgres", "jobs"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(banned)),
            "crates/vqs-axum depends on {banned}: it takes a vqs::Queue and the app's settings as values"
        );
    }
}

#[test]
fn auth_knows_nothing_of_the_queue_and_xtask_depends_on_no_workspace_crate() {
    let auth = dependencies(&root().join("crates/auth/Cargo.toml"));
    assert!(!auth.contains("vqs"), "crates/auth depends on the queue");
    let xtask = dependencies(&root().join("xtask/Cargo.toml"));
    for krate in ["vqs", "jobs", "auth", "web"] {
        assert!(!xtask.lines().any(|l| l.trim_start().starts_with(krate)), "xtask depends on {krate}");
    }
}

#[test]
fn only_the_web_app_reads_the_environment() {
    for dir in [
        "crates/vqs/src",
        "crates/vqs-sqlite/src",
        "crates/vqs-postgres/src",
        "crates/jobs/src",
        "crates/auth/src",
        "crates/vqs-axum/src",
    ] {
        let mut files = Vec::new();
        rust_files(&root().join(dir), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains("env::var"), "{} reads the environment", f.display());
        }
    }
}

#[test]
fn the_app_and_the_axum_library_reach_storage_only_through_the_facade() {
    for dir in ["crates/vqs-axum/src", "apps/web/src"] {
        let mut files = Vec::new();
        rust_files(&root().join(dir), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(
                !text.contains(".store()"),
                "{} calls Queue::store(): go through the Queue's methods or Queue::local_service()",
                f.display()
            );
        }
    }
}
