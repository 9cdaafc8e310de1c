//! Vendor uploads through the admin API, streamed into the local directory
//! and into a real S3-compatible server (s3s-fs over HTTP): the gateway
//! measures what it stored, a wrong announced digest or a cut body leaves
//! nothing behind (no object, no temporary file, no multipart parts), the
//! multipart path assembles large files from parts, and a customer downloads
//! exactly what was uploaded.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use common::{Admin, Backend, StoreKind, ask, customer, request, request_with_body, sha256_hex, target, test_bytes};
use serde_json::json;
use tokio::io::AsyncWriteExt;

backend_suite!(
    local = super::Backend::Local, s3 = super::Backend::S3;
    an_upload_is_measured_and_downloadable,
    a_wrong_digest_leaves_nothing,
    a_cut_upload_leaves_nothing,
    replacing_a_published_file_needs_force,
    bad_upload_requests_are_problems,
    direct_uploads,
);

/// S3's smallest part, so that a 12 MiB file takes the multipart path.
const PART: u64 = 5 * 1024 * 1024;
const LARGE: usize = 12 * 1024 * 1024 + 3;

async fn start(backend: Backend) -> Admin {
    Admin::start_tweaked(StoreKind::Sqlite, backend, |c| {
        if let Some(s3) = c.storage.s3.as_mut() {
            s3.part_size = PART;
            s3.parts_in_flight = 2;
        }
    })
    .await
}

fn upload_path(version: &str, file: &str) -> String {
    format!("/admin/v1/products/app/releases/{version}/artifacts/{file}?platform=linux")
}

async fn draft(a: &Admin, version: &str) {
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    let path = format!("/admin/v1/products/app/releases/{version}");
    let r = a.call("PUT", &path, Some(json!({ "channel": "stable" }))).await;
    assert!(matches!(r.status, 200 | 201), "{r:?}");
}

async fn upload(a: &Admin, version: &str, file: &str, data: &[u8], headers: &[(&str, &str)]) -> common::Reply {
    let auth = format!("Bearer {}", a.token);
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    request_with_body(a.gw.admin, "PUT", &upload_path(version, file), &all, Bytes::copy_from_slice(data)).await
}

/// What is left of an upload to `key`: the object, temporary files, or
/// multipart parts (s3s-fs keeps those as `.upload…` files in its root).
fn leftovers(a: &Admin, key: &str) -> Vec<String> {
    let object = a.blobs.file_path(key);
    let mut left: Vec<String> = object.exists().then(|| key.to_owned()).into_iter().collect();
    let mut dirs = vec![object.parent().unwrap().to_owned()];
    if let Some(s3) = &a.blobs.s3 {
        dirs.push(s3.root.path().to_owned());
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        left.extend(
            entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".upload")),
        );
    }
    left
}

fn nothing_left(a: &Admin, key: &str) {
    assert_eq!(leftovers(a, key), Vec::<String>::new());
}

/// Wait (bounded) for the asynchronous clean-up of an abandoned upload.
async fn eventually_nothing_left(a: &Admin, key: &str) {
    for _ in 0..100 {
        if leftovers(a, key).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nothing_left(a, key);
}

async fn an_upload_is_measured_and_downloadable(backend: Backend) {
    let a = start(backend).await;
    draft(&a, "1.0.0").await;
    let small = test_bytes(70_001);
    let large = test_bytes(LARGE);
    let r = upload(&a, "1.0.0", "small.tar.gz", &small, &[("x-checksum-sha256", &sha256_hex(&small))]).await;
    assert_eq!(r.status, 201, "{r:?}");
    let art = Admin::json(&r);
    assert_eq!((art["size"].as_u64(), art["sha256"].as_str()), (Some(70_001), Some(sha256_hex(&small).as_str())));
    assert_eq!(art["content_type"], "application/gzip");
    // The large one through the multipart path on S3, announced as RFC 9530.
    let raw = hex::decode(sha256_hex(&large)).unwrap();
    let digest = format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(raw));
    let r = upload(&a, "1.0.0", "large.bin", &large, &[("repr-digest", &digest)]).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(Admin::json(&r)["size"].as_u64(), Some(LARGE as u64));
    // SHA-512 is measured in the same pass (for update clients that verify it).
    assert_eq!(Admin::json(&r)["sha512"], common::sha512_hex(&large));
    assert_eq!(art["sha512"], common::sha512_hex(&small));
    // Without an announced digest the gateway still measures it.
    let r = upload(&a, "1.0.0", "again.bin", &small, &[]).await;
    assert_eq!(Admin::json(&r)["sha256"], sha256_hex(&small));

    let r = a.call("POST", "/admin/v1/products/app/releases/1.0.0/publish", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let key = customer(&a, "acme", json!({})).await;
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "large.bin" })).await;
    assert_eq!(Admin::json(&r)["sha256"], sha256_hex(&large));
    let got = request(a.gw.public, "GET", target(Admin::json(&r)["url"].as_str().unwrap()), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-checksum-sha256"), Some(sha256_hex(&large).as_str()));
    assert_eq!(sha256_hex(got.bytes()), sha256_hex(&large));
}

async fn a_wrong_digest_leaves_nothing(backend: Backend) {
    let a = start(backend).await;
    draft(&a, "1.0.0").await;
    for (file, data) in [("small.bin", test_bytes(1000)), ("large.bin", test_bytes(LARGE))] {
        let wrong = sha256_hex(b"something else");
        let r = upload(&a, "1.0.0", file, &data, &[("x-checksum-sha256", &wrong)]).await;
        assert_eq!((r.status, r.code().as_str()), (422, "checksum_mismatch"), "{r:?}");
        let r = a.call("GET", &format!("/admin/v1/products/app/releases/1.0.0/artifacts/{file}"), None).await;
        assert_eq!(r.status, 404);
        eventually_nothing_left(&a, &format!("app/1.0.0/{file}")).await;
    }
}

async fn a_cut_upload_leaves_nothing(backend: Backend) {
    let a = start(backend).await;
    draft(&a, "1.0.0").await;
    // Announce 12 MiB, send 11 (two parts' worth on S3), then hang up.
    let data = test_bytes(LARGE);
    let mut tcp = tokio::net::TcpStream::connect(a.gw.admin).await.unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {LARGE}\r\n\r\n",
        upload_path("1.0.0", "cut.bin"),
        a.token
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&data[..11 * 1024 * 1024]).await.unwrap();
    tcp.flush().await.unwrap();
    // The upload is under way (a temporary file; on S3, parts) before the
    // client goes away: the clean-up below has something to clean.
    let mut started = false;
    for _ in 0..100 {
        if !leftovers(&a, "app/1.0.0/cut.bin").is_empty() {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started, "the upload never started writing");
    drop(tcp);
    eventually_nothing_left(&a, "app/1.0.0/cut.bin").await;
    let r = a.call("GET", "/admin/v1/products/app/releases/1.0.0/artifacts/cut.bin", None).await;
    assert_eq!(r.status, 404);
}

async fn replacing_a_published_file_needs_force(backend: Backend) {
    let a = start(backend).await;
    draft(&a, "1.0.0").await;
    let (v1, v2) = (test_bytes(5000), test_bytes(6000));
    assert_eq!(upload(&a, "1.0.0", "app.bin", &v1, &[]).await.status, 201);
    // Drafts take replacements freely.
    assert_eq!(upload(&a, "1.0.0", "app.bin", &v2, &[]).await.status, 200);
    a.call("POST", "/admin/v1/products/app/releases/1.0.0/publish", None).await;
    let r = upload(&a, "1.0.0", "app.bin", &v1, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"), "{r:?}");
    let r = a.call("GET", "/admin/v1/products/app/releases/1.0.0/artifacts/app.bin", None).await;
    assert_eq!(Admin::json(&r)["sha256"], sha256_hex(&v2), "the refused upload changed nothing");
    let auth = format!("Bearer {}", a.token);
    let forced = format!("{}&force=true", upload_path("1.0.0", "app.bin"));
    let r = request_with_body(a.gw.admin, "PUT", &forced, &[("authorization", &auth)], Bytes::from(v1.clone())).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(Admin::json(&r)["sha256"], sha256_hex(&v1));
}

async fn bad_upload_requests_are_problems(backend: Backend) {
    let a = start(backend).await;
    draft(&a, "1.0.0").await;
    let data = test_bytes(100);
    for (header, value) in [
        ("x-checksum-sha256", "abc"),
        ("repr-digest", "sha-256=:bm90IGEgZGlnZXN0:"),
        ("content-digest", "sha-256=:%%%:"),
    ] {
        let r = upload(&a, "1.0.0", "a.bin", &data, &[(header, value)]).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_digest"), "{header}: {r:?}");
    }
    let r = a.call("PUT", "/admin/v1/products/app/releases/1.0.0/artifacts/a.bin?source=elsewhere", None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"));
    let r = upload(&a, "9.9.9", "a.bin", &data, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = upload(&a, "1.0.0", ".hidden", &data, &[]).await;
    assert_eq!(r.status, 422);
    // Uploads go to their release's own place only.
    let auth = format!("Bearer {}", a.token);
    let elsewhere = format!("{}&storage_key=other/9.9.9/a.bin", upload_path("1.0.0", "a.bin"));
    let r =
        request_with_body(a.gw.admin, "PUT", &elsewhere, &[("authorization", &auth)], Bytes::from(data.clone())).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"), "{r:?}");
    nothing_left(&a, "app/1.0.0/a.bin");
    if backend == Backend::S3 {
        // Announced larger than 10 000 parts: refused before any byte is sent.
        let mut tcp = tokio::net::TcpStream::connect(a.gw.admin).await.unwrap();
        let head = format!(
            "PUT {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n",
            upload_path("1.0.0", "huge.iso"),
            a.token,
            PART * 10_000 + 1
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncReadExt::read(&mut tcp, &mut answer))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(text.contains("payload_too_large"), "{text}");
    }
}

// Direct uploads: the vendor sends the bytes straight to storage with the
// gateway's presigned plan, then the gateway verifies them at `complete`.

const ARTIFACTS: &str = "/admin/v1/products/app/releases/1.0.0/artifacts";

/// Plan a direct upload of `declared` (size and SHA-256 of those bytes).
async fn plan(a: &Admin, file: &str, declared: &[u8]) -> common::Reply {
    let body = json!({ "filename": file, "platform": "linux", "size": declared.len(), "sha256": sha256_hex(declared) });
    a.call("POST", ARTIFACTS, Some(body)).await
}

/// Send one presigned request of a plan; the storage's ETag.
async fn send_part(part: &serde_json::Value, data: &[u8]) -> String {
    let r = try_part(part, data).await;
    assert_eq!(r.status, 200, "{r:?}: {:?}", r.body);
    r.header("etag").unwrap_or_default().to_owned()
}

/// Send one presigned request of a plan with the part's range of `data`.
async fn try_part(part: &serde_json::Value, data: &[u8]) -> common::Reply {
    let url: hyper::Uri = part["url"].as_str().unwrap().parse().unwrap();
    let addr = url.authority().unwrap().as_str().parse().unwrap();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    // The length goes with the body actually sent (a signed one must match).
    for (k, v) in part["headers"].as_object().unwrap().iter().filter(|(k, _)| *k != "content-length") {
        headers.push((k.as_str(), v.as_str().unwrap()));
    }
    let (offset, size) = (part["offset"].as_u64().unwrap() as usize, part["size"].as_u64().unwrap() as usize);
    let end = (offset + size).min(data.len());
    let body = Bytes::copy_from_slice(&data[offset.min(end)..end]);
    let method = part["method"].as_str().unwrap();
    request_with_body(addr, method, url.path_and_query().unwrap().as_str(), &headers, body).await
}

/// Send every request of a plan with `data`; the parts for `complete`.
async fn send_plan(ticket: &serde_json::Value, data: &[u8]) -> serde_json::Value {
    let mut parts = Vec::new();
    for part in ticket["plan"]["parts"].as_array().unwrap() {
        let etag = send_part(part, data).await;
        parts.push(json!({ "part_number": part["part_number"], "etag": etag }));
    }
    json!({ "parts": parts })
}

async fn direct_uploads(backend: Backend) {
    let a = start(backend).await;
    draft(&a, "1.0.0").await;
    let data = test_bytes(1000);
    let r = plan(&a, "app.bin", &data).await;
    if backend == Backend::Local {
        // The local directory hands out no presigned requests.
        assert_eq!((r.status, r.code().as_str()), (501, "direct_upload_unsupported"), "{r:?}");
        return;
    }
    assert_eq!(r.status, 201, "{r:?}");
    let ticket = Admin::json(&r);
    assert!(ticket["plan"]["upload_id"].is_null(), "a small file is one PUT: {ticket}");
    assert_eq!(ticket["artifact"]["status"], "pending");

    // Pending: listed as such, refused to customers, and a streaming PUT of
    // the same file waits for it.
    let r = a.call("GET", ARTIFACTS, None).await;
    assert_eq!(Admin::json(&r)["items"][0]["status"], "pending");
    a.call("POST", "/admin/v1/products/app/releases/1.0.0/publish", None).await;
    let key = customer(&a, "acme", json!({})).await;
    let ask_for = json!({ "product": "app", "version": "1.0.0", "filename": "app.bin" });
    let r = ask(&a, &key, ask_for.clone()).await;
    assert_eq!(r.status, 404, "a pending file is not downloadable: {r:?}");
    let r = upload(&a, "1.0.0", "app.bin", &data, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"), "{r:?}");
    // Completing before the bytes are there changes nothing.
    let complete = ticket["complete"].as_str().unwrap().to_owned();
    let r = a.call("POST", &complete, None).await;
    assert_eq!((r.status, r.code().as_str()), (409, "upload_incomplete"), "{r:?}");

    send_plan(&ticket, &data).await;
    let r = a.call("POST", &complete, None).await;
    assert_eq!(r.status, 201, "{r:?}");
    let art = Admin::json(&r);
    assert_eq!((art["status"].as_str(), art["sha256"].as_str()), (Some("ready"), Some(sha256_hex(&data).as_str())));
    // A retried `complete` (its first answer lost) answers the same artifact.
    let again = a.call("POST", &complete, None).await;
    assert_eq!((again.status, Admin::json(&again)["sha256"].clone()), (200, art["sha256"].clone()));
    let r = ask(&a, &key, ask_for).await;
    let got = request(a.gw.public, "GET", target(Admin::json(&r)["url"].as_str().unwrap()), &[]).await;
    assert_eq!(sha256_hex(got.bytes()), sha256_hex(&data));
    // Only new files: an existing one is replaced by the streaming PUT.
    let r = plan(&a, "app.bin", &data).await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"), "{r:?}");

    // A declared size over S3's 5 TiB is a bad field, not a body too large
    // (nothing was sent), and plans nothing.
    let too_big = json!({ "filename": "huge.bin", "size": 5_497_558_138_881_u64, "sha256": sha256_hex(b"") });
    let r = a.call("POST", ARTIFACTS, Some(too_big)).await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_field"), "{r:?}");
    assert!(leftovers(&a, "app/1.0.0/huge.bin").is_empty());

    // A large file: a multipart upload, one presigned request per part.
    let large = test_bytes(LARGE);
    let r = plan(&a, "large.bin", &large).await;
    let ticket = Admin::json(&r);
    let parts = ticket["plan"]["parts"].as_array().unwrap();
    assert!(ticket["plan"]["upload_id"].is_string());
    assert_eq!(parts.len(), 3);
    assert_eq!(parts.iter().map(|p| p["size"].as_u64().unwrap()).sum::<u64>(), LARGE as u64);
    let body = send_plan(&ticket, &large).await;
    let r = a.call("POST", ticket["complete"].as_str().unwrap(), Some(body)).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(Admin::json(&r)["size"].as_u64(), Some(LARGE as u64));
    assert_eq!(Admin::json(&r)["sha512"], common::sha512_hex(&large), "measured at complete");
    // The object, and no parts left beside it.
    assert_eq!(leftovers(&a, "app/1.0.0/large.bin"), vec!["app/1.0.0/large.bin".to_owned()]);
}

/// Bytes other than the declared ones are refused at `complete`: the object
/// and the plan are removed. Parts of an abandoned plan are removed too.
#[tokio::test]
async fn direct_uploads_of_other_bytes_leave_nothing() {
    let a = start(Backend::S3).await;
    draft(&a, "1.0.0").await;
    let data = test_bytes(LARGE);
    // Declared one file, sent another of the same size.
    let mut other = data.clone();
    other[LARGE - 1] ^= 1;
    let ticket = Admin::json(&plan(&a, "a.bin", &data).await);
    let body = send_plan(&ticket, &other).await;
    let r = a.call("POST", ticket["complete"].as_str().unwrap(), Some(body)).await;
    assert_eq!((r.status, r.code().as_str()), (422, "checksum_mismatch"), "{r:?}");
    nothing_left(&a, "app/1.0.0/a.bin");
    let r = a.call("GET", &format!("{ARTIFACTS}/a.bin"), None).await;
    assert_eq!(r.status, 404, "the plan is gone too: {r:?}");

    // Declared LARGE bytes, the last part one byte short.
    let ticket = Admin::json(&plan(&a, "b.bin", &data).await);
    let body = send_plan(&ticket, &data[..LARGE - 1]).await;
    let r = a.call("POST", ticket["complete"].as_str().unwrap(), Some(body)).await;
    assert_eq!((r.status, r.code().as_str()), (422, "size_mismatch"), "{r:?}");
    nothing_left(&a, "app/1.0.0/b.bin");

    // A one-request plan is signed with the declared SHA-256 and length:
    // storage itself takes no other bytes through it, before or after.
    let small = test_bytes(1000);
    let ticket = Admin::json(&plan(&a, "s.bin", &small).await);
    let part = &ticket["plan"]["parts"][0];
    let mut changed = small.clone();
    changed[0] ^= 1;
    let r = try_part(part, &changed).await;
    assert!(matches!(r.status, 400..=499), "other bytes refused by storage: {r:?}");
    let r = try_part(part, &small[..999]).await;
    assert!(matches!(r.status, 400..=499), "fewer bytes refused by storage: {r:?}");
    send_part(part, &small).await;
    let r = a.call("POST", ticket["complete"].as_str().unwrap(), None).await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = try_part(part, &changed).await;
    assert!(matches!(r.status, 400..=499), "the URL cannot replace the completed file: {r:?}");

    // Abandoned half-way: deleting the pending file aborts its parts.
    let ticket = Admin::json(&plan(&a, "c.bin", &data).await);
    send_part(&ticket["plan"]["parts"][0], &data).await;
    assert!(!leftovers(&a, "app/1.0.0/c.bin").is_empty(), "a part is stored");
    let r = a.call("DELETE", &format!("{ARTIFACTS}/c.bin"), None).await;
    assert_eq!(r.status, 204, "{r:?}");
    nothing_left(&a, "app/1.0.0/c.bin");
    // Planning again abandons the earlier plan's parts.
    let first = Admin::json(&plan(&a, "d.bin", &data).await);
    send_part(&first["plan"]["parts"][0], &data).await;
    let second = Admin::json(&plan(&a, "d.bin", &data).await);
    let (first, second) = (first["plan"]["upload_id"].as_str().unwrap(), second["plan"]["upload_id"].as_str().unwrap());
    assert_ne!(first, second);
    let left = leftovers(&a, "app/1.0.0/d.bin");
    assert!(left.iter().all(|f| !f.contains(first)), "the first plan's upload is gone: {left:?}");
    assert!(left.iter().any(|f| f.contains(second)), "the second plan's upload is there: {left:?}");
}

/// A plan past its expiry cannot be completed, and the periodic sweep
/// abandons plans nobody completed.
#[tokio::test]
async fn expired_direct_uploads_are_abandoned() {
    let clock = tollgate::clock::ManualClock::new(1_900_000_000);
    let a = Admin::start_clocked_on(clock.clone(), Backend::S3, |c| {
        let s3 = c.storage.s3.as_mut().unwrap();
        s3.part_size = PART;
        // The idle rule (next test) would take `swept` first.
        s3.abandon_uploads_idle_for = Duration::from_secs(86_400);
    })
    .await;
    draft(&a, "1.0.0").await;
    let data = test_bytes(LARGE);
    let ticket = Admin::json(&plan(&a, "late.bin", &data).await);
    let body = send_plan(&ticket, &data).await;
    let swept = Admin::json(&plan(&a, "swept.bin", &data).await);
    send_part(&swept["plan"]["parts"][0], &data).await;
    clock.advance(3600);
    let r = a.call("POST", ticket["complete"].as_str().unwrap(), Some(body)).await;
    assert_eq!((r.status, r.code().as_str()), (410, "upload_expired"), "{r:?}");
    let late = ticket["plan"]["upload_id"].as_str().unwrap();
    let left = leftovers(&a, "app/1.0.0/late.bin");
    assert!(left.iter().all(|f| !f.contains(late)), "the expired upload's parts are gone: {left:?}");
    assert!(!left.is_empty(), "the other plan's part is still there: {left:?}");
    // Within the sweep's grace it stays; past it, it goes.
    assert_eq!(tollgate::uploads::direct::sweep(&a.gw.state, 3600).await, 0);
    clock.advance(3601);
    assert_eq!(tollgate::uploads::direct::sweep(&a.gw.state, 3600).await, 1);
    nothing_left(&a, "app/1.0.0/swept.bin");
    let r = a.call("GET", ARTIFACTS, None).await;
    assert_eq!(Admin::json(&r)["items"], json!([]));
}

/// A plan nobody sends anything to (a crashed CI job's) is abandoned once it
/// has received nothing for `storage.s3.abandon_uploads_idle_for`, hours
/// before its URLs expire; one whose parts keep arriving is left alone.
#[tokio::test]
async fn idle_direct_uploads_are_abandoned_long_before_their_urls_expire() {
    // The gateway's clock starts at the real time: the parts' times are
    // storage's (s3s-fs's file times), and the rule compares the two.
    let clock = tollgate::clock::ManualClock::new(tollgate::clock::unix_seconds(std::time::SystemTime::now()));
    let a = Admin::start_clocked_on(clock.clone(), Backend::S3, |c| {
        let s3 = c.storage.s3.as_mut().unwrap();
        s3.part_size = PART;
        s3.upload_url_ttl = Duration::from_secs(6 * 3600);
        s3.abandon_uploads_idle_for = Duration::from_secs(30 * 60);
    })
    .await;
    draft(&a, "1.0.0").await;
    let data = test_bytes(LARGE);
    let sweep = || tollgate::uploads::direct::sweep(&a.gw.state, 3600);
    // Crashed after one part; never sent anything; single-PUT plan never sent.
    let crashed = Admin::json(&plan(&a, "crashed.bin", &data).await);
    send_part(&crashed["plan"]["parts"][0], &data).await;
    Admin::json(&plan(&a, "silent.bin", &data).await);
    Admin::json(&plan(&a, "small.bin", &test_bytes(1000)).await);
    // Alive: parts keep arriving (its second comes 20 minutes in).
    let alive = Admin::json(&plan(&a, "alive.bin", &data).await);
    send_part(&alive["plan"]["parts"][0], &data).await;

    clock.advance(20 * 60);
    assert_eq!(sweep().await, 0, "nothing is idle for 30 minutes yet");
    // The live upload's second part arrives 20 minutes in, by the gateway's
    // clock; storage's clock (the part files' times) is moved to match.
    send_part(&alive["plan"]["parts"][1], &data).await;
    let id = |t: &serde_json::Value| t["plan"]["upload_id"].as_str().unwrap().to_owned();
    let s3_root = a.blobs.s3.as_ref().unwrap().root.path().to_owned();
    let later = std::time::SystemTime::now() + Duration::from_secs(20 * 60);
    let alive_parts: Vec<_> =
        walk(&s3_root).into_iter().filter(|f| f.to_string_lossy().contains(&id(&alive))).collect();
    assert!(!alive_parts.is_empty());
    for f in &alive_parts {
        std::fs::File::options().write(true).open(f).unwrap().set_modified(later).unwrap();
    }

    clock.advance(15 * 60);
    assert_eq!(sweep().await, 3, "35 minutes without a byte: the three idle plans go, the live one stays");
    let left = leftovers(&a, "app/1.0.0/crashed.bin");
    assert!(left.iter().all(|f| !f.contains(&id(&crashed))), "the crashed upload's part is gone: {left:?}");
    assert!(left.iter().any(|f| f.contains(&id(&alive))), "the live upload keeps its parts: {left:?}");
    let r = a.call("GET", ARTIFACTS, None).await;
    let items = Admin::json(&r)["items"].clone();
    let names: Vec<&str> = items.as_array().unwrap().iter().map(|i| i["filename"].as_str().unwrap()).collect();
    assert_eq!(names, ["alive.bin"], "{r:?}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
