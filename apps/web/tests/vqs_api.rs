//! The local Vercel Queue Service (v3 data plane) under /_vqs, through the router.

mod common;

use axum::body::Body;
use base64::Engine as _;
use common::{QUEUE_SECRET, TestApp};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn publish(topic: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut r = Request::post(format!("/_vqs/api/v3/topic/{topic}"))
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

fn receive(path: &str, accept: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut r = Request::post(format!("/_vqs/api/v3/topic/{path}"))
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .header("accept", accept);
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(Body::empty()).unwrap()
}

async fn raw(app: &TestApp, req: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn ndjson(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// One part: its headers (lower-cased names) and its body.
type Part = (Vec<(String, String)>, Vec<u8>);

/// A small honest multipart/mixed parser.
fn multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary = content_type.split("boundary=").nth(1).expect("boundary").trim_matches('"');
    let text = String::from_utf8(body.to_vec()).unwrap();
    let delimiter = format!("--{boundary}");
    assert!(text.trim_end().ends_with(&format!("{delimiter}--")), "closing delimiter");
    text.split(&delimiter)
        .skip(1)
        .filter(|p| !p.starts_with("--"))
        .map(|part| {
            let part = part.strip_prefix("\r\n").unwrap();
            let (head, body) = part.split_once("\r\n\r\n").expect("blank line after part headers");
            let headers = head
                .split("\r\n")
                .map(|l| {
                    let (k, v) = l.split_once(": ").unwrap();
                    (k.to_ascii_lowercase(), v.to_owned())
                })
                .collect();
            (headers, body.strip_suffix("\r\n").unwrap().as_bytes().to_vec())
        })
        .collect()
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    &headers.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no part header {name}")).1
}

#[tokio::test]
async fn a_probe_published_through_the_send_endpoint_runs_once_and_succeeds() {
    let app = TestApp::new().await;
    let (status, headers, body) = raw(&app, publish("probe", &[], "{}")).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = serde_json::from_slice::<Value>(&body).unwrap()["messageId"].as_str().unwrap().to_owned();
    assert_eq!(headers["vqs-message-id"], id.as_str());
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&id).await, vec![(1, "success".to_owned())]);
}

#[tokio::test]
async fn every_route_needs_the_queue_secret() {
    let app = TestApp::new().await;
    for auth in [None, Some("Bearer wrong"), Some("Bearer "), Some(QUEUE_SECRET)] {
        let mut r = Request::post("/_vqs/api/v3/topic/probe")
            .header("host", "localhost")
            .header("x-forwarded-for", "127.0.0.1");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let (status, body) = app.call(r.body(Body::from("{}")).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(body["error"].as_str().unwrap().contains("VQS_QUEUE_SECRET"));
    }
    assert_eq!(app.queue().stats().await.unwrap(), vec![], "nothing queued");
    let (status, _) = app.call(Request::get("/_vqs/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_same_idempotency_key_twice_queues_one_message() {
    let app = TestApp::new().await;
    let (_, h1, b1) = raw(&app, publish("probe", &[("vqs-idempotency-key", "order-1")], "{}")).await;
    let (status, h2, b2) = raw(&app, publish("probe", &[("vqs-idempotency-key", "order-1")], "{}")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(b1, b2, "the original's id");
    assert!(h1.get("vqs-duplicate").is_none());
    assert_eq!(h2["vqs-duplicate"], "true");
    assert_eq!(app.dispatch("probe").await, 1);
}

#[tokio::test]
async fn invalid_headers_are_refused_and_queue_nothing() {
    let app = TestApp::new().await;
    let long_key = "k".repeat(257);
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("probe", vec![("vqs-delay-seconds", "soon")], "vqs-delay-seconds must be a whole number"),
        ("probe", vec![("vqs-delay-seconds", "-1")], "vqs-delay-seconds"),
        ("probe", vec![("vqs-retention-seconds", "10")], "vqs-retention-seconds must be a whole number from 60"),
        ("probe", vec![("vqs-retention-seconds", "60"), ("vqs-delay-seconds", "120")], "cannot exceed the retention"),
        ("probe", vec![("vqs-idempotency-key", long_key.as_str())], "idempotency key"),
        ("bad.topic", vec![], "invalid topic"),
    ];
    for (topic, headers, want) in cases {
        let (status, body) = app.call(publish(topic, &headers, "{}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?}");
        assert!(body["error"].as_str().unwrap().contains(want), "{headers:?}: {body}");
    }
    assert_eq!(app.queue().stats().await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_poll_consumer_receives_ndjson_and_acknowledges() {
    let app = TestApp::new().await;
    let (_, _, b) = raw(&app, publish("orders", &[], r#"{"order":1}"#)).await;
    let id = serde_json::from_slice::<Value>(&b).unwrap()["messageId"].as_str().unwrap().to_owned();
    // A new consumer group starts at the beginning of the topic.
    let (status, headers, body) = raw(&app, receive("orders/consumer/poller", "application/x-ndjson", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let lines = ndjson(&body);
    assert_eq!(lines.len(), 1);
    let m = &lines[0];
    assert_eq!(m["messageId"], id.as_str());
    assert_eq!(m["deliveryCount"], 1);
    assert_eq!(m["contentType"], "application/json");
    let payload = base64::engine::general_purpose::STANDARD.decode(m["body"].as_str().unwrap()).unwrap();
    assert_eq!(payload, br#"{"order":1}"#);
    for field in ["timestamp", "expiresAt", "receiptHandle"] {
        assert!(m[field].is_string(), "{field}");
    }
    // Leased: nothing more to receive.
    let (status, _, _) = raw(&app, receive("orders/consumer/poller", "application/x-ndjson", &[])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let handle = m["receiptHandle"].as_str().unwrap();
    let ack = || {
        Request::delete(format!("/_vqs/api/v3/topic/orders/consumer/poller/lease/{}", handle))
            .header("authorization", format!("Bearer {QUEUE_SECRET}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, _) = raw(&app, ack()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.call(ack()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn multipart_receive_and_a_released_lease_comes_back() {
    let app = TestApp::new().await;
    raw(&app, publish("orders", &[], "first")).await;
    raw(&app, publish("orders", &[], "second")).await;
    let (status, headers, body) = raw(
        &app,
        receive(
            "orders/consumer/mp",
            "multipart/mixed",
            &[("vqs-max-messages", "10"), ("vqs-visibility-timeout-seconds", "30")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let parts = multipart(headers["content-type"].to_str().unwrap(), &body);
    assert_eq!(parts.len(), 2);
    let bodies: Vec<&[u8]> = parts.iter().map(|(_, b)| b.as_slice()).collect();
    assert!(bodies.contains(&&b"first"[..]) && bodies.contains(&&b"second"[..]));
    for (h, _) in &parts {
        assert_eq!(get(h, "vqs-delivery-count"), "1");
        for name in ["vqs-message-id", "vqs-receipt-handle", "vqs-timestamp", "vqs-expires-at", "content-type"] {
            get(h, name);
        }
    }
    // Release one lease with visibility 0: it can be received again, delivery count 2.
    let handle = get(&parts[0].0, "vqs-receipt-handle").to_owned();
    let patch = Request::patch(format!("/_vqs/api/v3/topic/orders/consumer/mp/lease/{handle}"))
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"visibilityTimeoutSeconds":0}"#))
        .unwrap();
    let (status, body) = app.call(patch).await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!({"success": true})));
    let (status, _, body) = raw(&app, receive("orders/consumer/mp", "application/x-ndjson", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ndjson(&body)[0]["deliveryCount"], 2);

    let bad = Request::patch(format!("/_vqs/api/v3/topic/orders/consumer/mp/lease/{handle}/visibility"))
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .body(Body::from(r#"{"visibilityTimeoutSeconds":7200}"#))
        .unwrap();
    let (status, body) = app.call(bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn receive_by_id_reports_locked_acknowledged_and_unknown() {
    let app = TestApp::new().await;
    let (_, _, b) = raw(&app, publish("orders", &[], "x")).await;
    let id = serde_json::from_slice::<Value>(&b).unwrap()["messageId"].as_str().unwrap().to_owned();
    let by_id = |id: &str| receive(&format!("orders/consumer/byid/id/{id}"), "application/x-ndjson", &[]);
    let (status, _, body) = raw(&app, by_id(&id)).await;
    assert_eq!(status, StatusCode::OK);
    let handle = ndjson(&body)[0]["receiptHandle"].as_str().unwrap().to_owned();
    let (status, _) = app.call(by_id(&id)).await;
    assert_eq!(status, StatusCode::CONFLICT, "locked while leased");
    let ack = Request::delete(format!("/_vqs/api/v3/topic/orders/consumer/byid/lease/{handle}"))
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.call(ack).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.call(by_id(&id)).await.0, StatusCode::GONE);
    assert_eq!(app.call(by_id("msg_unknown")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn receive_needs_an_accept_it_can_answer() {
    let app = TestApp::new().await;
    let (status, body) = app.call(receive("orders/consumer/x", "application/json", &[])).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert!(body["error"].as_str().unwrap().contains("multipart/mixed or application/x-ndjson"));
    let (status, _) =
        app.call(receive("orders/consumer/x", "application/x-ndjson", &[("vqs-max-messages", "11")])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Found by the `receive_codec` fuzz target: a content type with a CRLF, published from Rust
/// (`SendOpts::content_type` is free text), was written as-is into a multipart receive's part
/// headers, forging the headers after it. `Queue::send` now refuses it.
#[tokio::test]
async fn a_content_type_with_a_line_break_is_refused_and_cannot_forge_part_headers() {
    let app = TestApp::new().await;
    let forged = "text/plain\r\nVqs-Message-Id: forged";
    let opts = vqs::SendOpts { content_type: Some(forged.into()), ..vqs::SendOpts::default() };
    let err = app.queue().send("orders", b"x".to_vec(), opts).await.unwrap_err();
    assert!(err.to_string().contains("invalid content type"), "{err}");
    let (status, _, body) = raw(&app, receive("orders/consumer/mp", "multipart/mixed", &[])).await;
    assert!(!String::from_utf8_lossy(&body).contains("forged"), "{status}");
    let ok = vqs::SendOpts { content_type: Some("text/plain; charset=utf-8".into()), ..vqs::SendOpts::default() };
    app.queue().send("orders", b"x".to_vec(), ok).await.unwrap();
}

#[tokio::test]
async fn a_lease_route_naming_another_topic_than_the_lease_s_message_is_refused() {
    let app = TestApp::new().await;
    raw(&app, publish("orders", &[], r#"{"order":1}"#)).await;
    raw(&app, publish("refunds", &[], r#"{"refund":1}"#)).await;
    let (_, _, body) = raw(&app, receive("orders/consumer/shared", "application/x-ndjson", &[])).await;
    let handle = ndjson(&body)[0]["receiptHandle"].as_str().unwrap().to_owned();
    raw(&app, receive("refunds/consumer/shared", "application/x-ndjson", &[])).await;
    let lease =
        |topic: &str, suffix: &str| format!("/_vqs/api/v3/topic/{topic}/consumer/shared/lease/{handle}{suffix}");
    let authed = |r: http::request::Builder| r.header("authorization", format!("Bearer {QUEUE_SECRET}"));
    let visibility = |topic: &str, suffix: &str| {
        authed(Request::patch(lease(topic, suffix)))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"visibilityTimeoutSeconds":0}"#))
            .unwrap()
    };
    // The orders lease through the refunds URLs: refused, and nothing changes.
    let (status, body) = app.call(authed(Request::delete(lease("refunds", ""))).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.to_string().contains("not a lease of topic"), "{body}");
    for suffix in ["", "/visibility"] {
        let (status, body) = app.call(visibility("refunds", suffix)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{suffix}: {body}");
    }
    let (status, _, _) = raw(&app, receive("orders/consumer/shared", "application/x-ndjson", &[])).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "still leased: not released through the wrong topic");
    // Through its own topic it is acknowledged.
    let (status, body) = app.call(authed(Request::delete(lease("orders", ""))).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}
