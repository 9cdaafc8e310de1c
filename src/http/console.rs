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

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form};
use semver::Version;
use serde::{Deserialize, Serialize};

use super::portal::{STYLE, cookie, human_size, page, same, see_other, set_cookie, word};
use super::{PeerAddr, client_ip};
use crate::admin_tokens::AdminRole;
use crate::catalog::store::{Kind, get_json, put_json};
use crate::catalog::{ReleaseAction, Timestamp};
use crate::events::report::Dimension;
use crate::events::{Days, Filter, day_of, metric};
use crate::services::Services;

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
        .route("/console/customers", get(customers_page))
        .route("/console/customers/{id}", get(customer_page))
        .route("/console/releases", get(releases_page))
        .route("/console/releases/{product}/{version}", get(release_page))
        .route("/console/releases/{product}/{version}/{action}", post(release_action))
        .route("/console/reports", get(reports_page))
        .route("/console/activity", get(activity_page))
        .route("/console/activity/stream", get(activity_stream))
        .route("/console/activity.js", get(activity_script))
}

/// A signed-in browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConsoleSession {
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
struct Nav {
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

fn view(status: StatusCode, t: &impl Template) -> Response {
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

fn error(nav: Option<Nav>, status: StatusCode, code: &'static str, detail: impl Into<String>) -> Response {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::UNAUTHORIZED => "Not signed in",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    view(status, &ErrorPage { nav, title, detail: detail.into(), code })
}

fn failed(nav: Option<Nav>, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "a console page failed");
    error(nav, StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The console cannot answer right now; try again.")
}

/// The signed-in session of this request; otherwise the answer (a redirect
/// to sign-in).
async fn signed(s: &Services, headers: &HeaderMap, page: &'static str) -> Result<(ConsoleSession, Nav), Response> {
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
struct CsrfForm {
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

// Customers.

#[derive(Template)]
#[template(path = "console/customers.html")]
struct CustomersPage {
    nav: Option<Nav>,
    q: String,
    rows: Vec<CustomerRow>,
}

struct CustomerRow {
    id: String,
    name: String,
    status: String,
    entitlements: usize,
}

#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
}

/// `GET /console/customers?q=`: every customer whose id or name contains
/// `q` (any case).
async fn customers_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (_, nav) = match signed(&s, &headers, "customers").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q.q.unwrap_or_default()).unwrap_or_default();
    let needle = q.trim().to_lowercase();
    let customers = match s.catalog.all_customers().await {
        Ok(c) => c,
        Err(e) => return failed(Some(nav), &e),
    };
    let mut rows = Vec::new();
    for c in customers {
        if !needle.is_empty() && !c.id.to_lowercase().contains(&needle) && !c.name.to_lowercase().contains(&needle) {
            continue;
        }
        let entitlements = match s.catalog.entitlements_of(&c.id).await {
            Ok(e) => e.len(),
            Err(e) => return failed(Some(nav), &e),
        };
        rows.push(CustomerRow { status: word(&c.status), id: c.id, name: c.name, entitlements });
    }
    view(StatusCode::OK, &CustomersPage { nav: Some(nav), q, rows })
}

#[derive(Template)]
#[template(path = "console/customer.html")]
struct CustomerPage {
    nav: Option<Nav>,
    id: String,
    name: String,
    status: String,
    entitlements: Vec<[String; 6]>,
    users: Vec<[String; 3]>,
    keys: Vec<[String; 3]>,
    events: Vec<[String; 4]>,
}

/// `GET /console/customers/{id}`: entitlements, portal users, API keys and
/// the newest events.
async fn customer_page(State(s): State<Arc<Services>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (_, nav) = match signed(&s, &headers, "customers").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let customer = match s.catalog.customer(&id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", format!("No customer {id:?}.")),
        Err(e) => return failed(Some(nav), &e),
    };
    let date = |t: Option<Timestamp>| t.map_or_else(|| "—".to_owned(), |t| t.to_string());
    let found = async {
        let entitlements = s.catalog.entitlements_of(&id).await.map_err(|e| e.to_string())?;
        let users = crate::portal::Portal::new(&s).users_of(&id).await.map_err(|e| e.to_string())?;
        let keys = s.catalog.api_keys(&id).await.map_err(|e| e.to_string())?;
        let filter = Filter { types: vec![], customer: Some(id.clone()), product: None };
        let events = s.event_log.recent(&filter, 20, 20_000).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((entitlements, users, keys, events))
    };
    let (entitlements, users, keys, events) = match found.await {
        Ok(found) => found,
        Err(e) => return failed(Some(nav), &e),
    };
    let t = CustomerPage {
        nav: Some(nav),
        name: customer.name,
        status: word(&customer.status),
        entitlements: entitlements
            .into_iter()
            .map(|e| {
                let channels = e.channels.iter().map(word).collect::<Vec<_>>().join(", ");
                [e.id, e.product, word(&e.license), e.versions.to_string(), channels, date(e.expires_at)]
            })
            .collect(),
        users: users.into_iter().map(|u| [u.email, u.role.as_str().to_owned(), date(u.last_sign_in_at)]).collect(),
        keys: keys
            .into_iter()
            .map(|k| {
                let state = k.revoked_at.map_or_else(|| "active".to_owned(), |t| format!("revoked {t}"));
                [if k.name.is_empty() { k.id } else { k.name }, date(k.last_used_at), state]
            })
            .collect(),
        events: events
            .into_iter()
            .map(|e| {
                let at =
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at));
                let sub = &e.subject;
                let what = [&sub.product, &sub.version, &sub.filename]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ");
                let detail = serde_json::to_value(&e.detail).ok().map(|v| v["data"].to_string()).unwrap_or_default();
                [at.to_string(), e.event_type().as_str().to_owned(), what, detail]
            })
            .collect(),
        id,
    };
    view(StatusCode::OK, &t)
}

// Releases.

#[derive(Template)]
#[template(path = "console/releases.html")]
struct ReleasesPage {
    nav: Option<Nav>,
    products: Vec<(String, String, Vec<[String; 4]>)>,
}

/// `GET /console/releases`: every product's releases, newest first.
async fn releases_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    let (_, nav) = match signed(&s, &headers, "releases").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let mut products = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match s.catalog.products(cursor.as_deref(), Some(200)).await {
            Ok(p) => p,
            Err(e) => return failed(Some(nav), &e),
        };
        for p in page.items {
            let mut releases = match s.catalog.all_releases(&p.id).await {
                Ok(r) => r,
                Err(e) => return failed(Some(nav), &e),
            };
            releases.sort_by(|a, b| b.version.cmp(&a.version));
            let rows = releases
                .into_iter()
                .map(|r| {
                    let published = r.published_at.map_or_else(String::new, |t| t.to_string());
                    [r.version.to_string(), word(&r.channel), word(&r.status), published]
                })
                .collect();
            products.push((p.id, p.name, rows));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    view(StatusCode::OK, &ReleasesPage { nav: Some(nav), products })
}

#[derive(Template)]
#[template(path = "console/release.html")]
struct ReleasePage {
    nav: Option<Nav>,
    csrf: String,
    product: String,
    version: String,
    status: String,
    channel: String,
    critical: bool,
    files: Vec<[String; 4]>,
    eligible: Vec<[String; 3]>,
    /// The session's role may publish or yank it.
    may_change: bool,
}

/// `GET /console/releases/{product}/{version}`: the release, its files,
/// and the customers it reaches (shown before publishing, and for a
/// yank, before yanking).
async fn release_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((product, version)): Path<(String, String)>,
) -> Response {
    let (session, nav) = match signed(&s, &headers, "releases").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let Ok(v) = Version::parse(&version) else {
        return error(Some(nav), StatusCode::NOT_FOUND, "not_found", format!("{version:?} is not a version."));
    };
    let release = match s.catalog.release(&product, &v).await {
        Ok(Some(r)) => r,
        Ok(None) => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such release."),
        Err(e) => return failed(Some(nav), &e),
    };
    let artifacts = match s.catalog.artifacts(&product, &v).await {
        Ok(a) => a,
        Err(e) => return failed(Some(nav), &e),
    };
    let now = Timestamp(s.clock.now_unix());
    let eligible = match crate::entitlement::access::eligible_customers(&s.catalog, &release, &artifacts, now).await {
        Ok(e) => e,
        Err(e) => return failed(Some(nav), &e),
    };
    let may_change = session.role.may(&Method::POST, &format!("/admin/v1/products/{product}"));
    let t = ReleasePage {
        csrf: session.csrf,
        nav: Some(nav),
        status: word(&release.status),
        channel: word(&release.channel),
        critical: release.critical,
        files: artifacts.into_iter().map(|a| [a.filename, a.platform, human_size(a.size), a.sha256]).collect(),
        eligible: eligible.into_iter().map(|e| [e.customer, e.name, e.platforms.join(", ")]).collect(),
        may_change,
        product,
        version: v.to_string(),
    };
    view(StatusCode::OK, &t)
}

/// `POST /console/releases/{product}/{version}/{publish|yank|restore}`: as
/// the admin API does it (events, notices), if the session's role may.
async fn release_action(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((product, version, action)): Path<(String, String, String)>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, nav) = match signed(&s, &headers, "releases").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    if !same(&form.map(|Form(f)| f.csrf).unwrap_or_default(), &session.csrf) {
        return error(Some(nav), StatusCode::FORBIDDEN, "csrf_refused", "This form is out of date; reload the page.");
    }
    let path = format!("/admin/v1/products/{product}/releases/{version}/{action}");
    if !session.role.may(&Method::POST, &path) {
        let detail = format!("You are signed in as {} ({}): it does not change releases.", nav.who, nav.role);
        return error(Some(nav), StatusCode::FORBIDDEN, "role_forbids", detail);
    }
    let action = match action.as_str() {
        "publish" => ReleaseAction::Publish { backdated_to: None },
        "yank" => ReleaseAction::Yank,
        "restore" => ReleaseAction::Restore,
        _ => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such action."),
    };
    let Ok(v) = Version::parse(&version) else {
        return error(Some(nav), StatusCode::NOT_FOUND, "not_found", format!("{version:?} is not a version."));
    };
    match super::admin_api::change_release(&s, product.clone(), v, action).await {
        Ok(_) => {
            tracing::info!(token = %session.token_id, product = %product, version = %version, "console release change");
            see_other(&format!(
                "/console/releases/{}/{}",
                crate::signing::encode_segment(&product),
                crate::signing::encode_segment(&version)
            ))
        }
        Err(e) => {
            let p = e.to_problem();
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(Some(nav), status, p.code, p.detail.unwrap_or_default())
        }
    }
}

// Reports.

#[derive(Template)]
#[template(path = "console/reports.html")]
struct ReportsPage {
    nav: Option<Nav>,
    from: String,
    to: String,
    chart: String,
    rows: Vec<(String, u64, u64, String)>,
    total: u64,
}

#[derive(Debug, Default, Deserialize)]
struct ReportQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// `GET /console/reports?from=&to=`: downloads started per day, stacked by
/// product (an SVG drawn here), and each product's totals; the admin API's
/// report counters, so the numbers are the API's.
async fn reports_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (_, nav) = match signed(&s, &headers, "reports").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let today = s.clock.now_unix() / 86_400 * 86_400;
    let day = |text: Option<&str>, default: u64| {
        text.filter(|t| !t.is_empty())
            .map(|t| crate::http::admin_events::parse_day("date", t).map_err(|_| t.to_owned()))
            .transpose()
            .map(|d| d.unwrap_or(default))
    };
    let (to, from) = match day(q.to.as_deref(), today) {
        Ok(to) => match day(q.from.as_deref(), to.saturating_sub(13 * 86_400)) {
            Ok(from) => (to, from),
            Err(bad) => {
                return error(
                    Some(nav),
                    StatusCode::BAD_REQUEST,
                    "invalid_date",
                    format!("{bad:?} is not a date (YYYY-MM-DD)."),
                );
            }
        },
        Err(bad) => {
            return error(
                Some(nav),
                StatusCode::BAD_REQUEST,
                "invalid_date",
                format!("{bad:?} is not a date (YYYY-MM-DD)."),
            );
        }
    };
    if from > to || (to - from) / 86_400 >= 366 {
        return error(
            Some(nav),
            StatusCode::BAD_REQUEST,
            "invalid_range",
            "From must be before to, at most a year apart.",
        );
    }
    let days = Days { from: day_of(from), to: day_of(to) };
    let cells = match s.event_log.cells(&days, Dimension::Product).await {
        Ok((cells, _)) => cells,
        Err(e) => return failed(Some(nav), &e),
    };
    let labels: Vec<String> = (0..=(to - from) / 86_400).map(|i| day_of(from + i * 86_400)).collect();
    let mut series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut completed: BTreeMap<String, u64> = BTreeMap::new();
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    for c in &cells {
        match c.metric.as_str() {
            metric::INITIATED => {
                if let Some(i) = labels.iter().position(|d| *d == c.day) {
                    series.entry(c.value.clone()).or_insert_with(|| vec![0; labels.len()])[i] += c.n;
                }
            }
            metric::COMPLETED => *completed.entry(c.value.clone()).or_default() += c.n,
            metric::BYTES => *bytes.entry(c.value.clone()).or_default() += c.n,
            _ => {}
        }
    }
    let series: Vec<(String, Vec<u64>)> = series.into_iter().collect();
    let chart = super::chart::stacked_bars("Downloads started per day, by product", &labels, &series);
    let rows: Vec<(String, u64, u64, String)> = series
        .iter()
        .map(|(p, counts)| {
            let started = counts.iter().sum();
            (p.clone(), started, completed.get(p).copied().unwrap_or(0), human_size(bytes.get(p).copied().unwrap_or(0)))
        })
        .collect();
    let total = rows.iter().map(|r| r.1).sum();
    view(StatusCode::OK, &ReportsPage { nav: Some(nav), from: days.from, to: days.to, chart, rows, total })
}

// Live activity.

/// The activity page's script: optional (the page works without it).
const ACTIVITY_JS: &str = include_str!("../../templates/console/activity.js");
/// How long one stream runs before the browser reconnects (from where it
/// was, by `Last-Event-ID`).
const STREAM_FOR: std::time::Duration = std::time::Duration::from_secs(600);
/// How often a stream looks for new events.
const STREAM_POLL: std::time::Duration = std::time::Duration::from_millis(500);
/// Between two pages of a stream catching up (a resumed one).
const STREAM_PACE: std::time::Duration = std::time::Duration::from_millis(20);
/// How often a running stream checks that its session is still live.
const STREAM_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
struct ActivityQuery {
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl ActivityQuery {
    /// The log filter; `Err` names an unknown event type.
    fn filter(&self) -> Result<Filter, String> {
        let some = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let mut types = Vec::new();
        if let Some(kind) = some(&self.kind) {
            types.push(crate::events::EventType::parse(&kind).ok_or(kind)?);
        }
        Ok(Filter { types, customer: some(&self.customer), product: some(&self.product) })
    }
}

#[derive(Template)]
#[template(path = "console/activity.html")]
struct ActivityPage {
    nav: Option<Nav>,
    customer: String,
    product: String,
    kind: String,
    kinds: Vec<&'static str>,
    query: String,
    rows: Vec<[String; 4]>,
}

fn event_row(e: &crate::events::Event) -> [String; 4] {
    let at = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at));
    let sub = &e.subject;
    let about = [&sub.customer, &sub.product, &sub.version, &sub.filename]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let data = serde_json::to_value(&e.detail).ok().map(|v| v["data"].to_string()).unwrap_or_default();
    [at.to_string(), e.event_type().as_str().to_owned(), about, data]
}

/// `GET /console/activity`: the newest events (filtered), and, with the
/// page's script, the ones that happen while it is open.
async fn activity_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<ActivityQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (_, nav) = match signed(&s, &headers, "activity").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let filter = match q.filter() {
        Ok(f) => f,
        Err(kind) => {
            return error(Some(nav), StatusCode::BAD_REQUEST, "invalid_type", format!("No event type {kind:?}."));
        }
    };
    let events = match s.event_log.recent(&filter, 50, 20_000).await {
        Ok(e) => e,
        Err(e) => return failed(Some(nav), &e),
    };
    let query = query_string(&[
        ("customer", filter.customer.as_deref()),
        ("product", filter.product.as_deref()),
        ("type", filter.types.first().map(|t| t.as_str())),
    ]);
    let t = ActivityPage {
        nav: Some(nav),
        customer: filter.customer.clone().unwrap_or_default(),
        product: filter.product.clone().unwrap_or_default(),
        kind: filter.types.first().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        kinds: crate::events::EventType::ALL.iter().map(|t| t.as_str()).collect(),
        query,
        rows: events.iter().map(event_row).collect(),
    };
    view(StatusCode::OK, &t)
}

/// A query string of the pairs that have a value.
fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC))))
        .collect::<Vec<_>>()
        .join("&")
}

async fn activity_script() -> Response {
    let mut r = ACTIVITY_JS.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

/// `GET /console/activity/stream`: server-sent events, one per new event
/// matching the filter, from now (or after `Last-Event-ID`, a log
/// position, when the browser reconnects). Each ends after
/// [`STREAM_FOR`]; the browser reconnects where it was.
async fn activity_stream(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<ActivityQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use axum::response::sse::{Event as Sse, KeepAlive};
    if let Err(r) = signed(&s, &headers, "activity").await {
        return r;
    }
    // Looked at again while the stream runs: a sign-out, a removed token or
    // a changed role ends it.
    let session_key = cookie(&headers, SESSION_COOKIE).map(digest).unwrap_or_default();
    let Ok(filter) = q.map(|Query(q)| q).unwrap_or_default().filter() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|c| s.event_log.valid_cursor(c))
        .map(str::to_owned);
    let start = match resumed {
        Some(c) => Some(c),
        None => match s.event_log.end().await {
            Ok(end) => end,
            Err(e) => {
                tracing::warn!(error = %e, "the activity stream could not find the log's end");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        },
    };
    let until = tokio::time::Instant::now() + STREAM_FOR;
    let checked = tokio::time::Instant::now();
    let state = (s, start, filter, std::collections::VecDeque::new(), checked);
    let events = futures_util::stream::unfold(state, move |(s, mut after, filter, mut queue, mut checked)| {
        let session_key = session_key.clone();
        async move {
            loop {
                if let Some((position, event)) = queue.pop_front() {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    let item = Sse::default().id(position).data(data);
                    return Some((Ok::<_, std::convert::Infallible>(item), (s, after, filter, queue, checked)));
                }
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                if checked.elapsed() >= STREAM_RECHECK {
                    checked = tokio::time::Instant::now();
                    let session: Option<ConsoleSession> =
                        get_json(s.catalog.records().as_ref(), Kind::ConsoleSession, &session_key).await.ok().flatten();
                    let live = session
                        .is_some_and(|c| s.admin_tokens.role_of(&c.token_id) == Some((c.role, c.fingerprint.clone())));
                    if !live {
                        return None;
                    }
                }
                match s.event_log.read(after.as_deref(), &filter, 100, 10_000).await {
                    Ok(page) => {
                        if page.next.is_some() {
                            after = page.next;
                        }
                        queue.extend(page.items);
                    }
                    Err(e) => tracing::warn!(error = %e, "the activity stream could not read the log"),
                }
                // Idle: wait for news; catching up: a breath between pages.
                tokio::time::sleep(if queue.is_empty() { STREAM_POLL } else { STREAM_PACE }).await;
            }
        }
    });
    let mut r = axum::response::sse::Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
