//! Blob storage behind one trait: a local directory ([`local`]) or an
//! S3-compatible bucket ([`s3`]). Objects are streamed in bounded chunks; nothing
//! is ever read whole into memory.

pub mod local;
pub mod naming;
pub mod s3;
mod stream;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;

pub use stream::{StreamEnd, get_ranges, guarded};

use crate::config::{Config, StorageBackend};
use crate::errors::{Classified, ErrorKind};

/// A stream of object bytes. An `Err` item means the object could not be read to
/// the end: the consumer must treat the transfer as failed.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;

/// Read size for local files and the chunk size streamed to clients.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// A validated object key: `/`-separated segments, none empty, none starting with
/// `.`, none holding `\`, NUL or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key: {0}")]
pub struct KeyError(&'static str);

/// Longest key accepted; S3's own limit is 1024 bytes, and a prefix may be added.
pub const MAX_KEY_LEN: usize = 900;

impl ObjectKey {
    /// Build a key from decoded segments.
    pub fn from_segments<S: AsRef<str>>(segments: &[S]) -> Result<Self, KeyError> {
        if segments.is_empty() {
            return Err(KeyError("no segments"));
        }
        let mut key = String::new();
        for (i, s) in segments.iter().enumerate() {
            let s = s.as_ref();
            check_segment(s)?;
            if i > 0 {
                key.push('/');
            }
            key.push_str(s);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError("too long"));
        }
        Ok(Self(key))
    }

    /// Parse a `/`-separated key.
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        Self::from_segments(&key.split('/').collect::<Vec<_>>())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment: the file name.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// SECURITY: keys become file-system paths and S3 keys. Refusing `.`-leading
// segments rules out `.` and `..` (path traversal) and keeps temporary and hidden
// files unreachable; refusing `\` and control characters rules out Windows-style
// separators, NUL truncation and log/header injection.
fn check_segment(s: &str) -> Result<(), KeyError> {
    if s.is_empty() {
        return Err(KeyError("empty segment"));
    }
    if s.starts_with('.') {
        return Err(KeyError("segment starts with '.'"));
    }
    if s.len() > 255 {
        return Err(KeyError("segment longer than 255 bytes"));
    }
    if s.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return Err(KeyError("segment holds '/', '\\' or a control character"));
    }
    Ok(())
}

/// What a backend knows about an object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub last_modified: SystemTime,
    /// A strong entity tag, quoted as sent in `ETag`.
    pub etag: String,
    pub content_type: Option<String>,
}

/// A byte range within an object: `len` bytes from `start`. Never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub len: u64,
}

impl ByteRange {
    /// Index of the last byte, inclusive.
    pub fn last(&self) -> u64 {
        self.start + self.len - 1
    }
}

/// Where a storage failure came from, so the HTTP layer can choose the status.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found")]
    NotFound,
    /// The object changed between the metadata read and the body read.
    #[error("object changed while being read")]
    Changed,
    #[error("storage timed out: {0}")]
    Timeout(&'static str),
    /// The service could not be reached or refused service (connection errors,
    /// 5xx, throttling): worth retrying.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The service answered with something unexpected.
    #[error("storage error: {0}")]
    Upstream(String),
    #[error("stream ended after {sent} of {expected} bytes")]
    Truncated { sent: u64, expected: u64 },
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An upload's bytes do not have the SHA-256 the client announced.
    #[error("the upload's SHA-256 is {actual}, not the announced {expected}")]
    ChecksumMismatch { expected: String, actual: String },
    /// An upload's body failed or was cut before its end.
    #[error("the upload's body did not arrive whole: {0}")]
    Body(String),
    /// An upload larger than the store can take.
    #[error("the upload is larger than {0} bytes")]
    TooLarge(u64),
    /// A download cut by an operator's order ([`crate::cuts`]).
    #[error("the download was cut by an operator's order")]
    Cut,
}

/// What an upload stored: the object's metadata and its lower-case hex SHA-256.
#[derive(Debug, Clone)]
pub struct Stored {
    pub meta: ObjectMeta,
    pub sha256: String,
    /// Lower-case hex SHA-512 (what electron-updater verifies).
    pub sha512: String,
}

/// The digests taken of every file stored or measured, in one pass:
/// SHA-256 (checked against what the uploader declared) and SHA-512 (what
/// update clients such as electron-updater verify).
#[derive(Debug, Clone, Default)]
pub struct Digester {
    sha256: sha2::Sha256,
    sha512: sha2::Sha512,
}

impl Digester {
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        self.sha256.update(bytes);
        self.sha512.update(bytes);
    }

    /// `(sha256, sha512)`, lower-case hex.
    pub fn finish(self) -> (String, String) {
        use sha2::Digest as _;
        (hex::encode(self.sha256.finalize()), hex::encode(self.sha512.finalize()))
    }
}

/// A plan for putting an object straight into storage with presigned
/// requests, bypassing the gateway: one `PUT` of the whole file, or one per
/// part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UploadPlan {
    /// The multipart upload's id; absent when the file goes up as one `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// Every part but the last has exactly this size.
    pub part_size: u64,
    pub parts: Vec<PlannedPart>,
}

/// One presigned request of an [`UploadPlan`]: send bytes
/// `offset..offset + size` of the file with `method` to `url`, with `headers`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PlannedPart {
    pub part_number: u32,
    pub offset: u64,
    pub size: u64,
    pub method: String,
    pub url: String,
    /// Headers the request must carry (they are part of the signature).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// A part the client uploaded, as it reports it when completing: the part
/// number and the `ETag` storage answered with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UploadedPart {
    pub part_number: u32,
    pub etag: String,
}

/// A blob store. Implementations stream; none buffers an object whole.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Short backend name for logs and metrics: `local`, `s3`.
    fn backend(&self) -> &'static str;

    /// The object's metadata, without reading its body.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError>;

    /// Stream the object, or `range` of it. `expected` is the metadata the caller
    /// based its response on; if the object no longer matches it, the read fails
    /// with [`StorageError::Changed`] instead of mixing two versions.
    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
        expected: &ObjectMeta,
    ) -> Result<ByteStream, StorageError>;

    /// Is the store reachable and usable? For readiness probes.
    async fn check(&self) -> Result<(), StorageError>;

    /// Write `body` to `key`, computing its SHA-256 on the way. The object
    /// appears (or replaces the one there) only once the whole body has arrived
    /// and, when `expected_sha256` (lower-case hex) is given, matched it: a
    /// failed, cut, mismatching or abandoned (dropped) upload leaves nothing
    /// behind. Memory stays bounded whatever the size.
    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        expected_sha256: Option<&str>,
        content_type: &str,
    ) -> Result<Stored, StorageError>;

    /// Remove the object; removing one that is not there is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;

    /// The largest object an upload may write, when the backend has a limit.
    fn max_upload_size(&self) -> Option<u64> {
        None
    }

    /// Plan a direct upload of `size` bytes to `key` with requests presigned
    /// for `ttl`; `sha256` (lower-case hex) is the declared digest, which a
    /// single-request plan binds into its signature. `None`: this backend
    /// cannot take direct uploads.
    async fn plan_upload(
        &self,
        _key: &ObjectKey,
        _size: u64,
        _sha256: &str,
        _content_type: &str,
        _ttl: std::time::Duration,
    ) -> Result<Option<UploadPlan>, StorageError> {
        Ok(None)
    }

    /// Can this backend presign downloads ([`BlobStore::presign_download`])?
    /// What `redirect` delivery needs.
    fn presigns_downloads(&self) -> bool {
        false
    }

    /// A `GET` of `key` presigned for `ttl` that needs no header from the
    /// client (everything is in the query), whose answer names the file
    /// `file_name` (`Content-Disposition: attachment`) and carries
    /// `content_type`. `None`: this backend cannot presign.
    async fn presign_download(
        &self,
        _key: &ObjectKey,
        _ttl: std::time::Duration,
        _file_name: &str,
        _content_type: &str,
    ) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    /// Assemble a planned multipart upload from its parts. `parts` empty:
    /// take the parts storage holds. Nothing is visible at `key` before this.
    async fn complete_upload(
        &self,
        _key: &ObjectKey,
        _upload_id: &str,
        _parts: &[UploadedPart],
    ) -> Result<(), StorageError> {
        Err(StorageError::Upstream("this storage takes no direct uploads".into()))
    }

    /// Abandon a planned multipart upload and its parts. Aborting one that is
    /// already gone (completed or aborted) is not an error.
    async fn abort_upload(&self, _key: &ObjectKey, _upload_id: &str) -> Result<(), StorageError> {
        Ok(())
    }

    /// When a planned direct upload last received bytes, by storage's own
    /// clock: its newest part (multipart), or the object (a single `PUT`);
    /// `None` while nothing has arrived. `NotFound`: the multipart upload is
    /// gone (completed or aborted).
    async fn upload_activity(
        &self,
        _key: &ObjectKey,
        _upload_id: Option<&str>,
    ) -> Result<Option<SystemTime>, StorageError> {
        Ok(None)
    }

    /// Remove what crashed uploads left behind that is older than `age`; how
    /// many were removed.
    async fn sweep(&self, _age: std::time::Duration) -> Result<usize, StorageError> {
        Ok(0)
    }
}

/// Check an upload's digest against the announced one.
pub fn check_digest(expected: Option<&str>, actual: &str) -> Result<(), StorageError> {
    match expected {
        Some(e) if e != actual => {
            Err(StorageError::ChecksumMismatch { expected: e.to_owned(), actual: actual.to_owned() })
        }
        _ => Ok(()),
    }
}

/// Read an object through to measure it: its metadata and the lower-case hex
/// SHA-256 and SHA-512 of its bytes. Memory stays bounded (one chunk at a
/// time), and a short, stalled or overlong read is an error, never a digest
/// of part of the object.
pub async fn measure(
    store: &dyn BlobStore,
    key: &ObjectKey,
    idle_timeout: std::time::Duration,
) -> Result<Stored, StorageError> {
    use futures_util::StreamExt as _;
    let meta = store.head(key).await?;
    let mut digester = Digester::default();
    if meta.size > 0 {
        let mut stream = guarded(store.get(key, None, &meta).await?, meta.size, idle_timeout, ());
        while let Some(chunk) = stream.next().await {
            digester.update(&chunk?);
        }
    }
    let (sha256, sha512) = digester.finish();
    Ok(Stored { meta, sha256, sha512 })
}

/// Build the configured backend.
pub async fn from_config(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match config.storage.backend {
        StorageBackend::Local => {
            Arc::new(local::LocalStore::open(&config.blob_root())?.with_io(config.storage.local.io))
        }
        StorageBackend::S3 => Arc::new(s3::S3Store::from_config(config).await?),
    })
}

impl Classified for StorageError {
    fn kind(&self) -> ErrorKind {
        match self {
            StorageError::NotFound => ErrorKind::NotFound,
            StorageError::Io(io) if is_full(io) => ErrorKind::Unavailable,
            StorageError::Changed | StorageError::Timeout(_) | StorageError::Unavailable(_) | StorageError::Cut => {
                ErrorKind::Unavailable
            }
            StorageError::Upstream(_) | StorageError::Truncated { .. } | StorageError::Io(_) => ErrorKind::Upstream,
            StorageError::ChecksumMismatch { .. } | StorageError::Body(_) | StorageError::TooLarge(_) => {
                ErrorKind::Invalid
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StorageError::NotFound => "not_found",
            StorageError::Io(io) if is_full(io) => "storage_full",
            StorageError::ChecksumMismatch { .. } => "checksum_mismatch",
            StorageError::Body(_) => "upload_incomplete",
            StorageError::TooLarge(_) => "payload_too_large",
            _ => "upstream_unavailable",
        }
    }
}

/// The disk (or the account's quota on it) is full.
fn is_full(io: &std::io::Error) -> bool {
    matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reject_traversal_and_oddities() {
        assert!(ObjectKey::parse("app/1.0/app.tar.gz").is_ok());
        assert!(ObjectKey::parse("app/1.0/My App (x64).dmg").is_ok());
        for bad in ["", "app//x", "app/../etc/passwd", "app/./x", "app/.hidden", "a\\b", "a/b\0c", "a/b\nc", "/abs"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::parse(&"a/".repeat(500)).is_err());
        assert_eq!(ObjectKey::parse("a/b/c.zip").unwrap().file_name(), "c.zip");
    }
}
