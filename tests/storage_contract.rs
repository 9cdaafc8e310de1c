//! One behaviour suite for blob storage, run against the local directory and a
//! real S3-compatible server over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use common::{Backend, Blobs, sha256_hex, test_bytes};
use futures_util::StreamExt;
use tollgate::storage::{BlobStore, ByteRange, ByteStream, ObjectKey, StorageError};

backend_suite!(
    local = super::Backend::Local, s3 = super::Backend::S3;
    head_reports_size_etag_and_time,
    get_streams_whole_and_ranges,
    missing_objects_are_not_found,
    a_replaced_object_is_detected,
    check_passes_on_a_working_store,
    measure_reads_size_and_sha256,
);

fn key(k: &str) -> ObjectKey {
    ObjectKey::parse(k).unwrap()
}

async fn read_all(mut s: ByteStream) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn head_reports_size_etag_and_time(backend: Backend) {
    let blobs = Blobs::new(backend).await;
    blobs.put("app/1.0/app.tar.gz", &test_bytes(1000)).await;
    blobs.put("app/1.0/empty.txt", b"").await;
    let store = blobs.store().await;
    let meta = store.head(&key("app/1.0/app.tar.gz")).await.unwrap();
    assert_eq!(meta.size, 1000);
    assert!(meta.etag.starts_with('"') && meta.etag.ends_with('"') && meta.etag.len() > 2, "{}", meta.etag);
    let age = std::time::SystemTime::now().duration_since(meta.last_modified).unwrap();
    assert!(age.as_secs() < 3600, "last_modified is the upload time");
    assert_eq!(store.head(&key("app/1.0/empty.txt")).await.unwrap().size, 0);
}

async fn get_streams_whole_and_ranges(backend: Backend) {
    let blobs = Blobs::new(backend).await;
    let data = test_bytes(300_000);
    blobs.put("app/1.0/big.bin", &data).await;
    let store = blobs.store().await;
    let k = key("app/1.0/big.bin");
    let meta = store.head(&k).await.unwrap();
    assert_eq!(read_all(store.get(&k, None, &meta).await.unwrap()).await.unwrap(), data);
    for (start, len) in [(0, 1), (1, 99), (70_000, 131_072), (299_999, 1)] {
        let got = read_all(store.get(&k, Some(ByteRange { start, len }), &meta).await.unwrap()).await.unwrap();
        let (s, l) = (start as usize, len as usize);
        assert_eq!(got, data[s..s + l], "range {start}+{len}");
    }
}

async fn missing_objects_are_not_found(backend: Backend) {
    let blobs = Blobs::new(backend).await;
    blobs.put("app/1.0/a.zip", b"a").await;
    let store = blobs.store().await;
    for k in ["app/1.0/nope.zip", "app/2.0/a.zip", "other/1.0/a.zip", "app/1.0/a.zip/inner"] {
        assert!(matches!(store.head(&key(k)).await, Err(StorageError::NotFound)), "{k}");
    }
    // A directory is not an object. (S3 has no directories; s3s-fs answers 500
    // for one, which a real bucket never would, so this is checked locally only.)
    if backend == Backend::Local {
        let dir = store.head(&key("app/1.0")).await;
        assert!(matches!(dir, Err(StorageError::NotFound)), "{dir:?}");
    }
}

async fn a_replaced_object_is_detected(backend: Backend) {
    let blobs = Blobs::new(backend).await;
    blobs.put("app/1.0/a.zip", b"version one").await;
    let store = blobs.store().await;
    let k = key("app/1.0/a.zip");
    let old = store.head(&k).await.unwrap();
    // Replace with different content (and size) between head and get.
    blobs.put("app/1.0/a.zip", b"version two, longer").await;
    match store.get(&k, None, &old).await {
        Err(StorageError::Changed) => {}
        Ok(_) => panic!("a read based on stale metadata must not succeed"),
        Err(e) => panic!("expected Changed, got {e:?}"),
    }
}

async fn check_passes_on_a_working_store(backend: Backend) {
    let blobs = Blobs::new(backend).await;
    let store = blobs.store().await;
    store.check().await.unwrap();
}

#[tokio::test]
async fn s3_failures_are_classified_as_unavailable() {
    let blobs = Blobs::new(Backend::S3).await;
    blobs.put("app/1.0/a.zip", b"a").await;
    let store = blobs.store().await;
    blobs.s3.as_ref().unwrap().kill();
    let err = store.head(&key("app/1.0/a.zip")).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_) | StorageError::Timeout(_)), "{err:?}");
    assert!(store.check().await.is_err());
}

#[cfg(unix)]
#[tokio::test]
async fn local_symlinks_may_not_leave_the_root() {
    let blobs = Blobs::new(Backend::Local).await;
    let outside = blobs.dir.path().join("secret.txt");
    std::fs::write(&outside, b"top secret").unwrap();
    blobs.put("app/1.0/inside.txt", b"fine").await;
    let dir = blobs.local_root().join("app/1.0");
    std::os::unix::fs::symlink(&outside, dir.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(dir.join("inside.txt"), dir.join("alias.txt")).unwrap();
    std::os::unix::fs::symlink(blobs.dir.path(), blobs.local_root().join("app/evil")).unwrap();
    let store = blobs.store().await;
    assert!(matches!(store.head(&key("app/1.0/escape.txt")).await, Err(StorageError::NotFound)));
    assert!(matches!(store.head(&key("app/evil/secret.txt")).await, Err(StorageError::NotFound)));
    // A link that stays inside the root is served.
    let meta = store.head(&key("app/1.0/alias.txt")).await.unwrap();
    assert_eq!(read_all(store.get(&key("app/1.0/alias.txt"), None, &meta).await.unwrap()).await.unwrap(), b"fine");
}

/// A storage backend that is dropped mid-read releases the file.
#[tokio::test]
async fn trait_objects_are_usable_across_tasks() {
    let blobs = Blobs::new(Backend::Local).await;
    blobs.put("a/b/c", &test_bytes(10)).await;
    let store: std::sync::Arc<dyn BlobStore> = blobs.store().await;
    let task = tokio::spawn(async move { store.head(&key("a/b/c")).await.map(|m| m.size) });
    assert_eq!(task.await.unwrap().unwrap(), 10);
}

async fn measure_reads_size_and_sha256(backend: Backend) {
    let blobs = Blobs::new(backend).await;
    let data = test_bytes(200_001);
    blobs.put("app/1.0/app.bin", &data).await;
    blobs.put("app/1.0/empty.txt", b"").await;
    let store = blobs.store().await;
    let idle = std::time::Duration::from_secs(5);
    let m = tollgate::storage::measure(store.as_ref(), &key("app/1.0/app.bin"), idle).await.unwrap();
    assert_eq!((m.meta.size, m.sha256, m.sha512), (200_001, sha256_hex(&data), common::sha512_hex(&data)));
    let m = tollgate::storage::measure(store.as_ref(), &key("app/1.0/empty.txt"), idle).await.unwrap();
    assert_eq!((m.meta.size, m.sha256, m.sha512), (0, sha256_hex(b""), common::sha512_hex(b"")));
    let missing = tollgate::storage::measure(store.as_ref(), &key("app/1.0/nope"), idle).await;
    assert!(matches!(missing, Err(StorageError::NotFound)), "{missing:?}");
}
