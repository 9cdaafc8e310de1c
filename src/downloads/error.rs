//! Why a download URL was not served.

use crate::entitlement::access::AccessError;
use crate::errors::{Classified, ErrorKind};
use crate::signing::TokenError;
use crate::storage::StorageError;

/// Every way redeeming a download URL can fail. The HTTP surface maps each to
/// a problem in one place (`http::problem::from_download`).
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("the path is not /d/{{product}}/{{version}}/{{filename}}")]
    BadPath,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("no such file")]
    NotFound,
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error(transparent)]
    Storage(StorageError),
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Over a request-rate limit; retry after this long.
    #[error("rate limited")]
    RateLimited(std::time::Duration),
    /// The object's size or ETag differs from the artifact record: replaced
    /// behind the gateway's back. Serving it would contradict the advertised
    /// digest.
    #[error("the object in storage does not match its artifact record")]
    ArtifactChanged,
    /// An `edge` product's file asked of the origin by something that is not
    /// its CDN (no origin secret, or the wrong one).
    #[error("this file is served through its CDN; the origin answers the CDN only")]
    OriginAuthRequired,
}

impl From<StorageError> for DownloadError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => DownloadError::NotFound,
            other => DownloadError::Storage(other),
        }
    }
}

impl Classified for DownloadError {
    fn kind(&self) -> ErrorKind {
        match self {
            DownloadError::BadPath | DownloadError::RangeNotSatisfiable { .. } => ErrorKind::Invalid,
            DownloadError::Token(e) => e.kind(),
            DownloadError::NotFound => ErrorKind::NotFound,
            DownloadError::PreconditionFailed => ErrorKind::Conflict,
            DownloadError::Storage(e) => e.kind(),
            DownloadError::Access(e) => e.kind(),
            DownloadError::RateLimited(_) => ErrorKind::LimitReached,
            DownloadError::ArtifactChanged => ErrorKind::Upstream,
            DownloadError::OriginAuthRequired => ErrorKind::Denied,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            DownloadError::BadPath => "invalid_path",
            DownloadError::Token(e) => e.code(),
            DownloadError::NotFound => "not_found",
            DownloadError::PreconditionFailed => "precondition_failed",
            DownloadError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            DownloadError::Storage(e) => e.code(),
            DownloadError::Access(e) => e.code(),
            DownloadError::RateLimited(_) => "rate_limited",
            DownloadError::ArtifactChanged => "artifact_changed",
            DownloadError::OriginAuthRequired => "origin_auth_required",
        }
    }
}

impl DownloadError {
    /// A refusal on the grounds of the URL, the entitlement or the quota —
    /// what `download.denied` records, with its code and status. Malformed
    /// paths, missing files, conditional and range answers, request-rate
    /// limiting and failures are not.
    pub fn denial(&self) -> Option<(&'static str, u16)> {
        match self {
            DownloadError::Token(e) => Some((e.code(), e.kind().status())),
            DownloadError::Access(a) => a.denial(),
            DownloadError::OriginAuthRequired => Some(("origin_auth_required", 403)),
            _ => None,
        }
    }
}
