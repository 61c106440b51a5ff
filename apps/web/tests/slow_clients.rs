//! Slow and hostile clients against the real `web serve` over real sockets: half-sent and
//! trickled headers, partial bodies and idle connections are closed by the server's
//! timeouts while `/api/health` keeps answering; SIGTERM exits within the grace period
//! whatever the clients do; an over-limit body is refused with 413. Both backends
//! (VQS_TEST_BACKEND). No wall-time assertion beyond generous "it ends at all" bounds.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a socket may take to be closed by a server whose timeouts are 1–2 s: a bound
/// that only proves "closed at all".
const GENEROUS: Duration = Duration::from_secs(30);

async fn fresh_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = common::fresh_database_url(&dir).await;
    (dir, url)
}

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Read until the server closes the socket (EOF or reset); everything it said.
async fn until_closed(mut s: TcpStream) -> Option<String> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(GENEROUS, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&all).into_owned())
}

#[tokio::test]
async fn a_few_hundred_slow_sockets_are_closed_and_health_keeps_answering() {
    let (_dir, url) = fresh_url().await;
    let mut child = common::serve(
        &url,
        &[
            ("VQS_HTTP_HEADER_TIMEOUT_SECONDS", "1"),
            ("VQS_HTTP_BODY_TIMEOUT_SECONDS", "1"),
            ("VQS_HTTP_IDLE_TIMEOUT_SECONDS", "2"),
        ],
    );
    let base = common::serving(&mut child).await;
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(addr(&base)).await.unwrap();
        match i % 4 {
            0 => {}                                                                              // connected, silent
            1 => s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap(), // half-sent header
            2 => {
                // a partial body, without credentials
                let head = "POST /_vqs/api/v3/topic/probe HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
                s.write_all(head.as_bytes()).await.unwrap();
                s.write_all(b"{\"a\":").await.unwrap();
            }
            _ => {
                // a whole request, then an idle keep-alive connection
                s.write_all(b"GET /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            }
        }
        slow.push(s);
    }
    // With all of them open, health answers.
    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/api/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Trickle a header one byte at a time on one more socket: the header timeout still ends it.
    let mut trickle = TcpStream::connect(addr(&base)).await.unwrap();
    let trickled = tokio::spawn(async move {
        for b in b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if trickle.write_all(&[*b]).await.is_err() {
                return true; // closed by the server
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        until_closed(trickle).await.is_some()
    });
    for (i, s) in slow.into_iter().enumerate() {
        let said = until_closed(s).await.unwrap_or_else(|| panic!("socket {i} (kind {}) was never closed", i % 4));
        if i % 4 == 2 {
            assert!(said.starts_with("HTTP/1.1 408"), "a partial body is answered 408: {said}");
        }
    }
    assert!(trickled.await.unwrap(), "the trickled header was never cut off");
    assert_eq!(http.get(format!("{base}/api/health")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn sigterm_exits_within_the_grace_whatever_half_sent_requests_do() {
    let (_dir, url) = fresh_url().await;
    // Timeouts far beyond the grace: only the grace can end these connections.
    let mut child = common::serve(
        &url,
        &[
            ("VQS_HTTP_HEADER_TIMEOUT_SECONDS", "600"),
            ("VQS_HTTP_BODY_TIMEOUT_SECONDS", "600"),
            ("VQS_HTTP_IDLE_TIMEOUT_SECONDS", "600"),
            ("VQS_SHUTDOWN_GRACE_SECONDS", "2"),
        ],
    );
    let base = common::serving(&mut child).await;
    let mut half = TcpStream::connect(addr(&base)).await.unwrap();
    half.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut body = TcpStream::connect(addr(&base)).await.unwrap();
    body.write_all(b"POST /_vqs/api/v3/topic/probe HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .unwrap();
    // Both requests are in the server's hands before the signal.
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{base}/api/health/live")).send().await.unwrap().status(), 200);
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(GENEROUS, child.wait())
        .await
        .expect("web serve did not exit after SIGTERM with a half-sent request open")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    drop((half, body));
}

#[tokio::test]
async fn an_over_limit_body_is_refused_with_413_saying_what_the_limit_is() {
    let (_dir, url) = fresh_url().await;
    let mut child = common::serve(&url, &[("VQS_HTTP_MAX_BODY_BYTES", "2048")]);
    let base = common::serving(&mut child).await;
    let http = reqwest::Client::new();
    // Declared too long: refused before a byte of it is read, before credentials.
    let r = http.post(format!("{base}/api/admin/messages")).body(vec![b'x'; 4096]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("2048 bytes") && error.contains("VQS_HTTP_MAX_BODY_BYTES"), "{error}");
    // Chunked, with no length: refused once it passes the limit.
    let mut s = TcpStream::connect(addr(&base)).await.unwrap();
    s.write_all(b"POST /_vqs/api/v3/topic/probe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        s.write_all(b"400\r\n").await.unwrap();
        s.write_all(&[b'x'; 0x400]).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let said = until_closed(s).await.expect("the connection ends");
    assert!(said.starts_with("HTTP/1.1 413"), "{said}");
    // Within the limit, the request goes on to its handler (here: 401 without credentials).
    let r = http.post(format!("{base}/api/admin/messages")).body(vec![b'x'; 1024]).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
