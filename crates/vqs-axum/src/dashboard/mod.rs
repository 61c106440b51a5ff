//! The dashboard at `/admin`: server-rendered HTML for a person in a browser, with no build
//! step and nothing loaded from outside the app. It shows what the admin API shows — topics,
//! crons and their heartbeats, runtime schedules a page at a time (fire now), progress,
//! dead letters (replay, discard), recent executions
//! and each message's history (cancel, run now) — and refreshes its live part every few
//! seconds. A topic can be purged after a page that shows how many it would cancel.
//!
//! Login posts `VQS_ADMIN_TOKEN` in a form body (never a URL) and gets a signed, HttpOnly,
//! SameSite=Strict session cookie ([`session`]); every action is a POST with a CSRF token.
//! Every value from a job, a payload or an error is escaped (`html::esc`), and a strict
//! Content-Security-Policy allows only this app's own script and stylesheet.

mod actions;
mod charts;
mod dead_letter_groups;
mod history_pager;
mod html;
pub mod login_throttle;
mod pages;
mod schedules;
mod search;
pub mod session;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::state::VqsState;
use html::{esc, page};
use session::Session;

const CSS: &str = include_str!("dashboard.css");
const JS: &str = include_str!("dashboard.js");
const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#24292f"/><path d="M3 5h10M3 8h7M3 11h4" stroke="#3fb950" stroke-width="2"/></svg>"##;

/// Every `/admin` route.
pub fn routes() -> Router<VqsState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/search", get(search::search))
        .route("/admin/messages/{id}", get(message))
        .route("/admin/messages/{id}/cancel", post(actions::cancel))
        .route("/admin/messages/{id}/run-now", post(actions::run_now))
        .route("/admin/schedules/{name}/fire", post(schedules::fire))
        .route("/admin/queues/{topic}/purge", get(actions::purge_confirm).post(actions::purge))
        .route("/admin/queues/{topic}/pause", post(actions::pause))
        .route("/admin/queues/{topic}/resume", post(actions::resume))
        .route("/admin/dead-letters/groups/retry", post(dead_letter_groups::retry))
        .route("/admin/dead-letters/groups/discard", post(dead_letter_groups::discard))
        .route("/admin/dead-letters/{id}/replay", post(replay))
        .route("/admin/dead-letters/{id}/discard", post(discard))
        .route("/admin/assets/dashboard.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/admin/assets/dashboard.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .route("/admin/assets/favicon.svg", get(|| async { asset("image/svg+xml", ICON) }))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Percent-encode a value for a URL query (the admin API's `Link` header uses it too).
pub(crate) fn url_component(s: &str) -> String {
    html::url(s)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// The signed-in session of a request, if any: signed, not expired, not signed out (a
/// revocation every process sees; if the database cannot say, no session).
async fn session_of(state: &VqsState, headers: &HeaderMap) -> Option<Session> {
    let key = state.admin_token.as_ref()?;
    let s = session::check(key, session::cookie(headers, session::COOKIE)?, state.queue.clock().now())?;
    match state.queue.session_revoked(&s.nonce).await {
        Ok(false) => Some(s),
        Ok(true) => None,
        Err(e) => {
            tracing::warn!(error = %e, "could not check the dashboard session; treating it as signed out");
            None
        }
    }
}

fn csrf_of(state: &VqsState, s: &Session) -> String {
    state.admin_token.as_ref().map(|k| session::csrf_token(k, s)).unwrap_or_default()
}

fn login_page(state: &VqsState, status: StatusCode, error: Option<&str>) -> Response {
    let closed = state.admin_token.is_none();
    let notice = if closed {
        r#"<p class="flash bad">This server has no <code>VQS_ADMIN_TOKEN</code> configured, so the dashboard refuses every login: set it and restart.</p>"#.to_owned()
    } else {
        error.map(|e| format!(r#"<p class="flash bad" id="login-error">{}</p>"#, esc(e))).unwrap_or_default()
    };
    let body = format!(
        r#"<main class="login"><h1>Sign in</h1>{notice}
<form method="post" action="/admin/login">
<label for="token">Admin token (<code>VQS_ADMIN_TOKEN</code>)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit" class="primary">Sign in</button>
</form></main>"#
    );
    html(status, page("Sign in", "", &body))
}

fn signed_in_page(title: &str, csrf: &str, live: &str, above: &str) -> String {
    let right = format!(r#"<span id="refreshed" aria-live="polite"></span> {}"#, header_right(csrf));
    let body = format!(r#"<main>{above}<div id="live" data-refresh="3000">{live}</div></main>"#);
    page(title, &right, &body)
}

/// The header's right side on a signed-in page: the search box and "Sign out".
fn header_right(csrf: &str) -> String {
    let logout = pages::action_form("/admin/logout", csrf, "Sign out", "link", None);
    format!("{} {logout}", search::search_box())
}

#[derive(Debug, Deserialize)]
struct OverviewQuery {
    #[serde(flatten)]
    filters: pages::Filters,
    /// Only the live part (the page's polling asks for it).
    fragment: Option<String>,
}

async fn overview(State(state): State<VqsState>, headers: HeaderMap, Query(q): Query<OverviewQuery>) -> Response {
    let Some(s) = session_of(&state, &headers).await else {
        if q.fragment.is_some() {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        return login_page(&state, StatusCode::OK, None);
    };
    let csrf = csrf_of(&state, &s);
    let live = match pages::overview(&state, &q.filters, &csrf).await {
        Ok(live) => live,
        Err(e) => return storage_error(e),
    };
    if q.fragment.is_some() {
        return html(StatusCode::OK, live);
    }
    let filters = pages::filter_form(&state, &q.filters);
    html(StatusCode::OK, signed_in_page("Dashboard", &csrf, &live, &filters))
}

#[derive(Debug, Deserialize)]
struct MessageQuery {
    flash: Option<String>,
    fragment: Option<String>,
}

async fn message(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<MessageQuery>,
) -> Response {
    let Some(s) = session_of(&state, &headers).await else {
        if q.fragment.is_some() {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        return Redirect::to("/admin").into_response();
    };
    let csrf = csrf_of(&state, &s);
    match pages::message(&state, &id, q.flash.as_deref(), &csrf).await {
        Ok(Some(live)) if q.fragment.is_some() => html(StatusCode::OK, live),
        Ok(Some(live)) => {
            let back = r#"<p><a href="/admin">← all topics</a></p>"#;
            html(StatusCode::OK, signed_in_page("Message", &csrf, &live, back))
        }
        Ok(None) => {
            let body = format!(
                r#"<main><p class="flash bad">No message <code>{}</code>: it may have been pruned by retention.</p><p><a href="/admin">← all topics</a></p></main>"#,
                esc(&id)
            );
            html(StatusCode::NOT_FOUND, page("Message", "", &body))
        }
        Err(e) => storage_error(e),
    }
}

fn storage_error(e: vqs::QueueError) -> Response {
    if let vqs::QueueError::Invalid(m) = &e {
        let body = format!(r#"<main><p class="flash bad">{}</p></main>"#, html::esc(m));
        return html(StatusCode::BAD_REQUEST, page("Bad request", "", &body));
    }
    tracing::error!(error = %e, "dashboard could not read the database");
    let body = r#"<main><p class="flash bad">The database could not answer; see the server log. This page retries by itself.</p></main>"#;
    html(StatusCode::SERVICE_UNAVAILABLE, page("Unavailable", "", body))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginForm { token: [redacted] }")
    }
}

fn secure(headers: &HeaderMap) -> &'static str {
    // Behind a TLS-terminating proxy, keep the cookie off plain HTTP.
    let https = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p == "https");
    if https { "; Secure" } else { "" }
}

async fn login(
    State(state): State<VqsState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Some(key) = state.admin_token.as_ref() else {
        return login_page(&state, StatusCode::UNAUTHORIZED, None);
    };
    let Ok(Form(form)) = form else {
        return login_page(&state, StatusCode::BAD_REQUEST, Some("Send the form with the admin token."));
    };
    // Repeated failures are slowed down: during the wait the token is not even checked.
    let peer = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let now = std::time::Instant::now();
    if let Some(wait) = state.login_throttle.wait(peer, now) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        tracing::warn!(wait_s = secs, "dashboard login slowed down: too many failed sign-ins");
        let msg = format!("Too many failed sign-ins: try again in {secs} s.");
        let mut resp = login_page(&state, StatusCode::TOO_MANY_REQUESTS, Some(&msg));
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    if !key.matches(form.token.trim()) {
        state.login_throttle.failed(peer, now);
        tracing::warn!("dashboard login refused: wrong admin token");
        return login_page(&state, StatusCode::UNAUTHORIZED, Some("Wrong token: use the value of VQS_ADMIN_TOKEN."));
    }
    state.login_throttle.succeeded(peer);
    let (cookie, _) = session::issue(key, state.queue.clock().now());
    let set = format!(
        "{}={cookie}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session::COOKIE,
        session::LIFETIME_SECONDS,
        secure(&headers)
    );
    let mut resp = Redirect::to("/admin").into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    tracing::info!("dashboard login");
    resp
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The answer to give a form post without a session or with a wrong CSRF token; `None`
/// when it may go ahead.
async fn refusal(
    state: &VqsState,
    headers: &HeaderMap,
    form: &Result<Form<CsrfForm>, FormRejection>,
) -> Result<Session, Response> {
    let Some(s) = session_of(state, headers).await else {
        return Err(login_page(state, StatusCode::UNAUTHORIZED, Some("Your session ended: sign in again.")));
    };
    let given = form.as_ref().map(|f| f.csrf.as_str()).unwrap_or("");
    match state.admin_token.as_ref() {
        Some(key) if session::csrf_ok(key, &s, given) => Ok(s),
        _ => {
            let body = r#"<main><p class="flash bad">This form is out of date (its security token does not match your session). Go back, reload the page and try again.</p><p><a href="/admin">← dashboard</a></p></main>"#;
            Err(html(StatusCode::FORBIDDEN, page("Refused", "", body)))
        }
    }
}

async fn logout(
    State(state): State<VqsState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let s = match refusal(&state, &headers, &form).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    // Revoked for every process until the cookie would have expired: a copy of it stops working too.
    let expires_at = chrono::DateTime::from_timestamp(s.expires, 0).unwrap_or_else(|| state.queue.clock().now());
    let revoke = vqs::store::SessionRevokeParams { nonce: s.nonce, expires_at, now: state.queue.clock().now() };
    if let Err(e) = state.queue.session_revoke(revoke).await {
        return storage_error(e);
    }
    let mut resp = Redirect::to("/admin").into_response();
    let clear = format!("{}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0{}", session::COOKIE, secure(&headers));
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn replay(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(refused) = refusal(&state, &headers, &form).await {
        return refused;
    }
    match state.queue.dead_letter_replay(id).await {
        Ok(sent) => {
            tracing::info!(dead_letter.id = id, message.id = %sent.message_id, "dead letter replayed from the dashboard");
            Redirect::to(&format!("/admin/messages/{}?flash=replayed", html::url(&sent.message_id))).into_response()
        }
        // Replayed or discarded by another action first (or never there): nothing was done.
        Err(vqs::QueueError::Store(vqs::StoreError::NotFound(_)) | vqs::QueueError::Conflict(_)) => {
            Redirect::to("/admin?flash=not-found").into_response()
        }
        Err(e) => storage_error(e),
    }
}

async fn discard(
    State(state): State<VqsState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(refused) = refusal(&state, &headers, &form).await {
        return refused;
    }
    match state.queue.dead_letter_discard(id).await {
        Ok(()) => {
            tracing::info!(dead_letter.id = id, "dead letter discarded from the dashboard");
            Redirect::to("/admin?flash=discarded#dead-letters").into_response()
        }
        Err(vqs::QueueError::Store(vqs::StoreError::NotFound(_)) | vqs::QueueError::Conflict(_)) => {
            Redirect::to("/admin?flash=not-found").into_response()
        }
        Err(e) => storage_error(e),
    }
}
