//! The customer portal's pages, under `/portal` on the public listener:
//! server-rendered (askama templates compiled into the binary, no script),
//! signed in by e-mail link. The domain — users, links, sessions — is
//! [`crate::portal`]; a download button is a grant from
//! [`downloads::issue`], judged by every rule an API key's request is.
//!
//! Every form carries a CSRF token: the session's, or, before sign-in, a
//! random one also set in a `SameSite=Strict` cookie (double submit). The
//! session cookie is `HttpOnly`, `SameSite=Lax`, `Path=/portal`, `Secure`
//! when the portal's public URL is `https`. Pages are `no-store`, framed by
//! nobody, and sent with a CSP that allows no script at all.

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::problem::from_access;
use super::{PeerAddr, client_ip};
use crate::catalog::{Customer, Timestamp};
use crate::downloads::{self, IssueRequest};
use crate::entitlement::access::{self, Filter, Wanted};
use crate::events::{Detail, Subject};
use crate::mail::Mail;
use crate::portal::{Portal, PortalError, PortalUser, Session, canonical_email};
use crate::services::Services;

/// The session cookie.
const SESSION_COOKIE: &str = "tg_portal";
/// The pre-session CSRF cookie (sign-in forms).
const CSRF_COOKIE: &str = "tg_portal_csrf";
const STYLE: &str = include_str!("../../templates/portal/style.css");

pub fn routes() -> axum::Router<Arc<Services>> {
    axum::Router::new()
        .route("/portal", get(home))
        .route("/portal/", get(home))
        .route("/portal/style.css", get(style))
        .route("/portal/sign-in", get(sign_in_page).post(sign_in))
        .route("/portal/auth", get(confirm_page).post(authenticate))
        .route("/portal/downloads", get(downloads_page).post(download))
        .route("/portal/sign-out", post(sign_out))
}

/// What every page shows of the vendor.
#[derive(Debug, Clone)]
struct Brand {
    vendor_name: String,
    logo_url: Option<String>,
}

/// The signed-in header.
#[derive(Debug, Clone)]
struct Nav {
    email: String,
    csrf: String,
    page: &'static str,
}

fn brand(s: &Services) -> Brand {
    let p = &s.portal;
    Brand { vendor_name: p.vendor_name.clone(), logo_url: p.logo_url.clone() }
}

#[derive(Template)]
#[template(path = "portal/sign_in.html")]
struct SignInPage {
    brand: Brand,
    nav: Option<Nav>,
    csrf: String,
    message: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/sent.html")]
struct SentPage {
    brand: Brand,
    nav: Option<Nav>,
    email: String,
    minutes: u64,
}

#[derive(Template)]
#[template(path = "portal/confirm.html")]
struct ConfirmPage {
    brand: Brand,
    nav: Option<Nav>,
    csrf: String,
    token: String,
}

#[derive(Template)]
#[template(path = "portal/error.html")]
struct ErrorPage {
    brand: Brand,
    nav: Option<Nav>,
    title: String,
    detail: String,
    code: &'static str,
    back: &'static str,
    back_label: &'static str,
}

#[derive(Template)]
#[template(path = "portal/downloads.html")]
struct DownloadsPage {
    brand: Brand,
    nav: Option<Nav>,
    csrf: String,
    customer_name: String,
    products: Vec<ProductView>,
}

struct ProductView {
    id: String,
    name: String,
    /// Why nothing of it may be downloaded now (outside the maintenance
    /// window, …), when that is so.
    refused: Option<String>,
    releases: Vec<ReleaseView>,
}

struct ReleaseView {
    version: String,
    channel: String,
    critical: bool,
    published: Option<String>,
    notes_html: Option<String>,
    files: Vec<FileView>,
}

struct FileView {
    filename: String,
    platform: String,
    size: String,
    sha256: String,
    sha512: Option<String>,
}

/// A page, with the headers every portal page carries.
fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (status, html).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            secure_headers(h);
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "a portal template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' https:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // A sign-in link's token is in a URL: no page passes it on.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_page(s: &Services, nav: Option<Nav>, status: StatusCode, code: &'static str, detail: String) -> Response {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let (back, back_label) =
        if nav.is_some() { ("/portal/downloads", "Back to downloads") } else { ("/portal/sign-in", "Back to sign-in") };
    let t = ErrorPage { brand: brand(s), nav, title: title.into(), detail, code, back, back_label };
    page(status, &t)
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn secure(s: &Services) -> &'static str {
    if s.downloads.urls.public_url.starts_with("https://") { "; Secure" } else { "" }
}

fn set_cookie(r: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    let _ = getrandom::fill(&mut bytes);
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

/// The signed-in session of this request, if any.
async fn signed_in(s: &Services, headers: &HeaderMap) -> Result<Option<(Session, PortalUser, Customer)>, Response> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    Portal::new(s).session(id).await.map_err(|e| portal_failure(s, None, &e))
}

fn portal_failure(s: &Services, nav: Option<Nav>, e: &PortalError) -> Response {
    match e {
        PortalError::InvalidLink => error_page(s, nav, StatusCode::FORBIDDEN, "invalid_link", e.to_string()),
        PortalError::InvalidEmail(_) => error_page(s, nav, StatusCode::BAD_REQUEST, "invalid_email", e.to_string()),
        _ => {
            tracing::warn!(error = %e, "portal request failed");
            error_page(
                s,
                nav,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The portal cannot answer right now; try again in a moment.".into(),
            )
        }
    }
}

async fn home(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    if !s.portal.enabled {
        return super::problem::not_found().await.into_response();
    }
    match signed_in(&s, &headers).await {
        Ok(Some(_)) => see_other("/portal/downloads"),
        Ok(None) => see_other("/portal/sign-in"),
        Err(r) => r,
    }
}

async fn style(State(s): State<Arc<Services>>) -> Response {
    let css = STYLE.replacen("--accent: #1a4f8b", &format!("--accent: {}", s.portal.accent_color), 1);
    let mut r = css.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

/// A sign-in form with a fresh pre-session CSRF token (also its cookie).
fn sign_in_form(s: &Services, status: StatusCode, message: Option<String>) -> Response {
    let csrf = random_token();
    let mut r = page(status, &SignInPage { brand: brand(s), nav: None, csrf: csrf.clone(), message });
    set_cookie(&mut r, format!("{CSRF_COOKIE}={csrf}; Path=/portal; HttpOnly; SameSite=Strict{}", secure(s)));
    r
}

async fn sign_in_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    if !s.portal.enabled {
        return super::problem::not_found().await.into_response();
    }
    match signed_in(&s, &headers).await {
        Ok(Some(_)) => see_other("/portal/downloads"),
        Ok(None) => sign_in_form(&s, StatusCode::OK, None),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// `POST /portal/sign-in`: mail a link to `email` if it is a user's. The
/// answer is the same whether it is or not.
async fn sign_in(
    State(s): State<Arc<Services>>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !s.portal.enabled {
        return super::problem::not_found().await.into_response();
    }
    let Ok(Form(form)) = form else {
        return error_page(&s, None, StatusCode::BAD_REQUEST, "invalid_form", "The form was not readable.".into());
    };
    if !same(&form.csrf, cookie(&headers, CSRF_COOKIE).unwrap_or("")) {
        return csrf_refused(&s, None);
    }
    let Some(email) = canonical_email(form.email.trim()) else {
        return sign_in_form(&s, StatusCode::BAD_REQUEST, Some("That is not an e-mail address.".into()));
    };
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    if let Err(wait) = s.limits.sign_in(&email, client) {
        let mut r = error_page(
            &s,
            None,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many sign-in requests; wait a while and try again.".into(),
        );
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(crate::ratelimit::retry_after_secs(wait)));
        return r;
    }
    match Portal::new(&s).new_link(&email).await {
        Ok(Some((user, token))) => send_link(&s, &user, &token).await,
        Ok(None) => tracing::info!("portal sign-in asked for an address that is no active user's"),
        Err(e) => return portal_failure(&s, None, &e),
    }
    let minutes = s.portal.link_ttl.as_secs().div_ceil(60);
    page(StatusCode::OK, &SentPage { brand: brand(&s), nav: None, email, minutes })
}

async fn send_link(s: &Services, user: &PortalUser, token: &str) {
    let link = format!("{}/portal/auth?token={token}", s.downloads.urls.public_url.trim_end_matches('/'));
    let Some(mailer) = &s.mail else {
        tracing::warn!("a portal sign-in link could not be sent: no [portal.smtp] is configured");
        return;
    };
    let minutes = s.portal.link_ttl.as_secs().div_ceil(60);
    let mail = Mail {
        to: user.email.clone(),
        subject: format!("Sign in to {} downloads", s.portal.vendor_name),
        body: format!(
            "Hello,\n\nOpen this link to sign in to {} downloads. It works once, within {minutes} minutes:\n\n{link}\n\n\
             If you did not ask to sign in, ignore this e-mail.\n",
            s.portal.vendor_name
        ),
    };
    if let Err(e) = mailer.send(mail).await {
        tracing::warn!(error = %e, "a portal sign-in e-mail was not accepted by the SMTP relay");
    }
}

fn csrf_refused(s: &Services, nav: Option<Nav>) -> Response {
    error_page(
        s,
        nav,
        StatusCode::FORBIDDEN,
        "csrf_refused",
        "This form is out of date or did not come from this portal; reload the page and try again.".into(),
    )
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// `GET /portal/auth?token=`: a button that signs in. The link itself does
/// not: mail scanners and link previews fetch links, and would use it up.
async fn confirm_page(
    State(s): State<Arc<Services>>,
    q: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !s.portal.enabled {
        return super::problem::not_found().await.into_response();
    }
    let token = q.map(|Query(q)| q.token).unwrap_or_default();
    if token.is_empty() || token.len() > 64 {
        return portal_failure(&s, None, &PortalError::InvalidLink);
    }
    let csrf = random_token();
    let mut r = page(StatusCode::OK, &ConfirmPage { brand: brand(&s), nav: None, csrf: csrf.clone(), token });
    set_cookie(&mut r, format!("{CSRF_COOKIE}={csrf}; Path=/portal; HttpOnly; SameSite=Strict{}", secure(&s)));
    r
}

#[derive(Debug, Deserialize)]
struct AuthForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// `POST /portal/auth`: use the link; a new session.
async fn authenticate(
    State(s): State<Arc<Services>>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    form: Result<Form<AuthForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !s.portal.enabled {
        return super::problem::not_found().await.into_response();
    }
    let Ok(Form(form)) = form else {
        return error_page(&s, None, StatusCode::BAD_REQUEST, "invalid_form", "The form was not readable.".into());
    };
    if !same(&form.csrf, cookie(&headers, CSRF_COOKIE).unwrap_or("")) {
        return csrf_refused(&s, None);
    }
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    let (session, id) = match Portal::new(&s).redeem_link(&form.token).await {
        Ok(signed) => signed,
        Err(e) => {
            // SECURITY: a guessed link costs the guesser.
            if let Err(wait) = s.limits.refused_credential(client) {
                return super::problem::rate_limited(wait).into_response();
            }
            return portal_failure(&s, None, &e);
        }
    };
    let subject = Subject { customer: Some(session.customer.clone()), ..Subject::default() };
    s.record(subject, Detail::PortalSignedIn { email: session.email.clone(), client_ip: Some(client.to_string()) })
        .await;
    let mut r = see_other("/portal/downloads");
    set_cookie(&mut r, format!("{SESSION_COOKIE}={id}; Path=/portal; HttpOnly; SameSite=Lax{}", secure(&s)));
    set_cookie(&mut r, format!("{CSRF_COOKIE}=; Path=/portal; Max-Age=0; HttpOnly; SameSite=Strict{}", secure(&s)));
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
    let session = match signed_in(&s, &headers).await {
        Ok(Some((session, ..))) => session,
        Ok(None) => return see_other("/portal/sign-in"),
        Err(r) => return r,
    };
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !same(&csrf, &session.csrf) {
        return csrf_refused(&s, None);
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = Portal::new(&s).end_session(id).await
    {
        return portal_failure(&s, None, &e);
    }
    let mut r = see_other("/portal/sign-in");
    set_cookie(&mut r, format!("{SESSION_COOKIE}=; Path=/portal; Max-Age=0; HttpOnly; SameSite=Lax{}", secure(&s)));
    r
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `GET /portal/downloads`: every product the customer is entitled to,
/// the releases it may download now (newest first; drafts and yanked
/// releases are not listed), their files with digests and a button each.
async fn downloads_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    let (session, _user, customer) = match signed_in(&s, &headers).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return see_other("/portal/sign-in"),
        Err(r) => return r,
    };
    let nav = Nav { email: session.email.clone(), csrf: session.csrf.clone(), page: "downloads" };
    match product_views(&s, &customer).await {
        Ok(products) => page(
            StatusCode::OK,
            &DownloadsPage {
                brand: brand(&s),
                nav: Some(nav),
                csrf: session.csrf,
                customer_name: customer.name.clone(),
                products,
            },
        ),
        Err(e) => {
            let p = from_access(&e);
            error_page(
                &s,
                Some(nav),
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                p.code,
                e.to_string(),
            )
        }
    }
}

async fn product_views(s: &Services, customer: &Customer) -> Result<Vec<ProductView>, access::AccessError> {
    let now = Timestamp(s.clock.now_unix());
    let entitlements = s.catalog.entitlements_of(&customer.id).await?;
    let mut ids: Vec<&str> = entitlements.iter().map(|e| e.product.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let name = s.catalog.product(id).await?.map_or_else(|| id.to_owned(), |p| p.name);
        let (mut releases, refused) =
            match access::downloadable_releases(&s.catalog, customer, id, Filter::default(), now).await {
                Ok(r) => (r, None),
                Err(e) if e.denial().is_some() => (Vec::new(), Some(e.to_string())),
                Err(e) => return Err(e),
            };
        access::upgrades(&mut releases, None, None);
        let releases = releases
            .into_iter()
            .map(|d| {
                let r = d.release;
                let channel = serde_json::to_value(r.channel).ok().and_then(|v| v.as_str().map(str::to_owned));
                ReleaseView {
                    version: r.version.to_string(),
                    channel: channel.unwrap_or_default(),
                    critical: r.critical,
                    published: r.published_at.map(|t| t.to_string()),
                    notes_html: r.notes.as_deref().map(super::notes::to_html),
                    files: d
                        .artifacts
                        .into_iter()
                        .map(|(a, _)| a)
                        .filter(|a| !access::is_update_metadata(&a.filename))
                        .map(|a| FileView {
                            size: human_size(a.size),
                            filename: a.filename,
                            platform: a.platform,
                            sha256: a.sha256,
                            sha512: a.sha512,
                        })
                        .collect(),
                }
            })
            .collect();
        out.push(ProductView { id: id.to_owned(), name, refused, releases });
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct DownloadForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    filename: String,
}

/// `POST /portal/downloads`: a grant for the file, `303` to its URL.
async fn download(
    State(s): State<Arc<Services>>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    form: Result<Form<DownloadForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, _user, customer) = match signed_in(&s, &headers).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return see_other("/portal/sign-in"),
        Err(r) => return r,
    };
    let nav = Nav { email: session.email.clone(), csrf: session.csrf.clone(), page: "downloads" };
    let Ok(Form(form)) = form else {
        return error_page(&s, Some(nav), StatusCode::BAD_REQUEST, "invalid_form", "The form was not readable.".into());
    };
    if !same(&form.csrf, &session.csrf) {
        return csrf_refused(&s, Some(nav));
    }
    let Ok(version) = semver::Version::parse(&form.version) else {
        return error_page(
            &s,
            Some(nav),
            StatusCode::BAD_REQUEST,
            "invalid_version",
            format!("{:?} is not a version", form.version),
        );
    };
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    let req = IssueRequest {
        customer: &customer,
        product: &form.product,
        version: &version,
        wanted: Wanted::File(&form.filename),
        client,
        surface: "portal",
    };
    match downloads::issue(&s, &req).await {
        Ok(granted) => see_other(&granted.issued.url),
        Err(e) => {
            let p = from_access(&e);
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_page(&s, Some(nav), status, p.code, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; tg_portal_x=2; tg_portal=3"));
        assert_eq!(cookie(&h, "tg_portal"), Some("3"));
        assert_eq!(cookie(&h, "tg"), None);
    }
}
