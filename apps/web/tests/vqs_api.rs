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
    let id = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap()["messageId"].as_str().unwrap().to_owned();
    let (original, dup) = (id(&b1), id(&b2));
    // As Vercel: a fresh id for the dropped duplicate (and our extra headers naming it).
    assert_ne!(dup, original, "a fresh id");
    assert_eq!(h2["vqs-message-id"], dup.as_str());
    assert!(h1.get("vqs-duplicate").is_none());
    assert_eq!(h2["vqs-duplicate"], "true");
    assert_eq!(h2["vqs-original-message-id"], original.as_str());
    assert_eq!(app.dispatch("probe").await, 1);
}

/// SPEC "Dedup": the key dedups for the original's retention, also after it was acknowledged;
/// a receive by the duplicate's id answers 409 naming the original, as Vercel does.
#[tokio::test]
async fn a_key_dedups_after_the_ack_and_the_duplicates_id_answers_409() {
    let app = TestApp::new().await;
    let key = [("vqs-idempotency-key", "order-2")];
    let (_, _, b1) = raw(&app, publish("probe", &key, "{}")).await;
    let original = serde_json::from_slice::<Value>(&b1).unwrap()["messageId"].as_str().unwrap().to_owned();
    assert_eq!(app.dispatch("probe").await, 1);
    assert_eq!(app.attempts(&original).await, vec![(1, "success".to_owned())], "ran and was acknowledged");

    let (status, headers, body) = raw(&app, publish("probe", &key, "{}")).await;
    assert_eq!(status, StatusCode::CREATED);
    let dup = serde_json::from_slice::<Value>(&body).unwrap()["messageId"].as_str().unwrap().to_owned();
    assert_ne!(dup, original);
    assert_eq!(headers["vqs-duplicate"], "true");
    assert_eq!(app.dispatch("probe").await, 0, "nothing new queued after the ack");

    let (status, body) =
        app.call(receive(&format!("probe/consumer/billing/id/{dup}"), "application/x-ndjson", &[])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["originalMessageId"], original.as_str());
    // Not in another topic, and a made-up duplicate id names nothing.
    let (status, _) = app.call(receive(&format!("other/consumer/billing/id/{dup}"), "application/x-ndjson", &[])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.call(receive("probe/consumer/billing/id/msg_nope_dup_1", "application/x-ndjson", &[])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The producer's headers (`send(…, { headers })`) and its whole trace context reach the
/// consumer on the push; the transport's and the protocol's own headers do not.
#[tokio::test]
async fn producer_headers_and_trace_context_are_forwarded_on_the_push() {
    let app = TestApp::new().await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let sent = [
        ("x-tenant", "acme"),
        ("traceparent", tp),
        ("tracestate", "vendor=opaque"),
        ("baggage", "user=alice"),
        ("vqs-delay-seconds", "0"),
        ("user-agent", "@vercel/queue/0.6.0"),
        ("sec-fetch-mode", "cors"),
    ];
    let (status, body) = app.call(publish("probe", &sent, "{}")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let consumer = app.consumer("probe");
    let leased = app
        .queue()
        .store()
        .delivery_claim(vqs::store::DeliveryClaimParams {
            group_concurrency: None,
            consumer_group: consumer.consumer_group,
            topic: None,
            message_id: None,
            limit: 1,
            visibility_seconds: 60,
            start_executions: false,
            lease_holder: None,
            max_leased: None,
            leased_here: 0,
            rate_limit: None,
            group_rate_limit: None,
            now: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let push = vqs::Delivery::from_leased(&leased[0], "dev1").header_map().unwrap();
    assert_eq!(push["x-tenant"], "acme");
    assert_eq!(push["x-vercel-queue-traceparent"], tp);
    assert_eq!(push["x-vercel-queue-tracestate"], "vendor=opaque");
    assert_eq!(push["x-vercel-queue-baggage"], "user=alice");
    assert_eq!(push["ce-type"], "com.vercel.queue.v2beta");
    for absent in ["authorization", "user-agent", "vqs-delay-seconds", "traceparent", "sec-fetch-mode"] {
        assert!(push.get(absent).is_none(), "{absent} is not forwarded");
    }
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
    // A message of a paused topic is held, and the answer says so.
    let (_, _, b) = raw(&app, publish("orders", &[], "y")).await;
    let id = serde_json::from_slice::<Value>(&b).unwrap()["messageId"].as_str().unwrap().to_owned();
    app.queue().pause("orders").await.unwrap();
    let (status, body) = app.call(by_id(&id)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("topic orders is paused"), "{body}");
    app.queue().resume("orders").await.unwrap();
    assert_eq!(raw(&app, by_id(&id)).await.0, StatusCode::OK);
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

fn batch_request(topic: &str, parts: &[(&[(&str, &str)], &str)], outer: &[(&str, &str)]) -> Request<Body> {
    let boundary = "vqs-test-boundary";
    let mut body = String::new();
    for (headers, payload) in parts {
        body.push_str(&format!("--{boundary}\r\n"));
        for (k, v) in *headers {
            body.push_str(&format!("{k}: {v}\r\n"));
        }
        body.push_str(&format!("\r\n{payload}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let mut r = Request::post(format!("/_vqs/api/v3/topic/{topic}/batch"))
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .header("content-type", format!("multipart/mixed; boundary={boundary}"));
    for (k, v) in outer {
        r = r.header(*k, *v);
    }
    r.body(Body::from(body)).unwrap()
}

/// `POST …/batch` as the SDK's `sendBatch` sends it: one result per part, in order; a bad
/// part fails alone; a key already used is a duplicate with a fresh id.
#[tokio::test]
async fn batch_publish_answers_each_part_in_order() {
    let app = TestApp::new().await;
    let (_, _, first) = raw(&app, publish("probe", &[("vqs-idempotency-key", "k-1")], "{}")).await;
    let original = serde_json::from_slice::<Value>(&first).unwrap()["messageId"].as_str().unwrap().to_owned();
    let json = ("content-type", "application/json");
    let (p0, p1, p2, p3) = (
        [json],
        [json, ("vqs-delay-seconds", "soon")],
        [json, ("vqs-idempotency-key", "k-1")],
        [json, ("vqs-delay-seconds", "30"), ("x-part", "2")],
    );
    let parts: Vec<(&[(&str, &str)], &str)> = vec![(&p0, r#"{"sleep_ms":1}"#), (&p1, "{}"), (&p2, "{}"), (&p3, "{}")];
    let (status, body) = app.call(batch_request("probe", &parts, &[("x-tenant", "acme")])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["status"], "sent");
    assert_eq!(results[1]["status"], "failed");
    assert_eq!((results[1]["statusCode"].as_u64(), results[1]["retryable"].as_bool()), (Some(400), Some(false)));
    assert!(results[1]["error"].as_str().unwrap().contains("vqs-delay-seconds"), "{body}");
    assert_eq!(results[2]["status"], "sent");
    assert!(results[2]["messageId"].as_str().unwrap().starts_with(&format!("{original}_dup_")), "{body}");
    let delayed = results[3]["messageId"].as_str().unwrap();
    let m = app.queue().message(delayed).await.unwrap().expect("queued");
    assert_eq!((m.deliveries[0].visible_at - m.created_at).num_seconds(), 30, "the part's own delay");
    // Two new messages (the first send's and part 0) are due now; part 3 is delayed.
    assert_eq!(app.dispatch("probe").await, 2);

    // Not multipart, or no part at all: refused whole.
    let (status, body) = app.call(publish("probe/batch", &[], "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("multipart/mixed"), "{body}");
    let (status, _) = app.call(batch_request("probe", &[], &[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// `Vqs-Visibility-Timeout-Seconds: 0` shows the messages without leasing them.
#[tokio::test]
async fn a_receive_with_visibility_0_peeks_without_leasing() {
    let app = TestApp::new().await;
    let (_, _, b) = raw(&app, publish("orders", &[], r#"{"n":1}"#)).await;
    let id = serde_json::from_slice::<Value>(&b).unwrap()["messageId"].as_str().unwrap().to_owned();
    let path = "orders/consumer/billing";
    let peek = [("vqs-visibility-timeout-seconds", "0")];
    for _ in 0..2 {
        let (status, _, body) = raw(&app, receive(path, "application/x-ndjson", &peek)).await;
        assert_eq!(status, StatusCode::OK);
        let lines = ndjson(&body);
        assert_eq!((lines.len(), lines[0]["messageId"].as_str()), (1, Some(id.as_str())));
        assert_eq!(lines[0]["deliveryCount"], 0, "a peek is not a delivery");
    }
    let d = &app.queue().message(&id).await.unwrap().unwrap().deliveries[0];
    assert_eq!((d.state, d.delivery_count), (vqs::store::DeliveryState::Pending, 0));
    // A real receive still gets it, as its first delivery.
    let (status, _, body) = raw(&app, receive(path, "application/x-ndjson", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ndjson(&body)[0]["deliveryCount"], 1);
}

/// `Vqs-Max-Concurrency: N`: 429 once the group holds N leases; fewer handed out when
/// the batch would pass it.
#[tokio::test]
async fn max_concurrency_refuses_a_receive_over_the_limit() {
    let app = TestApp::new().await;
    for _ in 0..3 {
        app.call(publish("orders", &[], "{}")).await;
    }
    let path = "orders/consumer/billing";
    let limit = [("vqs-max-concurrency", "2"), ("vqs-max-messages", "5")];
    let (status, _, body) = raw(&app, receive(path, "application/x-ndjson", &limit)).await;
    assert_eq!(status, StatusCode::OK);
    let leased = ndjson(&body);
    assert_eq!(leased.len(), 2, "only up to the limit");
    let (status, headers, _) = raw(&app, receive(path, "application/x-ndjson", &limit)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    // Without the header, or another group: not limited.
    let (status, _, _) = raw(&app, receive("orders/consumer/other", "application/x-ndjson", &limit)).await;
    assert_eq!(status, StatusCode::OK);
    // An ack frees a slot.
    let handle = leased[0]["receiptHandle"].as_str().unwrap();
    let ack = Request::delete(format!("/_vqs/api/v3/topic/{path}/lease/{handle}"))
        .header("authorization", format!("Bearer {QUEUE_SECRET}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.call(ack).await.0, StatusCode::NO_CONTENT);
    let (status, _, body) = raw(&app, receive(path, "application/x-ndjson", &limit)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ndjson(&body).len(), 1);
    let (status, body) = app.call(receive(path, "application/x-ndjson", &[("vqs-max-concurrency", "0")])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Receives racing for the last slots of `Vqs-Max-Concurrency` never pass it together: the
/// store counts and leases under one lock (a check, then a claim, let 16 receives lease 5
/// each where the limit was 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receives_racing_for_the_last_slots_never_pass_max_concurrency_together() {
    let app = TestApp::new().await;
    for _ in 0..40 {
        app.call(publish("orders", &[], "{}")).await;
    }
    let path = "orders/consumer/racing";
    let limit = [("vqs-max-concurrency", "3"), ("vqs-max-messages", "5")];
    // Subscribe the group first, so the race is about the slots, not the subscription.
    let (status, _, body) = raw(&app, receive(path, "application/x-ndjson", &limit)).await;
    assert_eq!((status, ndjson(&body).len()), (StatusCode::OK, 3));
    let handles: Vec<String> = ndjson(&body).iter().map(|m| m["receiptHandle"].as_str().unwrap().to_owned()).collect();
    for handle in handles {
        let release = Request::patch(format!("/_vqs/api/v3/topic/{path}/lease/{handle}"))
            .header("authorization", format!("Bearer {QUEUE_SECRET}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"visibilityTimeoutSeconds":0}"#))
            .unwrap();
        assert!(raw(&app, release).await.0.is_success());
    }
    let racing = (0..16).map(|_| raw(&app, receive(path, "application/x-ndjson", &limit)));
    let answers = futures::future::join_all(racing).await;
    let leased: usize = answers.iter().filter(|(s, _, _)| *s == StatusCode::OK).map(|(_, _, b)| ndjson(b).len()).sum();
    assert_eq!(leased, 3, "16 racing receives leased {leased} with Vqs-Max-Concurrency: 3");
    for (status, _, _) in &answers {
        assert!(matches!(*status, StatusCode::OK | StatusCode::TOO_MANY_REQUESTS), "{status}");
    }
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
