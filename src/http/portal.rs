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
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::problem::from_access;
use super::{PeerAddr, client_ip};
use crate::catalog::{Customer, PLATFORM_ANY, Timestamp};
use crate::downloads::{self, IssueRequest};
use crate::entitlement::access::{self, Filter, Wanted};
use crate::events::{Change, Detail, Subject};
use crate::mail::Mail;
use crate::oidc::OidcError;
use crate::portal::oidc::SsoError;
use crate::portal::{Portal, PortalError, PortalUser, Role, Session, UserChange, canonical_email};
use crate::services::Services;

/// The session cookie.
const SESSION_COOKIE: &str = "tg_portal";
/// The pre-session CSRF cookie (sign-in forms).
const CSRF_COOKIE: &str = "tg_portal_csrf";
/// The `state` of an OpenID sign-in this browser started.
const SSO_COOKIE: &str = "tg_portal_sso";
pub(super) const STYLE: &str = include_str!("../../templates/portal/style.css");

pub fn routes(state: Arc<Services>) -> axum::Router<Arc<Services>> {
    let signing_in = axum::Router::new()
        .route("/portal", get(home))
        .route("/portal/", get(home))
        .route("/portal/style.css", get(style))
        .route("/portal/sign-in", get(sign_in_page).post(sign_in))
        .route("/portal/auth", get(confirm_page).post(authenticate))
        .route("/portal/sso", post(sso_start))
        .route("/portal/sso/callback", get(sso_callback))
        .route("/portal/sign-out", post(sign_out));
    axum::Router::new()
        .route("/portal/downloads", get(downloads_page).post(download))
        .route("/portal/licenses", get(licenses_page))
        .route("/portal/usage", get(usage_page))
        .route("/portal/history", get(history_page))
        .route("/portal/history.csv", get(history_csv))
        .route("/portal/api-keys", get(api_keys_page).post(create_api_key))
        .route("/portal/api-keys/revoke", post(revoke_api_key))
        .route("/portal/notifications", get(notifications_page).post(set_notifications))
        .route("/portal/notifications/feed", post(new_feed_address))
        .route("/portal/team", get(team_page).post(invite))
        .route("/portal/team/role", post(change_role))
        .route("/portal/team/remove", post(remove_member))
        .route("/portal/sign-out-everywhere", post(sign_out_everywhere))
        .route_layer(axum::middleware::from_fn_with_state(state, refuse_changes_in_a_view))
        .merge(signing_in)
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
    /// A vendor's read-only view: a banner says so.
    view_only: bool,
}

fn brand(s: &Services) -> Brand {
    let b = s.brand();
    Brand { vendor_name: b.vendor_name, logo_url: b.logo_url }
}

#[derive(Template)]
#[template(path = "portal/sign_in.html")]
struct SignInPage {
    brand: Brand,
    nav: Option<Nav>,
    csrf: String,
    message: Option<String>,
    /// The OpenID providers: id and name.
    sso: Vec<(String, String)>,
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
    /// The filters' choices, and what is chosen.
    channels: Vec<String>,
    platforms: Vec<String>,
    channel: String,
    platform: String,
    only_new: bool,
    last_download: Option<String>,
    /// Every release filtered out.
    nothing_shown: bool,
}

#[derive(Debug, Default, Deserialize)]
struct DownloadsQuery {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    /// `1`: only releases published since the user's last download.
    #[serde(default)]
    new: Option<String>,
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
    /// Published since the user's last download.
    new: bool,
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
pub(super) fn page(status: StatusCode, t: &impl Template) -> Response {
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

pub(super) fn see_other(to: &str) -> Response {
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

pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
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

pub(super) fn set_cookie(r: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub(super) fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A page before sign-in: `render` gets a fresh CSRF token for its form,
/// and the answer sets the cookie the form's token must match.
fn with_fresh_csrf(s: &Services, render: impl FnOnce(String) -> Response) -> Response {
    let csrf = match crate::portal::new_token() {
        Ok(t) => t,
        Err(e) => return portal_failure(s, None, &e),
    };
    let mut r = render(csrf.clone());
    set_cookie(&mut r, format!("{CSRF_COOKIE}={csrf}; Path=/portal; HttpOnly; SameSite=Strict{}", secure(s)));
    r
}

/// A signed-in request: the session, its user and customer, and the header
/// for `page`; not signed in, the answer is a redirect to sign-in.
struct Signed {
    session: Session,
    user: PortalUser,
    customer: Customer,
    nav: Nav,
}

async fn signed(s: &Services, headers: &HeaderMap, page: &'static str) -> Result<Signed, Response> {
    match signed_in(s, headers).await? {
        Some((session, user, customer)) => {
            let nav = Nav {
                email: session.email.clone(),
                csrf: session.csrf.clone(),
                page,
                view_only: session.view_as.is_some(),
            };
            Ok(Signed { session, user, customer, nav })
        }
        None => Err(see_other("/portal/sign-in")),
    }
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
    match signed_in(&s, &headers).await {
        Ok(Some(_)) => see_other("/portal/downloads"),
        Ok(None) => see_other("/portal/sign-in"),
        Err(r) => r,
    }
}

async fn style(State(s): State<Arc<Services>>) -> Response {
    let css = STYLE.replacen("--accent: #1a4f8b", &format!("--accent: {}", s.brand().accent_color), 1);
    let mut r = css.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

/// A sign-in form with a fresh pre-session CSRF token (also its cookie).
fn sign_in_form(s: &Services, status: StatusCode, message: Option<String>) -> Response {
    let sso = s.sso.list().iter().map(|p| (p.id.clone(), p.name.clone())).collect();
    with_fresh_csrf(s, |csrf| page(status, &SignInPage { brand: brand(s), nav: None, csrf, message, sso }))
}

async fn sign_in_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    match signed_in(&s, &headers).await {
        Ok(Some(_)) => see_other("/portal/downloads"),
        Ok(None) => sign_in_form(&s, StatusCode::OK, None),
        Err(r) => r,
    }
}

/// A form posted before sign-in: readable, and carrying the CSRF token its
/// page set in the pre-session cookie (double submit).
#[allow(clippy::result_large_err, reason = "the error is the answer to send, made once per request")]
fn before_sign_in<T>(
    s: &Services,
    headers: &HeaderMap,
    form: Result<Form<T>, axum::extract::rejection::FormRejection>,
    csrf: impl Fn(&T) -> &String,
) -> Result<T, Response> {
    let Ok(Form(form)) = form else {
        return Err(error_page(s, None, StatusCode::BAD_REQUEST, "invalid_form", "The form was not readable.".into()));
    };
    if !same(csrf(&form), cookie(headers, CSRF_COOKIE).unwrap_or("")) {
        return Err(csrf_refused(s, None));
    }
    Ok(form)
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
    let form = match before_sign_in(&s, &headers, form, |f| &f.csrf) {
        Ok(form) => form,
        Err(r) => return r,
    };
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
        // SECURITY: sent in the background, so that the answer takes as long
        // for a user's address as for a stranger's (the SMTP exchange would
        // tell them apart).
        Ok(Some((user, token))) => {
            let s = s.clone();
            tokio::spawn(async move { send_link(&s, &user, &token).await });
        }
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
        subject: format!("Sign in to {} downloads", s.brand().vendor_name),
        body: format!(
            "Hello,\n\nOpen this link to sign in to {} downloads. It works once, within {minutes} minutes:\n\n{link}\n\n\
             If you did not ask to sign in, ignore this e-mail.\n",
            s.brand().vendor_name
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
    let token = q.map(|Query(q)| q.token).unwrap_or_default();
    if token.is_empty() || token.len() > 64 {
        return portal_failure(&s, None, &PortalError::InvalidLink);
    }
    with_fresh_csrf(&s, |csrf| page(StatusCode::OK, &ConfirmPage { brand: brand(&s), nav: None, csrf, token }))
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
    let form = match before_sign_in(&s, &headers, form, |f| &f.csrf) {
        Ok(form) => form,
        Err(r) => return r,
    };
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
    if let Some(actor) = session.view_as.clone() {
        // Audited: who looked at whose portal, from where, until when.
        let subject = Subject { customer: Some(session.customer.clone()), ..Subject::default() };
        let until = Timestamp(session.created_at.0 + crate::portal::VIEW_FOR);
        let detail = Detail::PortalViewedAs { until, client_ip: Some(client.to_string()) };
        crate::events::acting_as(actor, s.record(subject, detail)).await;
        let mut r = see_other("/portal/downloads");
        set_cookie(&mut r, format!("{SESSION_COOKIE}={id}; Path=/portal; HttpOnly; SameSite=Lax{}", secure(&s)));
        set_cookie(&mut r, format!("{CSRF_COOKIE}=; Path=/portal; Max-Age=0; HttpOnly; SameSite=Strict{}", secure(&s)));
        return r;
    }
    signed_in_now(&s, &session, &id, client, "link".to_owned()).await
}

/// Every change a signed-in page makes (its `POST`s) is refused in a
/// vendor's read-only view of the portal (`403 view_only`); signing out
/// is not a change.
async fn refuse_changes_in_a_view(
    State(s): State<Arc<Services>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && let Some(id) = cookie(request.headers(), SESSION_COOKIE)
    {
        match Portal::new(&s).session(id).await {
            Ok(Some((session, _, _))) if session.view_as.is_some() => {
                return error_page(
                    &s,
                    None,
                    StatusCode::FORBIDDEN,
                    "view_only",
                    "This is a read-only view of the customer's portal: nothing can be changed or downloaded from it."
                        .into(),
                );
            }
            Ok(_) => {}
            Err(e) => return portal_failure(&s, None, &e),
        }
    }
    next.run(request).await
}

/// A sign-in that worked: `portal.signed_in` recorded (`via` the link or
/// the provider), and the answer: the session's cookie (the pre-session
/// ones cleared), on to Downloads.
async fn signed_in_now(s: &Services, session: &Session, id: &str, client: std::net::IpAddr, via: String) -> Response {
    let subject = Subject { customer: Some(session.customer.clone()), ..Subject::default() };
    let detail =
        Detail::PortalSignedIn { email: session.email.clone(), client_ip: Some(client.to_string()), via: Some(via) };
    s.record(subject, detail).await;
    let mut r = see_other("/portal/downloads");
    set_cookie(&mut r, format!("{SESSION_COOKIE}={id}; Path=/portal; HttpOnly; SameSite=Lax{}", secure(s)));
    set_cookie(&mut r, format!("{CSRF_COOKIE}=; Path=/portal; Max-Age=0; HttpOnly; SameSite=Strict{}", secure(s)));
    set_cookie(&mut r, format!("{SSO_COOKIE}=; Path=/portal/sso; Max-Age=0; HttpOnly; SameSite=Lax{}", secure(s)));
    r
}

#[derive(Debug, Deserialize)]
struct SsoForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    provider: String,
}

/// `POST /portal/sso`: sign in with an OpenID provider. The browser goes
/// to the provider, with a cookie binding the answer to it.
async fn sso_start(
    State(s): State<Arc<Services>>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    form: Result<Form<SsoForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match before_sign_in(&s, &headers, form, |f| &f.csrf) {
        Ok(form) => form,
        Err(r) => return r,
    };
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    if let Err(wait) = s.limits.sso_start(client) {
        return super::problem::rate_limited(wait).into_response();
    }
    match crate::portal::oidc::start(&s, &form.provider).await {
        Ok(started) => {
            let mut r = see_other(&started.location);
            let max_age = crate::portal::oidc::FLOW_TTL.as_secs();
            set_cookie(
                &mut r,
                format!(
                    "{SSO_COOKIE}={}; Path=/portal/sso; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
                    started.state,
                    secure(&s)
                ),
            );
            r
        }
        Err(e) => sso_failure(&s, &e),
    }
}

/// `GET /portal/sso/callback`: the provider's answer.
async fn sso_callback(
    State(s): State<Arc<Services>>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    q: Result<Query<crate::portal::oidc::Callback>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let answer = q.map(|Query(q)| q).unwrap_or_default();
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    let (user, provider) = match crate::portal::oidc::finish(&s, cookie(&headers, SSO_COOKIE), &answer).await {
        Ok(proven) => proven,
        Err(e) => {
            if matches!(e, SsoError::InvalidFlow | SsoError::Oidc(OidcError::InvalidToken(_)))
                && let Err(wait) = s.limits.refused_credential(client)
            {
                return super::problem::rate_limited(wait).into_response();
            }
            let mut r = sso_failure(&s, &e);
            set_cookie(
                &mut r,
                format!("{SSO_COOKIE}=; Path=/portal/sso; Max-Age=0; HttpOnly; SameSite=Lax{}", secure(&s)),
            );
            return r;
        }
    };
    let (session, id) = match Portal::new(&s).start_session(&user).await {
        Ok(started) => started,
        Err(e) => return portal_failure(&s, None, &e),
    };
    signed_in_now(&s, &session, &id, client, format!("sso:{}", provider.id)).await
}

fn sso_failure(s: &Services, e: &SsoError) -> Response {
    match e {
        SsoError::UnknownProvider => error_page(s, None, StatusCode::NOT_FOUND, "unknown_provider", e.to_string()),
        SsoError::InvalidFlow => error_page(s, None, StatusCode::FORBIDDEN, "sso_flow_invalid", e.to_string()),
        SsoError::Oidc(OidcError::Denied(_)) => error_page(s, None, StatusCode::FORBIDDEN, "sso_denied", e.to_string()),
        SsoError::Oidc(OidcError::InvalidToken(_)) => {
            tracing::warn!(error = %e, "an SSO answer failed its checks");
            error_page(s, None, StatusCode::FORBIDDEN, "sso_invalid_token", e.to_string())
        }
        SsoError::NotAllowed(_) => error_page(s, None, StatusCode::FORBIDDEN, "sso_not_allowed", e.to_string()),
        SsoError::Oidc(OidcError::Provider(_)) => {
            tracing::warn!(error = %e, "an SSO provider could not be used");
            let detail = "The sign-in provider cannot be reached right now; try again, or sign in by e-mail.".into();
            error_page(s, None, StatusCode::BAD_GATEWAY, "sso_provider_unavailable", detail)
        }
        SsoError::Portal(e) => portal_failure(s, None, e),
    }
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

pub(super) fn human_size(bytes: u64) -> String {
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
async fn downloads_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<DownloadsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Signed { session, user, customer, nav } = match signed(&s, &headers, "downloads").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let mut products = match product_views(&s, &customer, user.last_download_at).await {
        Ok(products) => products,
        Err(e) => return access_refused(&s, nav, &e),
    };
    // The filters' choices are what there is; a choice not among them
    // (hand-made) shows nothing rather than everything.
    let mut channels: Vec<String> =
        products.iter().flat_map(|p| p.releases.iter().map(|r| r.channel.clone())).collect();
    let mut platforms: Vec<String> = products
        .iter()
        .flat_map(|p| p.releases.iter().flat_map(|r| r.files.iter().map(|f| f.platform.clone())))
        .collect();
    for list in [&mut channels, &mut platforms] {
        list.sort_unstable();
        list.dedup();
    }
    let channel = q.channel.filter(|c| !c.is_empty()).unwrap_or_default();
    let platform = q.platform.filter(|p| !p.is_empty()).unwrap_or_default();
    let only_new = q.new.as_deref() == Some("1");
    for p in &mut products {
        p.releases.retain(|r| (channel.is_empty() || r.channel == channel) && (!only_new || r.new));
        for r in &mut p.releases {
            // A file for any platform suits every platform.
            r.files.retain(|f| platform.is_empty() || f.platform == platform || f.platform == PLATFORM_ANY);
        }
        p.releases.retain(|r| !r.files.is_empty());
    }
    let nothing_shown = products.iter().all(|p| p.releases.is_empty());
    let t = DownloadsPage {
        brand: brand(&s),
        nav: Some(nav),
        csrf: session.csrf,
        customer_name: customer.name.clone(),
        nothing_shown,
        products,
        channels,
        platforms,
        channel,
        platform,
        only_new,
        last_download: user.last_download_at.map(|t| t.to_string()),
    };
    page(StatusCode::OK, &t)
}

/// An error page for a refusal the customer API would answer with a problem:
/// its status and code.
fn access_refused(s: &Services, nav: Nav, e: &access::AccessError) -> Response {
    let p = from_access(e);
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_page(s, Some(nav), status, p.code, e.to_string())
}

/// The customer's products and the releases it may download now; `new`:
/// published after `since`.
async fn product_views(
    s: &Services,
    customer: &Customer,
    since: Option<Timestamp>,
) -> Result<Vec<ProductView>, access::AccessError> {
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
                ReleaseView {
                    version: r.version.to_string(),
                    channel: word(&r.channel),
                    critical: r.critical,
                    new: match (since, r.published_at) {
                        (Some(since), Some(at)) => at.0 > since.0,
                        _ => false,
                    },
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
    let Signed { session, user, customer, nav } = match signed(&s, &headers, "downloads").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
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
        by: Some(&user.email),
    };
    match downloads::issue(&s, &req).await {
        Ok(granted) => {
            Portal::new(&s).downloaded(&user.email).await;
            see_other(&granted.issued.url)
        }
        Err(e) => access_refused(&s, nav, &e),
    }
}

#[derive(Template)]
#[template(path = "portal/licenses.html")]
struct LicensesPage {
    brand: Brand,
    nav: Option<Nav>,
    licenses: Vec<LicenseView>,
}

struct LicenseView {
    product: String,
    license: String,
    status: String,
    starts: String,
    expires: String,
    maintenance: String,
    versions: String,
    channels: String,
    platforms: String,
    /// Published releases newer than every covered one that this
    /// entitlement does not cover, comma-separated.
    not_covered: String,
}

pub(super) fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// A date, with the days from `now` to it.
fn date_and_days(t: Option<Timestamp>, now: u64, none: &str) -> String {
    match t {
        None => none.to_owned(),
        Some(t) => {
            let date = t.to_string().get(..10).unwrap_or_default().to_owned();
            let days = (i128::from(t.0) - i128::from(now)).div_euclid(86_400);
            match days {
                d if d < 0 => format!("{date} (ended)"),
                0 => format!("{date} (today)"),
                d => format!("{date} ({d} days left)"),
            }
        }
    }
}

/// `GET /portal/licenses`: each entitlement — license, dates, what it
/// covers, and the newer releases it does not.
async fn licenses_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    let Signed { customer, nav, .. } = match signed(&s, &headers, "licenses").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    match license_views(&s, &customer).await {
        Ok(licenses) => page(StatusCode::OK, &LicensesPage { brand: brand(&s), nav: Some(nav), licenses }),
        Err(e) => access_refused(&s, nav, &e),
    }
}

async fn license_views(s: &Services, customer: &Customer) -> Result<Vec<LicenseView>, access::AccessError> {
    let now = s.clock.now_unix();
    let mut out = Vec::new();
    for e in s.catalog.entitlements_of(&customer.id).await? {
        let product = s.catalog.product(&e.product).await?.map_or_else(|| e.product.clone(), |p| p.name);
        let releases = s.catalog.all_releases(&e.product).await?;
        // Releases on channels the license does not follow are not its
        // business (nor the customer's: pre-releases stay unannounced).
        let published: Vec<_> = releases
            .iter()
            .filter(|r| r.status == crate::catalog::ReleaseStatus::Published)
            .filter(|r| e.channels.iter().any(|c| c.covers(r.channel)))
            .collect();
        let covered = |r: &crate::catalog::Release| {
            crate::entitlement::version_covered(&e.versions, &r.version)
                && e.channels.iter().any(|c| c.covers(r.channel))
                && e.maintenance_until.is_none_or(|m| r.published_at.is_none_or(|p| p.0 <= m.0))
        };
        let newest_covered = published.iter().filter(|r| covered(r)).map(|r| &r.version).max();
        let mut not: Vec<_> = published
            .iter()
            .filter(|r| !covered(r) && newest_covered.is_none_or(|n| r.version > *n))
            .map(|r| r.version.clone())
            .collect();
        not.sort();
        out.push(LicenseView {
            product,
            license: word(&e.license),
            status: word(&e.status),
            starts: date_and_days(Some(e.starts_at), now, "").get(..10).unwrap_or_default().to_owned(),
            expires: date_and_days(e.expires_at, now, "never"),
            maintenance: date_and_days(e.maintenance_until, now, "no end"),
            versions: e.versions.to_string(),
            channels: e.channels.iter().map(word).collect::<Vec<_>>().join(", "),
            platforms: e.platforms.as_ref().map_or_else(|| "all".to_owned(), |p| p.join(", ")),
            not_covered: not.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "portal/usage.html")]
struct UsagePage {
    brand: Brand,
    nav: Option<Nav>,
    active: u64,
    limits: Vec<UsageView>,
}

pub(super) struct UsageView {
    pub name: String,
    pub scope: String,
    pub limit: u64,
    pub used: u64,
    pub limit_text: String,
    pub used_text: String,
    pub remaining_text: String,
    pub resets: String,
}

/// Each limit in force with its use, as the portal's Usage page and the
/// console's customer page show it.
pub(super) fn usage_views(usage: &[crate::quota::Usage]) -> Vec<UsageView> {
    usage
        .iter()
        .map(|u| {
            let bytes =
                matches!(u.limit.kind, crate::quota::LimitKind::BytesPerDay | crate::quota::LimitKind::BytesPerMonth);
            let amount = |n: u64| if bytes { human_size(n) } else { n.to_string() };
            let scope = match &u.limit.scope {
                crate::quota::QuotaScope::Customer => "all downloads".to_owned(),
                crate::quota::QuotaScope::Entitlement(id) => format!("license {id}"),
            };
            UsageView {
                name: u.limit.kind.as_str().replace('_', " "),
                scope,
                limit: u.limit.limit,
                used: u.used.min(u.limit.limit),
                limit_text: amount(u.limit.limit),
                used_text: amount(u.used),
                remaining_text: amount(u.limit.limit.saturating_sub(u.used)),
                resets: u.resets_at.map_or_else(|| "—".to_owned(), |t| Timestamp(t).to_string()),
            }
        })
        .collect()
}

/// `GET /portal/usage`: every limit in force, its use, and when it resets.
async fn usage_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    let Signed { customer, nav, .. } = match signed(&s, &headers, "usage").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let usage = match downloads::usage(&s, &customer, None).await {
        Ok(u) => u,
        Err(e) => return access_refused(&s, nav, &e.into()),
    };
    let limits = usage_views(&usage.usage);
    page(StatusCode::OK, &UsagePage { brand: brand(&s), nav: Some(nav), active: usage.active, limits })
}

#[derive(Template)]
#[template(path = "portal/api_keys.html")]
struct ApiKeysPage {
    brand: Brand,
    nav: Option<Nav>,
    csrf: String,
    can_manage: bool,
    keys: Vec<KeyView>,
    created: Option<CreatedKey>,
}

struct KeyView {
    id: String,
    name: String,
    created: String,
    last_used: String,
    state: String,
    live: bool,
}

struct CreatedKey {
    name: String,
    key: String,
}

async fn api_keys_view(s: &Services, signed: Signed, status: StatusCode, created: Option<CreatedKey>) -> Response {
    let keys = match s.catalog.api_keys(&signed.customer.id).await {
        Ok(keys) => keys,
        Err(e) => return access_refused(s, signed.nav, &e.into()),
    };
    let keys = keys
        .into_iter()
        .map(|k| KeyView {
            id: k.id,
            name: if k.name.is_empty() { "(unnamed)".into() } else { k.name },
            created: k.created_at.to_string(),
            last_used: k.last_used_at.map_or_else(|| "never".to_owned(), |t| t.to_string()),
            state: k.revoked_at.map_or_else(|| "active".to_owned(), |t| format!("revoked {t}")),
            live: k.revoked_at.is_none(),
        })
        .collect();
    let can_manage = signed.user.role == Role::Admin;
    let t =
        ApiKeysPage { brand: brand(s), csrf: signed.session.csrf, nav: Some(signed.nav), can_manage, keys, created };
    page(status, &t)
}

/// `GET /portal/api-keys`: the customer's keys; its admins create and
/// revoke them.
async fn api_keys_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    match signed(&s, &headers, "api-keys").await {
        Ok(signed) => api_keys_view(&s, signed, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    id: String,
}

/// A key form's checks: signed in, the session's token, a portal admin.
async fn key_form(
    s: &Services,
    headers: &HeaderMap,
    form: Result<Form<KeyForm>, axum::extract::rejection::FormRejection>,
) -> Result<(Signed, KeyForm), Response> {
    let signed = signed(s, headers, "api-keys").await?;
    let Ok(Form(form)) = form else {
        return Err(error_page(
            s,
            Some(signed.nav),
            StatusCode::BAD_REQUEST,
            "invalid_form",
            "The form was not readable.".into(),
        ));
    };
    if !same(&form.csrf, &signed.session.csrf) {
        return Err(csrf_refused(s, Some(signed.nav)));
    }
    if signed.user.role != Role::Admin {
        let detail = "Only your company's portal admins manage API keys.".to_owned();
        return Err(error_page(s, Some(signed.nav), StatusCode::FORBIDDEN, "portal_admin_only", detail));
    }
    Ok((signed, form))
}

/// `POST /portal/api-keys`: a new key, shown this once.
async fn create_api_key(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    form: Result<Form<KeyForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (signed, form) = match key_form(&s, &headers, form).await {
        Ok(checked) => checked,
        Err(r) => return r,
    };
    let name = form.name.trim().to_owned();
    let now = Timestamp(s.clock.now_unix());
    match s.catalog.create_api_key(&signed.customer.id, &name, now).await {
        Ok((_, key)) => api_keys_view(&s, signed, StatusCode::CREATED, Some(CreatedKey { name, key })).await,
        Err(e) => access_refused(&s, signed.nav, &e.into()),
    }
}

/// `POST /portal/api-keys/revoke`: revoke one of the customer's keys.
async fn revoke_api_key(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    form: Result<Form<KeyForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (signed, form) = match key_form(&s, &headers, form).await {
        Ok(checked) => checked,
        Err(r) => return r,
    };
    let now = Timestamp(s.clock.now_unix());
    // Only this customer's keys are looked for: another's id is not found.
    match s.catalog.revoke_api_key(&signed.customer.id, &form.id, now).await {
        Ok(_) => see_other("/portal/api-keys"),
        Err(e) => access_refused(&s, signed.nav, &e.into()),
    }
}

#[derive(Template)]
#[template(path = "portal/history.html")]
struct HistoryPage {
    brand: Brand,
    nav: Option<Nav>,
    kinds: Vec<(&'static str, &'static str)>,
    kind: String,
    products: Vec<(String, String)>,
    product: Option<String>,
    rows: Vec<HistoryRow>,
}

struct HistoryRow {
    at: String,
    what: String,
    file: String,
    from: String,
    detail: String,
}

/// The most rows History shows (and its CSV holds).
pub const HISTORY_ROWS: usize = 200;
/// The most log entries History examines where the store cannot select by
/// customer (Redis).
const HISTORY_SCAN: usize = 20_000;

const HISTORY_KINDS: [(&str, &str); 4] = [
    ("all", "Everything"),
    ("initiated", "Downloads started"),
    ("completed", "Downloads ended"),
    ("denied", "Refusals"),
];

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    product: Option<String>,
}

/// The customer's own download events, newest first, per the query.
async fn history_rows(
    s: &Services,
    customer: &Customer,
    q: &HistoryQuery,
) -> Result<(String, Option<String>, Vec<HistoryRow>), crate::catalog::store::StoreError> {
    use crate::events::EventType;
    let kind = q.kind.clone().filter(|k| HISTORY_KINDS.iter().any(|(v, _)| v == k)).unwrap_or_else(|| "all".into());
    let types = match kind.as_str() {
        "initiated" => vec![EventType::DownloadInitiated],
        "completed" => vec![EventType::DownloadCompleted],
        "denied" => vec![EventType::DownloadDenied],
        _ => vec![EventType::DownloadInitiated, EventType::DownloadCompleted, EventType::DownloadDenied],
    };
    let product = q.product.clone().filter(|p| !p.is_empty());
    // SECURITY: the customer is the session's, never the query's.
    let filter = crate::events::Filter { types, customer: Some(customer.id.clone()), product: product.clone() };
    let events = s.event_log.recent(&filter, HISTORY_ROWS, HISTORY_SCAN).await?;
    let rows = events
        .into_iter()
        .map(|e| {
            let sub = &e.subject;
            let file = match (&sub.product, &sub.version, &sub.filename) {
                (Some(p), Some(v), Some(f)) => format!("{p} {v} {f}"),
                (Some(p), Some(v), None) => format!("{p} {v}"),
                (Some(p), None, _) => p.clone(),
                _ => "—".into(),
            };
            let at = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at));
            let (what, from, detail) = match &e.detail {
                Detail::DownloadInitiated { client_ip, via, by, range, .. } => (
                    "Download started".to_owned(),
                    client_ip.clone().unwrap_or_default(),
                    [
                        via.as_ref().map(|v| format!("via {v}")),
                        by.as_ref().map(|b| format!("by {b}")),
                        range.as_ref().map(|r| format!("range {r}")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
                ),
                Detail::DownloadCompleted { result, bytes_sent, reached_end, .. } => {
                    let done = matches!(result, crate::events::Completion::Complete) && *reached_end;
                    let what = if done { "Download completed" } else { "Download cut short" };
                    (what.to_owned(), String::new(), format!("{} sent", human_size(*bytes_sent)))
                }
                Detail::DownloadDenied { reason, client_ip, count, .. } => (
                    "Refused".to_owned(),
                    client_ip.clone().unwrap_or_default(),
                    if *count > 1 { format!("{reason} ({count} times)") } else { reason.clone() },
                ),
                _ => (e.event_type().as_str().to_owned(), String::new(), String::new()),
            };
            HistoryRow { at: at.to_string(), what, file, from, detail }
        })
        .collect();
    Ok((kind, product, rows))
}

/// `GET /portal/history`: the customer's download events, newest first
/// (at most [`HISTORY_ROWS`]), filtered by kind and product.
async fn history_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Signed { customer, nav, .. } = match signed(&s, &headers, "history").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q).unwrap_or(HistoryQuery { kind: None, product: None });
    let (kind, product, rows) = match history_rows(&s, &customer, &q).await {
        Ok(found) => found,
        Err(e) => return access_refused(&s, nav, &crate::catalog::CatalogError::from(e).into()),
    };
    let mut products = Vec::new();
    if let Ok(entitlements) = s.catalog.entitlements_of(&customer.id).await {
        for e in entitlements {
            if !products.iter().any(|(id, _): &(String, String)| *id == e.product) {
                let name =
                    s.catalog.product(&e.product).await.ok().flatten().map_or_else(|| e.product.clone(), |p| p.name);
                products.push((e.product, name));
            }
        }
    }
    let t =
        HistoryPage { brand: brand(&s), nav: Some(nav), kinds: HISTORY_KINDS.to_vec(), kind, products, product, rows };
    page(StatusCode::OK, &t)
}

/// `GET /portal/history.csv`: the same rows as CSV, cells a spreadsheet
/// would run as formulas defused.
async fn history_csv(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Signed { customer, nav, .. } = match signed(&s, &headers, "history").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q).unwrap_or(HistoryQuery { kind: None, product: None });
    let rows = match history_rows(&s, &customer, &q).await {
        Ok((_, _, rows)) => rows,
        Err(e) => return access_refused(&s, nav, &crate::catalog::CatalogError::from(e).into()),
    };
    let field = crate::events::report::csv_field;
    let mut csv = String::from("at,what,file,from,detail\r\n");
    for r in rows {
        let cells = [field(&r.at), field(&r.what), field(&r.file), field(&r.from), field(&r.detail)];
        csv.push_str(&cells.join(","));
        csv.push_str("\r\n");
    }
    let mut r = csv_download("download-history", csv);
    secure_headers(r.headers_mut());
    r
}

/// A CSV download named `{name}.csv`, never cached, never sniffed (the
/// portal's history and the console's tables).
pub(super) fn csv_download(name: &str, body: String) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

#[derive(Template)]
#[template(path = "portal/notifications.html")]
struct NotificationsPage {
    brand: Brand,
    nav: Option<Nav>,
    csrf: String,
    notify: bool,
    critical_to_all: bool,
    can_manage: bool,
    /// When the customer's feed address was made, if it has one.
    feed_since: Option<String>,
    /// A feed address made just now (shown once).
    new_feed: Option<String>,
}

async fn notifications_view(s: &Services, signed: Signed, status: StatusCode, new_feed: Option<String>) -> Response {
    let feed = match s.catalog.feed_token(&signed.customer.id).await {
        Ok(feed) => feed,
        Err(e) => return access_refused(s, signed.nav, &e.into()),
    };
    let t = NotificationsPage {
        brand: brand(s),
        csrf: signed.session.csrf,
        notify: signed.user.notify_releases,
        critical_to_all: s.portal.notify_critical_to_all,
        can_manage: signed.user.role == Role::Admin,
        feed_since: feed.map(|f| f.created_at.to_string()),
        new_feed,
        nav: Some(signed.nav),
    };
    page(status, &t)
}

/// `GET /portal/notifications`: release notices by e-mail (each user's
/// own choice), and the company's Atom feed.
async fn notifications_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    match signed(&s, &headers, "notifications").await {
        Ok(signed) => notifications_view(&s, signed, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct NotifyForm {
    #[serde(default)]
    csrf: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    notify: Option<String>,
}

/// `POST /portal/notifications`: this user's release notices on or off.
async fn set_notifications(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    form: Result<Form<NotifyForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let signed = match signed(&s, &headers, "notifications").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let Ok(Form(form)) = form else {
        let detail = "The form was not readable.".into();
        return error_page(&s, Some(signed.nav), StatusCode::BAD_REQUEST, "invalid_form", detail);
    };
    if !same(&form.csrf, &signed.session.csrf) {
        return csrf_refused(&s, Some(signed.nav));
    }
    let on = form.notify.is_some();
    match Portal::new(&s).set_notify(&signed.customer.id, &signed.user.email, on).await {
        Ok(()) => see_other("/portal/notifications"),
        Err(e) => portal_failure(&s, Some(signed.nav), &e),
    }
}

/// `POST /portal/notifications/feed`: a new address for the company's
/// Atom feed (the old one stops working), shown once; admins only.
async fn new_feed_address(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let signed = match signed(&s, &headers, "notifications").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !same(&csrf, &signed.session.csrf) {
        return csrf_refused(&s, Some(signed.nav));
    }
    if signed.user.role != Role::Admin {
        let detail = "Only your company's portal admins make feed addresses.".to_owned();
        return error_page(&s, Some(signed.nav), StatusCode::FORBIDDEN, "portal_admin_only", detail);
    }
    let customer = signed.customer.id.clone();
    match s.catalog.create_feed_token(&customer, Timestamp(s.clock.now_unix())).await {
        Ok((_, token)) => {
            let url = format!(
                "{}/feeds/{}/releases.atom?token={token}",
                s.downloads.urls.public_url.trim_end_matches('/'),
                crate::signing::encode_segment(&customer)
            );
            notifications_view(&s, signed, StatusCode::CREATED, Some(url)).await
        }
        Err(e) => access_refused(&s, signed.nav, &e.into()),
    }
}

#[derive(Template)]
#[template(path = "portal/team.html")]
struct TeamPage {
    brand: Brand,
    nav: Option<Nav>,
    csrf: String,
    me: String,
    can_manage: bool,
    members: Vec<MemberView>,
    message: Option<String>,
}

struct MemberView {
    email: String,
    role: String,
    admin: bool,
    last_sign_in: String,
    me: bool,
}

async fn team_view(s: &Services, signed: Signed, status: StatusCode, message: Option<String>) -> Response {
    let users = match Portal::new(s).users_of(&signed.customer.id).await {
        Ok(users) => users,
        Err(e) => return portal_failure(s, Some(signed.nav), &e),
    };
    let members = users
        .into_iter()
        .map(|u| MemberView {
            me: u.email == signed.user.email,
            role: u.role.as_str().to_owned(),
            admin: u.role == Role::Admin,
            last_sign_in: u.last_sign_in_at.map_or_else(|| "never".to_owned(), |t| t.to_string()),
            email: u.email,
        })
        .collect();
    let t = TeamPage {
        brand: brand(s),
        csrf: signed.session.csrf,
        me: signed.user.email,
        can_manage: signed.user.role == Role::Admin,
        nav: Some(signed.nav),
        members,
        message,
    };
    page(status, &t)
}

/// `GET /portal/team`: the customer's portal users; its admins invite,
/// promote, demote and remove them. Everyone may sign out everywhere.
async fn team_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    match signed(&s, &headers, "team").await {
        Ok(signed) => team_view(&s, signed, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct TeamForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// A team form's checks: signed in, the session's token, a portal admin,
/// acting on somebody else.
async fn team_form(
    s: &Services,
    headers: &HeaderMap,
    form: Result<Form<TeamForm>, axum::extract::rejection::FormRejection>,
) -> Result<(Signed, TeamForm), Response> {
    let signed = signed(s, headers, "team").await?;
    let Ok(Form(form)) = form else {
        let detail = "The form was not readable.".into();
        return Err(error_page(s, Some(signed.nav), StatusCode::BAD_REQUEST, "invalid_form", detail));
    };
    if !same(&form.csrf, &signed.session.csrf) {
        return Err(csrf_refused(s, Some(signed.nav)));
    }
    if signed.user.role != Role::Admin {
        let detail = "Only your company's portal admins manage its users.".to_owned();
        return Err(error_page(s, Some(signed.nav), StatusCode::FORBIDDEN, "portal_admin_only", detail));
    }
    if canonical_email(form.email.trim()).is_some_and(|e| e == signed.user.email) {
        let detail = "You cannot change or remove yourself; ask another admin of your company.".to_owned();
        return Err(error_page(s, Some(signed.nav), StatusCode::CONFLICT, "not_yourself", detail));
    }
    Ok((signed, form))
}

fn role_of(text: &str) -> Option<Role> {
    match text {
        "admin" => Some(Role::Admin),
        "member" | "" => Some(Role::Member),
        _ => None,
    }
}

/// `POST /portal/team`: add a user (or change a user's role) and mail them
/// where to sign in. No link in the mail: they sign in as everyone does.
async fn invite(
    State(s): State<Arc<Services>>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    form: Result<Form<TeamForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (signed, form) = match team_form(&s, &headers, form).await {
        Ok(checked) => checked,
        Err(r) => return r,
    };
    let (Some(email), Some(role)) = (canonical_email(form.email.trim()), role_of(&form.role)) else {
        let message = Some("That is not an e-mail address (or not a role).".to_owned());
        return team_view(&s, signed, StatusCode::BAD_REQUEST, message).await;
    };
    // An invitation is an e-mail to an address of the inviter's choosing:
    // limited as sign-in e-mails are.
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    if let Err(wait) = s.limits.sign_in(&email, client) {
        return super::problem::rate_limited(wait).into_response();
    }
    let customer = signed.customer.id.clone();
    let (user, created) = match Portal::new(&s).put_user(&customer, &email, role).await {
        Ok(done) => done,
        Err(PortalError::EmailTaken(_)) => {
            let message = Some(format!("{email} cannot be added here; ask {} to help.", s.brand().vendor_name));
            return team_view(&s, signed, StatusCode::CONFLICT, message).await;
        }
        Err(e) => return portal_failure(&s, Some(signed.nav), &e),
    };
    let change = if created { Change::Created } else { Change::Updated };
    let by = Some(signed.user.email.as_str());
    let c = UserChange {
        customer: &customer,
        email: &user.email,
        change,
        role: Some(user.role),
        by,
        sessions_ended: false,
    };
    crate::portal::record_change(&s, c).await;
    if created {
        let s2 = s.clone();
        let inviter = signed.user.email.clone();
        let company = signed.customer.name.clone();
        tokio::spawn(async move { send_invitation(&s2, &user, &inviter, &company).await });
    }
    let message = if created {
        format!("{email} was added and told where to sign in.")
    } else {
        format!("{email} is now {}.", role.as_str())
    };
    team_view(&s, signed, StatusCode::OK, Some(message)).await
}

async fn send_invitation(s: &Services, user: &PortalUser, inviter: &str, company: &str) {
    let Some(mailer) = &s.mail else {
        tracing::warn!("a portal invitation could not be sent: no [portal.smtp] is configured");
        return;
    };
    let sign_in = format!("{}/portal/sign-in", s.downloads.urls.public_url.trim_end_matches('/'));
    let vendor = &s.brand().vendor_name;
    let mail = Mail {
        to: user.email.clone(),
        subject: format!("You can now download {vendor} software for {company}"),
        body: format!(
            "Hello,\n\n{inviter} added you to {company}'s {vendor} downloads portal. Sign in here with this \
             address:\n\n{sign_in}\n\nIf you did not expect this, you can ignore this e-mail.\n"
        ),
    };
    if let Err(e) = mailer.send(mail).await {
        tracing::warn!(error = %e, "a portal invitation was not accepted by the SMTP relay");
    }
}

/// `POST /portal/team/role`: another user's role.
async fn change_role(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    form: Result<Form<TeamForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (signed, form) = match team_form(&s, &headers, form).await {
        Ok(checked) => checked,
        Err(r) => return r,
    };
    let customer = signed.customer.id.clone();
    let portal = Portal::new(&s);
    // Only a user of this customer: another's address is not found.
    let target = match portal.user(&form.email).await {
        Ok(u) => u.filter(|u| u.customer == customer),
        Err(e) => return portal_failure(&s, Some(signed.nav), &e),
    };
    let (Some(target), Some(role)) = (target, role_of(&form.role)) else {
        return error_page(&s, Some(signed.nav), StatusCode::NOT_FOUND, "not_found", "No such user here.".into());
    };
    if let Err(e) = portal.put_user(&customer, &target.email, role).await {
        return portal_failure(&s, Some(signed.nav), &e);
    }
    let by = Some(signed.user.email.as_str());
    let c = UserChange {
        customer: &customer,
        email: &target.email,
        change: Change::Updated,
        role: Some(role),
        by,
        sessions_ended: false,
    };
    crate::portal::record_change(&s, c).await;
    see_other("/portal/team")
}

/// `POST /portal/team/remove`: remove another user; its sessions end at
/// their next request.
async fn remove_member(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    form: Result<Form<TeamForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (signed, form) = match team_form(&s, &headers, form).await {
        Ok(checked) => checked,
        Err(r) => return r,
    };
    let customer = signed.customer.id.clone();
    match Portal::new(&s).remove_user(&customer, &form.email).await {
        Ok(true) => {
            let email = canonical_email(form.email.trim()).unwrap_or_default();
            let by = Some(signed.user.email.as_str());
            let c = UserChange {
                customer: &customer,
                email: &email,
                change: Change::Deleted,
                role: None,
                by,
                sessions_ended: false,
            };
            crate::portal::record_change(&s, c).await;
            see_other("/portal/team")
        }
        Ok(false) => error_page(&s, Some(signed.nav), StatusCode::NOT_FOUND, "not_found", "No such user here.".into()),
        Err(e) => portal_failure(&s, Some(signed.nav), &e),
    }
}

/// `POST /portal/sign-out-everywhere`: every session of this user ends,
/// this one too.
async fn sign_out_everywhere(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let signed = match signed(&s, &headers, "team").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !same(&csrf, &signed.session.csrf) {
        return csrf_refused(&s, Some(signed.nav));
    }
    let customer = signed.customer.id.clone();
    if let Err(e) = Portal::new(&s).end_all_sessions(&customer, &signed.user.email).await {
        return portal_failure(&s, Some(signed.nav), &e);
    }
    let c = UserChange {
        customer: &customer,
        email: &signed.user.email,
        change: Change::Updated,
        role: Some(signed.user.role),
        by: Some(signed.user.email.as_str()),
        sessions_ended: true,
    };
    crate::portal::record_change(&s, c).await;
    let mut r = see_other("/portal/sign-in");
    set_cookie(&mut r, format!("{SESSION_COOKIE}=; Path=/portal; Max-Age=0; HttpOnly; SameSite=Lax{}", secure(&s)));
    r
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
