//! Blobs in a local directory: `<root>/<key>`.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use futures_util::{StreamExt as _, TryStreamExt};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::{BlobStore, ByteRange, ByteStream, CHUNK_SIZE, ObjectKey, ObjectMeta, StorageError, Stored};
use crate::clock::unix_seconds;

#[derive(Debug, Clone)]
pub struct LocalStore {
    /// Canonical (symlink-free, absolute) root.
    root: PathBuf,
}

impl LocalStore {
    /// Use `root`, creating it if needed.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self { root: std::fs::canonicalize(root)? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file behind `key`, resolved through any symlinks.
    async fn resolve(&self, key: &ObjectKey) -> Result<PathBuf, StorageError> {
        let mut path = self.root.clone();
        path.extend(key.segments());
        let real = match tokio::fs::canonicalize(&path).await {
            Ok(p) => p,
            Err(e) if is_not_found(&e) => return Err(StorageError::NotFound),
            Err(e) => return Err(StorageError::Io(e)),
        };
        // SECURITY: a symlink under the root may point anywhere; serving its target
        // would expose arbitrary files. Only targets inside the root are served.
        // (ObjectKey already refuses `..` and absolute segments.)
        if !real.starts_with(&self.root) {
            tracing::warn!(key = %key, "refusing a symlink that leads outside the blob root");
            return Err(StorageError::NotFound);
        }
        Ok(real)
    }
}

/// A temporary file, removed when dropped unless kept.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Remove `.upload-*` files last written more than `age` ago: what uploads
/// cut by a crash left. A live upload writes its file all the time, and one
/// that stalls is cut after `storage.idle_timeout`, so an old one is dead.
/// Symlinks are not followed.
fn sweep_temp_files(root: &Path, age: std::time::Duration) -> std::io::Result<usize> {
    let cutoff = std::time::SystemTime::now().checked_sub(age).unwrap_or(std::time::UNIX_EPOCH);
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Removed meanwhile, or unreadable: nothing of ours to sweep there.
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file()
                && entry.file_name().to_str().is_some_and(|n| n.starts_with(".upload-"))
                && entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn is_not_found(e: &std::io::Error) -> bool {
    // ENOTDIR: a path component is a file, e.g. `app.zip/x`.
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

fn meta_of(m: &std::fs::Metadata) -> Result<ObjectMeta, StorageError> {
    if !m.is_file() {
        return Err(StorageError::NotFound);
    }
    let last_modified = m.modified()?;
    let nanos = last_modified.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Ok(ObjectMeta {
        size: m.len(),
        last_modified: std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds(last_modified)),
        // Size and nanosecond mtime: changes whenever the file is replaced.
        etag: format!("\"{:x}-{:x}\"", m.len(), nanos),
        content_type: None,
    })
}

#[async_trait::async_trait]
impl BlobStore for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let path = self.resolve(key).await?;
        meta_of(&tokio::fs::metadata(&path).await?)
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
        expected: &ObjectMeta,
    ) -> Result<ByteStream, StorageError> {
        let path = self.resolve(key).await?;
        let mut options = tokio::fs::OpenOptions::new();
        options.read(true);
        // SECURITY: the path is canonical; O_NOFOLLOW makes a symlink swapped in
        // for the file since then fail instead of being followed.
        options.custom_flags(libc::O_NOFOLLOW);
        let mut file = match options.open(&path).await {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Err(StorageError::NotFound),
            Err(e) => return Err(StorageError::Io(e)),
        };
        // Metadata of the open handle: what we stream is exactly this version.
        let meta = meta_of(&file.metadata().await?)?;
        if meta.etag != expected.etag {
            return Err(StorageError::Changed);
        }
        let range = range.unwrap_or(ByteRange { start: 0, len: meta.size });
        if range.len > 0 && range.last() >= meta.size {
            return Err(StorageError::Changed);
        }
        file.seek(SeekFrom::Start(range.start)).await?;
        let reader = file.take(range.len);
        Ok(Box::pin(ReaderStream::with_capacity(reader, CHUNK_SIZE).map_err(StorageError::Io)))
    }

    async fn put(
        &self,
        key: &ObjectKey,
        mut body: ByteStream,
        expected_sha256: Option<&str>,
        _content_type: &str,
    ) -> Result<Stored, StorageError> {
        let mut dir = self.root.clone();
        let segments: Vec<&str> = key.segments().collect();
        dir.extend(&segments[..segments.len() - 1]);
        tokio::fs::create_dir_all(&dir).await?;
        // SECURITY: as for reads, a symlinked directory must not lead out.
        let dir = tokio::fs::canonicalize(&dir).await?;
        if !dir.starts_with(&self.root) {
            tracing::warn!(key = %key, "refusing to write through a symlink that leads outside the blob root");
            return Err(StorageError::Upstream("the key's directory is outside the blob root".into()));
        }
        // The bytes go to a dot-file next to the target (never served: keys
        // cannot name dot-files), renamed into place only when complete and
        // verified. The guard removes it on every other way out, including
        // this future being dropped when the client goes away.
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StorageError::Upstream(format!("no randomness: {e}")))?;
        let temp = TempFile(Some(dir.join(format!(".upload-{}", hex::encode(random)))));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true).custom_flags(libc::O_NOFOLLOW);
        let mut file = options.open(temp.path()).await?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        // What this upload wrote (a rename keeps it), not whatever a
        // concurrent upload of the same key may put there next.
        let meta = meta_of(&file.metadata().await?)?;
        drop(file);
        let sha256 = hex::encode(hasher.finalize());
        super::check_digest(expected_sha256, &sha256)?;
        tokio::fs::rename(temp.path(), dir.join(key.file_name())).await?;
        temp.keep();
        // The rename itself survives a crash once the directory is synced.
        if let Ok(d) = tokio::fs::File::open(&dir).await {
            let _ = d.sync_all().await;
        }
        Ok(Stored { meta, sha256 })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let path = match self.resolve(key).await {
            Ok(p) => p,
            Err(StorageError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(StorageError::Io(e)),
        }
    }

    async fn sweep(&self, age: std::time::Duration) -> Result<usize, StorageError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sweep_temp_files(&root, age))
            .await
            .map_err(|e| StorageError::Upstream(format!("the sweep task failed: {e}")))?
            .map_err(StorageError::Io)
    }

    async fn check(&self) -> Result<(), StorageError> {
        let m = tokio::fs::metadata(&self.root).await?;
        if m.is_dir() {
            Ok(())
        } else {
            Err(StorageError::Unavailable(format!("{} is not a directory", self.root.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[tokio::test]
    async fn the_sweep_removes_old_temporary_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let sub = dir.path().join("app/1.0.0");
        std::fs::create_dir_all(&sub).unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        for (name, old) in [(".upload-old", true), (".upload-new", false), ("app.bin", true), (".other", true)] {
            let f = std::fs::File::create(sub.join(name)).unwrap();
            if old {
                f.set_modified(two_hours_ago).unwrap();
            }
        }
        assert_eq!(store.sweep(Duration::from_secs(3600)).await.unwrap(), 1);
        let mut left: Vec<String> =
            std::fs::read_dir(&sub).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [".other", ".upload-new", "app.bin"]);
    }
}
