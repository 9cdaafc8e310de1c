//! The artifact routes of the admin API: a release's files. A file gets in by
//! a streaming `PUT` through the gateway, by a direct upload to S3 with
//! presigned requests (`POST …/artifacts`, then `…/complete`), or by
//! registering an object already in storage. Whichever way, the gateway
//! measures size and SHA-256 itself before the file becomes downloadable.

#![allow(
    unused_qualifications,
    reason = "utoipa's generated code for `params(SomeIntoParams)` names the type by a qualified path"
)]

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin_api::{AdminError, AdminResult, body, deleted, path, query, version, written};
use super::problem::{Problem, RawBody};
use super::{AppState, Items};
use crate::catalog::artifacts::{artifact_key, check_filename, check_sha256};
use crate::catalog::{Artifact, ArtifactStatus, CatalogError, PLATFORM_ANY, PendingUpload, ReleaseStatus, Timestamp};
use crate::events::{Detail, Subject};
use crate::storage::{self, ObjectKey, StorageError, UploadPlan, UploadedPart};
use crate::store::Written;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ArtifactParams {
    /// `existing`: register an object already in storage (no body). Absent:
    /// the body is the file.
    source: Option<String>,
    platform: Option<String>,
    /// Default: `{product}/{version}/{filename}`.
    storage_key: Option<String>,
    /// Default: guessed from the file name.
    content_type: Option<String>,
    /// Replace an existing artifact of a published or yanked release.
    force: Option<bool>,
}

/// Upload a file as an artifact (the request body, any size, streamed), or
/// with `?source=existing` register an object already in storage. Either way
/// the size and SHA-256 are measured by the gateway, never taken from the
/// caller; an upload announcing its digest (`Repr-Digest`/`Content-Digest`
/// `sha-256=:…:`, or `x-checksum-sha256`) that does not match is refused and
/// leaves nothing behind.
#[utoipa::path(put, path = "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name")), params(ArtifactParams), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file (absent with `source=existing`)"), responses((status = 201, description = "stored and registered", body = Artifact), (status = 200, description = "replaced, or registered again (re-measured)", body = Artifact), (status = 400, description = "`upload_incomplete` (the body was cut), `invalid_digest`", body = Problem), (status = 409, description = "replacing a published release's file without `force=true`", body = Problem), (status = 413, description = "larger than the storage allows", body = Problem), (status = 422, description = "`checksum_mismatch`, no object at the storage key, or an invalid name", body = Problem)))]
pub(crate) async fn put_artifact(
    State(s): State<Arc<AppState>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    q: Result<Query<ArtifactParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult {
    let (product, v, filename) = path(p)?;
    let version = version(&v)?;
    let q = query(q)?;
    let upload = match q.source.as_deref() {
        None => true,
        Some("existing") => false,
        Some(other) => return Err(AdminError::BadRequest(format!("source={other:?}: only \"existing\" is known"))),
    };
    check_filename(&filename)?;
    // An upload goes to the release's own place, never to a key another
    // release's (published) file may use.
    if upload && q.storage_key.is_some() {
        return Err(AdminError::BadRequest(
            "storage_key is only for source=existing; uploads go to \
             {product}/{version}/{filename}"
                .into(),
        ));
    }
    let platform = q.platform.unwrap_or_else(|| PLATFORM_ANY.to_owned());
    crate::catalog::repo::check_id("platform", &platform)?;
    let content_type = content_type(&filename, q.content_type)?;
    // Fail before the (possibly long) transfer: a body announced larger than
    // storage takes, a missing release, a direct upload of the same file
    // under way, or a published file replaced without saying so.
    if let (Some(max), Some(len)) = (s.storage.max_upload_size(), content_length(&headers))
        && upload
        && len > max
    {
        return Err(StorageError::TooLarge(max).into());
    }
    let Some(release) = s.catalog.release(&product, &version).await? else {
        return Err(AdminError::NotFound("release".into()));
    };
    if s.catalog.upload(&product, &version, &filename).await?.is_some() {
        return Err(CatalogError::Conflict(format!(
            "a direct upload of {filename} is pending; complete it or delete it first"
        ))
        .into());
    }
    if upload
        && release.status != ReleaseStatus::Draft
        && q.force != Some(true)
        && s.catalog.artifact(&product, &version, &filename).await?.is_some()
    {
        return Err(CatalogError::Conflict(format!(
            "{filename} is already a file of the {:?} release {version}; replacing it changes what customers \
             download: add force=true",
            release.status
        ))
        .into());
    }
    let storage_key = q.storage_key.unwrap_or_else(|| artifact_key(&product, &version, &filename));
    let key = ObjectKey::parse(&storage_key)
        .map_err(|e| CatalogError::Invalid { field: "storage_key", reason: e.to_string() })?;
    let (meta, sha256) = if upload {
        let expected = announced_sha256(&headers)?;
        let stream = upload_stream(body, s.storage_idle_timeout);
        let stored = s.storage.put(&key, stream, expected.as_deref(), &content_type).await?;
        (stored.meta, stored.sha256)
    } else {
        if !axum::body::to_bytes(body, 0).await.is_ok_and(|b| b.is_empty()) {
            return Err(AdminError::BadRequest("registering an existing object takes no request body".into()));
        }
        storage::measure(s.storage.as_ref(), &key, s.storage_idle_timeout).await?
    };
    let artifact = Artifact {
        product,
        version,
        filename,
        platform,
        size: meta.size,
        sha256,
        content_type: Some(content_type),
        storage_key,
        etag: Some(meta.etag),
        status: ArtifactStatus::Ready,
    };
    match s.catalog.put_artifact(&artifact).await {
        Ok(w) => {
            if w != Written::Unchanged {
                artifact_uploaded(&s, &artifact).await;
            }
            Ok(written(w, &artifact))
        }
        Err(e @ CatalogError::Missing { .. }) => {
            // The release was deleted while the bytes were arriving: nothing
            // refers to the new object, so it goes too.
            if upload && let Err(d) = s.storage.delete(&key).await {
                tracing::warn!(key = %key, error = %d, "could not remove the upload of a deleted release");
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The declared `Content-Length`, if any.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The media type given, checked, or guessed from the file name.
fn content_type(filename: &str, given: Option<String>) -> Result<String, AdminError> {
    match given {
        Some(ct) if ct.contains('/') && HeaderValue::from_str(&ct).is_ok() => Ok(ct),
        Some(ct) => Err(CatalogError::Invalid {
            field: "content_type",
            reason: format!("{ct:?} is not a media type like application/gzip"),
        }
        .into()),
        None => Ok(mime_guess::from_path(filename).first_or_octet_stream().essence_str().to_owned()),
    }
}

/// The SHA-256 an upload announces, as lower-case hex: `Repr-Digest` or
/// `Content-Digest` (RFC 9530, `sha-256=:<base64>:`; for a whole-file `PUT`
/// the two are the same), else `x-checksum-sha256` (hex).
fn announced_sha256(headers: &HeaderMap) -> Result<Option<String>, AdminError> {
    let bad = |name: &str| AdminError::InvalidDigest(format!("{name} does not hold a SHA-256 digest"));
    for name in ["repr-digest", "content-digest"] {
        let Some(value) = headers.get(name) else { continue };
        let text = value.to_str().map_err(|_| bad(name))?;
        // A dictionary; other algorithms are ignored, sha-256 is required.
        let Some(b64) = text.split(',').find_map(|m| m.trim().strip_prefix("sha-256=:")?.strip_suffix(':')) else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad(name))?;
        if raw.len() != 32 {
            return Err(bad(name));
        }
        return Ok(Some(hex::encode(raw)));
    }
    match headers.get("x-checksum-sha256") {
        None => Ok(None),
        Some(v) => {
            let hex_text = v.to_str().map_err(|_| bad("x-checksum-sha256"))?.trim().to_ascii_lowercase();
            check_sha256(&hex_text).map_err(|_| bad("x-checksum-sha256"))?;
            Ok(Some(hex_text))
        }
    }
}

/// The request body as a byte stream for storage: a failed body, or one that
/// stalls longer than `idle`, is an error (the upload then leaves nothing).
fn upload_stream(body: Body, idle: std::time::Duration) -> storage::ByteStream {
    use futures_util::StreamExt as _;
    let inner = body.into_data_stream();
    Box::pin(futures_util::stream::unfold(inner, move |mut inner| async move {
        match tokio::time::timeout(idle, inner.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), inner)),
            Ok(Some(Err(e))) => Some((Err(StorageError::Body(e.to_string())), inner)),
            Ok(None) => None,
            Err(_) => Some((Err(StorageError::Body(format!("no data for {} s", idle.as_secs()))), inner)),
        }
    }))
}

#[utoipa::path(get, path = "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name")), responses((status = 200, description = "the artifact; `status: pending` for a direct upload not yet completed (size and SHA-256 as declared)", body = Artifact)))]
pub(crate) async fn get_artifact(
    State(s): State<Arc<AppState>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> AdminResult {
    let (product, v, filename) = path(p)?;
    let version = version(&v)?;
    if let Some(a) = s.catalog.artifact(&product, &version, &filename).await? {
        return Ok(Json(a).into_response());
    }
    match s.catalog.upload(&product, &version, &filename).await? {
        Some(u) => Ok(Json(u.as_artifact()).into_response()),
        None => Err(AdminError::NotFound("artifact".into())),
    }
}

/// A release's files by name, pending direct uploads included.
#[utoipa::path(get, path = "/admin/v1/products/{product}/releases/{version}/artifacts", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), responses((status = 200, body = Items<Artifact>)))]
pub(crate) async fn list_artifacts(
    State(s): State<Arc<AppState>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (product, v) = path(p)?;
    let version = version(&v)?;
    if s.catalog.release(&product, &version).await?.is_none() {
        return Err(AdminError::NotFound("release".into()));
    }
    let mut items = s.catalog.artifacts(&product, &version).await?;
    items.extend(s.catalog.uploads(&product, &version).await?.iter().map(PendingUpload::as_artifact));
    items.sort_by(|a, b| a.filename.cmp(&b.filename));
    Ok(Json(Items { items }).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteParams {
    #[serde(default)]
    force: bool,
}

/// Remove an artifact record, or abandon a pending direct upload (its parts
/// are aborted and any object it wrote removed).
#[utoipa::path(delete, path = "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name")), params(DeleteParams), responses((status = 204, description = "deleted"), (status = 409, description = "the release is published: needs force=true", body = Problem)))]
pub(crate) async fn delete_artifact(
    State(s): State<Arc<AppState>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    q: Result<Query<DeleteParams>, QueryRejection>,
) -> AdminResult {
    let (product, v, filename) = path(p)?;
    let q = query(q)?;
    let version = version(&v)?;
    if let Some(u) = s.catalog.upload(&product, &version, &filename).await? {
        abandon(&s, &u).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    deleted(s.catalog.delete_artifact(&product, &version, &filename, q.force).await?, "artifact")
}

// Direct uploads.

/// What a vendor declares to upload a file straight to storage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirectUploadBody {
    filename: String,
    /// Default `any`.
    platform: Option<String>,
    /// Default: guessed from the file name.
    content_type: Option<String>,
    /// The file's exact size in bytes.
    size: u64,
    /// The file's SHA-256, hex; checked by the gateway at `complete`.
    sha256: String,
}

/// A direct upload's plan: the presigned requests to send, and where to
/// complete.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DirectUpload {
    /// The artifact as it will be, `status: pending` until completed.
    artifact: Artifact,
    /// When the presigned requests stop working.
    expires_at: Timestamp,
    plan: UploadPlan,
    /// `POST` here (admin token) once every part is up.
    complete: String,
}

/// Start a direct upload: the vendor sends the bytes straight to S3 with the
/// presigned requests of the plan (one `PUT`, or one per part of a multipart
/// upload), then calls `…/{filename}/complete`. Until then the artifact is
/// `pending` and cannot be downloaded. Only for new files: an existing one is
/// replaced with the streaming `PUT`, or deleted first. Planning a file
/// again abandons the previous plan.
#[utoipa::path(post, path = "/admin/v1/products/{product}/releases/{version}/artifacts", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), request_body = DirectUploadBody, responses((status = 201, description = "planned", body = DirectUpload), (status = 409, description = "the release already has this file", body = Problem), (status = 413, description = "larger than S3 takes (5 TiB)", body = Problem), (status = 501, description = "`direct_upload_unsupported`: the storage is a local directory", body = Problem)))]
pub(crate) async fn plan_upload(
    State(s): State<Arc<AppState>>,
    p: Result<Path<(String, String)>, PathRejection>,
    RawBody(raw): RawBody,
) -> AdminResult {
    let (product, v) = path(p)?;
    let version = version(&v)?;
    let b: DirectUploadBody = body(&raw)?;
    check_filename(&b.filename)?;
    let platform = b.platform.unwrap_or_else(|| PLATFORM_ANY.to_owned());
    crate::catalog::repo::check_id("platform", &platform)?;
    let content_type = content_type(&b.filename, b.content_type)?;
    let sha256 = b.sha256.to_ascii_lowercase();
    check_sha256(&sha256)?;
    if s.catalog.release(&product, &version).await?.is_none() {
        return Err(AdminError::NotFound("release".into()));
    }
    if s.catalog.artifact(&product, &version, &b.filename).await?.is_some() {
        return Err(CatalogError::Conflict(format!(
            "{} is already a file of {product} {version}; replace it with a streaming PUT, or delete it first",
            b.filename
        ))
        .into());
    }
    if let Some(earlier) = s.catalog.upload(&product, &version, &b.filename).await? {
        abandon(&s, &earlier).await?;
    }
    let storage_key = artifact_key(&product, &version, &b.filename);
    let key = ObjectKey::parse(&storage_key)
        .map_err(|e| CatalogError::Invalid { field: "filename", reason: e.to_string() })?;
    let plan = s
        .storage
        .plan_upload(&key, b.size, &sha256, &content_type, s.upload_url_ttl)
        .await?
        .ok_or(AdminError::DirectUploadUnsupported)?;
    let now = s.clock.now_unix();
    let pending = PendingUpload {
        product,
        version,
        filename: b.filename,
        platform,
        content_type,
        size: b.size,
        sha256,
        storage_key,
        upload_id: plan.upload_id.clone(),
        created_at: Timestamp(now),
        expires_at: Timestamp(now + s.upload_url_ttl.as_secs()),
        completing_since: None,
    };
    if let Err(e) = s.catalog.put_upload(&pending).await {
        if let Some(id) = &plan.upload_id {
            let _ = s.storage.abort_upload(&key, id).await;
        }
        return Err(e.into());
    }
    let complete = format!(
        "/admin/v1/products/{}/releases/{}/artifacts/{}/complete",
        crate::signing::encode_segment(&pending.product),
        pending.version,
        crate::signing::encode_segment(&pending.filename)
    );
    let ticket = DirectUpload { artifact: pending.as_artifact(), expires_at: pending.expires_at, plan, complete };
    Ok((StatusCode::CREATED, Json(ticket)).into_response())
}

/// The parts a vendor uploaded, as storage answered them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    /// Each part's number and `ETag`. Absent: the parts storage holds.
    #[serde(default)]
    parts: Vec<UploadedPart>,
}

/// Finish a direct upload: assemble the parts, then read the object through
/// and check its size and SHA-256 against the declared ones. Only then is the
/// artifact recorded (and downloadable). A mismatch removes the object and
/// the plan. Repeating a `complete` that succeeded answers 200 with the
/// artifact.
#[utoipa::path(post, path = "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}/complete", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name")), request_body(content = Option<CompleteBody>, description = "optional"), responses((status = 201, description = "verified and recorded", body = Artifact), (status = 200, description = "already completed", body = Artifact), (status = 409, description = "`upload_incomplete`: parts or the object are missing; upload them and complete again", body = Problem), (status = 410, description = "`upload_expired`: abandoned", body = Problem), (status = 422, description = "`checksum_mismatch` or `size_mismatch`: nothing was kept", body = Problem)))]
pub(crate) async fn complete_upload(
    State(s): State<Arc<AppState>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    RawBody(raw): RawBody,
) -> AdminResult {
    let (product, v, filename) = path(p)?;
    let version = version(&v)?;
    let b: CompleteBody = if raw.is_empty() { CompleteBody::default() } else { body(&raw)? };
    let Some(u) = s.catalog.upload(&product, &version, &filename).await? else {
        // A retried `complete` whose first answer was lost.
        return match s.catalog.artifact(&product, &version, &filename).await? {
            Some(a) => Ok(Json(a).into_response()),
            None => Err(AdminError::NotFound("pending upload".into())),
        };
    };
    let now = s.clock.now_unix();
    if now >= u.expires_at.0 {
        abandon(&s, &u).await?;
        return Err(AdminError::UploadExpired(filename));
    }
    // Marked, so the sweep leaves it alone while its bytes are read through
    // (which may outlast the plan's expiry for a huge file).
    let u = PendingUpload { completing_since: Some(Timestamp(now)), ..u };
    s.catalog.put_upload(&u).await?;
    let key = upload_key(&u)?;
    if let Some(id) = &u.upload_id {
        match s.storage.complete_upload(&key, id, &b.parts).await {
            // Already assembled by an earlier `complete` that failed later on.
            Ok(()) | Err(StorageError::NotFound) => {}
            Err(e @ (StorageError::Unavailable(_) | StorageError::Timeout(_))) => return Err(e.into()),
            Err(e) => {
                tracing::info!(key = %key, error = %e, "a direct upload could not be assembled");
                return Err(AdminError::UploadIncomplete(
                    "storage could not assemble the parts: upload every part of the plan (with the ETags \
                     storage answered), then complete again"
                        .into(),
                ));
            }
        }
    }
    let (meta, sha256) = match storage::measure(s.storage.as_ref(), &key, s.storage_idle_timeout).await {
        Ok(m) => m,
        Err(StorageError::NotFound) => {
            return Err(AdminError::UploadIncomplete(
                "storage holds no object yet: send the plan's request(s), then complete".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // Still this plan? A DELETE, or a new plan for the file, may have
    // abandoned it while the object was read; then the bytes at the key are
    // not ours to keep, remove or record.
    let current = s.catalog.upload(&product, &version, &filename).await?;
    if current.is_none_or(|c| c.upload_id != u.upload_id || c.created_at != u.created_at) {
        return Err(CatalogError::Conflict(format!(
            "the upload of {filename} was abandoned or planned again while it was being verified"
        ))
        .into());
    }
    let refused = if meta.size != u.size {
        Err(AdminError::SizeMismatch { declared: u.size, actual: meta.size })
    } else {
        storage::check_digest(Some(&u.sha256), &sha256).map_err(AdminError::from)
    };
    if let Err(refused) = refused {
        s.storage.delete(&key).await?;
        s.catalog.delete_upload(&product, &version, &filename).await?;
        return Err(refused);
    }
    let artifact = Artifact { etag: Some(meta.etag), status: ArtifactStatus::Ready, ..u.as_artifact() };
    match s.catalog.put_artifact(&artifact).await {
        Ok(_) => {}
        Err(e @ CatalogError::Missing { .. }) => {
            // The release went away meanwhile; nothing may refer to the bytes.
            abandon(&s, &u).await?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    s.catalog.delete_upload(&product, &version, &filename).await?;
    artifact_uploaded(&s, &artifact).await;
    Ok((StatusCode::CREATED, Json(artifact)).into_response())
}

async fn artifact_uploaded(s: &AppState, a: &Artifact) {
    let subject = Subject {
        product: Some(a.product.clone()),
        version: Some(a.version.to_string()),
        filename: Some(a.filename.clone()),
        platform: Some(a.platform.clone()),
        ..Subject::default()
    };
    s.record(subject, Detail::ArtifactUploaded { size: a.size, sha256: a.sha256.clone() }).await;
}

fn upload_key(u: &PendingUpload) -> Result<ObjectKey, AdminError> {
    ObjectKey::parse(&u.storage_key)
        .map_err(|e| AdminError::Catalog(CatalogError::Invalid { field: "storage_key", reason: e.to_string() }))
}

/// Give up a direct upload: abort its parts, remove anything it wrote (no
/// artifact refers to it: a plan is only made for a new file, and a streaming
/// `PUT` of the file is refused while the plan is pending), then its record.
async fn abandon(s: &AppState, u: &PendingUpload) -> Result<(), AdminError> {
    let key = upload_key(u)?;
    if let Some(id) = &u.upload_id {
        s.storage.abort_upload(&key, id).await?;
    }
    s.storage.delete(&key).await?;
    s.catalog.delete_upload(&u.product, &u.version, &u.filename).await?;
    Ok(())
}

/// Abandon the direct uploads whose plans expired more than `grace` seconds
/// ago, and remove what crashed streaming uploads left in storage. Run
/// periodically by the gateway; returns how many uploads were abandoned.
pub async fn sweep_uploads(s: &AppState, grace: u64) -> usize {
    let now = s.clock.now_unix();
    let mut abandoned = 0;
    match s.catalog.all_uploads().await {
        Ok(uploads) => {
            // One being completed is left alone for a day (its verification
            // reads the whole file).
            let idle = |u: &&PendingUpload| u.completing_since.is_none_or(|t| t.0.saturating_add(86_400) < now);
            for u in uploads.iter().filter(|u| u.expires_at.0.saturating_add(grace) < now).filter(idle) {
                match abandon(s, u).await {
                    Ok(()) => abandoned += 1,
                    Err(e) => tracing::warn!(file = %u.storage_key, error = %e, "could not abandon an expired upload"),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not list pending uploads"),
    }
    // A live streaming upload writes all the time and a stalled one is cut
    // after the idle timeout; an hour (or twice the timeout) is safely dead.
    let age = (s.storage_idle_timeout * 2).max(std::time::Duration::from_secs(3600));
    match s.storage.sweep(age).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "temporary files of cut uploads removed"),
        Err(e) => tracing::warn!(error = %e, "could not sweep temporary upload files"),
    }
    abandoned
}
