//! RFC 9457 problem details: the body of every refusal on every surface.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::catalog::CatalogError;
use crate::catalog::store::StoreError;
use crate::downloads::DownloadError;
use crate::entitlement::access::AccessError;
use crate::errors::{Classified, ErrorKind};
use crate::quota::{Exceeded, QuotaScope};
use crate::storage::StorageError;
use crate::uploads::UploadError;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// A problem body. `code` is the stable machine code clients switch on; `type`
/// is derived from it. `detail` is for people and never carries internal error
/// text (that goes to the log). Extension members (RFC 9457 §3.2) sit beside
/// them: a `quota_exceeded` problem carries `quota`, the limit that refused
/// (a `LimitView`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extension members, by name.
    #[serde(flatten)]
    #[schema(schema_with = extension_members)]
    pub extensions: std::collections::BTreeMap<&'static str, serde_json::Value>,
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The extension members a problem may carry, for the API description:
/// `quota` (`quota_exceeded` only) is the limit that refused the download.
fn extension_members() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new().property("quota", utoipa::openapi::Ref::from_schema_name("LimitView")).build()
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self {
            type_uri: format!("urn:tollgate:problem:{code}"),
            title,
            status: status.as_u16(),
            code,
            detail: None,
            extensions: Default::default(),
            headers: Vec::new(),
        }
    }

    /// The problem for a domain error: its code, the status its kind maps to
    /// ([`status_for`]) and that status's title. The caller adds the detail.
    pub fn of(e: &dyn Classified) -> Self {
        let status = status_for(e.kind(), e.code());
        Self::new(status, e.code(), title_of(status))
    }

    /// An extension member; a value that does not serialise is left out.
    pub fn with_extension(mut self, name: &'static str, value: impl Serialize) -> Self {
        if let Ok(v) = serde_json::to_value(value) {
            self.extensions.insert(name, v);
        }
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// An extra response header (`Content-Range`, `Retry-After`, `Allow`, ...).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The response, logged: a server-side failure (5xx) at warn with the
    /// internal error (which never reaches the body), a refusal at info.
    pub fn logged(self, surface: &'static str, error: &dyn std::fmt::Display) -> Response {
        if self.status >= 500 {
            tracing::warn!(code = self.code, surface, error = %error, "request failed");
        } else {
            tracing::info!(code = self.code, surface, reason = %error, "request refused");
        }
        self.into_response()
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status(), body).into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            h.insert(name, value);
        }
        response.extensions_mut().insert(ProblemCode(self.code));
        response
    }
}

/// The `code` of a problem response, for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ProblemCode(pub &'static str);

/// The status a domain error is answered with: its kind's
/// ([`ErrorKind::status`]), except for the few protocol answers HTTP has a
/// more precise status for.
pub fn status_for(kind: ErrorKind, code: &str) -> StatusCode {
    let status = match code {
        "precondition_failed" => 412,
        "payload_too_large" => 413,
        "range_not_satisfiable" => 416,
        "upload_expired" => 410,
        "invalid_field" | "checksum_mismatch" | "size_mismatch" => 422,
        "direct_upload_unsupported" => 501,
        "storage_full" => 507,
        _ => kind.status(),
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// RFC 9110's name of a status, for a problem's `title`.
fn title_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Internal Server Error",
    }
}

/// `Retry-After: 5` on answers that a retry shortly may turn around.
fn retry_soon(p: Problem) -> Problem {
    p.with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
}

/// The problem for a catalog failure; shared by the admin and customer APIs.
pub fn from_catalog(e: &CatalogError) -> Problem {
    let p = Problem::of(e);
    match e {
        CatalogError::Invalid { field, reason } => p.with_detail(format!("{field}: {reason}")),
        CatalogError::Missing { kind, id } => p.with_detail(format!("No {kind} {id:?}.")),
        CatalogError::Conflict(d) => p.with_detail(d.clone()),
        CatalogError::PreconditionFailed => p.with_detail(
            "The record changed since the revision named in If-Match (or exists, with If-None-Match: *); read it \
             again and decide on what it holds now.",
        ),
        CatalogError::Store(StoreError::Unavailable(_)) => {
            retry_soon(p.with_detail("The state store is not reachable; try again shortly."))
        }
        CatalogError::Store(_) => p,
    }
}

/// The problem for a blob-storage failure. Unreachable or overloaded storage is
/// worth a retry (503); a storage answer we cannot use is a bad gateway (502).
pub fn from_storage(e: &StorageError) -> Problem {
    let p = Problem::of(e);
    match e {
        StorageError::NotFound => p.with_detail("There is no such file in storage."),
        StorageError::ChecksumMismatch { expected, actual } => p.with_detail(format!(
            "The upload's SHA-256 is {actual}, not the announced {expected}; nothing was stored."
        )),
        StorageError::Body(_) => p.with_detail("The upload's body did not arrive whole; nothing was stored."),
        StorageError::TooLarge(max) => {
            p.with_detail(format!("Uploads are limited to {max} bytes here; nothing was stored."))
        }
        _ if e.code() == "storage_full" => p.with_detail("The storage has no room for this file; nothing was stored."),
        _ => {
            let p = p.with_detail("The file cannot be read from storage right now; try again shortly.");
            if e.kind() == ErrorKind::Unavailable { retry_soon(p) } else { p }
        }
    }
}

/// The problem for a refused customer request or grant; shared by the customer
/// API and the data plane.
pub fn from_access(e: &AccessError) -> Problem {
    let p = Problem::of(e);
    match e {
        AccessError::Denied(d) => p.with_detail(format!("{d}.")),
        AccessError::AddressNotAllowed(_) => {
            p.with_detail("Downloads are not allowed from this network address for this customer.")
        }
        AccessError::UnknownGrant => p.with_detail("This URL's grant is unknown; ask for a new download URL."),
        AccessError::NotFound(what) => p.with_detail(format!("No such {what}.")),
        AccessError::Ambiguous(d) => p.with_detail(d.clone()),
        AccessError::Sign(_) | AccessError::EdgeSign(_) => p,
        AccessError::Catalog(c) => from_catalog(c),
        AccessError::Quota(q) => quota_exceeded(q),
        AccessError::GrantExhausted { times } => p.with_detail(format!(
            "This URL has delivered its file {times} times over (downloads.deliveries_per_grant); ask for a new \
             download URL."
        )),
        AccessError::GrantBoundElsewhere => p.with_detail(
            "This URL's download was started from another network, and stays bound to it; ask for a new download \
             URL from here.",
        ),
    }
}

/// The problem for a refused or failed download URL (the data plane).
pub fn from_download(e: &DownloadError) -> Problem {
    let p = Problem::of(e);
    match e {
        DownloadError::BadPath => p.with_detail("Download paths look like /d/{product}/{version}/{filename}."),
        DownloadError::Token(t) => p.with_detail(t.to_string()),
        DownloadError::NotFound => p.with_detail("There is no such file."),
        DownloadError::PreconditionFailed => p,
        DownloadError::RangeNotSatisfiable { size } => {
            let p = p.with_detail(format!("The file is {size} bytes long."));
            match HeaderValue::from_str(&format!("bytes */{size}")) {
                Ok(v) => p.with_header(header::CONTENT_RANGE, v),
                Err(_) => p,
            }
        }
        DownloadError::Storage(s) => from_storage(s),
        DownloadError::Access(a) => from_access(a),
        DownloadError::RateLimited(wait) => rate_limited(*wait),
        DownloadError::ArtifactChanged => p.with_detail("The file in storage does not match the registered artifact."),
        DownloadError::OriginAuthRequired => p.with_detail(e.to_string()),
    }
}

/// The problem for a refused or failed upload.
pub fn from_upload(e: &UploadError) -> Problem {
    let p = Problem::of(e);
    match e {
        UploadError::BadRequest(d) => p.with_detail(d.clone()),
        UploadError::NotFound(what) => p.with_detail(format!("No such {what}.")),
        UploadError::DirectUploadUnsupported => p.with_detail(
            "This gateway stores files in a local directory, which takes no presigned uploads; PUT the file to \
             .../artifacts/{filename} instead.",
        ),
        UploadError::Expired(f) => p.with_detail(format!(
            "The upload URLs for {f} have expired; the upload was abandoned. Ask for a new plan."
        )),
        UploadError::Incomplete(d) => p.with_detail(d.clone()),
        UploadError::SizeMismatch { declared, actual } => {
            p.with_detail(format!("Storage holds {actual} bytes, not the declared {declared}; nothing was kept."))
        }
        // Registering an object that is not there is the request's fault.
        UploadError::Storage(StorageError::NotFound) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "object_not_found", "Unprocessable Content")
                .with_detail("There is no object at this storage key; put the file into storage first.")
        }
        UploadError::Storage(s) => from_storage(s),
        UploadError::Catalog(c) => from_catalog(c),
    }
}

/// A request body read whole (JSON documents; never downloads or uploads),
/// whose failures — too large, cut off — are problems like every refusal,
/// not axum's plain-text rejections.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(|e| {
            let (code, title) = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ("payload_too_large", "Content Too Large")
            } else {
                ("invalid_request", "Bad Request")
            };
            Problem::new(e.status(), code, title).with_detail(e.body_text())
        })
    }
}

/// `429 quota_exceeded`, naming the limit, with `Retry-After` when waiting
/// helps.
pub fn quota_exceeded(e: &Exceeded) -> Problem {
    let mut p =
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", "Too Many Requests").with_detail(format!(
            "Over the {} download quota: {} of {} used{}.",
            e.limit.kind,
            e.used,
            e.limit.limit,
            match &e.limit.scope {
                QuotaScope::Customer => String::new(),
                QuotaScope::Entitlement(id) => format!(" under entitlement {id}"),
            }
        ));
    p = p.with_extension("quota", super::quota_view::of_exceeded(e));
    if let Some(secs) = e.retry_after {
        p = p.with_header(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    p
}

/// `429 rate_limited` with `Retry-After`.
pub fn rate_limited(wait: std::time::Duration) -> Problem {
    let secs = crate::ratelimit::retry_after_secs(wait);
    Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too Many Requests")
        .with_detail(format!("Too many requests; try again in {secs} s."))
        .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
}

/// Fallback for paths no route matches.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "Not Found").with_detail("There is nothing at this path.")
}

/// Fallback for a known path with a method it does not take.
pub async fn method_not_allowed() -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method Not Allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_rfc9457_json_with_headers() {
        let p = Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", "Range Not Satisfiable")
            .with_detail("d")
            .with_header(header::CONTENT_RANGE, HeaderValue::from_static("bytes */10"));
        let r = p.into_response();
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "range_not_satisfiable");
        assert_eq!(v["status"], 416);
        assert_eq!(v["type"], "urn:tollgate:problem:range_not_satisfiable");
        assert_eq!(v["detail"], "d");
    }

    #[test]
    fn every_download_error_has_a_problem_with_a_code() {
        use crate::signing::TokenError;
        use crate::storage::StorageError;
        let errors = [
            DownloadError::BadPath,
            DownloadError::Token(TokenError::InvalidSignature),
            DownloadError::NotFound,
            DownloadError::PreconditionFailed,
            DownloadError::RangeNotSatisfiable { size: 3 },
            DownloadError::Storage(StorageError::Unavailable("secret detail".into())),
            DownloadError::Storage(StorageError::Upstream("secret detail".into())),
        ];
        let expected = [
            (400, "invalid_path"),
            (403, "invalid_signature"),
            (404, "not_found"),
            (412, "precondition_failed"),
            (416, "range_not_satisfiable"),
            (503, "upstream_unavailable"),
            (502, "upstream_unavailable"),
        ];
        for (e, (status, code)) in errors.iter().zip(expected) {
            let p = from_download(e);
            assert_eq!((p.status, p.code), (status, code), "{e:?}");
            assert!(!p.detail.unwrap_or_default().contains("secret detail"));
        }
    }

    /// `download.denied` records the code and status the client got.
    #[test]
    fn denials_record_the_problem_they_answer_with() {
        use crate::entitlement::Denial;
        use crate::quota::{Applied, LimitKind};
        use crate::signing::TokenError;
        let exceeded = Exceeded {
            limit: Applied { kind: LimitKind::DownloadsPerDay, limit: 1, scope: QuotaScope::Customer },
            used: 1,
            retry_after: None,
            resets_at: None,
        };
        let denials = [
            DownloadError::Token(TokenError::InvalidSignature),
            DownloadError::Token(TokenError::Expired { expired_at: 1, now: 2 }),
            DownloadError::Access(AccessError::Denied(Denial::NotEntitled)),
            DownloadError::Access(AccessError::Denied(Denial::ReleaseYanked)),
            DownloadError::Access(AccessError::AddressNotAllowed([192, 0, 2, 1].into())),
            DownloadError::Access(AccessError::UnknownGrant),
            DownloadError::Access(AccessError::Quota(exceeded)),
        ];
        for e in &denials {
            let p = from_download(e);
            assert_eq!(e.denial(), Some((p.code, p.status)), "{e:?}");
        }
        for e in [DownloadError::NotFound, DownloadError::BadPath, DownloadError::ArtifactChanged] {
            assert_eq!(e.denial(), None, "{e:?}");
        }
    }

    /// Every domain error keeps the status and code it was answered with
    /// before the kinds existed; the kind mapping is the only way to them.
    #[test]
    fn domain_errors_map_to_their_statuses() {
        use crate::catalog::store::StoreError;
        let cases: Vec<(Problem, u16, &str)> = vec![
            (from_catalog(&CatalogError::Invalid { field: "f", reason: "r".into() }), 422, "invalid_field"),
            (from_catalog(&CatalogError::Missing { kind: "release", id: "x".into() }), 404, "not_found"),
            (from_catalog(&CatalogError::Conflict("c".into())), 409, "conflict"),
            (from_catalog(&CatalogError::Store(StoreError::Unavailable("secret".into()))), 503, "store_unavailable"),
            (from_catalog(&CatalogError::Store(StoreError::Internal("secret".into()))), 500, "internal"),
            (from_storage(&StorageError::NotFound), 404, "not_found"),
            (from_storage(&StorageError::TooLarge(5)), 413, "payload_too_large"),
            (from_storage(&StorageError::Body("secret".into())), 400, "upload_incomplete"),
            (
                from_storage(&StorageError::ChecksumMismatch { expected: "a".into(), actual: "b".into() }),
                422,
                "checksum_mismatch",
            ),
            (from_storage(&StorageError::Io(std::io::ErrorKind::StorageFull.into())), 507, "storage_full"),
            (from_storage(&StorageError::Io(std::io::ErrorKind::Other.into())), 502, "upstream_unavailable"),
            (from_storage(&StorageError::Timeout("secret")), 503, "upstream_unavailable"),
            (from_upload(&UploadError::Expired("f".into())), 410, "upload_expired"),
            (from_upload(&UploadError::Incomplete("d".into())), 409, "upload_incomplete"),
            (from_upload(&UploadError::SizeMismatch { declared: 1, actual: 2 }), 422, "size_mismatch"),
            (from_upload(&UploadError::DirectUploadUnsupported), 501, "direct_upload_unsupported"),
            (from_upload(&UploadError::Storage(StorageError::NotFound)), 422, "object_not_found"),
            (from_upload(&UploadError::NotFound("release")), 404, "not_found"),
            (from_access(&AccessError::Ambiguous("d".into())), 409, "ambiguous_artifact"),
            (from_access(&AccessError::NotFound("artifact")), 404, "not_found"),
            (from_download(&DownloadError::ArtifactChanged), 502, "artifact_changed"),
            (from_download(&DownloadError::RateLimited(std::time::Duration::from_secs(2))), 429, "rate_limited"),
        ];
        for (p, status, code) in cases {
            assert_eq!((p.status, p.code), (status, code), "{p:?}");
            assert_eq!(p.title, title_of(p.status()), "{p:?}");
            assert!(!p.detail.unwrap_or_default().contains("secret"), "{code}");
        }
        let retry = from_storage(&StorageError::Unavailable("x".into())).into_response();
        assert_eq!(retry.headers()[header::RETRY_AFTER], "5");
        assert!(
            !from_storage(&StorageError::Upstream("x".into()))
                .into_response()
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
    }

    #[tokio::test]
    async fn extension_members_sit_beside_the_standard_ones() {
        let r = Problem::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", "Too Many Requests")
            .with_extension("quota", serde_json::json!({ "limit": 3 }))
            .into_response();
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["quota"]["limit"], 3);
        assert_eq!(v["code"], "quota_exceeded");
    }
}
