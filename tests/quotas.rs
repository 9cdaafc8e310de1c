//! Download quotas end to end on a real gateway: a grant counts once whatever
//! requests it takes (HEAD, ranges, parallel segments, resumes), limits refuse
//! with `429 quota_exceeded`, changes apply to the next download, concurrency
//! is held by leases, a started grant resumes past its URL's expiry, and a
//! Redis outage fails closed (or open, when configured) and heals by itself.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    Admin, Backend, Gateway, RedisServer, Reply, StoreKind, aria2c, artifact_path, ask, curl, customer, durable_redis,
    no_rate_limits, release, request, send, serve_with_admin, set_quota, sha256_hex, target, test_bytes, url, usage,
    used,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate::clock::ManualClock;

backend_suite!(
    sqlite = super::StoreKind::Sqlite, redis = super::StoreKind::Redis, redis_cluster = super::StoreKind::RedisCluster;
    a_grant_counts_once_whatever_its_requests,
    the_quota_is_exact_under_concurrency,
    concurrent_downloads_hold_leases,
    resumes_hold_the_concurrency_limit,
    a_started_grant_delivers_its_file_a_bounded_number_of_times,
);

const BIG: usize = 8 << 20;

/// `app` 1.0.0 with `app.tar.gz` (10 000 bytes) and `big.bin` (8 MiB), and a
/// customer `acme` with an entitlement (`entitlement` merged in); the API key.
async fn catalog(a: &Admin, entitlement: Value) -> String {
    release(a, "1.0.0", "stable", &[("app.tar.gz", "any")], "2026-01-01T00:00:00Z").await;
    a.blobs.put("app/1.0.0/big.bin", &test_bytes(BIG)).await;
    let r = a.call("PUT", &artifact_path("1.0.0", "big.bin", "linux"), None).await;
    assert_eq!(r.status, 201, "{r:?}");
    customer(a, "acme", entitlement).await
}

fn quota_refusal(r: &Reply) -> Value {
    assert_eq!((r.status, r.code().as_str()), (429, "quota_exceeded"), "{r:?}");
    Admin::json(r)["quota"].clone()
}

async fn a_grant_counts_once_whatever_its_requests(kind: StoreKind) {
    let a = Admin::start_tweaked(kind, Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    set_quota(&a, json!({ "downloads_per_day": 2 })).await;
    let public = a.gw.public;

    // Asking for a URL counts nothing; it describes the quota.
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    assert_eq!(r.header("ratelimit-policy"), Some(r#""downloads_per_day";q=2;w=86400"#), "{r:?}");
    assert!(r.header("ratelimit").unwrap().starts_with(r#""downloads_per_day";r=2;t="#), "{r:?}");
    let u1 = target(Admin::json(&r)["url"].as_str().unwrap()).to_owned();
    let (u2, u3) = (url(&a, &key, "app.tar.gz").await, url(&a, &key, "app.tar.gz").await);

    // HEAD never counts.
    assert_eq!(request(public, "HEAD", &u1, &[]).await.status, 200);
    assert_eq!(used(&a, &key).await, 0);
    // The first GET counts; a resume of the same grant does not.
    assert_eq!(request(public, "GET", &u1, &[("range", "bytes=0-99")]).await.status, 206);
    let rest = request(public, "GET", &u1, &[("range", "bytes=100-")]).await;
    assert_eq!((rest.status, rest.bytes().len()), (206, 9_900));
    assert_eq!(request(public, "GET", &u1, &[]).await.status, 200);
    assert_eq!(used(&a, &key).await, 1);

    // Eight segments racing as a grant's very first requests count once.
    let segments = (0..8).map(|i| {
        let range = format!("bytes={}-{}", i * 1250, i * 1250 + 1249);
        let u2 = u2.clone();
        async move { request(public, "GET", &u2, &[("range", range.as_str())]).await }
    });
    let parts = futures_util::future::join_all(segments).await;
    let body: Vec<u8> = parts.iter().flat_map(|r| r.bytes().to_vec()).collect();
    assert!(parts.iter().all(|r| r.status == 206), "{parts:?}");
    assert_eq!(body, test_bytes(10_000));
    assert_eq!(used(&a, &key).await, 2);

    // A third grant is refused at its first GET, naming the limit; so is a
    // fourth URL, before it is even handed out.
    let r = request(public, "GET", &u3, &[]).await;
    let q = quota_refusal(&r);
    assert_eq!(
        (q["name"].as_str(), q["scope"].as_str(), q["limit"].as_u64(), q["used"].as_u64()),
        (Some("downloads_per_day"), Some("customer"), Some(2), Some(2))
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    quota_refusal(&r);
    // The refused grant may still be looked at.
    assert_eq!(request(public, "HEAD", &u3, &[]).await.status, 200);

    // Quota changes apply to the very next download.
    set_quota(&a, json!({ "downloads_per_day": 3 })).await;
    assert_eq!(request(public, "GET", &u3, &[]).await.status, 200);
    assert_eq!(used(&a, &key).await, 3);
    set_quota(&a, json!({ "downloads_per_day": 1 })).await;
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    assert_eq!(quota_refusal(&r)["limit"], 1);
    // Started grants stay resumable whatever the quota says now.
    assert_eq!(request(public, "GET", &u1, &[("range", "bytes=5000-")]).await.status, 206);
}

async fn the_quota_is_exact_under_concurrency(kind: StoreKind) {
    let a = Admin::start_tweaked(kind, Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    set_quota(&a, json!({ "downloads_per_month": 50 })).await;
    let mut urls = Vec::new();
    for _ in 0..200 {
        urls.push(url(&a, &key, "app.tar.gz").await);
    }
    let public = a.gw.public;
    let tasks: Vec<_> =
        urls.into_iter().map(|u| tokio::spawn(async move { request(public, "GET", &u, &[]).await.status })).collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 50, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 150, "{statuses:?}");
    assert_eq!(used(&a, &key).await, 50);
}

async fn concurrent_downloads_hold_leases(kind: StoreKind) {
    let a = Admin::start_tweaked(kind, Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    set_quota(&a, json!({ "concurrent_downloads": 1 })).await;
    let (u1, u2) = (url(&a, &key, "big.bin").await, url(&a, &key, "big.bin").await);

    // An 8 MiB body, not read: the stream is held open by back-pressure.
    let streaming = send(a.gw.public, "GET", &u1, &[]).await;
    assert_eq!(streaming.status(), 200);
    assert_eq!(usage(&a, &key).await["active_downloads"], 1);
    let r = request(a.gw.public, "GET", &u2, &[]).await;
    let q = quota_refusal(&r);
    assert_eq!((q["name"].as_str(), q["used"].as_u64()), (Some("concurrent_downloads"), Some(1)));
    assert!(r.header("retry-after").is_some());
    // Another request on the streaming grant is the same download.
    assert_eq!(request(a.gw.public, "GET", &u1, &[("range", "bytes=0-9")]).await.status, 206);

    // The client goes away: the lease is released, the slot frees.
    drop(streaming);
    assert!(no_active_downloads(&a, &key).await, "the lease was not released after the client disconnected");
    // Resumed, the same grant takes its slot again at once.
    let resumed = send(a.gw.public, "GET", &u1, &[("range", "bytes=100-")]).await;
    assert_eq!(resumed.status(), 206);
    assert_eq!(usage(&a, &key).await["active_downloads"], 1);
    quota_refusal(&request(a.gw.public, "GET", &u2, &[]).await);
    drop(resumed);
    assert!(no_active_downloads(&a, &key).await, "the resumed download's lease was not released");
    let r = request(a.gw.public, "GET", &u2, &[]).await;
    assert_eq!((r.status, r.bytes().len()), (200, BIG));
}

/// The URL's expiry is "must start by": a started grant resumes after it,
/// for the resume window from its start; one never started does not.
#[tokio::test]
async fn a_started_grant_resumes_past_its_expiry() {
    let clock = ManualClock::new(tollgate::clock::unix_seconds(std::time::SystemTime::now()));
    let a = Admin::start_clocked(clock.clone(), |c| {
        no_rate_limits(c);
        c.signing.clock_skew = Duration::ZERO;
        c.downloads.resume_window = Duration::from_secs(3600);
    })
    .await;
    let key = catalog(&a, json!({})).await;
    let (started, idle) = (url(&a, &key, "app.tar.gz").await, url(&a, &key, "app.tar.gz").await);
    assert_eq!(request(a.gw.public, "GET", &started, &[("range", "bytes=0-99")]).await.status, 206);
    // Past the URLs' 15 minutes.
    clock.advance(16 * 60);
    let r = request(a.gw.public, "GET", &started, &[("range", "bytes=100-")]).await;
    assert_eq!((r.status, r.bytes().len()), (206, 9_900), "{r:?}");
    let r = request(a.gw.public, "GET", &idle, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "expired"));
    // An hour after its start, the started one is done too.
    clock.advance(44 * 60);
    let r = request(a.gw.public, "GET", &started, &[("range", "bytes=100-")]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "expired"));
}

/// An entitlement's own limit replaces the customer's for its downloads and
/// is counted over them; `GET /v1/usage` shows both.
#[tokio::test]
async fn an_entitlement_quota_overrides_the_customers() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, |c| {
        no_rate_limits(c);
        c.downloads.quota.downloads_per_day = Some(tollgate::quota::Limit::At(100));
    })
    .await;
    let key = catalog(&a, json!({ "quota": { "downloads_per_artifact": 1, "downloads_per_day": "unlimited" } })).await;
    let u = url(&a, &key, "app.tar.gz").await;
    assert_eq!(request(a.gw.public, "GET", &u, &[]).await.status, 200);
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    let q = quota_refusal(&r);
    assert_eq!(
        (q["name"].as_str(), q["scope"].as_str(), q["entitlement"].as_str()),
        (Some("downloads_per_artifact"), Some("entitlement"), Some("main"))
    );
    assert_eq!(r.header("retry-after"), None, "waiting does not lift a lifetime limit");
    // Another file is fine.
    assert_eq!(request(a.gw.public, "GET", &url(&a, &key, "big.bin").await, &[]).await.status, 200);

    let r = a.customer(&key, "GET", "/v1/usage?artifact=app/1.0.0/app.tar.gz", None).await;
    let limits = Admin::json(&r)["limits"].clone();
    let row = |name: &str, scope: &str| {
        limits.as_array().unwrap().iter().find(|l| l["name"] == name && l["scope"] == scope).cloned()
    };
    // The configured default is the customer's; it counted both downloads.
    assert_eq!(row("downloads_per_day", "customer").unwrap()["used"], 2);
    assert_eq!(row("downloads_per_artifact", "entitlement").unwrap()["used"], 1);
    assert_eq!(row("downloads_per_artifact", "entitlement").unwrap()["artifact"], "app/1.0.0/app.tar.gz");
    assert!(row("downloads_per_day", "entitlement").is_none(), "\"unlimited\" is no limit: {limits}");
}

/// Read a response body to its end; the bytes, or the error that cut it.
async fn read_all(response: hyper::Response<hyper::body::Incoming>) -> Result<Vec<u8>, String> {
    response.into_body().collect().await.map(|b| b.to_bytes().to_vec()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_redis_outage_fails_closed_and_heals_by_itself() {
    let mut redis = durable_redis().await;
    let a = Admin::on_redis(&redis, |c| {
        no_rate_limits(c);
        // The finished stream's lease cannot be released while Redis is
        // down; a short one lapses soon after.
        c.downloads.lease_ttl = Duration::from_secs(3);
    })
    .await;
    let key = catalog(&a, json!({})).await;
    let (big, small) = (url(&a, &key, "big.bin").await, url(&a, &key, "app.tar.gz").await);

    let streaming = send(a.gw.public, "GET", &big, &[]).await;
    assert_eq!(streaming.status(), 200);
    redis.kill();

    // New downloads and new URLs: 503, nothing served unchecked.
    let r = request(a.gw.public, "GET", &small, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (503, "store_unavailable"), "{r:?}");
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    assert_eq!((r.status, r.code().as_str()), (503, "store_unavailable"), "{r:?}");
    // The download in flight completes.
    let body = read_all(streaming).await.unwrap();
    assert_eq!(sha256_hex(&body), sha256_hex(&test_bytes(BIG)));

    // Redis returns; the gateway reconnects by itself.
    redis.restart().await;
    let mut healed = None;
    for _ in 0..100 {
        let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
        if r.status == 201 {
            healed = Some(target(Admin::json(&r)["url"].as_str().unwrap()).to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = healed.expect("the customer API did not recover after Redis came back");
    assert_eq!(request(a.gw.public, "GET", &fresh, &[]).await.status, 200);
    assert_eq!(request(a.gw.public, "GET", &small, &[]).await.status, 200);
    assert!(no_active_downloads(&a, &key).await, "leases held after the outage never freed");
}

/// Wait (bounded) until the customer has no live lease.
async fn no_active_downloads(a: &Admin, key: &str) -> bool {
    for _ in 0..200 {
        if usage(a, key).await["active_downloads"] == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn fail_open_serves_grant_urls_on_their_signature() {
    let mut redis = durable_redis().await;
    let a = Admin::on_redis(&redis, |c| {
        no_rate_limits(c);
        c.downloads.on_store_unavailable = tollgate::config::FailMode::Open;
    })
    .await;
    let key = catalog(&a, json!({})).await;
    let small = url(&a, &key, "app.tar.gz").await;
    redis.kill();
    let r = request(a.gw.public, "GET", &small, &[]).await;
    assert_eq!((r.status, r.bytes().len()), (200, 10_000), "{r:?}");
    // Asking for new URLs still needs the store.
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    assert_eq!(r.status, 503);
}

/// Two gateways (`tollgate serve` child processes) share one Redis with this
/// test's, which mints the URLs; after one download through each, 500 first
/// downloads race across the two for the 98 left of a quota of 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_never_pass_the_quota() {
    let redis = RedisServer::start().await;
    let a = Admin::on_redis(&redis, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    set_quota(&a, json!({ "downloads_per_day": 100 })).await;
    let config = a.blobs.config();
    let (data_dir, root) = (config.data_dir.display().to_string(), a.blobs.local_root().display().to_string());
    let env = [
        ("TOLLGATE_SERVER__LISTEN", "127.0.0.1:0"),
        ("TOLLGATE_DATA_DIR", data_dir.as_str()),
        ("TOLLGATE_STORAGE__LOCAL__ROOT", root.as_str()),
        ("TOLLGATE_STORE__BACKEND", "redis"),
        ("TOLLGATE_STORE__REDIS__URL", &redis.url()),
        ("TOLLGATE_STORE__REDIS__KEY_PREFIX", "tgtest"),
        ("TOLLGATE_LIMITS__ADDRESS_PER_SECOND", "0"),
        ("TOLLGATE_LIMITS__BAD_CREDENTIALS_PER_MINUTE", "0"),
    ];
    // Two child processes serve the downloads, so that neither shares its
    // threads with this test's clients and the race between them is fair.
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_one, _admin1, log1) = serve_with_admin(dir1.path(), &env);
    let (_two, _admin2, log2) = serve_with_admin(dir2.path(), &env);
    let public = |log: &[String]| -> std::net::SocketAddr {
        log.iter().find_map(|l| common::listener_addr(l, "public listener ready")).unwrap().parse().unwrap()
    };

    let gateways = [public(&log1), public(&log2)];
    // One download through each gateway first: both have their Redis
    // connections up and count into the same quota before the race starts
    // (a cold gateway could otherwise lose every request of the race to a
    // warm one, and the race would not be between two replicas).
    for gateway in gateways {
        let r = request(gateway, "GET", &url(&a, &key, "app.tar.gz").await, &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(used(&a, &key).await, 2);
    let mut urls = Vec::new();
    for _ in 0..500 {
        urls.push(url(&a, &key, "app.tar.gz").await);
    }
    let tasks: Vec<_> = urls
        .into_iter()
        .enumerate()
        .map(|(i, u)| tokio::spawn(async move { request(gateways[i % 2], "GET", &u, &[]).await.status }))
        .collect();
    let mut ok = [0, 0];
    let mut refused = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            200 => ok[i % 2] += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok[0] + ok[1], 98, "{ok:?}");
    assert_eq!(refused, 402);
    assert_eq!(used(&a, &key).await, 100);
}

/// Issue 14, item 3: a started grant is a URL anyone holding it can use for
/// the resume window. It delivers its file at most `deliveries_per_grant`
/// times over (then `403 grant_exhausted`), and the bytes it sends beyond
/// the file's size are charged to the byte quotas (they were not: one URL
/// delivered a file 20 times to whoever held it, 1× charged).
async fn a_started_grant_delivers_its_file_a_bounded_number_of_times(kind: StoreKind) {
    let a = Admin::start_tweaked(kind, Backend::Local, |c| {
        no_rate_limits(c);
        c.downloads.deliveries_per_grant = 3;
    })
    .await;
    let key = catalog(&a, json!({})).await;
    set_quota(&a, json!({ "bytes_per_day": 35_000 })).await;
    let shared = url(&a, &key, "app.tar.gz").await;
    for n in 1..=3u64 {
        let r = request(a.gw.public, "GET", &shared, &[]).await;
        assert_eq!((r.status, r.bytes().len()), (200, 10_000), "delivery {n}: {r:?}");
        // Recorded when the stream ends, asynchronously.
        assert!(eventually_used(&a, &key, "bytes_per_day", n * 10_000).await, "after delivery {n}");
    }
    for range in [None, Some("bytes=0-0")] {
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        let r = request(a.gw.public, "GET", &shared, &headers).await;
        assert_eq!((r.status, r.code().as_str()), (403, "grant_exhausted"), "{range:?}: {r:?}");
    }
    assert_eq!(request(a.gw.public, "HEAD", &shared, &[]).await.status, 200, "HEAD delivers nothing");
    // The bytes sent were charged: 30 000 of 35 000 leaves no room for
    // another 10 000-byte download.
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    assert_eq!(quota_refusal(&r)["name"], "bytes_per_day", "{r:?}");
}

/// Issue 14, item 3, optional: with `downloads.bind_started_grants`, a
/// started grant is served to its starting client's network (a /24 here)
/// and refused from any other; unbound by default.
#[tokio::test]
async fn a_started_grant_can_be_bound_to_its_first_network() {
    for bind in [true, false] {
        let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, |c| {
            no_rate_limits(c);
            // The test's requests say where they come from, as a balancer would.
            c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            if bind {
                c.downloads.bind_started_grants = Some(tollgate::config::GrantBinding::default());
            }
        })
        .await;
        let key = catalog(&a, json!({})).await;
        let u = url(&a, &key, "app.tar.gz").await;
        let from = |ip: &'static str| [("x-forwarded-for", ip)];
        assert_eq!(request(a.gw.public, "GET", &u, &from("203.0.113.5")).await.status, 200);
        let r = request(a.gw.public, "GET", &u, &from("203.0.113.77")).await;
        assert_eq!(r.status, 200, "the same /24: {r:?}");
        let r = request(a.gw.public, "GET", &u, &from("198.51.100.7")).await;
        if bind {
            assert_eq!((r.status, r.code().as_str()), (403, "grant_bound_elsewhere"), "{r:?}");
        } else {
            assert_eq!(r.status, 200, "unbound by default: {r:?}");
        }
    }
}

/// Wait (bounded) until the customer's `limit` shows `expected` used.
async fn eventually_used(a: &Admin, key: &str, limit: &str, expected: u64) -> bool {
    for _ in 0..100 {
        let u = usage(a, key).await;
        let used = u["limits"].as_array().unwrap().iter().find(|l| l["name"] == limit).and_then(|l| l["used"].as_u64());
        if used == Some(expected) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Issue 14, item 3: a lease is a gateway's hold on a grant, not the grant's.
/// With `concurrent_downloads = 1`, a one-byte request of a grant on gateway
/// B, ending, must not release the hold of the same grant's stream running
/// on gateway A (it did: a second grant then started).
async fn a_short_request_elsewhere_keeps_a_running_streams_lease(a: &Admin, b: &Gateway) {
    let key = catalog(a, json!({})).await;
    set_quota(a, json!({ "concurrent_downloads": 1 })).await;
    let first = url(a, &key, "big.bin").await;
    let running = send(a.gw.public, "GET", &first, &[]).await;
    assert_eq!(running.status(), 200);
    let mut body = running.into_body();
    body.frame().await.unwrap().unwrap();
    let r = request(b.public, "GET", &first, &[("range", "bytes=0-0")]).await;
    assert_eq!(r.status, 206, "the grant holds the slot already: {r:?}");
    // B's release is sent when its response has ended; give it time to land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(usage(a, &key).await["active_downloads"], 1);
    let second = url(a, &key, "big.bin").await;
    for gateway in [a.gw.public, b.public] {
        let r = request(gateway, "GET", &second, &[]).await;
        assert_eq!(quota_refusal(&r)["name"], "concurrent_downloads", "{r:?}");
    }
    drop(body);
    assert!(no_active_downloads(a, &key).await, "the stream's lease was not released");
    assert_eq!(request(b.public, "GET", &second, &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_per_gateway_on_sqlite() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, no_rate_limits).await;
    let mut config = a.blobs.config();
    no_rate_limits(&mut config);
    let b = Gateway::start(&config).await;
    a_short_request_elsewhere_keeps_a_running_streams_lease(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_per_gateway_on_redis() {
    let redis = RedisServer::start().await;
    let a = Admin::on_redis(&redis, no_rate_limits).await;
    let mut config = a.blobs.config();
    no_rate_limits(&mut config);
    let b = Gateway::start_on_redis(&config, &redis).await;
    a_short_request_elsewhere_keeps_a_running_streams_lease(&a, &b).await;
}

/// The issue's own scenario, with real clients: at 2 downloads a day, a curl
/// download, its `curl -C -` resume and an 8-way aria2c download of the same
/// grant count as one; HEAD never counts; the third grant is refused.
// curl and aria2c block their thread: the gateway needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_resume_and_aria2c_segments_count_once() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    set_quota(&a, json!({ "downloads_per_day": 2 })).await;
    let base = format!("http://{}", a.gw.public);
    let (u1, u2, u3) =
        (url(&a, &key, "big.bin").await, url(&a, &key, "big.bin").await, url(&a, &key, "app.tar.gz").await);
    let (first, second, third) = (format!("{base}{u1}"), format!("{base}{u2}"), format!("{base}{u3}"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.bin");
    let out_s = out.to_str().unwrap();
    let want = sha256_hex(&test_bytes(BIG));

    assert!(curl(&["-f", "-I", &first]).status.success());
    assert_eq!(used(&a, &key).await, 0, "HEAD counted");
    // A download cut short, then resumed.
    assert!(curl(&["-f", "-r", "0-999999", "-o", out_s, &first]).status.success());
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 1_000_000);
    let o = curl(&["-f", "-C", "-", "-o", out_s, &first]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), want);
    // The same grant again, in 8 parallel segments.
    std::fs::remove_file(&out).unwrap();
    let o = aria2c(dir.path(), "big.bin", &first);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), want);
    assert_eq!(used(&a, &key).await, 1);

    assert!(curl(&["-f", "-o", out_s, &second]).status.success());
    assert_eq!(used(&a, &key).await, 2);
    let o = curl(&["-o", "/dev/null", "-w", "%{http_code}", &third]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "429");
}

/// Grants started one after another with a one-byte range, then resumed all
/// at once and held open: no more streams than `concurrent_downloads`, the
/// rest refused with `quota_exceeded`; the refused ones never count.
async fn resumes_hold_the_concurrency_limit(kind: StoreKind) {
    let a = Admin::start_tweaked(kind, Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    set_quota(&a, json!({ "concurrent_downloads": 3 })).await;
    let mut urls = Vec::new();
    for _ in 0..8 {
        let u = url(&a, &key, "big.bin").await;
        assert_eq!(request(a.gw.public, "GET", &u, &[("range", "bytes=0-0")]).await.status, 206);
        urls.push(u);
    }
    assert!(no_active_downloads(&a, &key).await, "the one-byte downloads kept their leases");
    let resumes = urls.iter().map(|u| send(a.gw.public, "GET", u, &[("range", "bytes=1-")]));
    let responses = futures_util::future::join_all(resumes).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 206).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
    assert_eq!(usage(&a, &key).await["active_downloads"], 3);
    drop(responses);
    assert!(no_active_downloads(&a, &key).await, "the resumed downloads' leases were not released");
}
