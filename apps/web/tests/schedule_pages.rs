//! Runtime schedules by the hundred through the admin API: `GET /api/admin/schedules` a page
//! at a time with the cursor of the next, hostile paging parameters refused clearly, and
//! health counting late schedules without reading them all. On the backend under test
//! (SQLite by default, `VQS_TEST_BACKEND=postgres`); a manual clock, no waiting.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::TestApp;
use http::StatusCode;
use serde_json::{Value, json};
use vqs::{Clock, Schedule};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn store(app: &TestApp, names: impl IntoIterator<Item = String>, cron: &str) {
    for name in names {
        app.queue().schedules().upsert(Schedule::new(name, cron, "probe")).await.unwrap();
    }
}

fn names(page: &Value) -> Vec<String> {
    page["schedules"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_admin_api_pages_through_schedules_with_a_cursor() {
    let app = TestApp::new().await;
    let mut expected: Vec<String> = (0..250).map(|i| format!("tenant-{i:03}")).collect();
    expected.extend(["Zeta".to_owned(), "_under".to_owned()]);
    store(&app, expected.clone(), "0 9 * * *").await;
    expected.sort();

    // The default page is 100, each with its next fire times; the cursor is the last name.
    let (status, first) = app.admin_get("/api/admin/schedules").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!((first["limit"].clone(), first["total"].clone()), (json!(100), json!(252)));
    assert_eq!(names(&first), expected[..100]);
    assert_eq!(first["next_after"], json!(expected[99]));
    assert_eq!(first["schedules"][0]["next"].as_array().unwrap().len(), 5, "{first}");

    let mut seen = Vec::new();
    let mut url = "/api/admin/schedules?limit=60".to_owned();
    loop {
        let (status, page) = app.admin_get(&url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(names(&page).len() <= 60);
        seen.extend(names(&page));
        match page["next_after"].as_str() {
            Some(next) => url = format!("/api/admin/schedules?limit=60&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, expected, "every schedule once, by name in byte order");
    let (_, all) = app.admin_get("/api/admin/schedules?limit=1000").await;
    assert_eq!((names(&all).len(), all["next_after"].clone()), (252, Value::Null));
    // Empty values are the defaults; an unknown cursor starts where it would sort.
    let (_, page) = app.admin_get("/api/admin/schedules?after=&limit=").await;
    assert_eq!(names(&page), expected[..100]);
    let (_, page) = app.admin_get("/api/admin/schedules?after=tenant-099x&limit=1").await;
    assert_eq!(names(&page), ["tenant-100"]);
}

#[tokio::test]
async fn hostile_paging_parameters_get_a_clear_400() {
    let app = TestApp::new().await;
    store(&app, ["a".to_owned()], "0 9 * * *").await;
    let long = "x".repeat(60_000);
    let cases = [
        ("limit=0", "invalid limit \"0\": send a whole number from 1 to 1000"),
        ("limit=-1", "invalid limit \"-1\""),
        ("limit=99999999999", "invalid limit \"99999999999\""),
        ("limit=1001", "from 1 to 1000"),
        ("limit=abc", "invalid limit \"abc\""),
        ("limit=1&limit=2", "send ?after="),
        ("after=a%00b", "NUL"),
        (&format!("after={long}"), "60000 bytes long"),
    ];
    for (query, want) in cases {
        let (status, body) = app.admin_get(&format!("/api/admin/schedules?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let error = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
        assert!(error.contains(want), "{}: {error}", &query[..query.len().min(40)]);
        assert!(error.len() < 400, "the refusal does not echo the input back: {} bytes", error.len());
    }
    assert_eq!(app.queue().schedules().count().await.unwrap(), 1, "nothing written");
}

#[tokio::test]
async fn health_judges_the_most_overdue_and_counts_the_rest() {
    let clock = Clock::manual(at("2026-01-05T09:59:30Z"));
    let app = TestApp::with_clock(clock.clone()).await;
    // All due at 10:00: 150 per-minute schedules (a minute's slack) and 30 daily ones (an hour's).
    store(&app, (0..150).map(|i| format!("minutely-{i:03}")), "* * * * *").await;
    store(&app, (0..30).map(|i| format!("daily-{i:02}")), "0 10 * * *").await;
    let counts = |h: &Value| h["schedule_counts"].clone();

    // Nothing fires for five minutes: every schedule is overdue by more than a minute, more
    // than health examines. The 100 most overdue are judged (the daily ones, due at
    // 10:00 — within their hour — and 70 per-minute ones, late); the rest, overdue by
    // under an hour, are unchecked, neither ok nor late.
    clock.advance(Duration::from_secs(300));
    let (_, health) = app.admin_get("/api/health").await;
    assert_eq!(counts(&health), json!({"total": 180, "ok": 30, "late": 70, "failing": 0, "unchecked": 80}), "{health}");
    assert_eq!(health["schedules"].as_array().unwrap().len(), 20, "at most 20 named");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["reasons"].to_string().contains("70 schedule(s) late"), "{health}");
    assert!(!health["reasons"].to_string().contains("unchecked"), "unchecked ones do not degrade: {health}");

    // Two hours on, every one is late whatever its interval: counted without being read.
    clock.advance(Duration::from_secs(7200));
    let (_, health) = app.admin_get("/api/health").await;
    assert_eq!(counts(&health), json!({"total": 180, "ok": 0, "late": 180, "failing": 0, "unchecked": 0}), "{health}");

    // Fired (the schedules cron's work): all ok again.
    let report = app.queue().schedules().fire_due(1000).await.unwrap();
    assert_eq!(report.fired.len(), 180);
    let (_, health) = app.admin_get("/api/health").await;
    assert_eq!(counts(&health)["ok"], 180, "{health}");
    assert!(
        !health["reasons"].to_string().contains("schedule"),
        "(the vercel.json crons are late: nothing ran them) {health}"
    );
}

#[tokio::test]
async fn a_100_kb_cursor_over_http_is_refused_before_the_app() {
    // Neither `http::Uri` nor reqwest holds a 100 KB URL (64 KiB at most), so this case is
    // written to a real socket by hand: hyper answers 414 URI Too Long before any handler
    // runs. A cursor under that limit reaches the handler and gets its 400
    // (`hostile_paging_parameters_get_a_clear_400`).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let url = common::fresh_database_url(&dir).await;
    let mut child = common::serve(&url, &[("VQS_ADMIN_TOKEN", common::ADMIN_TOKEN)]);
    let base = common::serving(&mut child).await;
    let addr = base.trim_start_matches("http://").to_owned();
    let request = |query: String| {
        let addr = addr.clone();
        async move {
            let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "GET /api/admin/schedules?{query} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                common::ADMIN_TOKEN
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            socket.read_to_end(&mut answer).await.unwrap();
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    let answer = request(format!("after={}", "x".repeat(100_000))).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{}", &answer[..answer.len().min(200)]);
    let answer = request("after=a%00b&limit=5".into()).await;
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("NUL"), "{answer}");
    let answer = request("limit=5".into()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "the process still serves: {answer}");
    child.kill().await.unwrap();
}
