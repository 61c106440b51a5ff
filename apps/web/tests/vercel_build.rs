//! The deploy build: build.sh switches on the `vercel` feature in a Vercel build only.

mod common;

use std::process::Command;

fn run_build_sh(env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("apps/web")).unwrap();
    let manifest = dir.path().join("apps/web/Cargo.toml");
    std::fs::copy(common::repo_root().join("apps/web/Cargo.toml"), &manifest).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg(common::repo_root().join("build.sh")).current_dir(dir.path()).env_remove("VERCEL").env_remove("CI");
    cmd.env_remove("VQS_BUILD_FOR_VERCEL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    (out.status.success(), text)
}

#[test]
fn build_sh_turns_the_vercel_feature_on_in_a_vercel_build_only() {
    let (ok, text) = run_build_sh(&[]);
    assert!(ok);
    assert!(text.contains("\ndefault = []\n"), "a local run edits nothing");
    let (ok, text) = run_build_sh(&[("VERCEL", "1")]);
    assert!(ok);
    assert!(text.contains("\ndefault = []\n"), "`vercel build` on a developer machine edits nothing");
    let (ok, text) = run_build_sh(&[("VERCEL", "1"), ("CI", "1")]);
    assert!(ok);
    assert!(text.contains("\ndefault = [\"vercel\"]\n") && !text.contains("\ndefault = []\n"), "{text}");
}

/// Vercel's Rust builder reads `build.target` from `.cargo/config.toml` and crashes when the
/// file has no `[build]` table; a `target` there would move every local build elsewhere.
#[test]
fn cargo_config_has_a_build_table_without_a_target() {
    let text = std::fs::read_to_string(common::repo_root().join(".cargo/config.toml")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    assert!(lines.contains(&"[build]"), "no [build] table:\n{text}");
    assert!(!lines.iter().any(|l| l.starts_with("target")), "a build target changes local builds:\n{text}");
}

/// Zero-config Vercel publishes `public/` when it exists — otherwise every file outside
/// `api/` (the whole source tree) as static files, matched before the rewrite to the app.
#[test]
fn only_public_is_published_and_it_holds_no_source() {
    let public = common::repo_root().join("public");
    let mut names: Vec<String> =
        std::fs::read_dir(&public).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["robots.txt".to_owned()], "public/ is served as is on Vercel");
}
