//! Delivery modes (issue 16): a `redirect` product's download URL is still
//! the gateway's; its `GET` is checked and counted there, then answered
//! `303` with a presigned `GET` of a real S3-compatible server (s3s-fs over
//! HTTP, which checks the SigV4 query signature), driven by curl and aria2c
//! as customers do. `redirect` is refused where storage cannot presign, `edge`
//! without a configured CDN profile (`tests/edge.rs` has the rest of `edge`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::{
    Admin, Backend, Reply, StoreKind, aria2c, artifact_path, curl, customer, initiations, no_rate_limits, release,
    request, set_quota, sha256_hex, test_bytes, url, used,
};
use serde_json::json;
use tollgate::config::Config;

const BIG: usize = 6 << 20;

/// `app` 1.0.0 (`app.tar.gz` and the 6 MiB `big.bin`) delivered by
/// `redirect`, and a customer `acme`; its API key.
async fn redirect_catalog(a: &Admin) -> String {
    release(a, "1.0.0", "stable", &[("app.tar.gz", "any")], "2026-01-01T00:00:00Z").await;
    a.blobs.put("app/1.0.0/big.bin", &test_bytes(BIG)).await;
    let r = a.call("PUT", &artifact_path("1.0.0", "big.bin", "linux"), None).await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App", "delivery": "redirect" }))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(Admin::json(&r)["delivery"], "redirect");
    customer(a, "acme", json!({})).await
}

/// The `303` a grant URL's `GET` is answered with, and its `Location`.
fn location(r: &Reply) -> String {
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    assert!(r.bytes().is_empty(), "{r:?}");
    r.header("location").unwrap().to_owned()
}

/// A refusal answered by the gateway itself: its code, and no redirect.
fn refused(r: &Reply, status: u16, code: &str) {
    assert_eq!((r.status, r.code().as_str()), (status, code), "{r:?}");
    assert!(r.header("location").is_none(), "{r:?}");
}

/// `GET` `grant` until it is redirected, every other answer being a refusal
/// by `concurrent_downloads`; the redirect and how many refusals it took.
async fn redirected_after_waiting(a: &Admin, grant: &str) -> (Reply, usize) {
    for waited in 0..100 {
        let r = request(a.gw.public, "GET", grant, &[]).await;
        if r.status == 303 {
            return (r, waited);
        }
        refused(&r, 429, "quota_exceeded");
        assert_eq!(Admin::json(&r)["quota"]["name"], "concurrent_downloads", "{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a redirect's concurrency slot was never freed");
}

/// A file fetched with curl `args` (and the URL last) into a temporary file;
/// its SHA-256.
fn fetched(dir: &std::path::Path, args: &[&str], url: &str) -> String {
    let out = dir.join("big.bin");
    let o = curl(&[args, &["-f", "-o", out.to_str().unwrap(), url]].concat());
    assert!(o.status.success(), "curl {args:?}: {o:?}");
    sha256_hex(&std::fs::read(&out).unwrap())
}

#[tokio::test]
async fn redirect_needs_storage_that_presigns_and_edge_a_cdn_profile() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, no_rate_limits).await;
    let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    assert_eq!(r.status, 201, "{r:?}");
    for (delivery, backend) in [("redirect", "local"), ("edge", "local")] {
        let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "Renamed", "delivery": delivery }))).await;
        assert_eq!((r.status, r.code().as_str()), (422, "delivery_unsupported"), "{r:?}");
        let detail = Admin::json(&r)["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(delivery) && (delivery == "edge" || detail.contains(backend)), "{detail}");
        // Nothing half-written: neither the mode nor the name changed.
        let p = Admin::json(&a.call("GET", "/admin/v1/products/app", None).await);
        assert_eq!((p["name"].as_str(), p["delivery"].as_str()), (Some("App"), Some("proxy")));
    }
    let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App", "delivery": "cdn" }))).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"), "{r:?}");

    let s3 = Admin::start_tweaked(StoreKind::Sqlite, Backend::S3, no_rate_limits).await;
    let r = s3.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App", "delivery": "edge" }))).await;
    assert_eq!((r.status, r.code().as_str()), (422, "delivery_unsupported"), "{r:?}");
    let r = s3.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App", "delivery": "redirect" }))).await;
    assert_eq!(r.status, 201, "{r:?}");
}

/// The issue's scenario with real clients: a `HEAD` is answered by the
/// gateway and counts nothing; `curl -L`, a cut download resumed with
/// `curl -C -` and an 8-way `aria2c` download go through the redirect to S3
/// and count once; `Prefer: no-redirect` gives the URL in JSON, which works
/// with no header at all; S3's answer names and types the file.
// curl and aria2c block their thread: the gateway needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_counted_at_the_gateway_and_served_by_storage() {
    let tweak = |c: &mut Config| {
        no_rate_limits(c);
        c.downloads.deliveries_per_grant = 0;
    };
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::S3, tweak).await;
    let key = redirect_catalog(&a).await;
    set_quota(&a, json!({ "downloads_per_day": 10 })).await;
    let grant = url(&a, &key, "big.bin").await;
    let full = format!("http://{}{grant}", a.gw.public);
    let want = sha256_hex(&test_bytes(BIG));
    let dir = tempfile::tempdir().unwrap();

    // HEAD: the gateway's own answer, no redirect, nothing counted.
    let r = request(a.gw.public, "HEAD", &grant, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some(BIG.to_string().as_str()));
    assert!(r.header("location").is_none());
    assert_eq!(used(&a, &key).await, 0, "HEAD counted");

    // The first GET: checked, counted, redirected to a presigned URL that
    // needs no header.
    let r = request(a.gw.public, "GET", &grant, &[("range", "bytes=0-99")]).await;
    let presigned = location(&r);
    assert!(presigned.contains("X-Amz-Signature="), "{presigned}");
    assert!(!presigned.contains(&a.gw.public.to_string()), "{presigned}");
    assert_eq!(used(&a, &key).await, 1);
    let o = curl(&["-f", "-D", "-", "-o", "/dev/null", &presigned]);
    assert!(o.status.success(), "{o:?}");
    let head = String::from_utf8_lossy(&o.stdout).to_lowercase();
    assert!(head.contains("content-disposition: attachment; filename=\"big.bin\""), "{head}");
    assert!(head.contains("content-type: application/octet-stream"), "{head}");

    // curl -L, a cut download resumed with -C -, aria2c in 8 segments.
    assert_eq!(fetched(dir.path(), &["-L"], &full), want);
    let out = dir.path().join("big.bin");
    let o = curl(&["-f", "-L", "-r", "0-999999", "-o", out.to_str().unwrap(), &full]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 1_000_000);
    let o = curl(&["-f", "-L", "-C", "-", "-o", out.to_str().unwrap(), &full]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), want);
    std::fs::remove_file(&out).unwrap();
    let o = aria2c(dir.path(), "big.bin", &full);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), want);

    // A script that wants the URL, not the bytes.
    let r = request(a.gw.public, "GET", &grant, &[("prefer", "no-redirect")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("preference-applied"), Some("no-redirect"));
    let body = Admin::json(&r);
    assert!(body["expires_at"].as_u64().unwrap() > 1_700_000_000, "{body}");
    assert_eq!(fetched(dir.path(), &[], body["url"].as_str().unwrap()), want);

    // Every request of the one grant counted once, and recorded as a
    // redirect.
    assert_eq!(used(&a, &key).await, 1);
    let events = initiations(&a, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["delivery"], "redirect", "{events:?}");
}

/// Every rule is applied before any redirect: a yanked release, a suspended
/// customer, a used-up quota and a grant that delivered its bound are
/// refused by the gateway with their codes, and a redirect holds the
/// customer's concurrency slot while its URL can be used.
// curl blocks its thread, and S3 runs in this process: another thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_before_any_redirect() {
    let tweak = |c: &mut Config| {
        no_rate_limits(c);
        c.downloads.deliveries_per_grant = 2;
        c.downloads.redirect_ttl = Duration::from_secs(2);
    };
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::S3, tweak).await;
    let key = redirect_catalog(&a).await;
    set_quota(&a, json!({ "downloads_per_day": 3 })).await;

    // A grant delivers its file twice, then is exhausted: what a redirect
    // hands out is charged although the gateway never sees the bytes.
    let first = url(&a, &key, "app.tar.gz").await;
    let second = url(&a, &key, "app.tar.gz").await;
    let third = url(&a, &key, "app.tar.gz").await;
    for _ in 0..2 {
        location(&request(a.gw.public, "GET", &first, &[]).await);
    }
    refused(&request(a.gw.public, "GET", &first, &[]).await, 403, "grant_exhausted");

    // Yanked, then suspended: refused with the rule's code, no redirect.
    let yank = a.call("POST", "/admin/v1/products/app/releases/1.0.0/yank", None).await;
    assert_eq!(yank.status, 200, "{yank:?}");
    refused(&request(a.gw.public, "GET", &second, &[]).await, 403, "release_yanked");
    let restore = a.call("POST", "/admin/v1/products/app/releases/1.0.0/restore", None).await;
    assert_eq!(restore.status, 200, "{restore:?}");
    let r = a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "Acme", "status": "suspended" }))).await;
    assert_eq!(r.status, 200, "{r:?}");
    refused(&request(a.gw.public, "GET", &second, &[]).await, 403, "customer_suspended");

    // One download at a time (and active again): the second
    // grant's redirect holds the only slot while its URL lives; the third
    // waits for it, then is redirected too.
    let quota = json!({ "downloads_per_day": 3, "concurrent_downloads": 1 });
    let r = a
        .call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "Acme", "status": "active", "quota": quota })))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // (The first grant's redirects still hold the slot for a moment.)
    let (r, _) = redirected_after_waiting(&a, &second).await;
    let presigned = location(&r);
    let (r, waited) = redirected_after_waiting(&a, &third).await;
    location(&r);
    assert!(waited > 0, "the redirect held no slot");
    // The presigned URL outlived its lifetime: storage refuses it.
    let o = curl(&["-o", "/dev/null", "-w", "%{http_code}", &presigned]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "403", "{o:?}");
    assert_eq!(used(&a, &key).await, 3);
}
