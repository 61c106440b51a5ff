//! The dashboard through the router: login by form (the token never in a URL, a header we
//! send back or the page), a signed HttpOnly SameSite=Strict cookie, CSRF-checked actions,
//! escaping of attacker-controlled text. The browser test (e2e/dashboard) drives the same
//! pages in Chromium.

mod common;

use axum::body::Body;
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Resp {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

async fn send(app: &TestApp, req: Request<Body>) -> Resp {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Resp { status, headers, body }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

fn post_form(path: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut r = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(form.to_owned())).unwrap()
}

/// Sign in; returns the `name=value` cookie to send back.
async fn login(app: &TestApp) -> String {
    let r = send(app, post_form("/admin/login", None, &format!("token={ADMIN_TOKEN}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains(ADMIN_TOKEN), "the cookie is not the token");
    set.split(';').next().unwrap().to_owned()
}

fn csrf(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a form with a CSRF token") + r#"name="csrf" value=""#.len();
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn login_shows_the_dashboard_and_a_wrong_token_does_not() {
    let app = TestApp::new().await;
    let r = send(&app, get("/admin", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(r#"<form method="post" action="/admin/login">"#));
    assert!(r.headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().contains("script-src 'self'"));
    assert_eq!(r.headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");

    let r = send(&app, post_form("/admin/login", None, "token=nope")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Wrong token"));
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    assert!(!r.body.contains("nope"), "the attempt is not echoed");

    let cookie = login(&app).await;
    let r = send(&app, get("/admin", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    for section in ["Topics", "Crons", "Dead letters", "Recent executions", "/api/cron/sync-patients"] {
        assert!(r.body.contains(section), "{section}");
    }
    assert!(!r.body.contains(ADMIN_TOKEN));
    // The live part alone, for the page's polling; without a session it is a plain 401.
    let r = send(&app, get("/admin?fragment=1", Some(&cookie))).await;
    assert!(r.body.starts_with("<section>"), "{}", &r.body[..80.min(r.body.len())]);
    assert_eq!(send(&app, get("/admin?fragment=1", None)).await.status, StatusCode::UNAUTHORIZED);
    // A forged or foreign cookie is no session.
    let forged = format!("{cookie}x");
    assert!(send(&app, get("/admin", Some(&forged))).await.body.contains("/admin/login"));

    // Sign out needs the form's CSRF token, then the cookie is cleared.
    let page = send(&app, get("/admin", Some(&cookie))).await.body;
    let r = send(&app, post_form("/admin/logout", Some(&cookie), "csrf=wrong")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&app, post_form("/admin/logout", Some(&cookie), &format!("csrf={}", csrf(&page)))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn without_an_admin_token_the_dashboard_is_closed() {
    let mut app = TestApp::new().await;
    app.state.admin_token = None;
    app.router = web::app(app.state.clone());
    let r = send(&app, post_form("/admin/login", None, "token=")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("VQS_ADMIN_TOKEN"));
    assert!(r.headers.get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn error_text_and_params_are_escaped() {
    let app = TestApp::new().await;
    let evil = r#"<script>alert(1)</script><img src=x onerror=alert(2)>"#;
    // A payload that is not a probe's params: dead-lettered with serde's error, which
    // quotes the unknown field — attacker-controlled text in the error and the payload.
    let payload = serde_json::json!({ evil: evil });
    app.queue().send("probe", serde_json::to_vec(&payload).unwrap(), Default::default()).await.unwrap();
    app.dispatch("probe").await;
    let dead = app.queue().dead_letters(10).await.unwrap();
    assert!(dead[0].error.contains("<script>"), "{}", dead[0].error);

    let cookie = login(&app).await;
    for path in ["/admin".to_owned(), format!("/admin/messages/{}", dead[0].message_id)] {
        let body = send(&app, get(&path, Some(&cookie))).await.body;
        assert!(!body.contains("<script>alert"), "{path}: unescaped script");
        assert!(!body.contains("<img src=x"), "{path}: unescaped tag");
        assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path}: the text is shown, escaped");
    }
}

#[tokio::test]
async fn replay_and_discard_are_csrf_checked_posts() {
    let app = TestApp::new().await;
    let job = app.queue().job(jobs::Probe);
    for _ in 0..2 {
        job.perform_later(jobs::ProbeParams { fatal: Some(true), ..Default::default() }).await.unwrap();
    }
    app.dispatch("probe").await;
    let dead = app.queue().dead_letters(10).await.unwrap();
    let cookie = login(&app).await;
    let page = send(&app, get("/admin", Some(&cookie))).await.body;
    assert!(page.contains("probe asked to fail fatally"), "the error is on the page");
    let token = csrf(&page);

    // No token, a wrong one, or no session: refused, nothing replayed.
    let replay = format!("/admin/dead-letters/{}/replay", dead[0].id);
    for (cookie, form) in [
        (Some(cookie.as_str()), String::new()),
        (Some(cookie.as_str()), "csrf=x".into()),
        (None, format!("csrf={token}")),
    ] {
        let r = send(&app, post_form(&replay, cookie, &form)).await;
        assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::UNAUTHORIZED, "{:?}", r.status);
    }
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 2);
    // A GET does nothing either.
    assert_eq!(send(&app, get(&replay, Some(&cookie))).await.status, StatusCode::METHOD_NOT_ALLOWED);

    let r = send(&app, post_form(&replay, Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let to = r.headers.get(header::LOCATION).unwrap().to_str().unwrap().to_owned();
    assert!(to.starts_with("/admin/messages/msg_") && to.ends_with("?flash=replayed"), "{to}");
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 1);
    let r = send(&app, get(&to, Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Replayed"));

    let discard = format!("/admin/dead-letters/{}/discard", dead[1].id);
    let r = send(&app, post_form(&discard, Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(app.queue().dead_letters(10).await.unwrap().is_empty());
    // Again: it is gone, and the page says so instead of failing.
    let r = send(&app, post_form(&discard, Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(r.headers.get(header::LOCATION).unwrap(), "/admin?flash=not-found");
}

#[tokio::test]
async fn sign_out_revokes_the_session_in_every_process() {
    let app = TestApp::new().await;
    // Another process on the same database (same admin token).
    let other = TestApp::open(tempfile::tempdir().unwrap(), app.database_url.clone(), vqs::Clock::system()).await;
    let cookie = login(&app).await;
    let signed_in = |body: &str| body.contains("/admin/logout");
    let page = send(&app, get("/admin", Some(&cookie))).await.body;
    assert!(signed_in(&page));
    assert!(signed_in(&send(&other, get("/admin", Some(&cookie))).await.body), "any process accepts a session");

    let r = send(&app, post_form("/admin/logout", Some(&cookie), &format!("csrf={}", csrf(&page)))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // A copy of the cookie kept after sign-out is no session, here or in the other process.
    for a in [&app, &other] {
        let r = send(a, get("/admin", Some(&cookie))).await;
        assert!(!signed_in(&r.body) && r.body.contains("/admin/login"), "the signed-out cookie still works");
        assert_eq!(send(a, get("/admin?fragment=1", Some(&cookie))).await.status, StatusCode::UNAUTHORIZED);
    }
    // Signing in again gives a new session that works.
    let again = login(&other).await;
    assert!(signed_in(&send(&app, get("/admin", Some(&again))).await.body));
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_slowed_down_per_client() {
    let app = TestApp::new().await;
    let from = |peer: &str, token: &str| {
        let mut r = post_form("/admin/login", None, &format!("token={token}"));
        r.extensions_mut().insert(axum::extract::ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
        r
    };
    let attacker = "203.0.113.7:40000";
    for _ in 0..vqs_axum::dashboard::login_throttle::FREE_PER_IP {
        assert_eq!(send(&app, from(attacker, "guess")).await.status, StatusCode::UNAUTHORIZED);
    }
    // The next try from there waits — even with the right token, which is not even checked.
    let r = send(&app, from(attacker, ADMIN_TOKEN)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    assert!(r.body.contains("Too many failed sign-ins"));
    // Another client signs in as usual.
    assert_eq!(send(&app, from("198.51.100.2:50000", ADMIN_TOKEN)).await.status, StatusCode::SEE_OTHER);
}

fn location(r: &Resp) -> String {
    r.headers.get(header::LOCATION).expect("a redirect").to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_status_filter_lists_every_status_and_refuses_an_unknown_one() {
    let app = TestApp::new().await;
    let cookie = login(&app).await;
    let page = send(&app, get("/admin?status=cancelled", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    for s in ["running", "success", "failed", "snoozed", "cancelled"] {
        assert!(page.body.contains(&format!(r#"<option value="{s}""#)), "{s} is a filter");
    }
    assert!(page.body.contains(r#"<option value="cancelled" selected>"#));
    assert!(page.body.contains("cancelled (5 min)"), "the topics table counts cancelled attempts");
    let r = send(&app, get("/admin?status=done", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("use running, success, failed, snoozed or cancelled"), "{}", r.body);
}

#[tokio::test]
async fn run_now_on_a_message_page_is_a_csrf_checked_post_that_says_what_it_did() {
    let app = TestApp::new().await;
    let sent = app.queue().send(
        "probe",
        b"{}".to_vec(),
        vqs::SendOpts { delay: std::time::Duration::from_secs(3600), ..Default::default() },
    );
    let id = sent.await.unwrap().message_id;
    let cookie = login(&app).await;
    let path = format!("/admin/messages/{id}");
    let page = send(&app, get(&path, Some(&cookie))).await.body;
    let run_now = format!("{path}/run-now");
    assert!(page.contains(&format!(r#"action="{run_now}""#)), "a Run now button for a delayed message");
    assert!(page.contains(&format!(r#"action="{path}/cancel""#)), "a Cancel button for a pending message");
    let token = csrf(&page);

    for (cookie, form) in [(Some(cookie.as_str()), "csrf=x".to_owned()), (None, format!("csrf={token}"))] {
        let r = send(&app, post_form(&run_now, cookie, &form)).await;
        assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::UNAUTHORIZED, "{:?}", r.status);
    }
    assert_eq!(app.dispatch("probe").await, 0, "still delayed");

    let r = send(&app, post_form(&run_now, Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("{path}?flash=made-due"));
    let page = send(&app, get(&location(&r), Some(&cookie))).await.body;
    assert!(page.contains("Due now"), "{page}");
    assert!(!page.contains(&format!(r#"action="{run_now}""#)), "due now: no Run now button");
    // Clicked again (a second tab): it was due already, and says so.
    let r = send(&app, post_form(&run_now, Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(location(&r), format!("{path}?flash=due-already"));

    assert_eq!(app.dispatch("probe").await, 1);
    let page = send(&app, get(&path, Some(&cookie))).await.body;
    assert!(!page.contains(r#"id="message-actions""#), "a finished message has no Run now or Cancel");
    let r = send(&app, post_form(&run_now, Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(location(&r), format!("{path}?flash=not-made-due"));
    let page = send(&app, get(&location(&r), Some(&cookie))).await.body;
    assert!(page.contains("Not made due") && page.contains("has finished (succeeded in"), "{page}");
    // An unknown message: its page says there is none.
    let r = send(&app, post_form("/admin/messages/msg_nope/run-now", Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(location(&r), "/admin/messages/msg_nope");
}

// Cancel and purge need the stores' message_cancel / topic_purge (issue 18).

#[tokio::test]
async fn cancel_on_a_message_page_is_a_csrf_checked_post_that_says_what_it_did() {
    let app = TestApp::new().await;
    let sent = app.queue().send(
        "probe",
        b"{}".to_vec(),
        vqs::SendOpts { delay: std::time::Duration::from_secs(3600), ..Default::default() },
    );
    let id = sent.await.unwrap().message_id;
    let cookie = login(&app).await;
    let path = format!("/admin/messages/{id}");
    let page = send(&app, get(&path, Some(&cookie))).await.body;
    let cancel = format!("{path}/cancel");
    assert!(page.contains("data-confirm=\"Cancel this message?"), "it asks first");
    let token = csrf(&page);

    let r = send(&app, post_form(&cancel, Some(&cookie), "csrf=x")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(send(&app, get(&cancel, Some(&cookie))).await.status, StatusCode::METHOD_NOT_ALLOWED);

    let r = send(&app, post_form(&cancel, Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("{path}?flash=cancelled"));
    let page = send(&app, get(&location(&r), Some(&cookie))).await.body;
    assert!(page.contains("Cancelled: it will not run."), "{page}");
    assert!(page.contains(r#"<span id="message-state"><span class="badge warn">cancelled</span>"#), "{page}");
    assert!(!page.contains(r#"id="message-actions""#), "nothing left to cancel or run");
    assert!(app.queue().run_now(&id).await.is_err(), "a cancelled message cannot be made due");
    assert_eq!(app.dispatch("probe").await, 0, "it never runs");

    // Again (another tab): refused, with how it ended.
    let r = send(&app, post_form(&cancel, Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(location(&r), format!("{path}?flash=not-cancelled"));
    let page = send(&app, get(&location(&r), Some(&cookie))).await.body;
    assert!(page.contains("Not cancelled") && page.contains("has already finished (cancelled in"), "{page}");
}

#[tokio::test]
async fn purge_asks_first_showing_how_many_it_would_cancel() {
    let app = TestApp::new().await;
    for _ in 0..2 {
        app.queue().send("probe", b"{}".to_vec(), Default::default()).await.unwrap();
    }
    let cookie = login(&app).await;
    let overview = send(&app, get("/admin", Some(&cookie))).await.body;
    assert!(overview.contains(r#"href="/admin/queues/probe/purge""#), "a Purge link on a topic with pending messages");
    assert!(!overview.contains(r#"href="/admin/queues/cleanup/purge""#), "none on an empty topic");

    let confirm = send(&app, get("/admin/queues/probe/purge", Some(&cookie))).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("2 pending messages of this topic"), "{}", confirm.body);
    let waiting: i64 = app.queue().depth().await.unwrap().iter().map(|d| d.waiting).sum();
    assert_eq!(waiting, 2, "the confirmation is a dry run: nothing changed");
    let token = csrf(&confirm.body);

    let r = send(&app, post_form("/admin/queues/probe/purge", Some(&cookie), "csrf=x")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&app, post_form("/admin/queues/probe/purge", Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(location(&r), "/admin?flash=purged&count=2");
    let page = send(&app, get(&location(&r), Some(&cookie))).await.body;
    assert!(page.contains("Purged: 2 pending messages cancelled"), "{page}");
    assert_eq!(app.dispatch("probe").await, 0);

    let bad = send(&app, get("/admin/queues/bad%20topic/purge", Some(&cookie))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("invalid topic"), "{}", bad.body);
    // Without a session: back to the sign-in.
    assert_eq!(send(&app, get("/admin/queues/probe/purge", None)).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_overview_lists_runtime_schedules_with_their_times_and_heartbeat_escaped() {
    let now: chrono::DateTime<chrono::Utc> = "2026-01-05T10:00:30Z".parse().unwrap();
    let app = TestApp::with_clock(vqs::Clock::manual(now)).await;
    let cookie = login(&app).await;
    let r = send(&app, get("/admin", Some(&cookie))).await;
    assert!(r.body.contains(r#"<section id="schedules">"#) && r.body.contains("No runtime schedules."), "{}", r.body);

    let digest = vqs::Schedule::new("digest", "0 9 * * *", "probe").in_timezone("Europe/Paris");
    app.queue().schedules().upsert(digest).await.unwrap();
    // A row stored by an older version with other rules (here a zone no one has): shown
    // escaped, and failing since it cannot fire.
    let mut broken = vqs::Schedule::new("broken", "0 * * * *", "probe");
    broken.timezone = "<script>alert(1)</script>".into();
    app.queue()
        .store()
        .schedule_upsert(vqs::store::ScheduleUpsertParams { schedule: broken, next_fire_at: None, due_at: None, now })
        .await
        .unwrap();

    let r = send(&app, get("/admin", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    let section = &r.body[r.body.find(r#"<section id="schedules">"#).expect("a Schedules section")..];
    let section = &section[..section.find("</section>").unwrap()];
    for shown in [
        "digest",
        "<code>0 9 * * *</code>",
        "Europe/Paris",
        "probe",
        // 10:00:30 UTC is 11:00 in Paris: the next 09:00 there is tomorrow's.
        "2026-01-06 08:00:00 UTC",
        "2026-01-06 09:00:00 CET",
        "2026-01-07 08:00:00 UTC",
        "never",
        "ok",
        "broken",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "failing",
    ] {
        assert!(section.contains(shown), "{shown} in {section}");
    }
    assert!(!r.body.contains("<script>alert"), "escaped");
}

#[tokio::test]
async fn schedules_show_a_page_at_a_time_and_fire_now_is_a_csrf_checked_post() {
    let app = TestApp::new().await;
    for i in 0..51 {
        let s = vqs::Schedule::new(format!("tenant-{i:02}"), "0 9 * * *", "probe").in_timezone("Asia/Tokyo");
        app.queue().schedules().upsert(s).await.unwrap();
    }
    let cookie = login(&app).await;
    let page = send(&app, get("/admin", Some(&cookie))).await.body;
    assert!(page.contains(r#"<p id="schedule-counts">51 ok · 0 late · 0 failing</p>"#), "{page}");
    assert!(page.contains(r#"data-schedule="tenant-49""#) && !page.contains(r#"data-schedule="tenant-50""#));
    let next = r#"<a id="schedules-next" href="/admin?schedules_after=tenant-49#schedules">"#;
    assert!(page.contains(next), "a link to the next page");
    let second = send(&app, get("/admin?schedules_after=tenant-49&fragment=1", Some(&cookie))).await.body;
    assert!(second.contains(r#"data-schedule="tenant-50""#) && !second.contains(r#"data-schedule="tenant-49""#));
    assert!(second.contains(r#"id="schedules-first""#) && !second.contains(r#"id="schedules-next""#), "{second}");
    let bad = send(&app, get("/admin?schedules_after=a%00b", Some(&cookie))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("NUL"), "{}", bad.body);

    let fire = "/admin/schedules/tenant-00/fire";
    assert!(page.contains(&format!(r#"action="{fire}""#)), "a Fire now button");
    assert!(page.contains("data-confirm=\"Fire schedule tenant-00 now?"), "it asks first");
    let token = csrf(&page);
    for (cookie, form) in [(Some(cookie.as_str()), "csrf=x".to_owned()), (None, format!("csrf={token}"))] {
        let r = send(&app, post_form(fire, cookie, &form)).await;
        assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::UNAUTHORIZED, "{:?}", r.status);
    }
    assert_eq!(send(&app, get(fire, Some(&cookie))).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(app.queue().schedules().get("tenant-00").await.unwrap().unwrap().last_message_id, None, "not fired");

    let r = send(&app, post_form(fire, Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let id = app.queue().schedules().get("tenant-00").await.unwrap().unwrap().last_message_id.expect("fired");
    assert_eq!(location(&r), format!("/admin/messages/{id}?flash=schedule-fired"));
    let message = send(&app, get(&location(&r), Some(&cookie))).await.body;
    assert!(message.contains("Fired: this is the message the schedule published."), "{message}");
    let page = send(&app, get("/admin", Some(&cookie))).await.body;
    assert!(page.contains(&format!(r#"href="/admin/messages/{id}">message</a>"#)), "the last fire links its message");

    let r = send(&app, post_form("/admin/schedules/nope/fire", Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(location(&r), "/admin?flash=schedule-gone#schedules");
    let page = send(&app, get("/admin?flash=schedule-gone", Some(&cookie))).await.body;
    assert!(page.contains("Not fired: that schedule no longer exists"), "{page}");
    let r = send(&app, post_form("/admin/schedules/a%20b/fire", Some(&cookie), &format!("csrf={token}"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dead_letters_are_grouped_by_error_with_csrf_checked_retry_all_and_discard_all() {
    let app = TestApp::new().await;
    let job = app.queue().job(jobs::Probe);
    for _ in 0..3 {
        job.perform_later(jobs::ProbeParams { fatal: Some(true), ..Default::default() }).await.unwrap();
    }
    app.queue().send("probe", br#"{"sleep_ms": "<b>soon</b>"}"#.to_vec(), vqs::SendOpts::default()).await.unwrap();
    app.dispatch("probe").await;
    let cookie = login(&app).await;
    let page = send(&app, get("/admin", Some(&cookie))).await.body;
    assert!(page.contains(r#"id="dead-letter-groups""#), "the groups are shown");
    assert_eq!(page.matches("data-dead-letter-group>").count(), 2, "two groups");
    assert!(!page.contains("<b>soon"), "the error is escaped");
    let token = csrf(&page);
    let groups = app.queue().dead_letter_groups(10).await.unwrap();
    assert_eq!(groups[0].count, 3);
    let form = |csrf: &str| format!("csrf={}&topic=probe&error={}", enc(csrf), enc(&groups[0].error));

    // Without the session's CSRF token, or signed out: refused, nothing replayed.
    for (cookie, body) in [(Some(cookie.as_str()), form("x")), (None, form(&token))] {
        let r = send(&app, post_form("/admin/dead-letters/groups/retry", cookie, &body)).await;
        assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::UNAUTHORIZED, "{:?}", r.status);
    }
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 4);

    let r = send(&app, post_form("/admin/dead-letters/groups/retry", Some(&cookie), &form(&token))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(location(&r), "/admin?flash=group-replayed&count=3#dead-letters");
    assert_eq!(app.queue().dead_letters(10).await.unwrap().len(), 1, "the group's three were replayed");
    let page = send(&app, get("/admin?flash=group-replayed&count=3", Some(&cookie))).await.body;
    assert!(page.contains("3 dead letters replayed."), "the notice says how many");

    let error = &groups[1].error;
    let body = format!("csrf={}&topic=probe&error={}", enc(&token), enc(error));
    let r = send(&app, post_form("/admin/dead-letters/groups/discard", Some(&cookie), &body)).await;
    assert_eq!(location(&r), "/admin?flash=group-discarded&count=1#dead-letters");
    assert!(app.queue().dead_letters(10).await.unwrap().is_empty());
}

/// A form value, percent-encoded.
fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}
