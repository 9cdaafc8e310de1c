//! Cutting running downloads (issue 20, item 7): a yanked release's or a
//! suspended customer's streams are cut on order, on the gateway that takes
//! the order at once and on another gateway sharing the state store within
//! its polling interval; the response ends in an error, never as complete.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use common::{Admin, Gateway, RedisServer, artifact_path, customer, no_rate_limits, release, test_bytes, url};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::json;

const SIZE: usize = 64 << 20;

/// A download started and its first bytes read.
async fn started(gateway: std::net::SocketAddr, target: &str) -> Incoming {
    let response = common::send(gateway, "GET", target, &[]).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    body
}

/// Read on until the body ends; whether it ended in an error, and when.
async fn read_to_end(mut body: Incoming) -> (bool, u64) {
    let mut received = 0u64;
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len() as u64),
                Some(Err(_)) => return true,
                None => return false,
            }
        }
    })
    .await
    .expect("the download was not cut within 20 s");
    (outcome, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yanked_and_suspended_downloads_are_cut_on_every_gateway() {
    let redis = RedisServer::start().await;
    let a = Admin::on_redis(&redis, no_rate_limits).await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "any")], "2026-01-01T00:00:00Z").await;
    a.blobs.put("app/1.0.0/big.bin", &test_bytes(SIZE)).await;
    assert_eq!(a.call("PUT", &artifact_path("1.0.0", "big.bin", "linux"), None).await.status, 201);
    release(&a, "2.0.0", "stable", &[("app.tar.gz", "any")], "2026-02-01T00:00:00Z").await;
    a.blobs.put("app/2.0.0/big.bin", &test_bytes(SIZE)).await;
    assert_eq!(a.call("PUT", &artifact_path("2.0.0", "big.bin", "linux"), None).await.status, 201);
    let acme = customer(&a, "acme", json!({})).await;
    let globex = customer(&a, "globex", json!({})).await;
    // A second gateway on the same Redis and data directory (same keys).
    let mut config = a.blobs.config();
    no_rate_limits(&mut config);
    let b = Gateway::start_on_redis(&config, &redis).await;

    // Release 1.0.0: one download on each gateway, and one of 2.0.0.
    let on_a = started(a.gw.public, &url(&a, &acme, "big.bin").await).await;
    let on_b = started(b.public, &url(&a, &globex, "big.bin").await).await;
    let ask = json!({ "product": "app", "version": "2.0.0", "filename": "big.bin" });
    let r = common::ask(&a, &acme, ask).await;
    let other_release = started(a.gw.public, common::target(Admin::json(&r)["url"].as_str().unwrap())).await;

    let r = a.call("POST", "/admin/v1/products/app/releases/1.0.0/yank", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let ordered = Instant::now();
    let r = a.call("POST", "/admin/v1/products/app/releases/1.0.0/cut-downloads", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let answer = Admin::json(&r);
    assert_eq!(answer["cut_here"], 1, "{answer}");
    assert_eq!(answer["order"]["scope"], "release", "{answer}");
    // The clients read nothing meanwhile (a download on loopback would
    // finish before the other gateway's next look at the orders): each
    // stream waits on its full socket and is cut when it next sends. Read
    // 3 s later, past the 2 s polling interval, an uncut download would
    // end complete.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ((cut_a, got_a), (cut_b, got_b)) = tokio::join!(read_to_end(on_a), read_to_end(on_b));
    assert!(cut_a && cut_b, "both downloads end in an error, never as complete: a {cut_a} {got_a}, b {cut_b} {got_b}");
    assert!(got_a < SIZE as u64 && got_b < SIZE as u64, "{got_a} {got_b}");
    assert!(ordered.elapsed() < Duration::from_secs(10), "took {:?}", ordered.elapsed());

    // The customer scope: acme's 2.0.0 download is cut, globex's new one is not.
    let globex_2 = {
        let ask = json!({ "product": "app", "version": "2.0.0", "filename": "big.bin" });
        let r = common::ask(&a, &globex, ask).await;
        started(b.public, common::target(Admin::json(&r)["url"].as_str().unwrap())).await
    };
    let r = a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "status": "suspended" }))).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = a.call("POST", "/admin/v1/customers/acme/cut-downloads", None).await;
    assert_eq!((r.status, Admin::json(&r)["cut_here"].as_u64()), (200, Some(1)), "{r:?}");
    let (cut, _) = read_to_end(other_release).await;
    assert!(cut, "acme's download of 2.0.0 is cut");
    let (cut, got) = read_to_end(globex_2).await;
    assert!(!cut, "globex's download runs to its end ({got} bytes)");

    // Unknown targets are 404s; nothing is written for them.
    let r = a.call("POST", "/admin/v1/customers/nobody/cut-downloads", None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"), "{r:?}");
    let r = a.call("POST", "/admin/v1/products/app/releases/9.9.9/cut-downloads", None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"), "{r:?}");
    let r = a.call("POST", "/admin/v1/products/app/releases/not-a-version/cut-downloads", None).await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_field"), "{r:?}");
}
