//! The admin API under `/admin/v1`: the vendor's system of record writes the
//! catalog here with idempotent `PUT`s by caller-chosen id, so a resync rebuilds
//! it. This part covers products, releases (with publish / yank / restore),
//! customers and entitlements.

#![allow(
    unused_qualifications,
    reason = "utoipa's generated code for `params(SomeIntoParams)` names the type by a qualified path"
)]

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use semver::{Version, VersionReq};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Items;
use super::admin_artifacts::{
    complete_upload, delete_artifact, delete_signature, get_artifact, list_artifacts, plan_upload, put_artifact,
    put_signature,
};
use super::admin_auth::require_admin;
use super::problem::{Problem, RawBody};
use super::{admin_events, admin_webhooks};
use crate::catalog::ApiKeyView;
use crate::catalog::Page;
use crate::catalog::store::{Expect, Written};
use crate::catalog::{
    CatalogError, Channel, Customer, CustomerStatus, Delivery, Entitlement, EntitlementStatus, License, Product,
    Release, ReleaseAction, ReleaseStatus, Timestamp,
};
use crate::catalog::{Stored, Updated};
use crate::entitlement::access::{AccessError, eligible_customers as eligible};
use crate::events::{Change, Detail, Subject};
use crate::portal::UserChange;
use crate::quota::Quota;
use crate::services::Services;
use crate::storage::StorageError;
use crate::table::Table;
use crate::uploads::UploadError;

/// Every admin route; all of them require an admin token (the check is applied
/// here, to the whole set, so a new route cannot forget it).
pub fn routes(state: Arc<Services>) -> Router<Arc<Services>> {
    Router::new()
        .route("/admin/v1/products", get(list_products))
        .route("/admin/v1/products/{product}", get(get_product).put(put_product).delete(delete_product))
        .route("/admin/v1/products/{product}/releases", get(list_releases))
        .route(
            "/admin/v1/products/{product}/releases/{version}",
            get(get_release).put(put_release).delete(delete_release),
        )
        .route("/admin/v1/products/{product}/releases/{version}/publish", post(publish_release))
        .route("/admin/v1/products/{product}/releases/{version}/yank", post(yank_release))
        .route("/admin/v1/products/{product}/releases/{version}/restore", post(restore_release))
        .route("/admin/v1/products/{product}/releases/{version}/cut-downloads", post(cut_release_downloads))
        .route("/admin/v1/products/{product}/releases/{version}/eligible-customers", get(eligible_customers))
        .route("/admin/v1/products/{product}/releases/{version}/artifacts", get(list_artifacts).post(plan_upload))
        .route(
            "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}",
            get(get_artifact).put(put_artifact).delete(delete_artifact),
        )
        .route("/admin/v1/products/{product}/releases/{version}/artifacts/{filename}/complete", post(complete_upload))
        .route(
            "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}/signature",
            axum::routing::put(put_signature).delete(delete_signature),
        )
        .route("/admin/v1/customers", get(list_customers))
        .route("/admin/v1/customers/{customer}", get(get_customer).put(put_customer))
        .route("/admin/v1/customers/{customer}/cut-downloads", post(cut_customer_downloads))
        .route("/admin/v1/customers/{customer}/entitlements", get(list_entitlements))
        .route(
            "/admin/v1/customers/{customer}/entitlements/{entitlement}",
            get(get_entitlement).put(put_entitlement).delete(delete_entitlement),
        )
        .route("/admin/v1/customers/{customer}/api-keys", get(list_api_keys).post(create_api_key))
        .route(
            "/admin/v1/customers/{customer}/feed-token",
            axum::routing::post(create_feed_token).delete(revoke_feed_token),
        )
        .route("/admin/v1/customers/{customer}/users", get(list_portal_users))
        .route(
            "/admin/v1/customers/{customer}/users/{email}",
            get(get_portal_user).put(put_portal_user).delete(delete_portal_user),
        )
        .route("/admin/v1/customers/{customer}/users/{email}/sign-out", post(sign_out_portal_user))
        .route("/admin/v1/portal/branding", get(get_branding).put(put_branding).delete(reset_branding))
        .route("/admin/v1/portal/sso", get(list_sso_providers))
        .route("/admin/v1/customers/{customer}/api-keys/{id}", axum::routing::delete(revoke_api_key))
        .route("/admin/v1/events", get(admin_events::list_events))
        .route("/admin/v1/reports/downloads", get(admin_events::downloads_report))
        .route("/admin/v1/products/{product}/releases/{version}/adoption", get(admin_events::adoption))
        .route("/admin/v1/webhooks", get(admin_webhooks::list_webhooks))
        .route(
            "/admin/v1/webhooks/{id}",
            get(admin_webhooks::get_webhook).put(admin_webhooks::put_webhook).delete(admin_webhooks::delete_webhook),
        )
        .route("/admin/v1/webhooks/{id}/dead-letters", get(admin_webhooks::list_dead_letters))
        .route("/admin/v1/webhooks/{id}/dead-letters/{event}/redeliver", post(admin_webhooks::redeliver_dead_letter))
        .route_layer(axum::middleware::from_fn_with_state(state, require_admin))
}

/// Every way an admin request fails; mapped to a problem in [`AdminError::to_problem`].
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    /// An upload's announced digest header is malformed.
    #[error("{0}")]
    InvalidDigest(String),
    /// An events cursor this log never handed out.
    #[error("not a cursor of this event log")]
    InvalidCursor,
    /// A product's delivery mode this gateway cannot serve.
    #[error("{0}")]
    DeliveryUnsupported(String),
    /// The request conflicts with the record's state: `409` with this code.
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl AdminError {
    pub fn to_problem(&self) -> Problem {
        match self {
            AdminError::BadRequest(d) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_request", "Bad Request").with_detail(d.clone())
            }
            AdminError::NotFound(what) => {
                Problem::new(StatusCode::NOT_FOUND, "not_found", "Not Found").with_detail(format!("No such {what}."))
            }
            AdminError::InvalidDigest(d) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_digest", "Bad Request").with_detail(d.clone())
            }
            AdminError::InvalidCursor => Problem::new(StatusCode::BAD_REQUEST, "invalid_cursor", "Bad Request")
                .with_detail("`after` must be the `next` of an earlier page of this log."),
            AdminError::Conflict(code, d) => {
                Problem::new(StatusCode::CONFLICT, code, "Conflict").with_detail(d.clone())
            }
            AdminError::DeliveryUnsupported(d) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "delivery_unsupported", "Unprocessable Content")
                    .with_detail(d.clone())
            }
            AdminError::Upload(e) => super::problem::from_upload(e),
            AdminError::Storage(StorageError::NotFound) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "object_not_found", "Unprocessable Content")
                    .with_detail("There is no object at this storage key; put the file into storage first.")
            }
            AdminError::Storage(e) => super::problem::from_storage(e),
            AdminError::Catalog(e) => super::problem::from_catalog(e),
            AdminError::Access(e) => super::problem::from_access(e),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        self.to_problem().logged("admin", &self)
    }
}

pub(super) type AdminResult = Result<Response, AdminError>;

pub(super) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, AdminError> {
    p.map(|Path(v)| v).map_err(|e| AdminError::BadRequest(e.body_text()))
}

/// An optional JSON request body: absent, empty or `null` is `T`'s default.
pub(super) fn optional_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, AdminError> {
    // JSON's whitespace (RFC 8259 §2): not the form feed `trim_ascii` drops.
    let json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = bytes.iter().position(|b| !json_space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !json_space(b)).map_or(start, |i| i + 1);
    let text = &bytes[start..end];
    if text.is_empty() || text == b"null" { Ok(T::default()) } else { body(bytes) }
}

/// A JSON request body: an object (never a list standing for one), strictly.
pub(super) fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice::<Table<T>>(bytes)
        .map(|Table(t)| t)
        .map_err(|e| AdminError::BadRequest(format!("request body: {e}")))
}

pub(super) fn version(v: &str) -> Result<Version, AdminError> {
    Version::parse(v).map_err(|e| {
        AdminError::Catalog(CatalogError::Invalid { field: "version", reason: format!("{v:?} is not semver: {e}") })
    })
}

/// `404` unless the customer exists.
async fn require_customer(s: &Services, customer: &str) -> Result<(), AdminError> {
    match s.catalog.customer(customer).await? {
        Some(_) => Ok(()),
        None => Err(AdminError::NotFound("customer".into())),
    }
}

pub(super) fn written<T: Serialize>(w: Written, record: &T) -> Response {
    let status = if w == Written::Created { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(record)).into_response()
}

/// The revision of a record as an entity tag: `"<revision>"`.
fn etag(revision: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// A written record, with its new revision as `ETag`.
fn written_at<T: Serialize>(u: &Updated<T>) -> Response {
    let mut r = written(u.written, &u.record);
    r.headers_mut().insert(header::ETAG, etag(u.revision));
    r
}

/// A record as stored, with its revision as `ETag`; `404` when there is none.
fn found_at<T: Serialize>(stored: Option<Stored<T>>, what: &str) -> AdminResult {
    let stored = stored.ok_or_else(|| AdminError::NotFound(what.to_owned()))?;
    let mut r = Json(&stored.record).into_response();
    r.headers_mut().insert(header::ETAG, etag(stored.revision));
    Ok(r)
}

/// What a write expects of the record it replaces: `If-Match: "<revision>"`
/// (the revision read, from a `GET`'s `ETag`), `If-Match: *` (it exists),
/// `If-None-Match: *` (it does not). Anything else there is refused.
async fn precondition<F, Fut, T>(headers: &HeaderMap, current: F) -> Result<Option<Expect>, AdminError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<Stored<T>>, CatalogError>>,
{
    let text = |name| headers.get(name).map(|v: &HeaderValue| v.to_str().map(str::trim));
    match (text(header::IF_MATCH), text(header::IF_NONE_MATCH)) {
        (None, None) => Ok(None),
        (None, Some(Ok("*"))) => Ok(Some(Expect::Absent)),
        // Any current record: the one there now, and it must still be there
        // at the write.
        (Some(Ok("*")), None) => match current().await? {
            Some(s) => Ok(Some(Expect::Revision(s.revision))),
            None => Err(CatalogError::PreconditionFailed.into()),
        },
        (Some(Ok(tag)), None) => tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse::<u64>().ok())
            .map(|r| Some(Expect::Revision(r)))
            .ok_or_else(|| {
                AdminError::BadRequest(format!("If-Match: {tag:?} is not an ETag of this API (\"<revision>\")"))
            }),
        _ => Err(AdminError::BadRequest(
            "give If-Match: \"<revision>\" (or *), or If-None-Match: *, not both and nothing else".into(),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// `next` of the previous page.
    #[param(pattern = r"^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 999 (default 100).
    #[param(minimum = 1, maximum = 999)]
    pub limit: Option<usize>,
}

/// The query parameters, or `400 invalid_request` naming what is wrong.
pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, AdminError> {
    q.map(|Query(p)| p).map_err(|e| AdminError::BadRequest(e.body_text()))
}

pub(super) fn deleted(existed: bool, what: &str) -> AdminResult {
    if existed { Ok(StatusCode::NO_CONTENT.into_response()) } else { Err(AdminError::NotFound(what.to_owned())) }
}

// Products.

/// The delivery modes a product can be set to.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code, reason = "a schema only: the field is parsed as catalog::Delivery")]
pub(crate) enum WritableDelivery {
    Proxy,
    Redirect,
    Edge,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProductBody {
    #[schema(pattern = r"\S")]
    name: String,
    /// Default `proxy`; `redirect` needs S3 storage; `edge` needs
    /// `cdn_profile`.
    #[serde(default)]
    #[schema(value_type = Option<WritableDelivery>)]
    delivery: Delivery,
    /// For `edge`: the id of the `[[cdn.profiles]]` entry whose URLs
    /// customers are given.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,128}$")]
    cdn_profile: Option<String>,
    /// Update feeds: client platform → the artifact platform its files are
    /// registered under (docs/updates.md). At most 64 entries, each name
    /// 1-64 of `A-Z a-z 0-9 . _ -`.
    #[serde(default)]
    #[schema(schema_with = update_platforms_schema)]
    update_platforms: Option<std::collections::BTreeMap<String, String>>,
}

/// `update_platforms`' rules, as JSON Schema states them.
fn update_platforms_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let name = || ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[A-Za-z0-9._-]{1,64}$"));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property_names(Some(name().build()))
        .additional_properties(Some(name()))
        .max_properties(Some(MAX_UPDATE_PLATFORMS))
        .description(Some("client platform → the artifact platform its files are registered under"))
        .build()
}

/// The most entries a product's `update_platforms` may have.
const MAX_UPDATE_PLATFORMS: usize = 64;

fn check_update_platforms(map: &std::collections::BTreeMap<String, String>) -> Result<(), AdminError> {
    let name = |s: &str| {
        (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if map.len() > MAX_UPDATE_PLATFORMS {
        return Err(CatalogError::Invalid {
            field: "update_platforms",
            reason: format!("at most {MAX_UPDATE_PLATFORMS} entries"),
        }
        .into());
    }
    match map.iter().find(|(k, v)| !name(k) || !name(v)) {
        Some((k, v)) => Err(CatalogError::Invalid {
            field: "update_platforms",
            reason: format!("{k:?} → {v:?}: each side 1-64 of A-Z a-z 0-9 . _ -"),
        }
        .into()),
        None => Ok(()),
    }
}

#[utoipa::path(put, path = "/admin/v1/products/{product}", tag = "admin", params(("product" = String, Path, description = "product id")), request_body = ProductBody, responses((status = 201, description = "created", body = Product), (status = 200, description = "replaced or unchanged", body = Product), (status = 422, description = "`delivery_unsupported`: `redirect` on storage that cannot presign (a local directory), `edge` without a configured `cdn_profile`, or `cdn_profile` without `edge`", body = Problem), (status = 412, description = "`precondition_failed`: the record is not at the revision `If-Match` names (its `ETag`), or exists despite `If-None-Match: *`", body = Problem)))]
pub(crate) async fn put_product(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    RawBody(raw): RawBody,
) -> AdminResult {
    let id = path(p)?;
    let b: ProductBody = body(&raw)?;
    supported(&s, b.delivery, b.cdn_profile.as_deref())?;
    let update_platforms = b.update_platforms.unwrap_or_default();
    check_update_platforms(&update_platforms)?;
    let pre = precondition(&headers, || s.catalog.product_stored(&id)).await?;
    let product = Product { id, name: b.name, delivery: b.delivery, cdn_profile: b.cdn_profile, update_platforms };
    Ok(written_at(&s.catalog.put_product_if(&product, pre).await?))
}

/// Refuse a delivery mode this gateway cannot serve.
fn supported(s: &Services, delivery: Delivery, cdn_profile: Option<&str>) -> Result<(), AdminError> {
    crate::downloads::unavailable(s, delivery, cdn_profile)
        .map_or(Ok(()), |why| Err(AdminError::DeliveryUnsupported(why)))
}

#[utoipa::path(get, path = "/admin/v1/products/{product}", tag = "admin", params(("product" = String, Path, description = "product id")), responses((status = 200, body = Product)))]
pub(crate) async fn get_product(State(s): State<Arc<Services>>, p: Result<Path<String>, PathRejection>) -> AdminResult {
    found_at(s.catalog.product_stored(&path(p)?).await?, "product")
}

#[utoipa::path(get, path = "/admin/v1/products", tag = "admin", params(ListParams), responses((status = 200, body = Page<Product>)))]
pub(crate) async fn list_products(
    State(s): State<Arc<Services>>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> AdminResult {
    let q = query(q)?;
    Ok(Json(s.catalog.products(q.cursor.as_deref(), q.limit).await?).into_response())
}

#[utoipa::path(delete, path = "/admin/v1/products/{product}", tag = "admin", params(("product" = String, Path, description = "product id")), responses((status = 204, description = "deleted"), (status = 409, description = "the product still has releases", body = Problem)))]
pub(crate) async fn delete_product(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    deleted(s.catalog.delete_product(&path(p)?).await?, "product")
}

// Releases.

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseBody {
    channel: Channel,
    /// Default: the release's current status (`draft` for a new one). The
    /// lifecycle is normally driven by publish / yank / restore, so that a
    /// repeated `PUT` from CI never unpublishes a release.
    #[serde(default)]
    status: Option<ReleaseStatus>,
    /// Default: the current publication time, if any.
    #[serde(default)]
    published_at: Option<Timestamp>,
    #[serde(default)]
    critical: bool,
    #[serde(default)]
    notes: Option<String>,
    /// Stage update offers to this percentage of customers (1-100; 100:
    /// all). Left out: unchanged.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    rollout: Option<u8>,
    /// The oldest OS version the release runs on (e.g. `12.0`). Left out:
    /// unchanged.
    #[serde(default)]
    #[schema(pattern = r"^[0-9A-Za-z._-]{1,32}$")]
    minimum_system_version: Option<String>,
}

#[utoipa::path(put, path = "/admin/v1/products/{product}/releases/{version}", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), request_body = ReleaseBody, responses((status = 201, description = "created", body = Release), (status = 200, description = "replaced or unchanged", body = Release), (status = 412, description = "`precondition_failed`: the record is not at the revision `If-Match` names (its `ETag`), or exists despite `If-None-Match: *`", body = Problem)))]
pub(crate) async fn put_release(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    RawBody(raw): RawBody,
) -> AdminResult {
    let (product, v) = path(p)?;
    let b: ReleaseBody = body(&raw)?;
    let version = version(&v)?;
    if b.rollout.is_some_and(|r| !(1..=100).contains(&r)) {
        return Err(CatalogError::Invalid { field: "rollout", reason: "a percentage, 1 to 100".into() }.into());
    }
    if b.minimum_system_version.as_deref().is_some_and(|m| {
        m.is_empty() || m.len() > 32 || !m.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    }) {
        return Err(CatalogError::Invalid {
            field: "minimum_system_version",
            reason: "1-32 of A-Z a-z 0-9 . _ -".into(),
        }
        .into());
    }
    let pre = precondition(&headers, || s.catalog.release_stored(&product, &version)).await?;
    let now = Timestamp(s.clock.now_unix());
    // Fields left out keep their stored values: merged onto the record as it
    // is at the write (a compare-and-set). The answer is what was stored
    // (publication time stamped).
    let stored = s
        .catalog
        .put_release_if(&product, &version, pre, now, |current| Release {
            product: product.clone(),
            version: version.clone(),
            channel: b.channel,
            status: b.status.or(current.map(|r| r.status)).unwrap_or(ReleaseStatus::Draft),
            published_at: b.published_at.or(current.and_then(|r| r.published_at)),
            critical: b.critical,
            notes: b.notes.clone(),
            rollout: b.rollout.or(current.and_then(|r| r.rollout)),
            minimum_system_version: b
                .minimum_system_version
                .clone()
                .or_else(|| current.and_then(|r| r.minimum_system_version.clone())),
        })
        .await?;
    Ok(written_at(&stored))
}

#[utoipa::path(get, path = "/admin/v1/products/{product}/releases/{version}", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), responses((status = 200, body = Release)))]
pub(crate) async fn get_release(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (product, v) = path(p)?;
    found_at(s.catalog.release_stored(&product, &version(&v)?).await?, "release")
}

#[utoipa::path(get, path = "/admin/v1/products/{product}/releases", tag = "admin", params(("product" = String, Path, description = "product id"), ListParams), responses((status = 200, body = Page<Release>)))]
pub(crate) async fn list_releases(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> AdminResult {
    let product = path(p)?;
    let q = query(q)?;
    if s.catalog.product(&product).await?.is_none() {
        return Err(AdminError::NotFound("product".into()));
    }
    Ok(Json(s.catalog.releases(&product, q.cursor.as_deref(), q.limit).await?).into_response())
}

#[utoipa::path(delete, path = "/admin/v1/products/{product}/releases/{version}", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), responses((status = 204, description = "deleted"), (status = 409, description = "the release still has artifacts", body = Problem)))]
pub(crate) async fn delete_release(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (product, v) = path(p)?;
    deleted(s.catalog.delete_release(&product, &version(&v)?).await?, "release")
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishBody {
    /// Publication time to record instead of now (for releases that shipped
    /// before they were registered here).
    #[serde(default)]
    backdated_to: Option<Timestamp>,
}

async fn lifecycle(
    s: &Arc<Services>,
    p: Result<Path<(String, String)>, PathRejection>,
    action: ReleaseAction,
) -> AdminResult {
    let (product, v) = path(p)?;
    let version = version(&v)?;
    let r = change_release(s, product, version, action).await?;
    Ok(Json(r).into_response())
}

/// A release's lifecycle step (publish, yank, restore), with its event and,
/// for a first publication, the portal's release notices: the admin API's
/// and the console's one way to do it.
pub(crate) async fn change_release(
    s: &Arc<Services>,
    product: String,
    version: Version,
    action: ReleaseAction,
) -> Result<Release, AdminError> {
    let now = Timestamp(s.clock.now_unix());
    let before = s.catalog.release(&product, &version).await?.map(|r| r.status);
    let r = s.catalog.apply(&product, &version, action, now).await?;
    if before != Some(r.status) {
        let detail = match r.status {
            ReleaseStatus::Published => Some(Detail::ReleasePublished {
                channel: serde_json::to_value(r.channel)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                critical: r.critical,
            }),
            ReleaseStatus::Yanked => Some(Detail::ReleaseYanked {}),
            ReleaseStatus::Draft => None,
        };
        if let Some(detail) = detail {
            let subject =
                Subject { product: Some(product.clone()), version: Some(version.to_string()), ..Subject::default() };
            s.record(subject, detail).await;
        }
        // Published for the first time (not restored): the portal's users
        // who should know are told, after this answer.
        if before == Some(ReleaseStatus::Draft) && r.status == ReleaseStatus::Published {
            tokio::spawn(crate::portal::notify::release_published(s.clone(), product, version));
        }
    }
    Ok(r)
}

#[utoipa::path(post, path = "/admin/v1/products/{product}/releases/{version}/publish", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), request_body(content = Option<PublishBody>, description = "optional"), responses((status = 200, description = "published (or already was)", body = Release), (status = 409, description = "yanked: restore instead", body = Problem)))]
pub(crate) async fn publish_release(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
    RawBody(raw): RawBody,
) -> AdminResult {
    let b: PublishBody = optional_body(&raw)?;
    lifecycle(&s, p, ReleaseAction::Publish { backdated_to: b.backdated_to }).await
}

#[utoipa::path(post, path = "/admin/v1/products/{product}/releases/{version}/yank", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), responses((status = 200, description = "yanked (or already was)", body = Release), (status = 409, description = "a draft", body = Problem)))]
pub(crate) async fn yank_release(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    lifecycle(&s, p, ReleaseAction::Yank).await
}

#[utoipa::path(post, path = "/admin/v1/products/{product}/releases/{version}/restore", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), responses((status = 200, description = "published again", body = Release), (status = 409, description = "a draft", body = Problem)))]
pub(crate) async fn restore_release(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    lifecycle(&s, p, ReleaseAction::Restore).await
}

// Cutting running downloads.

/// What an order to cut running downloads did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CutAnswer {
    /// The order as stored: `scope` (`release` with `product` and `version`,
    /// or `customer` with `customer`) and `at_ms` (Unix milliseconds). The
    /// downloads in scope that started before it are cut.
    #[schema(value_type = Object)]
    order: crate::cuts::Order,
    /// Downloads cut on the gateway that took the order; every other gateway
    /// on the same state store cuts its own within 2 seconds.
    cut_here: usize,
}

#[utoipa::path(post, path = "/admin/v1/products/{product}/releases/{version}/cut-downloads", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), responses((status = 200, description = "the release's running downloads (grant and operator URLs) are cut, here at once and on every replica within 2 s; yank first, or the clients' resumes are served again", body = CutAnswer), (status = 404, description = "no such release", body = Problem)))]
pub(crate) async fn cut_release_downloads(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (product, v) = path(p)?;
    let version = version(&v)?;
    if s.catalog.release(&product, &version).await?.is_none() {
        return Err(AdminError::NotFound("release".into()));
    }
    cut(&s, crate::cuts::Scope::Release { product, version: version.to_string() }).await
}

#[utoipa::path(post, path = "/admin/v1/customers/{customer}/cut-downloads", tag = "admin", params(("customer" = String, Path, description = "customer id")), responses((status = 200, description = "the customer's running downloads are cut, here at once and on every replica within 2 s; suspend first, or the clients' resumes are served again", body = CutAnswer), (status = 404, description = "no such customer", body = Problem)))]
pub(crate) async fn cut_customer_downloads(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    let customer = path(p)?;
    require_customer(&s, &customer).await?;
    cut(&s, crate::cuts::Scope::Customer { customer }).await
}

async fn cut(s: &Services, scope: crate::cuts::Scope) -> AdminResult {
    let (order, cut_here) = crate::cuts::order(s.catalog.records().as_ref(), &s.streams, s.clock.as_ref(), scope)
        .await
        .map_err(CatalogError::from)?;
    tracing::warn!(order = ?order.scope, cut_here, "running downloads cut by an admin's order");
    Ok(Json(CutAnswer { order, cut_here }).into_response())
}

// Customers.

/// A network in CIDR notation (`203.0.113.0/24`, `2001:db8::/32`).
#[derive(ToSchema)]
#[schema(
    pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$|^([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$"
)]
#[allow(dead_code, reason = "a schema only: the field is parsed as ipnet::IpNet")]
pub(crate) struct Cidr(String);

/// `versions` sent as `null` means any version, as when absent.
fn null_is_any_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VersionReq, D::Error> {
    Ok(Option::<VersionReq>::deserialize(d)?.unwrap_or_else(any_version))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerBody {
    pub name: String,
    /// Default: the current status (`active` for a new customer), so that a
    /// `PUT` that only renames never lifts a suspension.
    #[serde(default)]
    pub status: Option<CustomerStatus>,
    /// Default: the current list (none for a new customer); `[]` removes it.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Cidr>>)]
    pub allowed_cidrs: Option<Vec<ipnet::IpNet>>,
    /// Default: the current quota (none for a new customer); `{}` removes it.
    #[serde(default, deserialize_with = "crate::table::optional_table")]
    pub quota: Option<Quota>,
}

#[utoipa::path(put, path = "/admin/v1/customers/{customer}", tag = "admin", params(("customer" = String, Path, description = "customer id")), request_body = CustomerBody, responses((status = 201, description = "created", body = Customer), (status = 200, description = "replaced or unchanged", body = Customer), (status = 412, description = "`precondition_failed`: the record is not at the revision `If-Match` names (its `ETag`), or exists despite `If-None-Match: *`", body = Problem)))]
pub(crate) async fn put_customer(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    RawBody(raw): RawBody,
) -> AdminResult {
    let id = path(p)?;
    let b: CustomerBody = body(&raw)?;
    let pre = precondition(&headers, || s.catalog.customer_stored(&id)).await?;
    Ok(written_at(&write_customer(&s, &id, pre, &b).await?))
}

/// Create or change a customer (`customer.changed` unless nothing changed):
/// the admin API's `PUT` and the console's forms.
pub(crate) async fn write_customer(
    s: &Services,
    id: &str,
    pre: Option<Expect>,
    b: &CustomerBody,
) -> Result<Updated<Customer>, AdminError> {
    // Fields left out keep their stored values: merged onto the record as it
    // is at the write (a compare-and-set), never onto a stale read.
    let updated = s
        .catalog
        .update_customer(id, pre, |current: Option<&Customer>| Customer {
            status: b.status.or(current.map(|c| c.status)).unwrap_or(CustomerStatus::Active),
            allowed_cidrs: b.allowed_cidrs.clone().or(current.map(|c| c.allowed_cidrs.clone())).unwrap_or_default(),
            quota: b.quota.or(current.map(|c| c.quota)).unwrap_or_default(),
            id: id.to_owned(),
            name: b.name.clone(),
        })
        .await?;
    let change = match updated.written {
        Written::Created => Some(Change::Created),
        Written::Updated => Some(Change::Updated),
        Written::Unchanged => None,
    };
    if let Some(change) = change {
        let subject = Subject { customer: Some(id.to_owned()), ..Subject::default() };
        let status = crate::http::portal::word(&updated.record.status);
        s.record(subject, Detail::CustomerChanged { change, status }).await;
    }
    Ok(updated)
}

#[utoipa::path(get, path = "/admin/v1/customers/{customer}", tag = "admin", params(("customer" = String, Path, description = "customer id")), responses((status = 200, body = Customer)))]
pub(crate) async fn get_customer(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    found_at(s.catalog.customer_stored(&path(p)?).await?, "customer")
}

#[utoipa::path(get, path = "/admin/v1/customers", tag = "admin", params(ListParams), responses((status = 200, body = Page<Customer>)))]
pub(crate) async fn list_customers(
    State(s): State<Arc<Services>>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> AdminResult {
    let q = query(q)?;
    Ok(Json(s.catalog.customers(q.cursor.as_deref(), q.limit).await?).into_response())
}

// Entitlements.

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntitlementBody {
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    product: String,
    license: License,
    starts_at: Timestamp,
    #[serde(default)]
    expires_at: Option<Timestamp>,
    #[serde(default)]
    maintenance_until: Option<Timestamp>,
    /// A semver requirement; default `*`.
    #[serde(default = "any_version", deserialize_with = "null_is_any_version")]
    #[schema(value_type = String, example = "^2", pattern = r"^(\*|[\^~=]?(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,2})$")]
    versions: VersionReq,
    #[serde(default = "stable_only")]
    channels: Vec<Channel>,
    #[serde(default)]
    platforms: Option<Vec<String>>,
    #[serde(default = "active_entitlement")]
    status: EntitlementStatus,
    /// Quotas for downloads under this entitlement; absent fields use the customer's.
    #[serde(default, deserialize_with = "crate::table::table")]
    quota: Quota,
}

fn any_version() -> VersionReq {
    VersionReq::STAR
}

fn stable_only() -> Vec<Channel> {
    vec![Channel::Stable]
}

fn active_entitlement() -> EntitlementStatus {
    EntitlementStatus::Active
}

#[utoipa::path(put, path = "/admin/v1/customers/{customer}/entitlements/{entitlement}", tag = "admin", params(("customer" = String, Path, description = "customer id"), ("entitlement" = String, Path, description = "entitlement id")), request_body = EntitlementBody, responses((status = 201, description = "created", body = Entitlement), (status = 200, description = "replaced or unchanged", body = Entitlement), (status = 412, description = "`precondition_failed`: the record is not at the revision `If-Match` names (its `ETag`), or exists despite `If-None-Match: *`", body = Problem)))]
pub(crate) async fn put_entitlement(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    RawBody(raw): RawBody,
) -> AdminResult {
    let (customer, id) = path(p)?;
    let b: EntitlementBody = body(&raw)?;
    let pre = precondition(&headers, || s.catalog.entitlement_stored(&customer, &id)).await?;
    let e = Entitlement {
        id,
        customer,
        product: b.product,
        license: b.license,
        starts_at: b.starts_at,
        expires_at: b.expires_at,
        maintenance_until: b.maintenance_until,
        versions: b.versions,
        channels: b.channels,
        platforms: b.platforms,
        status: b.status,
        quota: b.quota,
    };
    Ok(written_at(&write_entitlement(&s, &e, pre).await?))
}

/// Create or replace an entitlement (`entitlement.changed` unless nothing
/// changed): the admin API's `PUT` and the console's forms.
pub(crate) async fn write_entitlement(
    s: &Services,
    e: &Entitlement,
    pre: Option<Expect>,
) -> Result<Updated<Entitlement>, AdminError> {
    let stored = s.catalog.put_entitlement_if(e, pre).await?;
    let change = match stored.written {
        Written::Created => Some(Change::Created),
        Written::Updated => Some(Change::Updated),
        Written::Unchanged => None,
    };
    if let Some(change) = change {
        entitlement_changed(s, &e.customer, &e.product, &e.id, change).await;
    }
    Ok(stored)
}

async fn entitlement_changed(s: &Services, customer: &str, product: &str, id: &str, change: Change) {
    let subject = Subject {
        customer: Some(customer.to_owned()),
        product: (!product.is_empty()).then(|| product.to_owned()),
        ..Subject::default()
    };
    s.record(subject, Detail::EntitlementChanged { entitlement: id.to_owned(), change }).await;
}

#[utoipa::path(get, path = "/admin/v1/customers/{customer}/entitlements/{entitlement}", tag = "admin", params(("customer" = String, Path, description = "customer id"), ("entitlement" = String, Path, description = "entitlement id")), responses((status = 200, body = Entitlement)))]
pub(crate) async fn get_entitlement(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (customer, id) = path(p)?;
    found_at(s.catalog.entitlement_stored(&customer, &id).await?, "entitlement")
}

#[utoipa::path(get, path = "/admin/v1/customers/{customer}/entitlements", tag = "admin", params(("customer" = String, Path, description = "customer id")), responses((status = 200, body = Items<Entitlement>)))]
pub(crate) async fn list_entitlements(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    let customer = path(p)?;
    require_customer(&s, &customer).await?;
    Ok(Json(Items { items: s.catalog.entitlements_of(&customer).await? }).into_response())
}

#[utoipa::path(delete, path = "/admin/v1/customers/{customer}/entitlements/{entitlement}", tag = "admin", params(("customer" = String, Path, description = "customer id"), ("entitlement" = String, Path, description = "entitlement id")), responses((status = 204, description = "deleted")))]
pub(crate) async fn delete_entitlement(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (customer, id) = path(p)?;
    deleted(remove_entitlement(&s, &customer, &id).await?, "entitlement")
}

/// Delete an entitlement (`entitlement.changed`); `false`: there was none.
pub(crate) async fn remove_entitlement(s: &Services, customer: &str, id: &str) -> Result<bool, AdminError> {
    let product = s.catalog.entitlement(customer, id).await?.map(|e| e.product).unwrap_or_default();
    let existed = s.catalog.delete_entitlement(customer, id).await?;
    if existed {
        entitlement_changed(s, customer, &product, id, Change::Deleted).await;
    }
    Ok(existed)
}

// API keys.

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyBody {
    #[serde(default)]
    name: String,
}

/// `201` with the key text, shown this once and never again.
#[utoipa::path(post, path = "/admin/v1/customers/{customer}/api-keys", tag = "admin", params(("customer" = String, Path, description = "customer id")), request_body(content = Option<ApiKeyBody>, description = "optional"), responses((status = 201, description = "the key, shown this once", body = CreatedApiKey)))]
pub(crate) async fn create_api_key(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
    RawBody(raw): RawBody,
) -> AdminResult {
    let customer = path(p)?;
    let b: ApiKeyBody = optional_body(&raw)?;
    let now = Timestamp(s.clock.now_unix());
    let (key, text) = s.catalog.create_api_key(&customer, &b.name, now).await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { view: ApiKeyView::from(&key), key: text })).into_response())
}

#[utoipa::path(get, path = "/admin/v1/customers/{customer}/api-keys", tag = "admin", params(("customer" = String, Path, description = "customer id")), responses((status = 200, body = Items<ApiKeyView>)))]
pub(crate) async fn list_api_keys(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    let customer = path(p)?;
    require_customer(&s, &customer).await?;
    let keys: Vec<ApiKeyView> = s.catalog.api_keys(&customer).await?.iter().map(ApiKeyView::from).collect();
    Ok(Json(Items { items: keys }).into_response())
}

#[utoipa::path(delete, path = "/admin/v1/customers/{customer}/api-keys/{id}", tag = "admin", params(("customer" = String, Path, description = "customer id"), ("id" = String, Path, description = "API key id (the `id` of the created key; not the key itself)")), responses((status = 200, description = "revoked (or already was)", body = ApiKeyView)))]
pub(crate) async fn revoke_api_key(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (customer, id) = path(p)?;
    let now = Timestamp(s.clock.now_unix());
    let key = s.catalog.revoke_api_key(&customer, &id, now).await?;
    Ok(Json(ApiKeyView::from(&key)).into_response())
}

/// A new feed token: shown this once, with the feed's URL.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedFeedToken {
    customer: String,
    created_at: Timestamp,
    /// `tgf_…`; not stored, cannot be shown again.
    token: String,
    /// The customer's Atom feed, token included (what a feed reader takes).
    url: String,
}

/// `201` with a new feed token for the customer's Atom feed of releases,
/// replacing (revoking) the one before.
#[utoipa::path(post, path = "/admin/v1/customers/{customer}/feed-token", tag = "admin", params(("customer" = String, Path, description = "customer id")), responses((status = 201, description = "the token and the feed's URL, shown this once", body = CreatedFeedToken), (status = 404, description = "no such customer", body = Problem)))]
pub(crate) async fn create_feed_token(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    let customer = path(p)?;
    let now = Timestamp(s.clock.now_unix());
    let (record, token) = s.catalog.create_feed_token(&customer, now).await?;
    let url = format!("{}?token={token}", super::updates::feed_url(&s.downloads.urls.public_url, &customer));
    let created = CreatedFeedToken { customer: record.customer, created_at: record.created_at, token, url };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(delete, path = "/admin/v1/customers/{customer}/feed-token", tag = "admin", params(("customer" = String, Path, description = "customer id")), responses((status = 204, description = "revoked"), (status = 404, description = "the customer has no feed token", body = Problem)))]
pub(crate) async fn revoke_feed_token(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    deleted(s.catalog.revoke_feed_token(&path(p)?).await?, "feed token")
}

/// A portal user's role.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PortalUserBody {
    /// Default `member`; an `admin` also manages the customer's users.
    role: Option<crate::portal::Role>,
}

fn portal_error(e: crate::portal::PortalError) -> AdminError {
    use crate::portal::PortalError;
    match e {
        PortalError::Catalog(c) => c.into(),
        PortalError::InvalidEmail(_) => CatalogError::Invalid { field: "email", reason: e.to_string() }.into(),
        PortalError::EmailTaken(_) => CatalogError::Conflict(e.to_string()).into(),
        PortalError::NoSuchUser | PortalError::InvalidLink => {
            CatalogError::Missing { kind: "user", id: String::new() }.into()
        }
    }
}

/// Add a person to the customer's portal (or change its role). They sign
/// in with a link mailed to the address (`/portal/sign-in`).
#[utoipa::path(put, path = "/admin/v1/customers/{customer}/users/{email}", tag = "admin", params(("customer" = String, Path, description = "customer id"), ("email" = String, Path, description = "the user's e-mail address")), request_body(content = Option<PortalUserBody>, description = "optional"), responses((status = 201, description = "added", body = crate::portal::PortalUser), (status = 200, description = "role changed, or unchanged", body = crate::portal::PortalUser), (status = 404, description = "no such customer", body = Problem), (status = 409, description = "`conflict`: the address is another customer's user", body = Problem), (status = 422, description = "`invalid_field`: not an e-mail address", body = Problem)))]
pub(crate) async fn put_portal_user(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
    RawBody(raw): RawBody,
) -> AdminResult {
    let (customer, email) = path(p)?;
    let b: PortalUserBody = optional_body(&raw)?;
    let role = b.role.unwrap_or(crate::portal::Role::Member);
    let (user, created) =
        crate::portal::Portal::new(&s).put_user(&customer, &email, role).await.map_err(portal_error)?;
    let change = if created { Change::Created } else { Change::Updated };
    let c = UserChange {
        customer: &customer,
        email: &user.email,
        change,
        role: Some(user.role),
        by: None,
        sessions_ended: false,
    };
    crate::portal::record_change(&s, c).await;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(user)).into_response())
}

#[utoipa::path(get, path = "/admin/v1/customers/{customer}/users/{email}", tag = "admin", params(("customer" = String, Path, description = "customer id"), ("email" = String, Path, description = "the user's e-mail address")), responses((status = 200, body = crate::portal::PortalUser), (status = 404, description = "no such user of this customer", body = Problem)))]
pub(crate) async fn get_portal_user(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (customer, email) = path(p)?;
    let user = crate::portal::Portal::new(&s).user(&email).await.map_err(portal_error)?;
    match user.filter(|u| u.customer == customer) {
        Some(u) => Ok(Json(u).into_response()),
        None => Err(CatalogError::Missing { kind: "user", id: email }.into()),
    }
}

/// The customer's portal users, by address.
#[utoipa::path(get, path = "/admin/v1/customers/{customer}/users", tag = "admin", params(("customer" = String, Path, description = "customer id")), responses((status = 200, body = Vec<crate::portal::PortalUser>), (status = 404, description = "no such customer", body = Problem)))]
pub(crate) async fn list_portal_users(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    let customer = path(p)?;
    if s.catalog.customer(&customer).await?.is_none() {
        return Err(CatalogError::Missing { kind: "customer", id: customer }.into());
    }
    let users = crate::portal::Portal::new(&s).users_of(&customer).await.map_err(portal_error)?;
    Ok(Json(users).into_response())
}

/// Remove a portal user; its sessions end at their next request.
#[utoipa::path(delete, path = "/admin/v1/customers/{customer}/users/{email}", tag = "admin", params(("customer" = String, Path, description = "customer id"), ("email" = String, Path, description = "the user's e-mail address")), responses((status = 204, description = "removed"), (status = 404, description = "no such user of this customer", body = Problem)))]
pub(crate) async fn delete_portal_user(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (customer, email) = path(p)?;
    let removed = crate::portal::Portal::new(&s).remove_user(&customer, &email).await.map_err(portal_error)?;
    if removed {
        let email = crate::portal::canonical_email(&email).unwrap_or(email);
        let c = UserChange {
            customer: &customer,
            email: &email,
            change: Change::Deleted,
            role: None,
            by: None,
            sessions_ended: false,
        };
        crate::portal::record_change(&s, c).await;
    }
    deleted(removed, "user")
}

/// Sign a portal user out everywhere (a lost laptop): each of its sessions
/// ends at its next request. It can sign in again.
#[utoipa::path(post, path = "/admin/v1/customers/{customer}/users/{email}/sign-out", tag = "admin", params(("customer" = String, Path, description = "customer id"), ("email" = String, Path, description = "the user's e-mail address")), responses((status = 200, description = "signed out everywhere", body = crate::portal::PortalUser), (status = 404, description = "no such user of this customer", body = Problem)))]
pub(crate) async fn sign_out_portal_user(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (customer, email) = path(p)?;
    let portal = crate::portal::Portal::new(&s);
    if !portal.end_all_sessions(&customer, &email).await.map_err(portal_error)? {
        return Err(CatalogError::Missing { kind: "user", id: email }.into());
    }
    let user = portal.user(&email).await.map_err(portal_error)?.filter(|u| u.customer == customer);
    let Some(user) = user else { return Err(CatalogError::Missing { kind: "user", id: email }.into()) };
    let c = UserChange {
        customer: &customer,
        email: &user.email,
        change: Change::Updated,
        role: Some(user.role),
        by: None,
        sessions_ended: true,
    };
    crate::portal::record_change(&s, c).await;
    Ok(Json(user).into_response())
}

/// What the customer portal shows of the vendor: set here, or the
/// configuration's (`[portal]`).
#[utoipa::path(get, path = "/admin/v1/portal/branding", tag = "admin", responses((status = 200, body = crate::config::portal::Branding)))]
pub(crate) async fn get_branding(State(s): State<Arc<Services>>) -> AdminResult {
    let stored = crate::portal::stored_branding(&s).await.map_err(portal_error)?;
    Ok(Json(stored.unwrap_or_else(|| s.portal.branding())).into_response())
}

/// Set the portal's name, accent colour and logo for every replica (within
/// 10 seconds); it wins over the configuration until reset.
#[utoipa::path(put, path = "/admin/v1/portal/branding", tag = "admin", request_body = crate::config::portal::Branding, responses((status = 200, description = "set", body = crate::config::portal::Branding), (status = 422, description = "`invalid_field`: not a #rrggbb colour, an empty name, a logo neither https: nor a path here", body = Problem)))]
pub(crate) async fn put_branding(State(s): State<Arc<Services>>, RawBody(raw): RawBody) -> AdminResult {
    let b: crate::config::portal::Branding = body(&raw)?;
    let set = crate::portal::set_branding(&s, Some(b)).await.map_err(portal_error)?;
    Ok(Json(set).into_response())
}

/// Go back to the configuration's branding.
#[utoipa::path(delete, path = "/admin/v1/portal/branding", tag = "admin", responses((status = 200, description = "the configuration's, now in force", body = crate::config::portal::Branding)))]
pub(crate) async fn reset_branding(State(s): State<Arc<Services>>) -> AdminResult {
    let set = crate::portal::set_branding(&s, None).await.map_err(portal_error)?;
    Ok(Json(set).into_response())
}

/// An OpenID provider of the portal, as configured (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SsoProviderView {
    id: String,
    name: String,
    issuer: String,
    /// The customers whose users may sign in with it; empty: any.
    customers: Vec<String>,
    require_verified_email: bool,
}

/// The portal's OpenID providers. They are configuration (`[[portal.sso]]`):
/// their client secrets belong in secret files, not in the state store.
#[utoipa::path(get, path = "/admin/v1/portal/sso", tag = "admin", responses((status = 200, body = Vec<SsoProviderView>)))]
pub(crate) async fn list_sso_providers(State(s): State<Arc<Services>>) -> AdminResult {
    let list: Vec<SsoProviderView> = s
        .portal
        .sso
        .iter()
        .map(|p| SsoProviderView {
            id: p.id.clone(),
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            customers: p.customers.clone(),
            require_verified_email: p.require_verified_email,
        })
        .collect();
    Ok(Json(list).into_response())
}

/// A new API key: the record, and the key itself, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApiKey {
    #[serde(flatten)]
    view: ApiKeyView,
    /// `tg_<customer>_<id>_<secret>`; not stored, cannot be shown again.
    key: String,
}

/// The customers a release reaches.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EligibleList {
    count: usize,
    items: Vec<crate::entitlement::access::Eligible>,
}

/// Whom a release reaches: the customers entitled to it as if it were
/// published now (so a vendor can check a patch's audience before publishing).
#[utoipa::path(get, path = "/admin/v1/products/{product}/releases/{version}/eligible-customers", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), responses((status = 200, body = EligibleList)))]
pub(crate) async fn eligible_customers(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (_, items) = release_audience(&s, p).await?;
    Ok(Json(EligibleList { count: items.len(), items }).into_response())
}

/// The release a `…/releases/{version}/…` path names, and the customers it
/// reaches (see [`eligible_customers`]).
pub(super) async fn release_audience(
    s: &Services,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<(Release, Vec<crate::entitlement::access::Eligible>), AdminError> {
    let (product, v) = path(p)?;
    let version = version(&v)?;
    let (release, _, items) =
        audience(s, &product, &version).await?.ok_or_else(|| AdminError::NotFound("release".into()))?;
    Ok((release, items))
}

/// A release, its files, and the customers it reaches now (the admin
/// API's and the console's); `None`: no such release.
pub(crate) async fn audience(
    s: &Services,
    product: &str,
    version: &Version,
) -> Result<Option<(Release, Vec<crate::catalog::Artifact>, Vec<crate::entitlement::access::Eligible>)>, AdminError> {
    let Some(release) = s.catalog.release(product, version).await? else { return Ok(None) };
    let artifacts = s.catalog.artifacts(product, version).await?;
    let now = Timestamp(s.clock.now_unix());
    let items = eligible(&s.catalog, &release, &artifacts, now).await?;
    Ok(Some((release, artifacts, items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Optional {
        a: Option<u8>,
    }

    #[test]
    fn an_optional_body_is_absent_only_as_json_whitespace_or_null() {
        for absent in [&b""[..], b" \r\n\t", b"null", b" null\n"] {
            assert_eq!(optional_body::<Optional>(absent).unwrap(), Optional::default(), "{absent:?}");
        }
        assert_eq!(optional_body::<Optional>(b"{\"a\": 1}").unwrap(), Optional { a: Some(1) });
        for refused in [&b"\x0c"[..], b"\x0b", b"nul", b"[]", b"{\"b\": 1}"] {
            assert!(optional_body::<Optional>(refused).is_err(), "{refused:?}");
        }
    }
}
