//! Blobs in a local directory: `<root>/<key>`.
//!
//! Reads cost no thread hop when the file is in the page cache, which is
//! what makes small files cheap: the look-up (canonical path, open, `fstat`)
//! runs on the serving thread like nginx's, and each read first asks the
//! kernel for cached bytes only (`preadv2` with `RWF_NOWAIT`); only a read
//! that would wait for the disk goes to the blocking pool. `io = "threads"`
//! puts every call on the blocking pool instead, for file systems whose
//! look-ups can stall (NFS and other network mounts).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};

use super::{BlobStore, ByteRange, ByteStream, Digester, ObjectKey, ObjectMeta, StorageError, Stored};
use crate::clock::unix_seconds;
pub use crate::config::LocalIo;

#[derive(Debug, Clone)]
pub struct LocalStore {
    /// Canonical (symlink-free, absolute) root.
    root: Arc<Path>,
    /// The root, open: keys are opened beneath it.
    dir: Arc<std::fs::File>,
    io: LocalIo,
}

impl LocalStore {
    /// Use `root`, creating it if needed.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let root = std::fs::canonicalize(root)?;
        let dir = Arc::new(std::fs::File::open(&root)?);
        Ok(Self { root: root.into(), dir, io: LocalIo::default() })
    }

    /// Make file system calls the way `io` says.
    pub fn with_io(self, io: LocalIo) -> Self {
        Self { io, ..self }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Run a file system call on the serving thread or on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path, &std::fs::File) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        match self.io {
            LocalIo::Inline => f(&self.root, &self.dir),
            LocalIo::Threads => {
                let (root, dir) = (self.root.clone(), self.dir.clone());
                tokio::task::spawn_blocking(move || f(&root, &dir))
                    .await
                    .map_err(|e| StorageError::Upstream(format!("a file system task failed: {e}")))?
            }
        }
    }
}

/// The file behind `key`, resolved through any symlinks.
fn resolve(root: &Path, key: &ObjectKey) -> Result<PathBuf, StorageError> {
    let mut path = root.to_path_buf();
    path.extend(key.segments());
    let real = match std::fs::canonicalize(&path) {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => return Err(StorageError::NotFound),
        Err(e) => return Err(StorageError::Io(e)),
    };
    // SECURITY: a symlink under the root may point anywhere; serving its target
    // would expose arbitrary files. Only targets inside the root are served.
    // (ObjectKey already refuses `..` and absolute segments.)
    if !real.starts_with(root) {
        tracing::warn!(key = %key, "refusing a symlink that leads outside the blob root");
        return Err(StorageError::NotFound);
    }
    Ok(real)
}

/// Open the file behind `key` for reading, with its metadata.
fn open_for_read(
    root: &Path,
    dir: &std::fs::File,
    key: &ObjectKey,
) -> Result<(std::fs::File, ObjectMeta), StorageError> {
    let file = match open_beneath(dir, key) {
        Ok(Some(f)) => f,
        Ok(None) => open_resolved(root, key)?,
        Err(e) => return Err(e),
    };
    // Metadata of the open handle: what we stream is exactly this version.
    let meta = meta_of(&file.metadata()?)?;
    Ok((file, meta))
}

/// The file behind `key`, opened in one call that the kernel confines to the
/// blob root (`openat2` with `RESOLVE_BENEATH`): symlinks are followed only
/// while they stay beneath it. `None` when that call cannot decide — a
/// kernel without `openat2`, an absolute symlink, a rename racing the
/// look-up — and the slower [`open_resolved`] must.
fn open_beneath(dir: &std::fs::File, key: &ObjectKey) -> Result<Option<std::fs::File>, StorageError> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;
    // SECURITY: NONBLOCK, so that a FIFO planted under the root fails the
    // regular-file check below instead of blocking this thread until a
    // writer comes (reads of regular files ignore it).
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    match rustix::fs::openat2(
        dir,
        key.as_str(),
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(Some(std::fs::File::from(fd))),
        Err(Errno::NOENT | Errno::NOTDIR) => Err(StorageError::NotFound),
        Err(Errno::XDEV | Errno::NOSYS | Errno::AGAIN | Errno::LOOP | Errno::PERM) => Ok(None),
        Err(e) => Err(StorageError::Io(e.into())),
    }
}

/// The file behind `key`, by its canonical path.
fn open_resolved(root: &Path, key: &ObjectKey) -> Result<std::fs::File, StorageError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = resolve(root, key)?;
    // SECURITY: the path is canonical; O_NOFOLLOW makes a symlink swapped in
    // for the file since then fail instead of being followed.
    // NONBLOCK: as in `open_beneath`, a FIFO must not block the open.
    match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path) {
        Ok(f) => Ok(f),
        Err(e) if is_not_found(&e) => Err(StorageError::NotFound),
        Err(e) => Err(StorageError::Io(e)),
    }
}

/// Reads of a [`FileStream`]: every stream starts at [`MIN_CHUNK`] and
/// grows to [`MAX_CHUNK`] only once its consumer has kept up for
/// [`grow_after`] bytes; see [`FileStream::adapt`].
const MIN_CHUNK: usize = 16 * 1024;
const MAX_CHUNK: usize = 256 * 1024;

/// Twice the most the kernel may buffer on one socket (`tcp_wmem`'s
/// maximum, 4 MiB by default): a consumer that took that much quickly is
/// reading, not just filling its socket buffer.
fn grow_after() -> u64 {
    static BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        let max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
            .ok()
            .and_then(|t| t.split_whitespace().nth(2)?.parse::<u64>().ok())
            .unwrap_or(4 << 20);
        2 * max
    })
}

/// A range this small is read in one go, whatever the pace.
const ONE_READ: u64 = 64 * 1024;
/// A consumer back for more within this is keeping up.
const QUICK: Duration = Duration::from_millis(2);

/// A byte range of an open file, read chunk by chunk.
struct FileStream {
    file: Arc<std::fs::File>,
    pos: u64,
    end: u64,
    chunk: usize,
    /// Bytes the consumer has taken, each chunk quickly, since it last
    /// made the stream wait.
    quick: u64,
    /// `RWF_NOWAIT` is worth trying (the file system has not refused it).
    nowait: bool,
    pending: Option<tokio::task::JoinHandle<std::io::Result<Bytes>>>,
    /// When the last chunk was handed out, and its size.
    handed: Option<(Instant, usize)>,
}

impl FileStream {
    fn new(file: std::fs::File, range: ByteRange, io: LocalIo) -> Self {
        Self {
            file: Arc::new(file),
            pos: range.start,
            end: range.start + range.len,
            chunk: MIN_CHUNK,
            quick: 0,
            nowait: io == LocalIo::Inline,
            pending: None,
            handed: None,
        }
    }

    /// Size reads by how fast the consumer takes them. hyper asks for the
    /// next chunk only once the last one has gone into the socket, so the
    /// time between chunks is the client's pace. A client that keeps up
    /// gets large reads (fewer calls); every other client small ones, so
    /// that a thousand slow downloads do not each hold hundreds of
    /// kilobytes. Growth waits for [`grow_after`] bytes of quick takes
    /// because the kernel's socket buffer takes the first megabytes of even
    /// the slowest client at once.
    fn adapt(&mut self) {
        let Some((at, size)) = self.handed else { return };
        if at.elapsed() < QUICK {
            self.quick += size as u64;
            if self.quick >= grow_after() {
                self.chunk = (self.chunk * 2).min(MAX_CHUNK);
            }
        } else {
            self.quick = 0;
            self.chunk = MIN_CHUNK;
        }
    }

    /// The next read's length.
    fn next_len(&self) -> usize {
        let left = self.end - self.pos;
        if left <= ONE_READ {
            return usize::try_from(left).unwrap_or(usize::MAX);
        }
        usize::try_from(left).unwrap_or(usize::MAX).min(self.chunk)
    }

    fn hand_out(&mut self, bytes: Bytes) -> Poll<Option<Result<Bytes, StorageError>>> {
        if bytes.is_empty() {
            // The file is shorter than when it was opened.
            return Poll::Ready(Some(Err(StorageError::Changed)));
        }
        self.pos += bytes.len() as u64;
        self.handed = Some((Instant::now(), bytes.len()));
        Poll::Ready(Some(Ok(bytes)))
    }
}

impl Stream for FileStream {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(task) = &mut this.pending {
                let done = ready!(Pin::new(task).poll(cx));
                this.pending = None;
                return match done {
                    Ok(Ok(bytes)) => this.hand_out(bytes),
                    Ok(Err(e)) => Poll::Ready(Some(Err(StorageError::Io(e)))),
                    Err(e) => Poll::Ready(Some(Err(StorageError::Upstream(format!("a file read task failed: {e}"))))),
                };
            }
            if this.pos >= this.end {
                return Poll::Ready(None);
            }
            this.adapt();
            let len = this.next_len();
            if this.nowait {
                match read_cached(&this.file, this.pos, len) {
                    Ok(Some(bytes)) => return this.hand_out(bytes),
                    Ok(None) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) || e.raw_os_error() == Some(libc::EINVAL) => {
                        // This file system cannot say what is cached.
                        this.nowait = false;
                    }
                    Err(e) => return Poll::Ready(Some(Err(StorageError::Io(e)))),
                }
            }
            let (file, pos) = (this.file.clone(), this.pos);
            // Polled at once, by the next turn of the loop, so that the
            // task's completion wakes this stream.
            this.pending = Some(tokio::task::spawn_blocking(move || read_at(&file, pos, len)));
        }
    }
}

/// Up to `len` bytes at `pos`, if the page cache holds them (some of them:
/// a short read); `None` when reading would wait for the disk.
fn read_cached(file: &std::fs::File, pos: u64, len: usize) -> std::io::Result<Option<Bytes>> {
    let mut buf = BytesMut::zeroed(len);
    match rustix::io::preadv2(file, &mut [std::io::IoSliceMut::new(&mut buf)], pos, rustix::io::ReadWriteFlags::NOWAIT)
    {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf.freeze()))
        }
        Err(rustix::io::Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Up to `len` bytes at `pos`, waiting for the disk if need be.
fn read_at(file: &std::fs::File, pos: u64, len: usize) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = BytesMut::zeroed(len);
    let n = loop {
        match file.read_at(&mut buf, pos) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    buf.truncate(n);
    Ok(buf.freeze())
}

/// Bytes of an upload hashed and written to its file at once.
const WRITE_SIZE: usize = 1024 * 1024;

/// An upload's file and the digest of what was written to it, handed to the
/// blocking pool and back.
struct BlockWriter {
    file: std::fs::File,
    hasher: Digester,
}

impl BlockWriter {
    /// The writer back from the blocking pool, once its last block is written.
    async fn settle(task: tokio::task::JoinHandle<std::io::Result<Self>>) -> Result<Self, StorageError> {
        Ok(task.await.map_err(|e| StorageError::Upstream(format!("an upload write failed: {e}")))??)
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
fn sweep_temp_files(root: &Path, age: Duration) -> std::io::Result<usize> {
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
        last_modified: std::time::UNIX_EPOCH + Duration::from_secs(unix_seconds(last_modified)),
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
        let key = key.clone();
        self.run(move |root, dir| Ok(open_for_read(root, dir, &key)?.1)).await
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
        expected: &ObjectMeta,
    ) -> Result<ByteStream, StorageError> {
        let key = key.clone();
        let (file, meta) = self.run(move |root, dir| open_for_read(root, dir, &key)).await?;
        if meta.etag != expected.etag {
            return Err(StorageError::Changed);
        }
        let range = range.unwrap_or(ByteRange { start: 0, len: meta.size });
        if range.len > 0 && range.last() >= meta.size {
            return Err(StorageError::Changed);
        }
        Ok(Box::pin(FileStream::new(file, range, self.io)))
    }

    async fn put(
        &self,
        key: &ObjectKey,
        mut body: ByteStream,
        expected_sha256: Option<&str>,
        _content_type: &str,
    ) -> Result<Stored, StorageError> {
        let mut dir = self.root.to_path_buf();
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
        let file = options.open(temp.path()).await?.into_std().await;
        // Chunks arrive as the network gives them (often 16 KiB). A mebibyte
        // at a time is hashed and written on the blocking pool while the next
        // one arrives, so receiving and hashing use two cores when there are
        // two (SHA-256 is most of an upload's CPU).
        let mut writer = tokio::task::spawn_blocking(move || Ok(BlockWriter { file, hasher: Digester::default() }));
        let mut pending = BytesMut::with_capacity(WRITE_SIZE);
        loop {
            let next = body.next().await.transpose()?;
            if let Some(chunk) = &next {
                pending.extend_from_slice(chunk);
                if pending.len() < WRITE_SIZE {
                    continue;
                }
            }
            let mut w = BlockWriter::settle(writer).await?;
            let block = pending.split().freeze();
            writer = tokio::task::spawn_blocking(move || {
                use std::io::Write as _;
                w.hasher.update(&block);
                w.file.write_all(&block)?;
                Ok(w)
            });
            if next.is_none() {
                break;
            }
        }
        let BlockWriter { file, hasher } = BlockWriter::settle(writer).await?;
        let file = tokio::fs::File::from_std(file);
        file.sync_all().await?;
        // What this upload wrote (a rename keeps it), not whatever a
        // concurrent upload of the same key may put there next.
        let meta = meta_of(&file.metadata().await?)?;
        drop(file);
        let (sha256, sha512) = hasher.finish();
        super::check_digest(expected_sha256, &sha256)?;
        tokio::fs::rename(temp.path(), dir.join(key.file_name())).await?;
        temp.keep();
        // The rename itself survives a crash once the directory is synced.
        if let Ok(d) = tokio::fs::File::open(&dir).await {
            let _ = d.sync_all().await;
        }
        Ok(Stored { meta, sha256, sha512 })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let resolved = key.clone();
        let path = match self.run(move |root, _| resolve(root, &resolved)).await {
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

    async fn sweep(&self, age: Duration) -> Result<usize, StorageError> {
        let root = self.root.to_path_buf();
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

    /// A FIFO or a directory where a file should be is not served, and
    /// opening it does not wait for a writer (the look-up runs on the
    /// serving thread).
    #[test]
    fn only_regular_files_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("app/1.0");
        std::fs::create_dir_all(sub.join("dir.bin")).unwrap();
        let made = std::process::Command::new("mkfifo").arg(sub.join("fifo.bin")).status().unwrap();
        assert!(made.success());
        for io in [LocalIo::Inline, LocalIo::Threads] {
            for name in ["fifo.bin", "dir.bin", "missing.bin"] {
                let store = LocalStore::open(dir.path()).unwrap().with_io(io);
                let key = ObjectKey::parse(&format!("app/1.0/{name}")).unwrap();
                // On a thread of its own: an open that blocks fails the test
                // instead of hanging it.
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    let _ = tx.send(rt.block_on(store.head(&key)).map(|_| ()).map_err(|e| e.to_string()));
                });
                let head = rx.recv_timeout(Duration::from_secs(5));
                assert_eq!(head, Ok(Err(StorageError::NotFound.to_string())), "{io:?} {name}");
            }
        }
    }

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
