//! The customer API on the public listener, under `/v1`, authenticated with
//! the customer's API key (`Authorization: Bearer tg_…`): what the caller is
//! entitled to, which releases it may download, download URLs, and upgrades.

#![allow(
    unused_qualifications,
    reason = "utoipa's generated code for `params(SomeIntoParams)` names the type by a qualified path"
)]

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use semver::Version;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::problem::{Problem, RawBody, from_access, from_catalog, rate_limited};
use super::quota_view::{self, LimitView, ratelimit_fields};
use base64::Engine as _;

use super::{Items, PeerAddr, bearer, client_ip};
use crate::catalog::{
    Artifact, CatalogError, Channel, Customer, CustomerStatus, Delivery, Entitlement, EntitlementStatus, PLATFORM_ANY,
    Release, Timestamp,
};
use crate::downloads::{self, Granted, IssueRequest, UpgradeRequest};
use crate::entitlement::access::{self, AccessError, Downloadable, Filter, Issued, Wanted};
use crate::services::Services;
use crate::table::Table;

/// The surface name recorded with refusals.
const SURFACE: &str = "customer_api";

/// Every customer route; all of them require an API key.
pub fn routes(state: Arc<Services>) -> Router<Arc<Services>> {
    Router::new()
        .route("/v1/entitlements", get(list_entitlements))
        .route("/v1/products/{product}/releases", get(list_releases))
        .route("/v1/products/{product}/upgrade", get(upgrade))
        .route("/v1/downloads", post(create_download))
        .route("/v1/usage", get(usage))
        .route("/v1/updates/tauri/{product}", get(super::updates::tauri))
        .route("/v1/updates/tauri/{product}/{target}/{arch}/{current_version}", get(super::updates::tauri_path))
        .route("/v1/updates/sparkle/{product}/appcast.xml", get(super::updates::sparkle))
        .route("/v1/updates/electron/{product}/{file}", get(super::updates::electron_channel_file))
        .route("/v1/updates/electron/{product}/{version}/{filename}", get(super::updates::electron_file))
        .route_layer(axum::middleware::from_fn_with_state(state, require_customer))
}

/// The authenticated caller, put into the request by [`require_customer`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub customer: Customer,
    pub key_id: String,
}

fn unauthorized() -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
        .with_detail(
            "This needs a valid API key: Authorization: Bearer tg_…, or HTTP Basic with user `license` (or `token`) \
             and the key as password.",
        )
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tollgate\""))
        .into_response();
    // Update clients that only speak Basic are told they may.
    response
        .headers_mut()
        .append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tollgate\", charset=\"UTF-8\""));
    response
}

/// The API key a request presents: `Authorization: Bearer <key>`, or HTTP
/// Basic with user `license` or `token` and the key as password (what
/// electron-updater, Sparkle and other stock clients can send).
fn presented_key(request: &Request) -> Option<String> {
    if let Some(key) = bearer(request) {
        return Some(key.to_owned());
    }
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    matches!(user, "license" | "token").then(|| password.to_owned())
}

/// Middleware: a live API key of an existing, active customer, or a refusal
/// (`401` for unknown or revoked keys, `403 customer_suspended`).
pub async fn require_customer(State(s): State<Arc<Services>>, mut request: Request, next: Next) -> Response {
    let now = Timestamp(s.clock.now_unix());
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    let client = peer.map(|ip| client_ip(ip, request.headers(), &s.trusted_proxies));
    // A refused key counts against the caller's address; past the limit the
    // refusal is a 429, so guessing costs the guesser, not the store.
    let refuse = |client: Option<std::net::IpAddr>| match client.map(|c| s.limits.refused_credential(c)) {
        Some(Err(wait)) => rate_limited(wait).into_response(),
        _ => unauthorized(),
    };
    let Some(text) = presented_key(&request) else {
        return refuse(client);
    };
    let key = match s.catalog.authenticate(&text, now).await {
        Ok(Some(key)) => key,
        Ok(None) => return refuse(client),
        Err(e) => {
            tracing::warn!(error = %e, "customer authentication failed in the store");
            return from_catalog(&e).into_response();
        }
    };
    let customer = match s.catalog.customer(&key.customer).await {
        Ok(Some(c)) => c,
        Ok(None) => return unauthorized(),
        Err(e) => return from_catalog(&e).into_response(),
    };
    tracing::Span::current().record("customer", customer.id.as_str());
    if customer.status == CustomerStatus::Suspended {
        return Problem::new(StatusCode::FORBIDDEN, "customer_suspended", "Forbidden")
            .with_detail("The customer account is suspended.")
            .into_response();
    }
    if let Err(wait) = s.limits.api_key.check(&key.id) {
        return rate_limited(wait).into_response();
    }
    request.extensions_mut().insert(Caller { customer, key_id: key.id });
    next.run(request).await
}

/// An entitlement as the customer sees it: what it covers, and whether it is
/// in force right now.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntitlementView {
    #[serde(flatten)]
    entitlement: Entitlement,
    active_now: bool,
}

#[utoipa::path(get, path = "/v1/entitlements", tag = "customer", security(("api_key" = [])), responses((status = 200, body = Items<EntitlementView>)))]
pub(crate) async fn list_entitlements(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let now = Timestamp(s.clock.now_unix());
    match s.catalog.entitlements_of(&caller.customer.id).await {
        Ok(list) => {
            let items: Vec<EntitlementView> = list
                .into_iter()
                .map(|e| {
                    let active_now = e.status == EntitlementStatus::Active
                        && e.starts_at <= now
                        && e.expires_at.is_none_or(|end| now < end);
                    EntitlementView { entitlement: e, active_now }
                })
                .collect();
            Json(Items { items }).into_response()
        }
        Err(e) => from_catalog(&e).into_response(),
    }
}

/// Why a customer API request was not answered: a request that does not
/// parse, or what the domain refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request itself is malformed (query, body).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0:?} is not a semantic version")]
    InvalidVersion(String),
    #[error("{0:?} is not a version requirement")]
    InvalidConstraint(String),
    /// A query or path parameter out of its rules (`400 invalid_field`).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    /// A feed URL's token is missing, wrong or revoked.
    #[error("the feed's token is missing, wrong or revoked; ask the vendor for the feed's current URL")]
    InvalidFeedToken,
    /// The newest release's file has no signature for the update client.
    #[error("{0:?} has no update signature; publish it with the file (tollgate publish --signature)")]
    UnsignedUpdate(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Reading a file the answer carries (an update feed's `.blockmap`).
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        ApiError::Access(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            ApiError::BadRequest(d) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_request", "Bad Request").with_detail(d.clone())
            }
            ApiError::InvalidVersion(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_version", "Bad Request").with_detail(self.to_string())
            }
            ApiError::InvalidConstraint(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_constraint", "Bad Request").with_detail(self.to_string())
            }
            ApiError::Invalid(..) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_field", "Bad Request").with_detail(self.to_string())
            }
            ApiError::InvalidFeedToken => {
                Problem::new(StatusCode::FORBIDDEN, "invalid_feed_token", "Forbidden").with_detail(self.to_string())
            }
            ApiError::UnsignedUpdate(_) => {
                Problem::new(StatusCode::CONFLICT, "unsigned_update", "Conflict").with_detail(self.to_string())
            }
            ApiError::Access(e) => from_access(e),
            ApiError::Storage(e) => super::problem::from_storage(e),
        };
        problem.logged("customer", &self)
    }
}

type AccessResult = Result<Response, ApiError>;

/// The query parameters, or `400 invalid_request` naming what is wrong.
pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// The path parameters, or `400 invalid_request`.
pub(super) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v).map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn parse_version(text: &str) -> Result<Version, ApiError> {
    Version::parse(text.trim()).map_err(|_| ApiError::InvalidVersion(text.to_owned()))
}

fn parse_constraint(text: &str) -> Result<semver::VersionReq, ApiError> {
    semver::VersionReq::parse(text.trim()).map_err(|_| ApiError::InvalidConstraint(text.to_owned()))
}

/// An artifact as customers see it (no storage key).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ArtifactView<'a> {
    filename: &'a str,
    platform: &'a str,
    size: u64,
    sha256: &'a str,
    /// Measured on upload; absent for files registered before it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha512: Option<&'a str>,
    content_type: Option<&'a str>,
}

impl<'a> From<&'a Artifact> for ArtifactView<'a> {
    fn from(a: &'a Artifact) -> Self {
        Self {
            filename: &a.filename,
            platform: &a.platform,
            size: a.size,
            sha256: &a.sha256,
            sha512: a.sha512.as_deref(),
            content_type: a.content_type.as_deref(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReleaseView<'a> {
    product: &'a str,
    #[schema(value_type = String)]
    version: &'a Version,
    channel: Channel,
    published_at: Option<Timestamp>,
    critical: bool,
    notes: Option<&'a str>,
    artifacts: Vec<ArtifactView<'a>>,
}

impl<'a> From<&'a Downloadable> for ReleaseView<'a> {
    fn from(d: &'a Downloadable) -> Self {
        let r: &Release = &d.release;
        Self {
            product: &r.product,
            version: &r.version,
            channel: r.channel,
            published_at: r.published_at,
            critical: r.critical,
            notes: r.notes.as_deref(),
            artifacts: d.artifacts.iter().map(|(a, _)| ArtifactView::from(a)).collect(),
        }
    }
}

/// The answer to a download request: the URL and what it will deliver.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DownloadView<'a> {
    /// The gateway's URL; for an `edge` product, the CDN's.
    url: &'a str,
    expires_at: Timestamp,
    grant_id: &'a str,
    filename: &'a str,
    platform: &'a str,
    size: u64,
    sha256: &'a str,
    /// `proxy`, `redirect` or `edge`.
    delivery: Delivery,
    /// For an `edge` product whose CDN reads its token from cookies: set
    /// them for the URL's host before fetching it.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    #[schema(value_type = Vec<NameValue>)]
    cookies: &'a [(String, String)],
    /// For an `edge` product whose CDN reads its token from a header: send
    /// it with the request.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    #[schema(value_type = Vec<NameValue>)]
    headers: &'a [(String, String)],
}

/// A cookie or header, as `[name, value]`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "a schema only: serialized from a (String, String)")]
pub(crate) struct NameValue(String, String);

impl<'a> From<&'a Granted> for DownloadView<'a> {
    fn from(g: &'a Granted) -> Self {
        let i: &Issued = &g.issued;
        Self {
            url: &i.url,
            expires_at: i.grant.expires_at,
            grant_id: &i.grant.id,
            filename: &i.artifact.filename,
            platform: &i.artifact.platform,
            size: i.artifact.size,
            sha256: &i.artifact.sha256,
            delivery: g.delivery,
            cookies: &g.cookies,
            headers: &g.headers,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReleasesQuery {
    /// Only releases on channels this one covers (`beta`: stable, rc, beta).
    channel: Option<Channel>,
    /// Only files for this platform (and for `any`).
    platform: Option<String>,
}

/// `GET /v1/products/{product}/releases`: the releases the caller may download
/// now, newest first, each with the files it may download.
#[utoipa::path(get, path = "/v1/products/{product}/releases", tag = "customer", security(("api_key" = [])), params(("product" = String, Path, description = "product id"), ReleasesQuery), responses((status = 200, body = Items<ReleaseView>), (status = 403, description = "no entitlement for the product: `not_entitled`", body = Problem)))]
pub(crate) async fn list_releases(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<ReleasesQuery>, QueryRejection>,
) -> AccessResult {
    let product = path(p)?;
    let q = query(q)?;
    let now = Timestamp(s.clock.now_unix());
    let filter = Filter { channel: q.channel, platform: q.platform.as_deref() };
    let releases = access::downloadable_releases(&s.catalog, &caller.customer, &product, filter, now).await?;
    let items: Vec<ReleaseView<'_>> = releases.iter().map(ReleaseView::from).collect();
    Ok(Json(Items { items }).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DownloadRequest {
    product: String,
    #[schema(example = "1.4.2")]
    version: String,
    /// The file to download; or give `platform` instead.
    filename: Option<String>,
    /// The release's file for this platform, else its file for `any`.
    platform: Option<String>,
}

/// `POST /v1/downloads`: entitlement check, then a grant and a signed URL.
#[utoipa::path(post, path = "/v1/downloads", tag = "customer", security(("api_key" = [])), request_body = DownloadRequest, responses((status = 201, description = "a signed URL bound to a new grant", body = DownloadView), (status = 403, description = "refused: the code names the rule", body = Problem), (status = 409, description = "several files match the platform: `ambiguous_artifact`", body = Problem), (status = 429, description = "`quota_exceeded` (the problem's `quota` names the limit; `Retry-After` when a period resets) or `rate_limited`", body = Problem)))]
pub(crate) async fn create_download(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    RawBody(raw): RawBody,
) -> AccessResult {
    let req: DownloadRequest = serde_json::from_slice::<Table<DownloadRequest>>(&raw)
        .map(|Table(r)| r)
        .map_err(|e| ApiError::BadRequest(format!("request body: {e}")))?;
    let version = parse_version(&req.version)?;
    let wanted = match (&req.filename, &req.platform) {
        (Some(f), None) => Wanted::File(f),
        (None, Some(p)) => Wanted::Platform(p),
        _ => return Err(ApiError::BadRequest("name exactly one of \"filename\" or \"platform\"".into())),
    };
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    let request = IssueRequest {
        customer: &caller.customer,
        product: &req.product,
        version: &version,
        wanted,
        client,
        surface: SURFACE,
        by: None,
    };
    let granted = downloads::issue(&s, &request).await?;
    let response = (StatusCode::CREATED, Json(DownloadView::from(&granted))).into_response();
    Ok(with_fields(response, ratelimit_fields(&granted.usage, granted.now)))
}

/// Add `RateLimit-Policy` and `RateLimit` to a response.
fn with_fields(mut response: Response, fields: Option<(String, String)>) -> Response {
    if let Some((policy, current)) = fields
        && let (Ok(p), Ok(c)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&current))
    {
        response.headers_mut().insert("ratelimit-policy", p);
        response.headers_mut().insert("ratelimit", c);
    }
    response
}

/// The caller's quota usage.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageView {
    customer: String,
    /// Downloads of the customer streaming right now (live leases).
    active_downloads: u64,
    /// Every limit in force: the customer's (or the configured default), and
    /// those the customer's entitlements set for their own downloads.
    limits: Vec<LimitView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageQuery {
    /// `product/version/filename`: include per-artifact limits for this file.
    artifact: Option<String>,
}

/// `GET /v1/usage`: usage against each limit, with the `RateLimit` fields.
#[utoipa::path(get, path = "/v1/usage", tag = "customer", security(("api_key" = [])), params(UsageQuery), responses((status = 200, body = UsageView)))]
pub(crate) async fn usage(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> AccessResult {
    let q = query(q)?;
    let customer = &caller.customer;
    let downloads::CustomerUsage { usage, active, now } = downloads::usage(&s, customer, q.artifact.as_deref()).await?;
    let view = UsageView {
        customer: customer.id.clone(),
        active_downloads: active,
        limits: usage.iter().map(|u| quota_view::of_usage(u, q.artifact.as_deref())).collect(),
    };
    Ok(with_fields(Json(view).into_response(), ratelimit_fields(&usage, now)))
}

/// The newest release and a URL for its file.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UpgradeView<'a> {
    release: ReleaseView<'a>,
    download: DownloadView<'a>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UpgradeQuery {
    /// The version installed now (required).
    #[param(
        required = true,
        pattern = r"^(0|[1-9][0-9]{0,15})\.(0|[1-9][0-9]{0,15})\.(0|[1-9][0-9]{0,15})(-(0|[1-9][0-9]{0,15}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]{0,15}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
    )]
    from: Option<String>,
    /// Default `any`.
    platform: Option<String>,
    /// Only releases on channels this one covers.
    channel: Option<Channel>,
    /// A semver requirement the upgrade must meet, e.g. `^2`.
    #[param(pattern = r"^(\*|[\^~=]?(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,2})$")]
    constraint: Option<String>,
}

/// `GET /v1/products/{product}/upgrade`: the newest release the caller may
/// download that is newer than `from` (and within `constraint`), with a URL
/// for its file for `platform`; `204` when there is none.
#[utoipa::path(get, path = "/v1/products/{product}/upgrade", tag = "customer", security(("api_key" = [])), params(("product" = String, Path, description = "product id"), UpgradeQuery), responses((status = 200, body = UpgradeView), (status = 204, description = "nothing newer the caller may download"), (status = 400, description = "`invalid_version`, `invalid_constraint`, `invalid_request`", body = Problem)))]
pub(crate) async fn upgrade(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<UpgradeQuery>, QueryRejection>,
) -> AccessResult {
    let product = path(p)?;
    let q = query(q)?;
    let from = parse_version(q.from.as_deref().ok_or_else(|| ApiError::BadRequest("from is required".into()))?)?;
    let constraint = q.constraint.as_deref().map(parse_constraint).transpose()?;
    let request = UpgradeRequest {
        customer: &caller.customer,
        product: &product,
        from: &from,
        constraint: constraint.as_ref(),
        platform: q.platform.as_deref().unwrap_or(PLATFORM_ANY),
        channel: q.channel,
        client: client_ip(peer.0.ip(), &headers, &s.trusted_proxies),
        surface: SURFACE,
    };
    let Some((newest, granted)) = downloads::upgrade(&s, &request).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let view = UpgradeView { release: ReleaseView::from(&newest), download: DownloadView::from(&granted) };
    Ok(with_fields(Json(view).into_response(), ratelimit_fields(&granted.usage, granted.now)))
}
