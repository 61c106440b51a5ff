//! The execution history a page at a time: a keyset cursor (`?before=`, the last id of the
//! previous page) in the admin API, the CLI and the dashboard's "Older" link.

mod common;

use axum::body::Body;
use common::{ADMIN_TOKEN, TestApp};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn page(app: &TestApp, path: &str) -> (StatusCode, Option<String>, serde_json::Value) {
    let req = Request::get(path).header("authorization", format!("Bearer {ADMIN_TOKEN}")).body(Body::empty()).unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let link = resp.headers().get("link").map(|v| v.to_str().unwrap().to_owned());
    let next = resp.headers().get("x-next-before").map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    if let (Some(link), Some(next)) = (&link, &next) {
        assert!(link.ends_with(&format!("before={next}>; rel=\"next\"")), "{link}");
    }
    (status, link, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn the_history_pages_by_keyset_until_the_oldest() {
    let app = TestApp::new().await;
    let job = app.queue().job(jobs::Probe);
    for _ in 0..7 {
        job.perform_later(jobs::ProbeParams::default()).await.unwrap();
    }
    assert_eq!(app.dispatch("probe").await, 7);
    let mut path = "/api/admin/executions?topic=probe&limit=3".to_owned();
    let mut seen: Vec<i64> = Vec::new();
    let mut pages = 0;
    loop {
        let (status, link, rows) = page(&app, &path).await;
        assert_eq!(status, StatusCode::OK, "{rows}");
        pages += 1;
        seen.extend(rows.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()));
        let Some(link) = link else { break };
        path = link.trim_start_matches('<').split('>').next().unwrap().to_owned();
        assert!(path.contains("topic=probe") && path.contains("limit=3"), "the filters are kept: {path}");
    }
    assert_eq!(pages, 3, "3 + 3 + 1");
    assert_eq!(seen.len(), 7);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, none twice: {seen:?}");

    let (status, _, body) = page(&app, "/api/admin/executions?before=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("before"), "{body}");
}

#[tokio::test]
async fn the_dashboard_links_to_older_executions() {
    let app = TestApp::new().await;
    let job = app.queue().job(jobs::Probe);
    for _ in 0..55 {
        job.perform_later(jobs::ProbeParams::default()).await.unwrap();
    }
    app.dispatch("probe").await;
    let login = Request::post("/admin/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={ADMIN_TOKEN}")))
        .unwrap();
    let resp = app.router.clone().oneshot(login).await.unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let get = |path: String| {
        let req = Request::get(path).header("cookie", &cookie).body(Body::empty()).unwrap();
        let router = app.router.clone();
        async move {
            let resp = router.oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        }
    };
    let first = get("/admin?topic=probe".into()).await;
    let at = first.find(r#"id="older" href=""#).expect("an Older link") + r#"id="older" href=""#.len();
    let href = first[at..].split('"').next().unwrap().replace("&amp;", "&");
    assert!(href.starts_with("/admin?before=") && href.contains("topic=probe"), "{href}");
    let rows = |page: &str| page.matches("<tr data-execution").count();
    let older = get(href).await;
    assert_eq!((rows(&first), rows(&older)), (50, 5), "50 a page, the rest on the next");
    assert!(!older.contains(r#"id="older""#), "the last page has no Older link");
    assert!(older.contains(r#"href="/admin?topic=probe#executions">← Newest"#), "back to the first page, filters kept");
}
