//! The services the gateway depends on failing under it (issue 20): blob
//! storage that stops answering (a real S3-compatible server behind a proxy
//! that freezes, as a `SIGSTOP`ped server would) and a Redis stopped and
//! restarted. What clients see must be bounded by the configured deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use common::stall::StallProxy;
use common::{Admin, Backend, Blobs, Gateway, RedisServer, get, request, test_bytes};
use http_body_util::BodyExt as _;
use tollgate::config::Config;
use tollgate::storage::{ObjectKey, UploadedPart};

const KEY: &str = "app/1.4.2/app-1.4.2-linux-x86_64.tar.gz";

/// S3 (s3s-fs) with a freezable proxy in front; `config` talks to the proxy.
async fn s3_behind_proxy(tweak: impl FnOnce(&mut Config)) -> (Blobs, StallProxy, Config) {
    let blobs = Blobs::new(Backend::S3).await;
    let upstream = blobs.s3.as_ref().unwrap().endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = StallProxy::start(upstream).await;
    let mut config = blobs.config();
    config.storage.s3.as_mut().unwrap().endpoint = Some(proxy.endpoint());
    tweak(&mut config);
    (blobs, proxy, config)
}

/// Item 1: with storage frozen, a download, a `HEAD` and `/readyz` are each
/// answered within one operation deadline, not one first-byte timeout per
/// SDK attempt (2 s × 3 attempts and their back-off before).
#[tokio::test]
async fn frozen_storage_costs_one_deadline_not_one_per_attempt() {
    let (blobs, proxy, config) = s3_behind_proxy(|c| {
        c.storage.first_byte_timeout = Duration::from_secs(2);
        c.storage.operation_timeout = Duration::from_millis(2500);
        c.server.readiness_timeout = Duration::from_secs(1);
    })
    .await;
    blobs.put(KEY, &test_bytes(1000)).await;
    let gw = Gateway::start(&config).await;
    assert_eq!(get(gw.public, &gw.signed(KEY)).await.status, 200, "the proxy forwards while thawed");

    proxy.freeze();
    for method in ["GET", "HEAD"] {
        let started = Instant::now();
        let r = request(gw.public, method, &gw.signed(KEY), &[]).await;
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{method}: {r:?}");
        if method == "GET" {
            assert_eq!(r.code(), "upstream_unavailable", "{r:?}");
        }
        assert!(took < Duration::from_millis(4000), "{method} answered after {took:?}");
    }
    let started = Instant::now();
    let r = get(gw.admin, "/readyz").await;
    let took = started.elapsed();
    assert_eq!((r.status, r.code().as_str()), (503, "not_ready"), "{r:?}");
    assert!(took < Duration::from_millis(1800), "/readyz answered after {took:?}");

    proxy.thaw();
    assert_eq!(get(gw.public, &gw.signed(KEY)).await.status, 200, "served again once storage answers");
    assert_eq!(get(gw.admin, "/readyz").await.status, 200);
}

/// Item 2: a stream from S3 that stalls is cut by `storage.idle_timeout`,
/// the configured value, and not earlier by the SDK's own stalled-stream
/// protection (which cut it at about 5 s).
#[tokio::test]
async fn a_stalled_s3_stream_is_cut_by_the_configured_idle_timeout() {
    const IDLE: Duration = Duration::from_secs(8);
    let (blobs, proxy, config) = s3_behind_proxy(|c| c.storage.idle_timeout = IDLE).await;
    let size = 32 * 1024 * 1024;
    blobs.put(KEY, &test_bytes(size)).await;
    let gw = Gateway::start(&config).await;
    let response = common::send(gw.public, "GET", &gw.signed(KEY), &[]).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = body.frame().await.unwrap().unwrap().into_data().unwrap().len();
    proxy.freeze();
    let frozen = Instant::now();
    let outcome = loop {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len()),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    let took = frozen.elapsed();
    assert!(outcome.is_err(), "a stalled stream must end in an error, not a clean end at {received} of {size}");
    assert!(received < size);
    // What was already in the sockets' buffers arrives first; then the stall.
    assert!(took >= IDLE - Duration::from_millis(500), "cut {took:?} into a stall, before storage.idle_timeout");
    assert!(took < IDLE + Duration::from_secs(5), "cut only {took:?} into a stall");
}

/// Item 5: `CompleteMultipartUpload` has `storage.upload_timeout`, not the
/// first-byte timeout: a complete that storage takes 7 s to answer (frozen,
/// then thawed) succeeds with a 1 s first-byte timeout.
#[tokio::test]
async fn completing_a_multipart_upload_has_its_own_deadline() {
    let (_blobs, proxy, config) = s3_behind_proxy(|c| {
        c.storage.first_byte_timeout = Duration::from_secs(1);
        c.storage.operation_timeout = Duration::from_secs(2);
        c.storage.upload_timeout = Duration::from_secs(30);
    })
    .await;
    let store = tollgate::storage::from_config(&config).await.unwrap();
    let key = ObjectKey::parse(KEY).unwrap();
    let data = test_bytes(6 * 1024 * 1024 + 17);
    let sha = common::sha256_hex(&data);
    let plan = store
        .plan_upload(&key, data.len() as u64, &sha, "application/gzip", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let upload_id = plan.upload_id.clone().expect("a multipart plan");
    assert!(plan.parts.len() >= 2, "{plan:?}");
    let mut uploaded = Vec::new();
    for part in &plan.parts {
        let (addr, target) = split_url(&part.url);
        let headers: Vec<(&str, &str)> = part.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = bytes::Bytes::copy_from_slice(&data[part.offset as usize..(part.offset + part.size) as usize]);
        let r = common::request_with_body(addr, &part.method, &target, &headers, body).await;
        assert_eq!(r.status, 200, "{r:?}");
        uploaded.push(UploadedPart { part_number: part.part_number, etag: r.header("etag").unwrap().to_owned() });
    }

    proxy.freeze();
    let completing = {
        let (store, key) = (store.clone(), key.clone());
        tokio::spawn(async move { store.complete_upload(&key, &upload_id, &uploaded).await })
    };
    tokio::time::sleep(Duration::from_secs(7)).await;
    proxy.thaw();
    completing.await.unwrap().expect("the complete waits for storage's answer");
    let meta = store.head(&key).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
}

/// `http://host:port/path?query` → the address and the target.
fn split_url(url: &str) -> (std::net::SocketAddr, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let slash = rest.find('/').unwrap();
    (rest[..slash].parse().unwrap(), rest[slash..].to_owned())
}

/// Item 3: the gateway starts while Redis is down: not ready, store requests
/// refused `503 store_unavailable`, operator URLs served; once Redis is up it
/// becomes ready by itself, with no restart.
#[tokio::test]
async fn the_gateway_starts_without_redis_and_recovers_when_it_comes() {
    let mut redis = RedisServer::start().await;
    redis.kill();
    let started = Instant::now();
    let a = Admin::on_redis(&redis, |c| c.server.readiness_timeout = Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(15), "start-up waited {:?} for Redis", started.elapsed());
    let r = get(a.gw.admin, "/readyz").await;
    assert_eq!((r.status, r.code().as_str()), (503, "not_ready"), "{r:?}");
    let r = a.call("GET", "/admin/v1/customers", None).await;
    assert_eq!((r.status, r.code().as_str()), (503, "store_unavailable"), "{r:?}");
    a.blobs.put(KEY, &test_bytes(1000)).await;
    let r = get(a.gw.public, &a.gw.signed(KEY)).await;
    assert_eq!(r.status, 200, "an operator URL needs no store: {r:?}");

    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(a.gw.admin, "/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "not ready 15 s after Redis came up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = a.call("GET", "/admin/v1/customers", None).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Item 3, with `downloads.on_store_unavailable = "open"`: a gateway started
/// while Redis is down serves a grant URL minted before, on its signature.
#[tokio::test]
async fn a_gateway_started_without_redis_serves_grant_urls_when_failing_open() {
    let mut redis = RedisServer::start().await;
    let open = |c: &mut Config| c.downloads.on_store_unavailable = tollgate::config::FailMode::Open;
    let a = Admin::on_redis(&redis, open).await;
    common::release(&a, "1.0.0", "stable", &[("app.tar.gz", "any")], "2026-01-01T00:00:00Z").await;
    let key = common::customer(&a, "acme", serde_json::json!({})).await;
    let grant_url = common::url(&a, &key, "app.tar.gz").await;
    redis.kill();
    let mut config = a.blobs.config();
    open(&mut config);
    let b = Gateway::start_on_redis(&config, &redis).await;
    let r = get(b.public, &grant_url).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(get(b.admin, "/readyz").await.status, 503);
}

/// Item 4: the first requests after a Redis restart are served: a command
/// that finds its pooled connection dead is sent once more on a new one.
#[tokio::test]
async fn requests_right_after_a_redis_restart_are_served() {
    let mut redis = common::durable_redis().await;
    let a = Admin::on_redis(&redis, |_| {}).await;
    common::release(&a, "1.0.0", "stable", &[("app.tar.gz", "any")], "2026-01-01T00:00:00Z").await;
    let key = common::customer(&a, "acme", serde_json::json!({})).await;
    for round in 0..3 {
        redis.kill();
        redis.restart().await;
        let r = a.call("GET", "/admin/v1/customers/acme", None).await;
        assert_eq!(r.status, 200, "round {round}, admin: {r:?}");
        let r = a.customer(&key, "GET", "/v1/usage", None).await;
        assert_eq!(r.status, 200, "round {round}, customer: {r:?}");
    }
}

/// Item 14: a Redis that would lose the gateway's state (eviction on, no
/// AOF) is named at start-up, in the log, before the listeners are ready.
#[tokio::test]
async fn a_redis_that_would_lose_state_is_warned_about() {
    let risky = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]).await;
    let safe = RedisServer::start_with(&["--appendonly", "yes", "--maxmemory-policy", "noeviction"]).await;
    for (redis, warned) in [(&risky, true), (&safe, false)] {
        let dir = tempfile::tempdir().unwrap();
        let url = redis.url();
        let env = [
            ("TOLLGATE_SERVER__LISTEN", "127.0.0.1:0"),
            ("TOLLGATE_STORE__BACKEND", "redis"),
            ("TOLLGATE_STORE__REDIS__URL", url.as_str()),
        ];
        let (_server, _admin, log) = common::serve_with_admin(dir.path(), &env);
        let log = log.concat();
        assert_eq!(log.contains("maxmemory-policy is allkeys-lru"), warned, "{log}");
        assert_eq!(log.contains("appendonly is off"), warned, "{log}");
    }
}
