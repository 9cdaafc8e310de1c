//! The vendor console, under `/console` on the admin listener only:
//! server-rendered pages (askama, no script) for the vendor's people —
//! customers, releases (publish after seeing who gets it, yank), reports
//! with charts drawn as SVG on the server.
//!
//! Sign-in is with an admin token, exchanged for a session (state store,
//! by the SHA-256 of its cookie; 30 minutes idle, 8 hours at most) that
//! keeps the token's id and role: the role decides each form as it decides
//! the admin API's requests ([`AdminRole::may`]). Every form carries the
//! session's CSRF token (before sign-in: a random one matching a
//! `SameSite=Strict` cookie). Cookies are `HttpOnly`, `SameSite=Strict`,
//! `Path=/console`.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form};
use serde::{Deserialize, Serialize};

use super::portal::{STYLE, cookie, page, same, see_other, set_cookie};
use super::{PeerAddr, client_ip};
use crate::admin_tokens::AdminRole;
use crate::catalog::Timestamp;
use crate::catalog::store::{Kind, get_json, put_json};
use crate::services::Services;

mod activity;
mod customers;
mod releases;
mod reports;
mod webhooks;

use activity::{activity_page, activity_script, activity_stream};
use customers::{
    create_customer, create_entitlement, customer_page, customers_page, delete_entitlement, edit_customer,
    entitlement_page, new_entitlement_page, replace_entitlement, view_as,
};
use releases::{adoption_csv, release_action, release_page, releases_page};
use reports::{report_csv, reports_page};
use webhooks::{redeliver_action, webhooks_page};

const SESSION_COOKIE: &str = "tg_console";
const CSRF_COOKIE: &str = "tg_console_csrf";
/// A session ends after this long without a request…
const IDLE: u64 = 30 * 60;
/// …and this long after sign-in.
const ABSOLUTE: u64 = 8 * 3600;

pub fn routes() -> axum::Router<Arc<Services>> {
    axum::Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/style.css", get(style))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/customers", get(customers_page).post(create_customer))
        .route("/console/customers/{id}", get(customer_page).post(edit_customer))
        .route("/console/customers/{id}/new-entitlement", get(new_entitlement_page))
        .route("/console/customers/{id}/view-as", post(view_as))
        .route("/console/customers/{id}/entitlements", post(create_entitlement))
        .route("/console/customers/{id}/entitlements/{entitlement}", get(entitlement_page).post(replace_entitlement))
        .route("/console/customers/{id}/entitlements/{entitlement}/delete", post(delete_entitlement))
        .route("/console/releases", get(releases_page))
        .route("/console/releases/{product}/{version}", get(release_page))
        .route("/console/releases/{product}/{version}/{action}", get(adoption_csv).post(release_action))
        .route("/console/reports", get(reports_page))
        .route("/console/reports/{file}", get(report_csv))
        .route("/console/webhooks", get(webhooks_page))
        .route("/console/webhooks/{id}/dead-letters/{event}/redeliver", post(redeliver_action))
        .route("/console/activity", get(activity_page))
        .route("/console/activity/stream", get(activity_stream))
        .route("/console/activity.js", get(activity_script))
}

/// A signed-in browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ConsoleSession {
    token_id: String,
    role: AdminRole,
    /// [`crate::admin_tokens::AdminTokens::role_of`]'s fingerprint of the
    /// token's secret at sign-in.
    #[serde(default)]
    fingerprint: String,
    created_at: Timestamp,
    seen_at: Timestamp,
    csrf: String,
}

/// The header of a signed-in page.
#[derive(Debug, Clone)]
pub(super) struct Nav {
    who: String,
    role: &'static str,
    csrf: String,
    page: &'static str,
}

fn digest(secret: &str) -> String {
    crate::catalog::api_keys::digest_hex(secret)
}

fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

pub(super) fn view(status: StatusCode, t: &impl Template) -> Response {
    let mut r = page(status, t);
    secure_headers(&mut r);
    r
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    nav: Option<Nav>,
    title: &'static str,
    detail: String,
    code: &'static str,
}

pub(super) fn error(nav: Option<Nav>, status: StatusCode, code: &'static str, detail: impl Into<String>) -> Response {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::UNAUTHORIZED => "Not signed in",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    view(status, &ErrorPage { nav, title, detail: detail.into(), code })
}

pub(super) fn failed(nav: Option<Nav>, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "a console page failed");
    error(nav, StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The console cannot answer right now; try again.")
}

/// The signed-in session of this request; otherwise the answer (a redirect
/// to sign-in).
pub(super) async fn signed(
    s: &Services,
    headers: &HeaderMap,
    page: &'static str,
) -> Result<(ConsoleSession, Nav), Response> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else { return Err(see_other("/console/sign-in")) };
    let key = digest(id);
    let store = s.catalog.records();
    let session: Option<ConsoleSession> =
        get_json(store.as_ref(), Kind::ConsoleSession, &key).await.map_err(|e| failed(None, &e))?;
    let Some(session) = session else { return Err(see_other("/console/sign-in")) };
    let now = s.clock.now_unix();
    let expired = now.saturating_sub(session.seen_at.0) > IDLE || now.saturating_sub(session.created_at.0) > ABSOLUTE;
    // The token must still be configured, with the same role and secret
    // (rotating a leaked token ends its sessions).
    let current = s.admin_tokens.role_of(&session.token_id);
    if expired || current != Some((session.role, session.fingerprint.clone())) {
        let _ = store.delete(Kind::ConsoleSession, &key).await;
        return Err(see_other("/console/sign-in"));
    }
    // Seen: at most once a minute, by compare-and-set, so that a sign-out
    // racing this request stays signed out.
    if now.saturating_sub(session.seen_at.0) >= 60 {
        let _ = s
            .catalog
            .update::<ConsoleSession, _>(Kind::ConsoleSession, &key, |current| {
                Ok(current.map(|c| ConsoleSession { seen_at: Timestamp(now), ..c.clone() }))
            })
            .await;
    }
    let nav = Nav { who: session.token_id.clone(), role: session.role.as_str(), csrf: session.csrf.clone(), page };
    Ok((session, nav))
}

/// A change posted from a console page: the session and its header, once
/// the form's CSRF token and the role's right to `method` on admin API
/// `path` are checked (`what` names the area in the refusal); otherwise
/// the answer (sign-in, `403 csrf_refused`, `403 role_forbids`).
pub(super) async fn form_session(
    s: &Services,
    headers: &HeaderMap,
    page: &'static str,
    csrf: &str,
    (method, path): (Method, &str),
    what: &str,
) -> Result<(ConsoleSession, Nav), Response> {
    let (session, nav) = signed(s, headers, page).await?;
    if !same(csrf, &session.csrf) {
        return Err(error(
            Some(nav),
            StatusCode::FORBIDDEN,
            "csrf_refused",
            "This form is out of date; reload the page.",
        ));
    }
    if !session.role.may(&method, path) {
        let detail = format!("You are signed in as {} ({}): it does not change {what}.", nav.who, nav.role);
        return Err(error(Some(nav), StatusCode::FORBIDDEN, "role_forbids", detail));
    }
    Ok((session, nav))
}

/// Run a form's change on behalf of the session's admin token: its events
/// name `console:<token id>`.
pub(super) async fn attributed<F: Future>(session: &ConsoleSession, f: F) -> F::Output {
    crate::events::acting_as(format!("console:{}", session.token_id), f).await
}

/// The key of this request's session record ("" without a cookie).
pub(super) fn session_key(headers: &HeaderMap) -> String {
    cookie(headers, SESSION_COOKIE).map(digest).unwrap_or_default()
}

/// The session is still there and its token still configured with the
/// same role and secret (a long-running request looks again).
pub(super) async fn still_signed(s: &Services, key: &str) -> bool {
    let session: Option<ConsoleSession> =
        get_json(s.catalog.records().as_ref(), Kind::ConsoleSession, key).await.ok().flatten();
    session.is_some_and(|c| s.admin_tokens.role_of(&c.token_id) == Some((c.role, c.fingerprint.clone())))
}

async fn home(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    match signed(&s, &headers, "customers").await {
        Ok(_) => see_other("/console/customers"),
        Err(r) => r,
    }
}

async fn style() -> Response {
    let mut r = STYLE.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    nav: Option<Nav>,
    csrf: String,
    message: Option<&'static str>,
}

fn sign_in_form(status: StatusCode, message: Option<&'static str>) -> Response {
    let csrf = match crate::portal::new_token() {
        Ok(t) => t,
        Err(e) => return failed(None, &e),
    };
    let mut r = view(status, &SignInPage { nav: None, csrf: csrf.clone(), message });
    set_cookie(&mut r, format!("{CSRF_COOKIE}={csrf}; Path=/console; HttpOnly; SameSite=Strict"));
    r
}

async fn sign_in_page() -> Response {
    sign_in_form(StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// `POST /console/sign-in`: an admin token for a session.
async fn sign_in(
    State(s): State<Arc<Services>>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return sign_in_form(StatusCode::BAD_REQUEST, Some("The form was not readable.")) };
    if !same(&form.csrf, cookie(&headers, CSRF_COOKIE).unwrap_or("")) {
        return error(None, StatusCode::FORBIDDEN, "csrf_refused", "This form is out of date; reload the page.");
    }
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    let Some((token_id, role)) = s.admin_tokens.check(form.token.trim()) else {
        // SECURITY: a guessed token costs the guesser.
        if let Err(wait) = s.limits.refused_credential(client) {
            return super::problem::rate_limited(wait).into_response();
        }
        return sign_in_form(StatusCode::UNAUTHORIZED, Some("That is not an admin token."));
    };
    let (id, csrf) = match (crate::portal::new_token(), crate::portal::new_token()) {
        (Ok(id), Ok(csrf)) => (id, csrf),
        (Err(e), _) | (_, Err(e)) => return failed(None, &e),
    };
    let now = Timestamp(s.clock.now_unix());
    let fingerprint = s.admin_tokens.role_of(token_id).map(|(_, f)| f).unwrap_or_default();
    let session =
        ConsoleSession { token_id: token_id.to_owned(), role, fingerprint, created_at: now, seen_at: now, csrf };
    if let Err(e) = put_json(s.catalog.records().as_ref(), Kind::ConsoleSession, &digest(&id), &session).await {
        return failed(None, &e);
    }
    tracing::info!(token = token_id, role = role.as_str(), client = %client, "console sign-in");
    let mut r = see_other("/console/customers");
    set_cookie(&mut r, format!("{SESSION_COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict"));
    set_cookie(&mut r, format!("{CSRF_COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"));
    r
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, nav) = match signed(&s, &headers, "customers").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    if !same(&form.map(|Form(f)| f.csrf).unwrap_or_default(), &session.csrf) {
        return error(Some(nav), StatusCode::FORBIDDEN, "csrf_refused", "This form is out of date; reload the page.");
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        let _ = s.catalog.records().delete(Kind::ConsoleSession, &digest(id)).await;
    }
    let mut r = see_other("/console/sign-in");
    set_cookie(&mut r, format!("{SESSION_COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"));
    r
}
