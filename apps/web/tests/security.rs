//! The security matrix, in one place: every protected route family — cron routes, the
//! `/_vqs` queue API, consumer routes, the admin API, `/metrics` and the dashboard — refuses
//! missing, wrong and spoofed credentials and does nothing when it refuses; an app with no
//! secrets configured refuses everything (fail closed); `IS_LOCAL_DEV` opens cron routes to
//! loopback peers only; a real serving process never shows a secret in its logs, error bodies,
//! metrics or dashboard; SQL is built only from constants and bound parameters.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use common::{ADMIN_TOKEN, CRON_SECRET, QUEUE_SECRET, TestApp};
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vqs::store::ExecutionListParams;

/// Which secret a route family takes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Cron,
    QueueApi,
    Consumer,
    Admin,
    Metrics,
}

impl Family {
    fn secret(self) -> &'static str {
        match self {
            Family::Cron => CRON_SECRET,
            Family::QueueApi | Family::Consumer => QUEUE_SECRET,
            Family::Admin | Family::Metrics => ADMIN_TOKEN,
        }
    }
}

/// One protected route of each kind the app serves (every cron, every queue API route, every
/// consumer, every admin route, metrics).
fn protected_routes() -> Vec<(Family, Method, &'static str, &'static str)> {
    use Family::*;
    let delivery = "/api/queue/probe";
    vec![
        (Cron, Method::GET, "/api/cron/sync-patients", ""),
        (Cron, Method::GET, "/api/cron/cleanup", ""),
        (Cron, Method::GET, "/api/cron/maintenance", ""),
        (Cron, Method::GET, "/api/cron/schedules", ""),
        (QueueApi, Method::POST, "/_vqs/api/v3/topic/probe", "{}"),
        (QueueApi, Method::POST, "/_vqs/api/v3/topic/probe/consumer/workers", ""),
        (QueueApi, Method::DELETE, "/_vqs/api/v3/topic/probe/consumer/workers/lease/m.t", ""),
        (QueueApi, Method::PATCH, "/_vqs/api/v3/topic/probe/consumer/workers/lease/m.t", "{}"),
        (Consumer, Method::POST, delivery, "{}"),
        (Consumer, Method::POST, "/api/queue/sync-patient", "{}"),
        (Consumer, Method::POST, "/api/queue/sync-accounts", "{}"),
        (Consumer, Method::POST, "/api/queue/export-records", "{}"),
        (Consumer, Method::POST, "/api/queue/cleanup", "{}"),
        (Admin, Method::GET, "/api/admin/executions", ""),
        (Admin, Method::POST, "/api/admin/messages", r#"{"topic":"probe","payload":{}}"#),
        (Admin, Method::GET, "/api/admin/messages/m", ""),
        (Admin, Method::POST, "/api/admin/messages/m/run-now", ""),
        (Admin, Method::POST, "/api/admin/messages/m/cancel", ""),
        (Admin, Method::POST, "/api/admin/queues/probe/purge", ""),
        (Admin, Method::POST, "/api/admin/queues/probe/pause", ""),
        (Admin, Method::POST, "/api/admin/queues/probe/resume", ""),
        (Admin, Method::GET, "/api/admin/queues", ""),
        (Admin, Method::GET, "/api/admin/dead-letters", ""),
        (Admin, Method::POST, "/api/admin/dead-letters/m/replay", ""),
        (Admin, Method::DELETE, "/api/admin/dead-letters/m", ""),
        (Admin, Method::GET, "/api/admin/crons", ""),
        (Admin, Method::GET, "/api/admin/progress", ""),
        (Admin, Method::GET, "/api/admin/sync-log", ""),
        (Metrics, Method::GET, "/metrics", ""),
    ]
}

/// Headers a client can set to look local, or like Vercel's own cron and queue callers.
const SPOOFS: &[(&str, &str)] = &[
    ("host", "localhost"),
    ("x-forwarded-for", "127.0.0.1"),
    ("x-real-ip", "127.0.0.1"),
    ("forwarded", "for=127.0.0.1;proto=https"),
    ("x-vercel-forwarded-for", "127.0.0.1"),
    ("x-vercel-cron", "1"),
    ("user-agent", "vercel-cron/1.0"),
    ("x-vercel-id", "iad1::abc"),
    ("ce-type", "com.vercel.queue.v2beta"),
    ("x-vercel-oidc-token", "eyJhbGciOiJub25lIn0.e30."),
];

/// Every Authorization a caller without the route's secret might send: none, wrong, empty,
/// near misses, another family's secret, the right value in the wrong scheme.
fn wrong_authorizations(family: Family) -> Vec<Option<String>> {
    let right = family.secret();
    let mut v = vec![
        None,
        Some("Bearer wrong".into()),
        Some("Bearer ".into()),
        Some("Bearer".into()),
        Some(right.into()),
        Some(format!("Basic {right}")),
        Some(format!("Bearer {}", &right[..right.len() - 1])),
        Some(format!("Bearer {right}x")),
        Some(format!("Bearer  {right} extra")),
    ];
    for other in [CRON_SECRET, QUEUE_SECRET, ADMIN_TOKEN] {
        if other != right {
            v.push(Some(format!("Bearer {other}")));
        }
    }
    v
}

fn request(method: &Method, path: &str, body: &str, auth: Option<&str>, spoof: bool) -> Request<Body> {
    let mut r = Request::builder().method(method.clone()).uri(path);
    if let Some(a) = auth {
        r = r.header(header::AUTHORIZATION, a);
    }
    if spoof {
        for (k, v) in SPOOFS {
            r = r.header(*k, *v);
        }
    }
    if !body.is_empty() {
        r = r.header(header::CONTENT_TYPE, "application/json");
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

async fn send(app: &TestApp, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn assert_no_secret(what: &str, text: &str) {
    for s in [CRON_SECRET, QUEUE_SECRET, ADMIN_TOKEN] {
        assert!(!text.contains(s), "{what} shows a secret: {text}");
    }
}

/// Nothing was queued, run or recorded by a refused request.
async fn assert_untouched(app: &TestApp) {
    assert_eq!(app.queue().stats().await.unwrap(), vec![], "nothing queued");
    let runs = app.queue().executions(ExecutionListParams { limit: 10, ..Default::default() }).await.unwrap();
    assert!(runs.is_empty(), "nothing ran: {runs:?}");
}

#[tokio::test]
async fn every_protected_route_refuses_missing_wrong_and_spoofed_credentials() {
    let app = TestApp::new().await;
    let mut checked = 0;
    for (family, method, path, body) in protected_routes() {
        for auth in wrong_authorizations(family) {
            for spoof in [false, true] {
                let (status, text) = send(&app, request(&method, path, body, auth.as_deref(), spoof)).await;
                let case = format!("{method} {path} with {auth:?}, spoofed headers: {spoof}");
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {text}");
                assert_no_secret(&case, &text);
                checked += 1;
            }
        }
    }
    assert_untouched(&app).await;
    // The control: each route's own secret opens it (so the refusals above are the guard's).
    for (family, method, path, body) in protected_routes() {
        let auth = format!("Bearer {}", family.secret());
        let (status, text) = send(&app, request(&method, path, body, Some(&auth), false)).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path} with its secret: {text}");
    }
    eprintln!("{checked} refused requests checked");
}

#[tokio::test]
async fn with_no_secrets_configured_every_protected_route_fails_closed() {
    let app = TestApp::with_config(|c| {
        c.cron_secret = None;
        c.queue_secret = None;
        c.admin_token = None;
        c.metrics_token = None;
    })
    .await;
    for (family, method, path, body) in protected_routes() {
        for auth in [None, Some(format!("Bearer {}", family.secret())), Some("Bearer ".into())] {
            let (status, text) = send(&app, request(&method, path, body, auth.as_deref(), true)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {auth:?}: {text}");
            // It says what to set, so the operator knows why.
            let var = match family {
                Family::Cron => "CRON_SECRET",
                Family::QueueApi | Family::Consumer => "VQS_QUEUE_SECRET",
                Family::Admin => "VQS_ADMIN_TOKEN",
                Family::Metrics => "VQS_",
            };
            assert!(text.contains(var), "{method} {path}: the refusal names {var}: {text}");
        }
    }
    // The dashboard has no token to sign in with: the login refuses any.
    let (status, _) = send(
        &app,
        Request::post("/admin/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={ADMIN_TOKEN}")))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_untouched(&app).await;
}

fn with_cookie(mut r: http::request::Builder, cookie: &Option<String>) -> Request<Body> {
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

fn from_peer(mut req: Request<Body>, peer: &str) -> Request<Body> {
    req.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    req
}

#[tokio::test]
async fn local_dev_opens_cron_routes_to_loopback_peers_only_and_nothing_else() {
    let app = TestApp::with_config(|c| c.is_local_dev = true).await;
    // A remote peer dressed up as local is still refused.
    for peer in ["203.0.113.7:5000", "10.0.0.2:443", "[2001:db8::1]:80"] {
        let (status, text) =
            send(&app, from_peer(request(&Method::GET, "/api/cron/cleanup", "", None, true), peer)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "from {peer}: {text}");
    }
    // A loopback peer gets the cron route without the secret…
    for peer in ["127.0.0.1:5000", "[::1]:5000"] {
        let (status, text) =
            send(&app, from_peer(request(&Method::GET, "/api/cron/cleanup", "", None, false), peer)).await;
        assert_eq!(status, StatusCode::OK, "from {peer}: {text}");
    }
    // …and nothing else: the queue API, consumers, admin and metrics keep their secrets.
    for (family, method, path, body) in protected_routes().into_iter().filter(|r| r.0 != Family::Cron) {
        let (status, text) = send(&app, from_peer(request(&method, path, body, None, false), "127.0.0.1:5000")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{family:?} {method} {path} from loopback: {text}");
    }
}

#[tokio::test]
async fn the_dashboard_refuses_forged_sessions_and_actions_without_one() {
    let app = TestApp::new().await;
    // A dead letter a forged replay or discard would act on.
    app.queue().send("probe", br#"{"fatal":true}"#.to_vec(), Default::default()).await.unwrap();
    assert_eq!(app.dispatch("probe").await, 1);
    let dead = app.queue().dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let id = dead[0].id;
    // A delayed message a forged cancel, run now or purge would act on.
    let delayed = vqs::SendOpts { delay: std::time::Duration::from_secs(3600), ..Default::default() };
    let waiting = app.queue().send("probe", b"{}".to_vec(), delayed).await.unwrap().message_id;
    let forged = [
        None,
        Some(format!("vqs_session={ADMIN_TOKEN}")),
        Some("vqs_session=".into()),
        Some("vqs_session=9999999999.deadbeef".into()),
        Some(format!("vqs_session=9999999999.{}", "0".repeat(64))),
    ];
    for cookie in &forged {
        let mut page = Request::get(format!("/admin/messages/{}", dead[0].message_id));
        let mut actions = [
            format!("/admin/dead-letters/{id}/replay"),
            format!("/admin/dead-letters/{id}/discard"),
            format!("/admin/messages/{waiting}/cancel"),
            format!("/admin/messages/{waiting}/run-now"),
            "/admin/queues/probe/purge".to_owned(),
            "/admin/queues/probe/pause".to_owned(),
            "/admin/queues/probe/resume".to_owned(),
        ]
        .map(|a| Request::post(a).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"));
        for r in std::iter::once(&mut page).chain(actions.iter_mut()) {
            let mut b = std::mem::take(r);
            if let Some(c) = cookie {
                b = b.header(header::COOKIE, c);
            }
            for (k, v) in SPOOFS {
                b = b.header(*k, *v);
            }
            *r = b;
        }
        let resp = app.router.clone().oneshot(page.body(Body::empty()).unwrap()).await.unwrap();
        // No session: sent to the login page, never shown the message.
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{cookie:?}");
        assert_eq!(resp.headers()[header::LOCATION], "/admin", "{cookie:?}");
        // The purge's confirmation (a dry run) is not shown either.
        let confirm = with_cookie(Request::get("/admin/queues/probe/purge"), cookie);
        let resp = app.router.clone().oneshot(confirm).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{cookie:?}");
        let (_, text) = send(&app, with_cookie(Request::get("/admin"), cookie)).await;
        assert!(text.contains(r#"name="token""#), "{cookie:?}: the login form: {text}");
        for action in actions {
            let (status, text) = send(&app, action.body(Body::from("csrf=x")).unwrap()).await;
            assert!(
                status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
                "{cookie:?}: {status} {text}"
            );
            assert_no_secret("the dashboard", &text);
        }
    }
    // The dead letter is still there, neither replayed nor discarded.
    let after = app.queue().dead_letters(10).await.unwrap();
    assert_eq!(after.iter().map(|d| d.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(app.attempts(&dead[0].message_id).await.len(), 1, "not run again");
    // The delayed message is neither cancelled nor made due.
    let m = app.queue().message(&waiting).await.unwrap().unwrap();
    let d = &m.deliveries[0];
    assert_eq!(d.state, vqs::store::DeliveryState::Pending);
    assert!(d.visible_at > app.clock.now() + chrono::Duration::minutes(30), "still delayed: {d:?}");
    assert!(app.queue().topic_controls().await.unwrap().is_empty(), "no forged pause or resume");
}

/// Start `web serve` with every secret set and debug logs on; returns the process and its
/// address (read from the line it prints when it listens) and the stdout reader.
async fn serve_with_secrets(database_url: &str) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("VQS_VERCEL_JSON", common::repo_root().join("vercel.json"))
        .env("PORT", "0")
        .env("CRON_SECRET", CRON_SECRET)
        .env("VQS_QUEUE_SECRET", QUEUE_SECRET)
        .env("VQS_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("VQS_METRICS_TOKEN", "test-metrics-token")
        .env("RUST_LOG", "trace,sqlx=info,hyper=info,h2=info,reqwest=info")
        .env_remove("IS_LOCAL_DEV")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start web serve");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("vqs listening on ") {
                return url.to_owned();
            }
        }
        panic!("web serve exited before listening")
    })
    .await
    .expect("web serve did not start");
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_process_never_shows_a_secret_in_logs_bodies_metrics_or_the_dashboard() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::fresh_database_url(&dir).await;
    let (mut child, base) = serve_with_secrets(&database_url).await;
    // Drain the trace-level log as it is written: a full pipe would block the server.
    let mut stderr = child.stderr.take().unwrap();
    let log_reader = tokio::spawn(async move {
        let mut logs = String::new();
        stderr.read_to_string(&mut logs).await.map(|_| logs)
    });
    let secrets = [CRON_SECRET, QUEUE_SECRET, ADMIN_TOKEN, "test-metrics-token"];
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut seen = String::new();
    let record = |resp: reqwest::Response| async move {
        let mut text = format!("{} ", resp.status());
        for (k, v) in resp.headers() {
            text += &format!("{k}: {} ", v.to_str().unwrap_or(""));
        }
        text + &resp.text().await.unwrap()
    };
    // Right and near-miss secrets on every family, a job that runs, a failing one, the
    // dashboard signed in, metrics scraped.
    for (family, method, path, body) in protected_routes() {
        let right = family.secret();
        for auth in [format!("Bearer {right}"), format!("Bearer {right}x"), format!("Bearer {}", &right[1..])] {
            let req = http.request(method.clone(), format!("{base}{path}")).header("authorization", auth);
            let req = if body.is_empty() { req } else { req.header("content-type", "application/json").body(body) };
            seen += &record(req.send().await.unwrap()).await;
        }
    }
    let admin = format!("Bearer {ADMIN_TOKEN}");
    for payload in [r#"{"topic":"probe","payload":{}}"#, r#"{"topic":"probe","payload":{"fatal":true}}"#] {
        let r = http.post(format!("{base}/api/admin/messages")).header("authorization", &admin);
        seen += &record(r.header("content-type", "application/json").body(payload).send().await.unwrap()).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the dispatcher run them
    let login = http
        .post(format!("{base}/admin/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    seen += &record(login).await;
    for page in ["/admin", "/admin/assets/dashboard.js"] {
        seen += &record(http.get(format!("{base}{page}")).header("cookie", &cookie).send().await.unwrap()).await;
    }
    for token in ["test-metrics-token", ADMIN_TOKEN] {
        let r = http.get(format!("{base}/metrics")).header("authorization", format!("Bearer {token}"));
        let text = record(r.send().await.unwrap()).await;
        assert!(text.contains("vqs_"), "metrics were served: {text}");
        seen += &text;
    }
    seen += &record(http.get(format!("{base}/api/health")).send().await.unwrap()).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let logs = log_reader.await.unwrap().unwrap();
    assert!(logs.contains("dashboard login"), "debug logs were captured: {}", &logs[..logs.len().min(2000)]);
    for s in secrets {
        assert!(!seen.contains(s), "a response showed {s}");
        if let Some(at) = logs.find(s) {
            panic!("the logs show {s}: …{}…", &logs[at.saturating_sub(300)..(at + 100).min(logs.len())]);
        }
    }
}

/// Every SQL string the backends build with `format!` interpolates only constants (column
/// lists, fixed table names) or a name checked before use; every value is a bound parameter.
#[test]
fn sql_is_built_only_from_constants_and_bound_parameters() {
    let allowed_names = ["set", "table", "name", "base", "sql"];
    let mut checked = 0;
    for dir in ["crates/vqs-postgres/src", "crates/vqs-sqlite/src"] {
        for entry in std::fs::read_dir(common::repo_root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let src = std::fs::read_to_string(&path).unwrap();
            for (at, _) in src.match_indices("format!(") {
                let call = &src[at..];
                let literal = call.split('"').nth(1).unwrap_or("");
                // The backends write SQL keywords in capitals; messages are in lower case.
                let is_sql = ["SELECT ", "INSERT ", "UPDATE ", "DELETE ", "DROP ", "CREATE "]
                    .iter()
                    .any(|k| literal.contains(k));
                if !is_sql {
                    continue;
                }
                checked += 1;
                let line = src[..at].lines().count() + 1;
                assert!(!literal.contains("'{"), "{}:{line}: a value quoted into SQL: {literal}", path.display());
                for hole in literal.split('{').skip(1) {
                    let name = hole.split(['}', ':']).next().unwrap_or("");
                    let constant = !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_');
                    assert!(
                        constant || allowed_names.contains(&name),
                        "{}:{line}: `{{{name}}}` is interpolated into SQL; bind it as a parameter",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(checked >= 5, "the scan found the backends' SQL ({checked} format! calls)");
}

#[tokio::test]
async fn a_short_or_shared_secret_is_warned_about_at_start_up_without_showing_it() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::fresh_database_url(&dir).await;
    let weak = "Zq9weak";
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_web"))
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("VQS_VERCEL_JSON", common::repo_root().join("vercel.json"))
        .env("PORT", "0")
        .env("VQS_ADMIN_TOKEN", weak)
        .env("CRON_SECRET", weak)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start web serve");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut short, mut shared, mut logs) = (false, false, String::new());
    tokio::time::timeout(Duration::from_secs(60), async {
        while !(short && shared) {
            let Some(line) = lines.next_line().await.unwrap() else { break };
            short |= line.contains("VQS_ADMIN_TOKEN is only 7 characters long");
            shared |= line.contains("VQS_ADMIN_TOKEN and CRON_SECRET have the same value");
            logs += &line;
        }
    })
    .await
    .expect("no start-up warnings");
    child.start_kill().unwrap();
    assert!(short && shared, "{logs}");
    assert!(!logs.contains(weak), "the warning showed the secret: {logs}");
}
