//! Getting a release's files in: a streaming upload through the gateway, a
//! registration of an object already in storage, or a direct upload to S3
//! with presigned requests ([`direct`]). Whichever way, the gateway measures
//! size and SHA-256 itself before the file becomes downloadable, and an
//! upload that fails or mismatches leaves nothing visible.
//!
//! The rules live here; `http::admin_artifacts` parses requests and renders
//! what these functions return.

pub mod direct;

use semver::Version;

use crate::catalog::artifacts::{artifact_key, check_filename};
use crate::catalog::store::Written;
use crate::catalog::{Artifact, ArtifactStatus, CatalogError, PLATFORM_ANY, Release, ReleaseStatus};
use crate::errors::{Classified, ErrorKind};
use crate::events::{Detail, Subject};
use crate::services::Services;
use crate::storage::{self, ByteStream, ObjectKey, StorageError};

/// Why an upload (or an artifact's removal) was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The storage backend cannot hand out presigned upload requests.
    #[error("direct uploads need S3 storage")]
    DirectUploadUnsupported,
    /// A direct upload's presigned requests have expired.
    #[error("the direct upload of {0} expired")]
    Expired(String),
    /// A direct upload cannot be completed (yet): parts or the object are missing.
    #[error("{0}")]
    Incomplete(String),
    /// What storage holds is not the size the upload declared.
    #[error("the upload is {actual} bytes, not the declared {declared}")]
    SizeMismatch { declared: u64, actual: u64 },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl Classified for UploadError {
    fn kind(&self) -> ErrorKind {
        match self {
            UploadError::BadRequest(_) => ErrorKind::Invalid,
            UploadError::NotFound(_) | UploadError::Expired(_) => ErrorKind::NotFound,
            UploadError::DirectUploadUnsupported | UploadError::SizeMismatch { .. } => ErrorKind::Invalid,
            UploadError::Incomplete(_) => ErrorKind::Conflict,
            UploadError::Storage(e) => e.kind(),
            UploadError::Catalog(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            UploadError::BadRequest(_) => "invalid_request",
            UploadError::NotFound(_) => "not_found",
            UploadError::Expired(_) => "upload_expired",
            UploadError::DirectUploadUnsupported => "direct_upload_unsupported",
            UploadError::SizeMismatch { .. } => "size_mismatch",
            UploadError::Incomplete(_) => "upload_incomplete",
            UploadError::Storage(e) => e.code(),
            UploadError::Catalog(e) => e.code(),
        }
    }
}

impl From<crate::catalog::store::StoreError> for UploadError {
    fn from(e: crate::catalog::store::StoreError) -> Self {
        UploadError::Catalog(e.into())
    }
}

/// Where a file's bytes come from.
pub enum Source {
    /// Streamed through the gateway; `expected_sha256` is what the uploader
    /// announced (hex), checked before anything is visible.
    Body { stream: ByteStream, expected_sha256: Option<String> },
    /// The object already in storage at the checked request's key.
    Existing,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Body { expected_sha256, .. } => {
                f.debug_struct("Body").field("expected_sha256", expected_sha256).finish_non_exhaustive()
            }
            Source::Existing => f.write_str("Existing"),
        }
    }
}

/// A file to record as an artifact of `product@version`.
#[derive(Debug, Clone)]
pub struct PutRequest {
    pub product: String,
    pub version: Version,
    pub filename: String,
    /// Default `any`.
    pub platform: Option<String>,
    /// Default: guessed from the file name.
    pub content_type: Option<String>,
    /// Replace a file of a published or yanked release.
    pub force: bool,
    /// The bytes come with the request (an upload), rather than being in
    /// storage already (a registration).
    pub upload: bool,
    /// Registrations only: where the object is (default: the release's own
    /// place, `{product}/{version}/{filename}`).
    pub storage_key: Option<String>,
    /// An upload's announced length, if any.
    pub length: Option<u64>,
}

/// A request that passed every check that can be made before a byte is read.
#[derive(Debug)]
pub struct Checked {
    request: PutRequest,
    facts: FileFacts,
    key: ObjectKey,
}

/// Check a request before the (possibly long) transfer: the names, a body
/// announced larger than storage takes, a missing release, a direct upload
/// of the same file under way, or a published file replaced without saying
/// so.
pub async fn check(svc: &Services, request: PutRequest) -> Result<Checked, UploadError> {
    check_filename(&request.filename)?;
    // SECURITY: an upload goes to the release's own place, never to a key
    // another release's (published) file may use.
    if request.upload && request.storage_key.is_some() {
        return Err(UploadError::BadRequest(
            "storage_key is only for source=existing; uploads go to {product}/{version}/{filename}".into(),
        ));
    }
    let facts = file_facts(&request.filename, request.platform.clone(), request.content_type.clone())?;
    if let (Some(max), Some(len)) = (svc.storage.max_upload_size(), request.length)
        && request.upload
        && len > max
    {
        return Err(StorageError::TooLarge(max).into());
    }
    let PutRequest { product, version, filename, .. } = &request;
    let release = svc.catalog.release(product, version).await?.ok_or(UploadError::NotFound("release"))?;
    if svc.catalog.upload(product, version, filename).await?.is_some() {
        return Err(CatalogError::Conflict(format!(
            "a direct upload of {filename} is pending; complete it or delete it first"
        ))
        .into());
    }
    if request.upload
        && !may_change(&release, request.force)
        && svc.catalog.artifact(product, version, filename).await?.is_some()
    {
        return Err(CatalogError::Conflict(format!(
            "{filename} is already a file of the {:?} release {version}; replacing it changes what customers \
             download: add force=true",
            release.status
        ))
        .into());
    }
    let storage_key = request.storage_key.clone().unwrap_or_else(|| artifact_key(product, version, filename));
    let key = ObjectKey::parse(&storage_key)
        .map_err(|e| CatalogError::Invalid { field: "storage_key", reason: e.to_string() })?;
    Ok(Checked { request, facts, key })
}

/// Take a checked file in (streamed or registered), measure it, and record it.
pub async fn put(svc: &Services, checked: Checked, source: Source) -> Result<(Written, Artifact), UploadError> {
    let Checked { request, facts, key } = checked;
    let PutRequest { product, version, filename, upload, .. } = request;
    let storage::Stored { meta, sha256, sha512 } = match source {
        Source::Body { stream, expected_sha256 } if upload => {
            svc.storage.put(&key, stream, expected_sha256.as_deref(), &facts.content_type).await?
        }
        Source::Existing if !upload => storage::measure(svc.storage.as_ref(), &key, svc.uploads.idle_timeout).await?,
        _ => return Err(UploadError::BadRequest("the source does not match the checked request".into())),
    };
    let artifact = Artifact {
        product,
        version,
        filename,
        platform: facts.platform,
        size: meta.size,
        sha256,
        sha512: Some(sha512),
        content_type: Some(facts.content_type),
        storage_key: key.as_str().to_owned(),
        etag: Some(meta.etag),
        status: ArtifactStatus::Ready,
        signature: None,
    };
    match svc.catalog.put_artifact(&artifact).await {
        Ok(w) => {
            if w != Written::Unchanged {
                artifact_uploaded(svc, &artifact).await;
            }
            Ok((w, artifact))
        }
        Err(e @ CatalogError::Missing { .. }) => {
            // The release was deleted while the bytes were arriving: nothing
            // refers to the new object, so it goes too.
            if upload && let Err(d) = svc.storage.delete(&key).await {
                tracing::warn!(key = %key, error = %d, "could not remove the upload of a deleted release");
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Remove a file of a release: abandon its pending direct upload (its parts
/// aborted, anything it wrote removed), or remove its artifact record (the
/// object stays: it may have been registered, not uploaded). Returns whether
/// there was anything.
pub async fn delete(
    svc: &Services,
    product: &str,
    version: &Version,
    filename: &str,
    force: bool,
) -> Result<bool, UploadError> {
    if let Some(u) = svc.catalog.upload(product, version, filename).await? {
        direct::abandon(svc, &u).await?;
        return Ok(true);
    }
    if let Some(release) = svc.catalog.release(product, version).await?
        && !may_change(&release, force)
    {
        return Err(CatalogError::Conflict(format!(
            "release {product}/{version} is {}; deleting its artifact needs ?force=true",
            if release.status == ReleaseStatus::Published { "published" } else { "yanked" }
        ))
        .into());
    }
    Ok(svc.catalog.delete_artifact(product, version, filename).await?)
}

/// Customers may rely on the files of a published (or yanked) release:
/// changing one (replacing or deleting it) needs `force`. The one rule for
/// both.
pub fn may_change(release: &Release, force: bool) -> bool {
    release.status == ReleaseStatus::Draft || force
}

/// A file's platform and media type, as it will be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub platform: String,
    pub content_type: String,
}

/// A file's platform (default `any`) and media type (default: guessed from
/// its name, which the caller has checked), as given and checked.
pub fn file_facts(
    filename: &str,
    platform: Option<String>,
    content_type: Option<String>,
) -> Result<FileFacts, UploadError> {
    let platform = platform.unwrap_or_else(|| PLATFORM_ANY.to_owned());
    crate::catalog::repo::check_id("platform", &platform)?;
    Ok(FileFacts { content_type: content_type_for(filename, content_type)?, platform })
}

/// The media type given, checked, or guessed from the file name.
fn content_type_for(filename: &str, given: Option<String>) -> Result<String, UploadError> {
    match given {
        // Printable ASCII only (a header value would also take a tab): what
        // the OpenAPI document states, `^[ -~]*/[ -~]*$`.
        Some(ct) if ct.contains('/') && ct.bytes().all(|b| (b' '..=b'~').contains(&b)) => Ok(ct),
        Some(ct) => Err(CatalogError::Invalid {
            field: "content_type",
            reason: format!("{ct:?} is not a media type like application/gzip"),
        }
        .into()),
        None => Ok(mime_guess::from_path(filename).first_or_octet_stream().essence_str().to_owned()),
    }
}

async fn artifact_uploaded(svc: &Services, a: &Artifact) {
    let subject = Subject {
        product: Some(a.product.clone()),
        version: Some(a.version.to_string()),
        filename: Some(a.filename.clone()),
        platform: Some(a.platform.clone()),
        ..Subject::default()
    };
    svc.record(subject, Detail::ArtifactUploaded { size: a.size, sha256: a.sha256.clone() }).await;
}

#[cfg(test)]
mod tests {
    use super::content_type_for;

    #[test]
    fn a_given_content_type_is_printable_ascii_with_a_slash() {
        assert_eq!(content_type_for("a.bin", Some("application/x-foo; v=1".into())).unwrap(), "application/x-foo; v=1");
        assert_eq!(content_type_for("a.tar.gz", None).unwrap(), "application/gzip");
        for bad in ["nope", "a/\tb", "a/b\u{7f}", "a/é", "a/b\n"] {
            assert!(content_type_for("a.bin", Some(bad.into())).is_err(), "{bad:?}");
        }
    }
}
