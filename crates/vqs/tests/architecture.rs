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

/// The modules a backend file names (`crate::x::…`), other than itself.
fn crate_imports(text: &str, own: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(i, _)| {
            let rest = &text[i + "crate::".len()..];
            rest[..rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len())].to_owned()
        })
        .filter(|m| m != own && !m.is_empty())
        .collect()
}

#[test]
fn both_backends_have_the_same_shape_and_no_import_cycles() {
    // The same file for the same concern (a change to one backend finds its twin); the
    // store file only wires and delegates, so no helper imports it.
    const SHARED: &[&str] = &[
        "store",
        "publish",
        "subscriptions",
        "lease",
        "lease_failure",
        "executions",
        "dead_letters",
        "dead_letter_groups",
        "stats_rollup",
        "cron_runs",
        "maintenance",
        "stats",
        "progress",
        "processes",
        "sessions",
        "rows",
        "writer",
    ];
    for backend in ["crates/vqs-sqlite/src", "crates/vqs-postgres/src"] {
        let dir = root().join(backend);
        let mut graph = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = text.lines().count();
            assert!(lines <= 650, "{backend}/{name}.rs has {lines} lines: split it by concern (about 600 at most)");
            if name != "lib" {
                let imports = crate_imports(&text, &name);
                assert!(!imports.contains("store"), "{backend}/{name}.rs imports store.rs: helpers never import back");
                graph.insert(name, imports);
            }
        }
        for file in SHARED {
            assert!(graph.contains_key(*file), "{backend} has no {file}.rs");
        }
        // No cycles: a depth-first walk from every file never comes back to a file on its path.
        fn walk(
            graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
            node: &str,
            path: &mut Vec<String>,
        ) {
            if let Some(i) = path.iter().position(|p| p == node) {
                panic!("import cycle: {} -> {node}", path[i..].join(" -> "));
            }
            path.push(node.to_owned());
            for next in graph.get(node).into_iter().flatten() {
                walk(graph, next, path);
            }
            path.pop();
        }
        for node in graph.keys() {
            walk(&graph, node, &mut Vec::new());
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
