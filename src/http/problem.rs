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
use crate::quota::{Exceeded, LimitView, Scope};
use crate::storage::StorageError;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// A problem body. `code` is the stable machine code clients switch on; `type`
/// is derived from it. `detail` is for people and never carries internal error
/// text (that goes to the log).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `quota_exceeded` only: the limit that refused the download.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<LimitView>,
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self {
            type_uri: format!("urn:tollgate:problem:{code}"),
            title,
            status: status.as_u16(),
            code,
            detail: None,
            quota: None,
            headers: Vec::new(),
        }
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

/// The problem for a catalog failure; shared by the admin and customer APIs.
pub fn from_catalog(e: &CatalogError) -> Problem {
    match e {
        CatalogError::Invalid { field, reason } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "Unprocessable Content")
                .with_detail(format!("{field}: {reason}"))
        }
        CatalogError::Missing { kind, id } => {
            Problem::new(StatusCode::NOT_FOUND, "not_found", "Not Found").with_detail(format!("No {kind} {id:?}."))
        }
        CatalogError::Conflict(d) => Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").with_detail(d.clone()),
        CatalogError::Store(StoreError::Unavailable(_)) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "Service Unavailable")
                .with_detail("The state store is not reachable; try again shortly.")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
        }
        CatalogError::Store(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal Server Error"),
    }
}

/// The problem for a blob-storage failure. Unreachable or overloaded storage is
/// worth a retry (503); a storage answer we cannot use is a bad gateway (502).
pub fn from_storage(e: &StorageError) -> Problem {
    match e {
        StorageError::NotFound => Problem::new(StatusCode::NOT_FOUND, "not_found", "Not Found")
            .with_detail("There is no such file in storage."),
        StorageError::ChecksumMismatch { expected, actual } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "checksum_mismatch", "Unprocessable Content").with_detail(
                format!("The upload's SHA-256 is {actual}, not the announced {expected}; nothing was stored."),
            )
        }
        StorageError::Body(_) => Problem::new(StatusCode::BAD_REQUEST, "upload_incomplete", "Bad Request")
            .with_detail("The upload's body did not arrive whole; nothing was stored."),
        StorageError::TooLarge(max) => {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Content Too Large")
                .with_detail(format!("Uploads are limited to {max} bytes here; nothing was stored."))
        }
        StorageError::Io(io)
            if matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) =>
        {
            Problem::new(StatusCode::INSUFFICIENT_STORAGE, "storage_full", "Insufficient Storage")
                .with_detail("The storage has no room for this file; nothing was stored.")
        }
        StorageError::Unavailable(_) | StorageError::Timeout(_) | StorageError::Changed => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable", "Service Unavailable")
                .with_detail("The file cannot be read from storage right now; try again shortly.")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
        }
        _ => Problem::new(StatusCode::BAD_GATEWAY, "upstream_unavailable", "Bad Gateway")
            .with_detail("The file cannot be read from storage right now; try again shortly."),
    }
}

/// The problem for a refused customer request or grant; shared by the customer
/// API and the data plane.
pub fn from_access(e: &AccessError) -> Problem {
    match e {
        AccessError::Denied(d) => {
            Problem::new(StatusCode::FORBIDDEN, d.code(), "Forbidden").with_detail(format!("{d}."))
        }
        AccessError::AddressNotAllowed(_) => Problem::new(StatusCode::FORBIDDEN, "address_not_allowed", "Forbidden")
            .with_detail("Downloads are not allowed from this network address for this customer."),
        AccessError::UnknownGrant => Problem::new(StatusCode::FORBIDDEN, "unknown_grant", "Forbidden")
            .with_detail("This URL's grant is unknown; ask for a new download URL."),
        AccessError::NotFound(what) => {
            Problem::new(StatusCode::NOT_FOUND, "not_found", "Not Found").with_detail(format!("No such {what}."))
        }
        AccessError::Ambiguous(d) => {
            Problem::new(StatusCode::CONFLICT, "ambiguous_artifact", "Conflict").with_detail(d.clone())
        }
        AccessError::BadRequest(d) => {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_request", "Bad Request").with_detail(d.clone())
        }
        AccessError::InvalidVersion(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_version", "Bad Request").with_detail(e.to_string())
        }
        AccessError::InvalidConstraint(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_constraint", "Bad Request").with_detail(e.to_string())
        }
        AccessError::Sign(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal Server Error"),
        AccessError::Catalog(c) => from_catalog(c),
        AccessError::Quota(q) => quota_exceeded(q),
    }
}

/// The problem for a refused or failed download URL (the data plane).
pub fn from_download(e: &DownloadError) -> Problem {
    match e {
        DownloadError::BadPath => Problem::new(StatusCode::BAD_REQUEST, "invalid_path", "Bad Request")
            .with_detail("Download paths look like /d/{product}/{version}/{filename}."),
        DownloadError::Token(e) => {
            Problem::new(StatusCode::FORBIDDEN, e.code(), "Forbidden").with_detail(e.to_string())
        }
        DownloadError::NotFound => {
            Problem::new(StatusCode::NOT_FOUND, "not_found", "Not Found").with_detail("There is no such file.")
        }
        DownloadError::PreconditionFailed => {
            Problem::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", "Precondition Failed")
        }
        DownloadError::RangeNotSatisfiable { size } => {
            let mut p =
                Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", "Range Not Satisfiable")
                    .with_detail(format!("The file is {size} bytes long."));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                p = p.with_header(header::CONTENT_RANGE, v);
            }
            p
        }
        DownloadError::Storage(e) => from_storage(e),
        DownloadError::Access(e) => from_access(e),
        DownloadError::RateLimited(wait) => rate_limited(*wait),
        DownloadError::ArtifactChanged => Problem::new(StatusCode::BAD_GATEWAY, "artifact_changed", "Bad Gateway")
            .with_detail("The file in storage does not match the registered artifact."),
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
                Scope::Customer => String::new(),
                Scope::Entitlement(id) => format!(" under entitlement {id}"),
            }
        ));
    p.quota = Some(e.view());
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
            limit: Applied { kind: LimitKind::DownloadsPerDay, limit: 1, scope: Scope::Customer },
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
}
