//! Runtime schedules through the admin API and a serving app's workers (SPEC.md, "Runtime
//! schedules"), on the backend under test (SQLite by default, `VQS_TEST_BACKEND=postgres`).

mod common;

use std::time::Duration;

use axum::body::Body;
use chrono::{DateTime, Timelike, Utc};
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use vqs::Clock;

fn admin(method: &str, path: &str, body: Option<String>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap()
}

async fn put(app: &TestApp, name: &str, body: Value) -> (StatusCode, Value) {
    app.call(admin("PUT", &format!("/api/admin/schedules/{name}"), Some(body.to_string()))).await
}

fn times(v: &Value) -> Vec<DateTime<Utc>> {
    v["next"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().parse().unwrap()).collect()
}

#[tokio::test]
async fn a_schedule_put_then_read_shows_its_next_fire_times_in_its_zone() {
    let app = TestApp::new().await;
    let (status, body) = put(
        &app,
        "digest",
        json!({"cron": "0 9 * * *", "timezone": "Europe/Berlin", "topic": "probe", "payload": {"tenant": "acme"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["name"].as_str(), body["enabled"].as_bool()), (Some("digest"), Some(true)), "{body}");
    assert_eq!(body["payload"], json!({"tenant": "acme"}));
    let next = times(&body);
    assert_eq!(next.len(), 5);
    for t in &next {
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        let local = t.with_timezone(&vqs::parse_timezone("Europe/Berlin").unwrap());
        assert_eq!((local.hour(), local.minute(), local.second()), (9, 0, 0), "{t}");
        assert!(body["next"].to_string().contains('Z'), "RFC 3339 UTC: {body}");
    }
    assert!(next.windows(2).all(|w| w[0] < w[1]));

    let (status, one) = app.admin_get("/api/admin/schedules/digest").await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!((one["cron"].as_str(), one["timezone"].as_str()), (Some("0 9 * * *"), Some("Europe/Berlin")));
    assert_eq!(one["next"], body["next"]);
    let (status, all) = app.admin_get("/api/admin/schedules").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["schedules"].as_array().unwrap().len(), 1);
    assert_eq!(all["schedules"][0]["next"], body["next"]);
    assert_eq!((all["next_after"].clone(), all["total"].clone()), (Value::Null, json!(1)), "{all}");

    // Catch-up on and no jitter by default; both can be set.
    assert_eq!((one["catch_up"].as_bool(), one["jitter_seconds"].as_u64()), (Some(true), Some(0)), "{one}");
    let (status, body) = put(
        &app,
        "digest",
        json!({"cron": "0 9 * * *", "timezone": "Europe/Berlin", "topic": "probe", "catch_up": false, "jitter_seconds": 300}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["catch_up"].as_bool(), body["jitter_seconds"].as_u64()), (Some(false), Some(300)), "{body}");
    assert_eq!(body["next"], one["next"], "`next` names the ticks; the jitter only delays each fire");

    // Replaced by name; UTC and enabled by default; a disabled one shows no next times.
    let (status, body) = put(&app, "digest", json!({"cron": "*/15 * * * *", "topic": "probe", "enabled": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["timezone"].as_str(), body["enabled"].as_bool()), (Some("UTC"), Some(false)));
    assert_eq!(body["next"], json!([]));
    assert_eq!(app.admin_get("/api/admin/schedules").await.1["schedules"].as_array().unwrap().len(), 1);

    // Behind the admin token like the rest of the API.
    let (status, _) = app.call(Request::get("/api/admin/schedules").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app.admin_get("/api/admin/schedules/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_message_and_nothing_written() {
    let app = TestApp::new().await;
    let ok = || json!({"cron": "0 9 * * *", "timezone": "Europe/Berlin", "topic": "probe"});
    let with = |k: &str, v: Value| {
        let mut b = ok();
        b[k] = v;
        b
    };
    let cases = [
        ("digest", with("timezone", json!("Mars/Olympus")), "unknown time zone \"Mars/Olympus\""),
        ("digest", with("timezone", json!("x".repeat(100_000))), "unknown time zone"),
        ("digest", with("cron", json!("0 9 * * MON")), "invalid schedule"),
        ("digest", with("cron", json!("61 * * * *")), "invalid schedule"),
        ("digest", with("topic", json!("nobody-consumes")), "no job or consumer for topic \"nobody-consumes\""),
        ("digest", with("topic", json!("a b")), "invalid topic"),
        ("digest", with("payload", json!("x".repeat(70_000))), "the limit is 65536 bytes"),
        ("digest", with("zone", json!("UTC")), "unknown field `zone`"),
        ("digest", with("jitter_seconds", json!(3601)), "use 0 to 3600"),
        ("digest", with("jitter_seconds", json!(-1)), "jitter_seconds"),
        ("digest", with("jitter_seconds", json!(99_999_999_999u64)), "jitter_seconds"),
        ("digest", with("jitter_seconds", json!("60")), "jitter_seconds"),
        ("digest", with("catch_up", json!("no")), "catch_up"),
        ("digest", with("name", json!("other")), "unknown field `name`"),
        ("digest", json!({"topic": "probe"}), "missing field `cron`"),
        ("bad%20name", ok(), "invalid schedule name"),
        ("a%00b", ok(), "NUL"),
        (&"n".repeat(129), ok(), "1 to 128 bytes"),
    ];
    for (name, body, want) in cases {
        let (status, answer) = put(&app, name, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name} {body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("{answer}"));
        assert!(error.contains(want), "{name}: {error}");
    }
    let (_, answer) = put(&app, "digest", with("topic", json!("nobody-consumes"))).await;
    assert!(answer["error"].as_str().unwrap().contains("probe"), "the refusal lists the topics there are: {answer}");
    let (status, body) = app.call(admin("PUT", "/api/admin/schedules/digest", Some("{not json".into()))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(app.queue().schedules().list().await.unwrap(), vec![], "nothing written");
    let (status, _) = app.call(admin("DELETE", "/api/admin/schedules/a%00b", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_same_put_sent_sixteen_times_at_once_gives_one_schedule() {
    let app = TestApp::new().await;
    let body = json!({"cron": "0 9 * * *", "timezone": "America/New_York", "topic": "probe", "payload": {"n": 1}});
    let mut puts = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (router, body) = (app.router.clone(), body.to_string());
        puts.spawn(async move {
            let req = admin("PUT", "/api/admin/schedules/digest", Some(body));
            tower::ServiceExt::oneshot(router, req).await.unwrap().status()
        });
    }
    while let Some(status) = puts.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let all = app.queue().schedules().list().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].timezone.as_str(), &all[0].payload), ("America/New_York", &json!({"n": 1})));
}

#[tokio::test]
async fn delete_removes_a_schedule_and_answers_404_for_an_unknown_one() {
    let app = TestApp::new().await;
    assert_eq!(put(&app, "digest", json!({"cron": "0 9 * * *", "topic": "probe"})).await.0, StatusCode::OK);
    let (status, body) = app.call(admin("DELETE", "/api/admin/schedules/digest", None)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"deleted": true})));
    let (status, body) = app.call(admin("DELETE", "/api/admin/schedules/digest", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no schedule \"digest\""), "{body}");
    assert_eq!(app.admin_get("/api/admin/schedules").await.1["schedules"], json!([]));
}

#[tokio::test]
async fn trigger_enqueues_the_topic_under_the_schedule_key() {
    let app = TestApp::new().await;
    let payload = json!({"sleep_ms": 0});
    assert_eq!(
        put(&app, "probe-now", json!({"cron": "0 9 * * *", "topic": "probe", "payload": payload})).await.0,
        StatusCode::OK
    );
    let (status, fired) = app.call(admin("POST", "/api/admin/schedules/probe-now/trigger", None)).await;
    assert_eq!(status, StatusCode::OK, "{fired}");
    assert_eq!((fired["name"].as_str(), fired["duplicate"].as_bool()), (Some("probe-now"), Some(false)), "{fired}");
    let id = fired["messageId"].as_str().unwrap();
    let m = app.queue().message(id).await.unwrap().expect("the fire's message");
    assert_eq!(m.topic, "probe");
    let key = m.idempotency_key.clone().unwrap();
    assert!(key.starts_with("schedule:probe-now:") && key.ends_with('Z'), "{key}");
    assert_eq!(m.payload, payload);
    assert_eq!(app.dispatch("probe").await, 1, "the fire is a probe job that runs");
    let stored = app.queue().schedules().get("probe-now").await.unwrap().unwrap();
    assert_eq!(stored.last_message_id.as_deref(), Some(id));

    let (status, body) = app.call(admin("POST", "/api/admin/schedules/nope/trigger", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn a_serving_app_fires_a_due_schedule_by_itself() {
    // A manual clock: the schedule is due once it is moved past the next minute, and the
    // workers' schedule loop (every real second) fires it.
    let start: DateTime<Utc> = "2026-03-29T00:59:30Z".parse().unwrap();
    let app = TestApp::with_clock(Clock::manual(start)).await;
    let (status, body) = put(&app, "every-minute", json!({"cron": "* * * * *", "topic": "probe", "payload": {}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(times(&body)[0], "2026-03-29T01:00:00Z".parse::<DateTime<Utc>>().unwrap());
    let workers =
        vqs_axum::Workers::start(&app.state, app.router.clone(), vqs::DispatcherConfig::default()).await.unwrap();
    app.clock.advance(Duration::from_secs(31));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let id = loop {
        let s = app.queue().schedules().get("every-minute").await.unwrap().unwrap();
        if let Some(id) = s.last_message_id {
            assert_eq!(s.last_tick, Some("2026-03-29T01:00:00Z".parse().unwrap()));
            break id;
        }
        assert!(tokio::time::Instant::now() < deadline, "the schedule did not fire within 5 s: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let m = app.queue().message(&id).await.unwrap().unwrap();
    assert_eq!(m.idempotency_key.as_deref(), Some("schedule:every-minute:2026-03-29T01:00:00Z"));
    let names: Vec<String> = app.state.tasks.report().into_iter().map(|t| t.name).collect();
    assert!(names.iter().any(|n| n == "schedules"), "{names:?}");
    workers.stop().await;
}
