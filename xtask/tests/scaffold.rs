//! `cargo xtask new-job` / `new-cron` on copies of the workspace: every refusal leaves the
//! tree byte-for-byte unchanged; a scaffolded workspace builds and its new routes work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Copy the workspace's sources (no target, no .git, no local database) into `dst`.
fn copy_workspace(dst: &Path) {
    fn copy(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if [".git", "target", ".vqs", "node_modules"].iter().any(|n| name == *n) {
                continue;
            }
            let (from, to) = (entry.path(), dst.join(&name));
            if from.is_dir() { copy(&from, &to) } else { std::fs::copy(&from, &to).map(|_| ()).unwrap() }
        }
    }
    copy(&root(), dst);
}

/// Every file's bytes, by path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.insert(path.strip_prefix(base).unwrap().to_owned(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn xtask(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).arg("--root").arg(dir).args(args).output().unwrap()
}

#[test]
fn every_refusal_says_what_to_do_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    copy_workspace(tmp.path());
    let dir = tmp.path();
    // A team's own binary in the app, which a job's function binary must not collide with.
    let manifest = dir.join("apps/web/Cargo.toml");
    let with_bin = std::fs::read_to_string(&manifest).unwrap()
        + "\n[[bin]]\nname = \"report-worker\"\npath = \"src/bin/report_worker.rs\"\n";
    std::fs::write(&manifest, with_bin).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["new-job"], "missing the job's name"),
        (vec!["new-job", "SendInvoice"], "kebab-case"),
        (vec!["new-job", "send_invoice"], "kebab-case"),
        (vec!["new-job", "send--invoice"], "kebab-case"),
        (vec!["new-job", "-x"], "kebab-case"),
        (vec!["new-job", "type"], "reserved"),
        (vec!["new-job", "probe"], "name is taken"),
        (vec!["new-job", "sync-patient"], "name is taken"),
        (vec!["new-job", "report-worker"], "already has a binary named"),
        (vec!["new-job", "x", "--max-attempts", "0"], "--max-attempts must be a whole number from 1"),
        (vec!["new-job", "x", "--retry-after", "soon"], "--retry-after must be a whole number"),
        (vec!["new-job", "x", "--bogus"], "unexpected argument"),
        (vec!["new-cron", "nightly"], "--schedule \"<expr>\" is required"),
        (vec!["new-cron", "nightly", "--schedule", "0 3 * * MON"], "names are not allowed"),
        (vec!["new-cron", "nightly", "--schedule", "0 0 L * *"], "L and W are not supported"),
        (vec!["new-cron", "nightly", "--schedule", "0 0 ? * 1"], "'?' is not supported"),
        (vec!["new-cron", "nightly", "--schedule", "0 0 * * 1#2"], "'#' is not supported"),
        (vec!["new-cron", "nightly", "--schedule", "0 0 0 * * *"], "expected 5 fields"),
        (vec!["new-cron", "nightly", "--schedule", "0 0 1-2-3 * 1"], "not a range"),
        (vec!["new-cron", "nightly", "--schedule", "@daily"], "macros"),
        (vec!["new-cron", "sync-patients", "--schedule", "0 * * * *"], "name is taken"),
        (vec!["new-cron", "Nightly", "--schedule", "0 * * * *"], "kebab-case"),
        (vec!["new-cron", "nightly", "--schedule", "0 * * * *", "--enqueues", "no-such-job"], "there is no job"),
    ];
    let before = snapshot(dir);
    for (args, want) in &cases {
        let out = xtask(dir, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} should be refused: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(snapshot(dir) == before, "{args:?} changed the tree");
    }

    // A file in the way (a job file with no trigger yet) is never overwritten.
    std::fs::write(dir.join("crates/jobs/src/send_invoice.rs"), "// mine\n").unwrap();
    let before = snapshot(dir);
    let out = xtask(dir, &["new-job", "send-invoice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    assert!(snapshot(dir) == before);
    std::fs::remove_file(dir.join("crates/jobs/src/send_invoice.rs")).unwrap();

    // A broken vercel.json: refused, nothing written.
    std::fs::write(dir.join("vercel.json"), "{ \"crons\": [ ").unwrap();
    let before = snapshot(dir);
    for args in [vec!["new-job", "send-invoice"], vec!["new-cron", "nightly", "--schedule", "0 * * * *"]] {
        let out = xtask(dir, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("vercel.json is not valid JSON"), "{stderr}");
        assert!(snapshot(dir) == before);
    }

    // --dry-run prints the plan and writes nothing.
    std::fs::copy(root().join("vercel.json"), dir.join("vercel.json")).unwrap();
    let before = snapshot(dir);
    let out = xtask(dir, &["new-job", "send-invoice", "--dry-run"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("create crates/jobs/src/send_invoice.rs") && stdout.contains("nothing was written"),
        "{stdout}"
    );
    assert!(snapshot(dir) == before);
}

#[test]
fn a_scaffolded_job_and_cron_build_and_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_workspace(dir);
    let vercel_before = std::fs::read_to_string(dir.join("vercel.json")).unwrap();
    let out =
        xtask(dir, &["new-job", "send-invoice", "--max-attempts", "4", "--max-deliveries", "8", "--retry-after", "30"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = xtask(dir, &["new-cron", "nightly-invoices", "--schedule", "0 3 * * 1", "--enqueues", "send-invoice"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // vercel.json: the old text is kept, only the new entries are added.
    let vercel_after = std::fs::read_to_string(dir.join("vercel.json")).unwrap();
    let added: Vec<&str> = vercel_after.lines().filter(|l| !vercel_before.lines().any(|b| b == *l)).collect();
    for l in vercel_before.lines() {
        assert!(vercel_after.contains(l), "lost line {l:?}");
    }
    assert!(added.iter().any(|l| l.contains("\"api/queue/send-invoice.rs\"")), "{added:?}");
    assert!(added.iter().any(|l| l.contains("\"maxDeliveries\": 8")), "{added:?}");
    assert!(added.iter().any(|l| l.contains("\"schedule\": \"0 3 * * 1\"")), "{added:?}");
    assert!(
        std::fs::read_to_string(dir.join("crates/jobs/src/send_invoice.rs"))
            .unwrap()
            .starts_with("//! Generated by `cargo xtask new-job send-invoice`")
    );
    // Its Vercel Function: the file Vercel's Rust builder finds, and the binary it builds.
    let function = std::fs::read_to_string(dir.join("api/queue/send-invoice.rs")).unwrap();
    assert!(function.contains("run_consumer(vqs::QueueHandler::new(jobs::SendInvoice))"), "{function}");
    let manifest = std::fs::read_to_string(dir.join("apps/web/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(
            "[[bin]]\nname = \"send-invoice\"\npath = \"../../api/queue/send-invoice.rs\"\nrequired-features = [\"vercel\"]\n"
        ),
        "{manifest}"
    );

    // The new routes answer through the app: a test in the scaffolded workspace.
    std::fs::write(
        dir.join("apps/web/tests/scaffolded.rs"),
        r#"mod common;
use axum::body::Body;
use common::{CRON_SECRET, TestApp};
use http::{Request, StatusCode};

#[tokio::test]
async fn the_new_job_runs_and_the_new_cron_is_guarded() {
    let app = TestApp::new().await;
    let sent = app.queue().job(jobs::SendInvoice).perform_later(Default::default()).await.unwrap();
    assert_eq!(app.dispatch("send-invoice").await, 1);
    assert_eq!(app.attempts(&sent.message_id).await, vec![(1, "success".to_owned())]);

    let (status, _) = app.call(Request::get("/api/cron/nightly-invoices").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let req = Request::get("/api/cron/nightly-invoices")
        .header("authorization", format!("Bearer {CRON_SECRET}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = app.call(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.dispatch("send-invoice").await, 1, "the cron enqueued the job: {body}");
}
"#,
    )
    .unwrap();
    // A target directory of its own (a nested cargo must not wait on the outer one's lock),
    // kept under target/ so later runs reuse it.
    let target = root().join("target").join("xtask-scaffold");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .args(["test", "-q", "-p", "web", "--test", "scaffolded"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the scaffolded workspace failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    std::fs::remove_file(dir.join("apps/web/tests/scaffolded.rs")).unwrap();
    let fmt = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(dir)
        .args(["fmt", "--all", "--", "--check"])
        .output()
        .unwrap();
    assert!(fmt.status.success(), "generated code is not rustfmt-clean: {}", String::from_utf8_lossy(&fmt.stdout));
}
