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
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Items;
use super::admin_api::{AdminError, AdminResult, body, deleted, optional_body, path, query, version, written};
use super::problem::{Problem, RawBody};
use crate::catalog::artifacts::check_sha256;
use crate::catalog::{Artifact, PendingUpload, Timestamp};
use crate::services::Services;
use crate::storage::{self, StorageError, UploadPlan, UploadedPart};
use crate::uploads::direct::{self, Completed, PlanRequest, Planned};
use crate::uploads::{self, PutRequest, Source};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ArtifactParams {
    /// `existing`: register an object already in storage (no body). Absent:
    /// the body is the file.
    #[param(pattern = "^existing$")]
    source: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    platform: Option<String>,
    /// Default: `{product}/{version}/{filename}`.
    storage_key: Option<String>,
    /// Default: guessed from the file name.
    #[param(pattern = r"^[ -~]*/[ -~]*$")]
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
#[utoipa::path(put, path = "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name"), ArtifactParams), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file (absent with `source=existing`)"), responses((status = 201, description = "stored and registered", body = Artifact), (status = 200, description = "replaced, or registered again (re-measured)", body = Artifact), (status = 400, description = "`upload_incomplete` (the body was cut), `invalid_digest`", body = Problem), (status = 409, description = "replacing a published release's file without `force=true`", body = Problem), (status = 413, description = "larger than the storage allows", body = Problem), (status = 422, description = "`checksum_mismatch`, no object at the storage key, or an invalid name", body = Problem)))]
pub(crate) async fn put_artifact(
    State(s): State<Arc<Services>>,
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
    let request = PutRequest {
        product,
        version,
        filename,
        platform: q.platform,
        content_type: q.content_type,
        force: q.force == Some(true),
        upload,
        storage_key: q.storage_key,
        length: content_length(&headers),
    };
    // Everything that can fail before a byte is read fails first.
    let checked = uploads::check(&s, request).await?;
    let source = if upload {
        Source::Body {
            expected_sha256: announced_sha256(&headers)?,
            stream: upload_stream(body, s.uploads.idle_timeout),
        }
    } else {
        if !axum::body::to_bytes(body, 0).await.is_ok_and(|b| b.is_empty()) {
            return Err(AdminError::BadRequest("registering an existing object takes no request body".into()));
        }
        Source::Existing
    };
    let (w, artifact) = uploads::put(&s, checked, source).await?;
    Ok(written(w, &artifact))
}

/// The declared `Content-Length`, if any.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
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
    State(s): State<Arc<Services>>,
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

/// `PUT …/artifacts/{filename}/signature`: the file's update signature, the
/// contents of its `.sig` as the body (Tauri's minisign signature, Sparkle's
/// EdDSA signature); the feeds hand it to update clients.
#[utoipa::path(put, path = "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}/signature", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name")), request_body(content = String, content_type = "text/plain", description = "the signature file's contents"), responses((status = 200, description = "the artifact with its signature", body = Artifact), (status = 404, description = "no such artifact", body = Problem), (status = 422, description = "`invalid_field`: empty, over 4096 bytes, or not printable ASCII", body = Problem)))]
pub(crate) async fn put_signature(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    RawBody(raw): RawBody,
) -> AdminResult {
    let (product, v, filename) = path(p)?;
    let version = version(&v)?;
    let text = std::str::from_utf8(&raw).map_err(|_| AdminError::BadRequest("the signature is not text".into()))?;
    let signature = Some(text.trim().to_owned());
    match s.catalog.set_artifact_signature(&product, &version, &filename, signature).await? {
        Some(a) => Ok(Json(a).into_response()),
        None => Err(AdminError::NotFound("artifact".into())),
    }
}

#[utoipa::path(delete, path = "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}/signature", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name")), responses((status = 200, description = "the artifact without a signature", body = Artifact), (status = 404, description = "no such artifact", body = Problem)))]
pub(crate) async fn delete_signature(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> AdminResult {
    let (product, v, filename) = path(p)?;
    match s.catalog.set_artifact_signature(&product, &version(&v)?, &filename, None).await? {
        Some(a) => Ok(Json(a).into_response()),
        None => Err(AdminError::NotFound("artifact".into())),
    }
}

/// A release's files by name, pending direct uploads included.
#[utoipa::path(get, path = "/admin/v1/products/{product}/releases/{version}/artifacts", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), responses((status = 200, body = Items<Artifact>)))]
pub(crate) async fn list_artifacts(
    State(s): State<Arc<Services>>,
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
#[utoipa::path(delete, path = "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name"), DeleteParams), responses((status = 204, description = "deleted"), (status = 409, description = "the release is published: needs force=true", body = Problem)))]
pub(crate) async fn delete_artifact(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    q: Result<Query<DeleteParams>, QueryRejection>,
) -> AdminResult {
    let (product, v, filename) = path(p)?;
    let q = query(q)?;
    let version = version(&v)?;
    deleted(uploads::delete(&s, &product, &version, &filename, q.force).await?, "artifact")
}

// Direct uploads.

/// What a vendor declares to upload a file straight to storage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirectUploadBody {
    #[schema(pattern = r"^[^./\\\u0000-\u001f\u007f-\u009f][^/\\\u0000-\u001f\u007f-\u009f]{0,254}$")]
    filename: String,
    /// Default `any`.
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    platform: Option<String>,
    /// Default: guessed from the file name.
    #[schema(pattern = r"^[ -~]*/[ -~]*$")]
    content_type: Option<String>,
    /// The file's exact size in bytes (S3 takes at most 5 TiB).
    #[schema(maximum = 5_497_558_138_880_u64)]
    size: u64,
    /// The file's SHA-256, hex; checked by the gateway at `complete`.
    #[schema(pattern = r"^[0-9a-f]{64}$")]
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
#[utoipa::path(post, path = "/admin/v1/products/{product}/releases/{version}/artifacts", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), request_body = DirectUploadBody, responses((status = 201, description = "planned", body = DirectUpload), (status = 409, description = "the release already has this file", body = Problem), (status = 422, description = "`invalid_field`: a bad name, digest or content type, or a `size` over what S3 takes (5 TiB)", body = Problem), (status = 501, description = "`direct_upload_unsupported`: the storage is a local directory", body = Problem)))]
pub(crate) async fn plan_upload(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
    RawBody(raw): RawBody,
) -> AdminResult {
    let (product, v) = path(p)?;
    let version = version(&v)?;
    let b: DirectUploadBody = body(&raw)?;
    let request = PlanRequest {
        product,
        version,
        filename: b.filename,
        platform: b.platform,
        content_type: b.content_type,
        size: b.size,
        sha256: b.sha256,
    };
    let Planned { pending, plan } = direct::plan(&s, request).await?;
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
    #[serde(default, deserialize_with = "crate::table::tables")]
    parts: Vec<UploadedPart>,
}

/// Finish a direct upload: assemble the parts, then read the object through
/// and check its size and SHA-256 against the declared ones. Only then is the
/// artifact recorded (and downloadable). A mismatch removes the object and
/// the plan. Repeating a `complete` that succeeded answers 200 with the
/// artifact.
#[utoipa::path(post, path = "/admin/v1/products/{product}/releases/{version}/artifacts/{filename}/complete", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name")), request_body(content = Option<CompleteBody>, description = "optional"), responses((status = 201, description = "verified and recorded", body = Artifact), (status = 200, description = "already completed", body = Artifact), (status = 409, description = "`upload_incomplete`: parts or the object are missing; upload them and complete again", body = Problem), (status = 410, description = "`upload_expired`: abandoned", body = Problem), (status = 422, description = "`checksum_mismatch` or `size_mismatch`: nothing was kept", body = Problem)))]
pub(crate) async fn complete_upload(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    RawBody(raw): RawBody,
) -> AdminResult {
    let (product, v, filename) = path(p)?;
    let version = version(&v)?;
    let b: CompleteBody = optional_body(&raw)?;
    match direct::complete(&s, &product, &version, &filename, &b.parts).await? {
        Completed::Recorded(artifact) => Ok((StatusCode::CREATED, Json(artifact)).into_response()),
        Completed::Already(artifact) => Ok(Json(artifact).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use base64::Engine as _;
    use proptest::prelude::*;

    use super::*;

    fn headers(name: &'static str, value: &str) -> Option<HeaderMap> {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).ok()?);
        Some(h)
    }

    #[test]
    fn digests_are_read_from_either_header() {
        let raw = [7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        for name in ["repr-digest", "content-digest"] {
            let h = headers(name, &format!("md5=:x:, sha-256=:{b64}:")).unwrap();
            assert_eq!(announced_sha256(&h).unwrap(), Some(hex::encode(raw)));
        }
        let h = headers("x-checksum-sha256", &hex::encode(raw).to_uppercase()).unwrap();
        assert_eq!(announced_sha256(&h).unwrap(), Some(hex::encode(raw)));
        assert!(announced_sha256(&headers("repr-digest", "sha-256=:AAAA:").unwrap()).is_err());
        assert_eq!(announced_sha256(&HeaderMap::new()).unwrap(), None);
    }

    proptest! {
        /// Any digest header is read as a 64-digit hex digest or refused as
        /// `invalid_digest`; never a panic.
        #[test]
        fn any_digest_header_is_a_digest_or_refused(value in "[ -~]{0,120}", which in 0usize..3) {
            let name = ["repr-digest", "content-digest", "x-checksum-sha256"][which];
            if let Some(h) = headers(name, &value) {
                match announced_sha256(&h) {
                    Ok(Some(hex)) => prop_assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())),
                    Ok(None) | Err(AdminError::InvalidDigest(_)) => {}
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
            }
        }
    }
}
