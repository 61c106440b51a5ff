//! The operator CLI, as the real binary, on a real SQLite file.

mod common;

use std::process::Command;

use serde_json::Value;
use vqs::Clock;

struct Cli {
    database_url: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_web"))
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("VQS_VERCEL_JSON", common::repo_root().join("vercel.json"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the web binary");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn json(&self, args: &[&str]) -> Value {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "{args:?} failed: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {stdout}"))
    }
}

#[tokio::test]
async fn a_probe_enqueued_through_the_cli_runs_once_and_shows_success() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::fresh_database_url(&dir).await;
    let cli = Cli { database_url: database_url.clone() };

    let sent = cli.json(&["enqueue", "probe", "{}", "--json"]);
    assert_eq!(sent["duplicate"], false);
    let id = sent["messageId"].as_str().unwrap().to_owned();

    let a = cli.json(&["enqueue", "probe", "{}", "--idempotency-key", "k1", "--json"]);
    let b = cli.json(&["enqueue", "probe", "{}", "--idempotency-key", "k1", "--json"]);
    assert_eq!((a["duplicate"].as_bool(), b["duplicate"].as_bool()), (Some(false), Some(true)));
    assert_eq!(a["messageId"], b["messageId"]);

    // The same database, consumed by the app's dispatcher path.
    let app = common::TestApp::open(dir, database_url, Clock::system()).await;
    assert_eq!(app.dispatch("probe").await, 2, "two messages: the duplicate was dropped");

    let rows = cli.json(&["executions", "--topic", "probe", "--json"]);
    let mine: Vec<&Value> = rows.as_array().unwrap().iter().filter(|r| r["message_id"] == id.as_str()).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["status"], "success");

    let queues = cli.json(&["queues", "--json"]);
    assert_eq!(queues[0]["succeeded"], 2);
    let message = cli.json(&["message", &id, "--json"]);
    assert_eq!(message["state"], "acked");
    assert_eq!(cli.json(&["dead-letters", "--json"]), serde_json::json!([]));
    let (ok, human, _) = cli.run(&["executions"]);
    assert!(ok && human.contains("success") && human.contains(&id), "{human}");
}

#[tokio::test]
async fn bad_arguments_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli { database_url: common::fresh_database_url(&dir).await };
    let (ok, _, stderr) = cli.run(&["enqueue", "probe", "{not json"]);
    assert!(!ok);
    assert!(stderr.contains("the payload is not valid JSON"), "{stderr}");
    let (ok, _, stderr) = cli.run(&["enqueue", "bad topic!", "{}"]);
    assert!(!ok);
    assert!(stderr.contains("invalid topic"), "{stderr}");
    let (ok, _, stderr) = cli.run(&["executions", "--status", "done"]);
    assert!(!ok);
    assert!(stderr.contains("running, success, failed, snoozed or cancelled"), "{stderr}");
    let (ok, _, stderr) = cli.run(&["dead-letters", "replay", "42"]);
    assert!(!ok);
    assert!(stderr.contains("dead letter 42"), "{stderr}");
    let (ok, _, stderr) = cli.run(&["no-such-command"]);
    assert!(!ok);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
}

#[tokio::test]
async fn crons_prints_the_next_fire_times() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli { database_url: common::fresh_database_url(&dir).await };
    assert!(cli.run(&["migrate"]).0);
    let crons = cli.json(&["crons", "--next", "3", "--json"]);
    assert_eq!(crons[0]["path"], "/api/cron/sync-patients");
    assert_eq!(crons[0]["schedule"], "0 * * * *");
    assert_eq!(crons[0]["next"].as_array().unwrap().len(), 3);
    // Capped as the API caps `?next=` (a huge N would compute and print without end).
    let crons = cli.json(&["crons", "--next", "1000000000", "--json"]);
    assert_eq!(crons[0]["next"].as_array().unwrap().len(), vqs_axum::admin::MAX_CRON_NEXT);
}

#[test]
fn a_read_only_command_does_not_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo").join("vqs.db");
    let cli = Cli { database_url: format!("sqlite://{}", file.display()) };
    for args in [
        &["executions"][..],
        &["queues"],
        &["crons"],
        &["dead-letters"],
        &["message", "msg_x"],
        &["cancel", "msg_x"],
        &["purge", "probe", "--dry-run"],
        &["schedules"],
        &["schedules", "delete", "x"],
    ] {
        let (ok, _, stderr) = cli.run(args);
        assert!(!ok, "{args:?} succeeded on no database");
        assert!(stderr.contains("no database at") && stderr.contains("web migrate"), "{args:?}: {stderr}");
        assert!(!file.exists() && !file.parent().unwrap().exists(), "{args:?} created {}", file.display());
    }
    // Writing commands still create it.
    assert!(cli.run(&["migrate"]).0);
    assert!(file.exists());
    assert!(cli.run(&["queues"]).0);
}

#[tokio::test]
async fn run_now_makes_a_delayed_message_due_and_refuses_an_unknown_one() {
    // The app's consumer groups subscribed, as `web serve` leaves them.
    let app = common::TestApp::new().await;
    let cli = Cli { database_url: app.database_url.clone() };
    let sent = cli.json(&["enqueue", "probe", "{}", "--delay", "3600", "--json"]);
    let id = sent["messageId"].as_str().unwrap();
    let due = cli.json(&["run-now", id, "--json"]);
    assert_eq!((due["messageId"].as_str(), due["madeDue"].as_u64()), (Some(id), Some(1)), "{due}");
    let (ok, stdout, _) = cli.run(&["run-now", id]);
    assert!(ok && stdout.contains("due already"), "{stdout}");
    let (ok, _, stderr) = cli.run(&["run-now", "msg_nope"]);
    assert!(!ok && stderr.contains("no message msg_nope"), "{stderr}");
}

// Cancel and purge need the stores' message_cancel / topic_purge (issue 18).

#[tokio::test]
async fn cancel_stops_a_waiting_message_and_refuses_a_finished_or_unknown_one() {
    let app = common::TestApp::new().await;
    let cli = Cli { database_url: app.database_url.clone() };
    let id = cli.json(&["enqueue", "probe", "{}", "--json"])["messageId"].as_str().unwrap().to_owned();
    let done = cli.json(&["cancel", &id, "--json"]);
    assert_eq!((done["messageId"].as_str(), done["state"].as_str()), (Some(id.as_str()), Some("cancelled")), "{done}");
    assert_eq!(done["pending"], serde_json::json!([app.consumer("probe").consumer_group]));
    assert_eq!(app.dispatch("probe").await, 0, "a cancelled message never runs");
    assert_eq!(cli.json(&["message", &id, "--json"])["state"], "cancelled");

    // Again: it has finished (cancelled); the exit status says it failed, the message why.
    let (ok, _, stderr) = cli.run(&["cancel", &id]);
    assert!(!ok && stderr.contains("already finished") && stderr.contains("cancelled"), "{stderr}");
    let (ok, _, stderr) = cli.run(&["cancel", "msg_nope"]);
    assert!(!ok && stderr.contains("no message msg_nope"), "{stderr}");

    // Human output names what was cancelled.
    let other = cli.json(&["enqueue", "probe", "{}", "--delay", "3600", "--json"]);
    let (ok, stdout, stderr) = cli.run(&["cancel", other["messageId"].as_str().unwrap()]);
    assert!(ok && stdout.contains("cancelled") && stdout.contains("will not run"), "{stdout}{stderr}");

    // The executions filter takes the new statuses.
    assert_eq!(cli.json(&["executions", "--status", "cancelled", "--json"]), serde_json::json!([]));
    assert_eq!(cli.json(&["executions", "--status", "snoozed", "--json"]), serde_json::json!([]));
}

#[tokio::test]
async fn purge_counts_with_a_dry_run_then_cancels_and_refuses_bad_names() {
    let app = common::TestApp::new().await;
    let cli = Cli { database_url: app.database_url.clone() };
    for delay in ["0", "0", "3600"] {
        cli.json(&["enqueue", "probe", "{}", "--delay", delay, "--json"]);
    }
    assert_eq!(
        cli.json(&["purge", "probe", "--dry-run", "--json"]),
        serde_json::json!({"cancelled": 3, "dryRun": true})
    );
    let (ok, stdout, _) = cli.run(&["purge", "probe", "--dry-run"]);
    assert!(ok && stdout.contains("3 pending messages of probe would be cancelled"), "{stdout}");
    let group = app.consumer("probe").consumer_group;
    assert_eq!(cli.json(&["purge", "probe", "--group", "nobody", "--json"]), serde_json::json!({"cancelled": 0}));
    let (ok, stdout, _) = cli.run(&["purge", "probe", "--group", &group]);
    assert!(
        ok && stdout.contains("3 pending messages of probe (consumer group") && stdout.contains("cancelled"),
        "{stdout}"
    );
    assert_eq!(app.dispatch("probe").await, 0, "purged messages never run");
    assert_eq!(cli.json(&["purge", "probe", "--json"]), serde_json::json!({"cancelled": 0}));

    let (ok, _, stderr) = cli.run(&["purge", "bad topic!"]);
    assert!(!ok && stderr.contains("invalid topic"), "{stderr}");
    let (ok, _, stderr) = cli.run(&["purge", "probe", "--group", "bad group!"]);
    assert!(!ok && stderr.contains("invalid consumer group"), "{stderr}");
    let (ok, _, stderr) = cli.run(&["purge", "probe", "--group", ""]);
    assert!(!ok && stderr.contains("empty --group"), "{stderr}");
}

#[tokio::test]
async fn schedules_set_list_trigger_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli { database_url: common::fresh_database_url(&dir).await };
    let set = cli.json(&[
        "schedules",
        "set",
        "digest",
        "--cron",
        "0 9 * * *",
        "--timezone",
        "Europe/Berlin",
        "--topic",
        "probe",
        "--payload",
        r#"{"tenant": "acme"}"#,
        "--json",
    ]);
    assert_eq!((set["name"].as_str(), set["timezone"].as_str()), (Some("digest"), Some("Europe/Berlin")), "{set}");
    assert_eq!(set["next"].as_array().unwrap().len(), 5);
    let list = cli.json(&["schedules", "--json"])["schedules"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        (list[0]["payload"].clone(), list[0]["next"].clone()),
        (serde_json::json!({"tenant": "acme"}), set["next"].clone())
    );
    let (ok, human, _) = cli.run(&["schedules"]);
    assert!(ok && human.contains("digest") && human.contains("Europe/Berlin"), "{human}");

    let disabled =
        cli.json(&["schedules", "set", "digest", "--cron", "*/5 * * * *", "--topic", "probe", "--disabled", "--json"]);
    assert_eq!(
        (disabled["enabled"].as_bool(), disabled["timezone"].as_str()),
        (Some(false), Some("UTC")),
        "{disabled}"
    );

    let (ok, human, _) = cli.run(&[
        "schedules",
        "set",
        "spread",
        "--cron",
        "0 9 * * *",
        "--topic",
        "probe",
        "--jitter",
        "120",
        "--no-catch-up",
    ]);
    assert!(ok && human.contains("up to 120s after its tick") && human.contains("no catch-up"), "{human}");
    let (ok, _, stderr) =
        cli.run(&["schedules", "set", "x", "--cron", "*/1 * * * *", "--topic", "probe", "--jitter", "60"]);
    assert!(!ok && stderr.contains("jitter must be less than"), "{stderr}");

    let fired = cli.json(&["schedules", "trigger", "digest", "--json"]);
    assert!(fired["messageId"].as_str().is_some(), "{fired}");

    // Refusals say what is wrong; nothing is written.
    for (args, want) in [
        (
            &["schedules", "set", "x", "--cron", "0 9 * * *", "--timezone", "Mars/Olympus", "--topic", "probe"][..],
            "unknown time zone",
        ),
        (&["schedules", "set", "x", "--cron", "0 9 * * MON", "--topic", "probe"], "invalid schedule"),
        (&["schedules", "set", "x", "--cron", "0 9 * * *", "--topic", "nobody"], "no job or consumer for topic"),
        (
            &["schedules", "set", "x", "--cron", "0 9 * * *", "--topic", "probe", "--payload", "{no"],
            "--payload is not valid JSON",
        ),
        (&["schedules", "trigger", "nope"], "no schedule \"nope\""),
    ] {
        let (ok, _, stderr) = cli.run(args);
        assert!(!ok && stderr.contains(want), "{args:?}: {stderr}");
    }
    assert_eq!(cli.json(&["schedules", "--json"])["schedules"].as_array().unwrap().len(), 2, "digest and spread, no x");

    assert_eq!(cli.json(&["schedules", "delete", "spread", "--json"]), serde_json::json!({"deleted": true}));
    assert_eq!(cli.json(&["schedules", "delete", "digest", "--json"]), serde_json::json!({"deleted": true}));
    let (ok, _, stderr) = cli.run(&["schedules", "delete", "digest"]);
    assert!(!ok && stderr.contains("no schedule \"digest\""), "{stderr}");
    assert_eq!(cli.json(&["schedules", "--json"])["schedules"], serde_json::json!([]));
}

#[tokio::test]
async fn schedules_list_pages_through_everything_or_shows_one_page() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli { database_url: common::fresh_database_url(&dir).await };
    for name in ["a", "b", "c"] {
        cli.json(&["schedules", "set", name, "--cron", "0 9 * * *", "--topic", "probe", "--json"]);
    }
    let all = cli.json(&["schedules", "--json"]);
    assert_eq!((all["schedules"].as_array().unwrap().len(), all["next_after"].clone()), (3, serde_json::Value::Null));
    let first = cli.json(&["schedules", "--limit", "2", "--json"]);
    let names: Vec<_> = first["schedules"].as_array().unwrap().iter().map(|s| s["name"].clone()).collect();
    assert_eq!((names, first["next_after"].clone()), (vec!["a".into(), "b".into()], "b".into()), "{first}");
    let (ok, human, _) = cli.run(&["schedules", "--limit", "2"]);
    assert!(ok && human.contains("more: web schedules --after b --limit 2"), "{human}");
    let rest = cli.json(&["schedules", "--after", "b", "--limit", "2", "--json"]);
    assert_eq!(
        (rest["schedules"][0]["name"].as_str(), rest["next_after"].clone()),
        (Some("c"), serde_json::Value::Null)
    );
    for (args, want) in [
        (&["schedules", "--limit", "0"][..], "invalid limit \"0\": send a whole number from 1 to 1000"),
        (&["schedules", "--limit", "-1"], "invalid limit"),
        (&["schedules", "--limit", "99999999999"], "invalid limit"),
        (&["schedules", "--after", &"x".repeat(100_000)], "100000 bytes long"),
        (&["schedules", "--limit", "2", "delete", "a"], "use them with `web schedules` alone"),
    ] {
        let (ok, _, stderr) = cli.run(args);
        assert!(!ok && stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn enqueue_takes_a_priority_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::fresh_database_url(&dir).await;
    let cli = Cli { database_url: database_url.clone() };
    let later = cli.json(&["enqueue", "probe", "{}", "--priority", "7", "--json"])["messageId"].clone();
    let first = cli.json(&["enqueue", "probe", "{}", "--priority", "-5", "--json"])["messageId"].clone();
    for (bad, why) in
        [("x", "invalid priority \"x\""), ("101", "invalid priority 101"), ("-101", "invalid priority -101")]
    {
        let (ok, _, stderr) = cli.run(&["enqueue", "probe", "{}", "--priority", bad]);
        assert!(!ok && stderr.contains(why) && stderr.contains("from -100 to 100"), "{bad}: {stderr}");
    }
    let message = cli.json(&["message", first.as_str().unwrap(), "--json"]);
    assert_eq!(message["priority"], -5, "{message}");
    let app = common::TestApp::open(dir, database_url, Clock::system()).await;
    let p = vqs::store::MessageListParams { topic: "probe".into(), limit: 10 };
    assert_eq!(app.queue().store().message_list(p).await.unwrap().len(), 2, "the refused ones stored nothing");
    // The lower priority runs first, though sent second.
    assert_eq!(app.dispatch("probe").await, 2);
    let mut runs = cli.json(&["executions", "--topic", "probe", "--json"]).as_array().unwrap().clone();
    runs.sort_by_key(|r| r["finished_at"].as_str().unwrap_or_default().to_owned());
    let order: Vec<&Value> = runs.iter().map(|r| &r["message_id"]).collect();
    assert_eq!(order, [&first, &later]);
}

#[tokio::test]
async fn dead_letters_are_listed_by_group_and_a_group_is_retried_or_discarded_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::fresh_database_url(&dir).await;
    let cli = Cli { database_url: database_url.clone() };
    for _ in 0..3 {
        cli.json(&["enqueue", "probe", r#"{"fatal": true}"#, "--json"]);
    }
    cli.json(&["enqueue", "probe", r#"{"sleep_ms": "soon"}"#, "--json"]);
    let app = common::TestApp::open(dir, database_url, Clock::system()).await;
    app.dispatch("probe").await;

    let groups = cli.json(&["dead-letters", "groups", "--json"]);
    assert_eq!(groups.as_array().unwrap().len(), 2, "{groups}");
    assert_eq!(groups[0]["count"], 3);
    let (fatal, bad) = (groups[0]["error"].as_str().unwrap(), groups[1]["error"].as_str().unwrap());
    let (ok, human, _) = cli.run(&["dead-letters", "groups"]);
    assert!(ok && human.contains(fatal), "{human}");

    assert_eq!(
        cli.json(&["dead-letters", "retry-group", "probe", fatal, "--json"]),
        serde_json::json!({"replayed": 3})
    );
    let (ok, human, _) = cli.run(&["dead-letters", "discard-group", "probe", bad]);
    assert!(ok && human.contains("discarded 1"), "{human}");
    assert_eq!(cli.json(&["dead-letters", "--json"]), serde_json::json!([]));
    assert_eq!(app.dispatch("probe").await, 3, "the replays run");
    let (ok, _, stderr) = cli.run(&["dead-letters", "retry-group", "probe", "two\nlines"]);
    assert!(!ok && stderr.contains("one line"), "{stderr}");
}
