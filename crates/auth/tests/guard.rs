//! The guard's full matrix, through a real router (`oneshot`), asserting whether the
//! handler ran.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use auth::{CronAuth, TrustedLocalCall, with_cron_secret};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;

const SECRET: &str = "s3cr3t-value-for-tests";

struct Case {
    auth: CronAuth,
    runs: Arc<AtomicUsize>,
}

impl Case {
    fn new(secret: Option<&str>, local_dev: bool) -> Case {
        Case { auth: CronAuth::from_values(secret.map(str::to_owned), local_dev), runs: Arc::new(AtomicUsize::new(0)) }
    }

    fn app(&self) -> Router {
        let runs = self.runs.clone();
        let handler = get(move || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                "ran"
            }
        });
        Router::new().route("/api/cron/job", with_cron_secret(handler, self.auth.clone()))
    }

    /// Send `req` (to /api/cron/job unless built otherwise); returns status, body, and whether the handler ran.
    async fn send(&self, req: Request<Body>) -> (StatusCode, String, bool) {
        let before = self.runs.load(Ordering::SeqCst);
        let resp = self.app().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (status, body, self.runs.load(Ordering::SeqCst) > before)
    }
}

fn req(headers: &[(&str, &str)]) -> Request<Body> {
    let mut r = Request::get("/api/cron/job");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Body::empty()).unwrap()
}

fn from_peer(ip: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut r = req(headers);
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap_or_else(|_| format!("[{ip}]:40000").parse().unwrap());
    r.extensions_mut().insert(ConnectInfo(addr));
    r
}

fn bearer(s: &str) -> String {
    format!("Bearer {s}")
}

#[tokio::test]
async fn the_right_secret_runs_the_handler() {
    let c = Case::new(Some(SECRET), false);
    let (status, body, ran) = c.send(req(&[("authorization", &bearer(SECRET))])).await;
    assert_eq!((status, body.as_str(), ran), (StatusCode::OK, "ran", true));
}

#[tokio::test]
async fn anything_else_is_401_and_the_handler_does_not_run() {
    let c = Case::new(Some(SECRET), false);
    let wrong = [
        vec![],
        vec![("authorization", bearer("nope"))],
        vec![("authorization", format!("Basic {SECRET}"))],
        vec![("authorization", format!("bearer {SECRET}"))],
        vec![("authorization", format!("Bearer  {SECRET}"))],
        vec![("authorization", format!("Bearer {SECRET} "))],
        vec![("authorization", format!("Bearer {SECRET}x"))],
        vec![("authorization", format!("Bearer x{SECRET}"))],
        vec![("authorization", "Bearer".to_owned())],
        vec![("authorization", "Bearer ".to_owned())],
        vec![("authorization", SECRET.to_owned())],
    ];
    for headers in wrong {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body, ran) = c.send(req(&h)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{h:?}");
        assert!(!ran, "{h:?}");
        assert!(body.contains("Authorization: Bearer <CRON_SECRET>"), "{body}");
        assert!(!body.contains(SECRET), "the secret leaked into the body");
    }
}

#[tokio::test]
async fn spoofable_headers_never_open_a_route() {
    for local_dev in [false, true] {
        let c = Case::new(Some(SECRET), local_dev);
        let spoofs = [
            ("host", "localhost"),
            ("host", "127.0.0.1:3000"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-real-ip", "127.0.0.1"),
            ("forwarded", "for=127.0.0.1"),
            ("user-agent", "vercel-cron/1.0"),
            ("x-vercel-cron-schedule", "0 * * * *"),
            ("x-vercel-cron", "1"),
            ("x-vercel-id", "iad1::abc"),
        ];
        // No ConnectInfo at all, and a non-loopback peer: spoofed headers change nothing.
        let (status, _, ran) = c.send(req(&spoofs)).await;
        assert_eq!((status, ran), (StatusCode::UNAUTHORIZED, false), "local_dev={local_dev}");
        let (status, _, ran) = c.send(from_peer("10.0.0.5", &spoofs)).await;
        assert_eq!((status, ran), (StatusCode::UNAUTHORIZED, false), "local_dev={local_dev}");
    }
}

#[tokio::test]
async fn local_dev_skips_the_check_for_loopback_peers_only() {
    let c = Case::new(Some(SECRET), true);
    for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
        let (status, _, ran) = c.send(from_peer(ip, &[])).await;
        assert_eq!((status, ran), (StatusCode::OK, true), "{ip}");
    }
    for ip in ["10.0.0.5", "192.168.1.2", "::2", "8.8.8.8"] {
        let (status, _, ran) = c.send(from_peer(ip, &[])).await;
        assert_eq!((status, ran), (StatusCode::UNAUTHORIZED, false), "{ip}");
    }
    // The secret still works from anywhere.
    let (status, _, ran) = c.send(from_peer("10.0.0.5", &[("authorization", &bearer(SECRET))])).await;
    assert_eq!((status, ran), (StatusCode::OK, true));
}

#[tokio::test]
async fn without_local_dev_loopback_needs_the_secret_too() {
    let c = Case::new(Some(SECRET), false);
    let (status, _, ran) = c.send(from_peer("127.0.0.1", &[])).await;
    assert_eq!((status, ran), (StatusCode::UNAUTHORIZED, false));
}

#[tokio::test]
async fn an_in_process_call_counts_as_localhost_only_in_local_dev() {
    for (local_dev, want) in [(true, StatusCode::OK), (false, StatusCode::UNAUTHORIZED)] {
        let c = Case::new(Some(SECRET), local_dev);
        let mut r = req(&[]);
        r.extensions_mut().insert(TrustedLocalCall);
        let (status, _, ran) = c.send(r).await;
        assert_eq!((status, ran), (want, want == StatusCode::OK), "local_dev={local_dev}");
    }
}

#[tokio::test]
async fn no_secret_configured_fails_closed() {
    for secret in [None, Some(""), Some("   ")] {
        let c = Case::new(secret, false);
        for auth in ["Bearer ", "Bearer", "Bearer    ", "Bearer undefined"] {
            let (status, body, ran) = c.send(req(&[("authorization", auth)])).await;
            assert_eq!((status, ran), (StatusCode::UNAUTHORIZED, false), "{secret:?} {auth:?}");
            assert!(body.contains("no CRON_SECRET configured"), "{body}");
        }
        // Local dev from loopback still works without a secret.
        let c = Case::new(secret, true);
        let (status, _, ran) = c.send(from_peer("127.0.0.1", &[])).await;
        assert_eq!((status, ran), (StatusCode::OK, true));
        let (status, _, ran) = c.send(from_peer("10.0.0.1", &[])).await;
        assert_eq!((status, ran), (StatusCode::UNAUTHORIZED, false));
    }
}

#[tokio::test]
async fn unknown_paths_stay_404_and_401_carries_www_authenticate() {
    let c = Case::new(Some(SECRET), false);
    let resp = c.app().oneshot(Request::get("/api/cron/other").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c.app().oneshot(req(&[])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
}

#[test]
fn debug_output_never_shows_the_secret() {
    let auth = CronAuth::from_values(Some(SECRET.into()), true);
    assert!(!format!("{auth:?}").contains(SECRET));
}
