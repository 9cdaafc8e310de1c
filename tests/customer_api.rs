//! The entitlement flow end to end on a real gateway: the vendor registers a
//! product, a release and its file, a customer, an entitlement and a key over
//! the admin API; the customer lists, asks for a URL and downloads; every
//! refusal names its rule. Run on SQLite and on a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use common::{Admin, Backend, StoreKind, artifact_path, ask, customer, get, release, sha256_hex, target, test_bytes};
use serde_json::{Value, json};

backend_suite!(
    sqlite = super::StoreKind::Sqlite, redis = super::StoreKind::Redis, redis_cluster = super::StoreKind::RedisCluster;
    artifacts_are_measured_not_trusted,
    customer_lists_asks_and_downloads,
    a_url_is_rechecked_when_used,
    refusals_name_their_rule,
    upgrade_finds_the_newest_entitled_release,
    eligible_customers_before_publishing,
    bad_requests_are_problems,
);

async fn artifacts_are_measured_not_trusted(kind: StoreKind) {
    let a = Admin::start(kind).await;
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    a.call("PUT", "/admin/v1/products/app/releases/1.0.0", Some(json!({ "channel": "stable" }))).await;
    let data = test_bytes(123_457);
    a.blobs.put("app/1.0.0/app.tar.gz", &data).await;
    a.blobs.put("elsewhere/build-77.bin", &data[..1000]).await;

    let r = a.call("PUT", &artifact_path("1.0.0", "app.tar.gz", "linux-x86_64"), None).await;
    assert_eq!(r.status, 201, "{r:?}");
    let art = Admin::json(&r);
    assert_eq!(art["size"], 123_457);
    assert_eq!(art["sha256"], sha256_hex(&data));
    assert_eq!(art["content_type"], "application/gzip");
    assert_eq!(art["storage_key"], "app/1.0.0/app.tar.gz");
    // Registering again is idempotent.
    assert_eq!(a.call("PUT", &artifact_path("1.0.0", "app.tar.gz", "linux-x86_64"), None).await.status, 200);

    // An explicit storage key and content type.
    let path = "/admin/v1/products/app/releases/1.0.0/artifacts/app.bin?source=existing&platform=any\
                &storage_key=elsewhere/build-77.bin&content_type=application/x-app";
    let art = Admin::json(&a.call("PUT", path, None).await);
    assert_eq!((art["size"].as_u64(), art["content_type"].as_str()), (Some(1000), Some("application/x-app")));
    assert_eq!(art["sha256"], sha256_hex(&data[..1000]));

    // Nothing in storage, no release, a bad name, a body: refused, nothing written.
    let r = a.call("PUT", &artifact_path("1.0.0", "ghost.zip", "any"), None).await;
    assert_eq!((r.status, r.code().as_str()), (422, "object_not_found"));
    let r = a.call("PUT", &artifact_path("9.9.9", "app.tar.gz", "any"), None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = a.call("PUT", &artifact_path("1.0.0", ".hidden", "any"), None).await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_field"));
    let r = a.call("PUT", &artifact_path("1.0.0", "app.tar.gz", "linux%2Fx86"), None).await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_field"));
    // Registering an existing object takes no body (uploads are tests/uploads.rs).
    let r = a.call("PUT", &artifact_path("1.0.0", "app.tar.gz", "any"), Some(json!({}))).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"));
    let list = Admin::json(&a.call("GET", "/admin/v1/products/app/releases/1.0.0/artifacts", None).await);
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|i| i["filename"].as_str().unwrap()).collect();
    assert_eq!(names, ["app.bin", "app.tar.gz"]);

    // A release with artifacts cannot be deleted; a published release's artifact
    // needs force.
    let r = a.call("DELETE", "/admin/v1/products/app/releases/1.0.0", None).await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"));
    a.call("POST", "/admin/v1/products/app/releases/1.0.0/publish", None).await;
    // The download serves the storage key's bytes under the artifact's name.
    let key = customer(&a, "acme", json!({})).await;
    let d = Admin::json(&ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.bin" })).await);
    let got = get(a.gw.public, target(d["url"].as_str().unwrap())).await;
    assert_eq!((got.status, got.bytes().as_ref()), (200, &data[..1000]));
    assert_eq!(got.header("content-disposition"), Some("attachment; filename=\"app.bin\""));
    assert_eq!(got.header("content-type"), Some("application/x-app"));
    let r = a.call("DELETE", "/admin/v1/products/app/releases/1.0.0/artifacts/app.bin", None).await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"));
    let r = a.call("DELETE", "/admin/v1/products/app/releases/1.0.0/artifacts/app.bin?force=true", None).await;
    assert_eq!(r.status, 204);
    assert_eq!(a.call("GET", "/admin/v1/products/app/releases/1.0.0/artifacts/app.bin", None).await.status, 404);
}

async fn customer_lists_asks_and_downloads(kind: StoreKind) {
    let a = Admin::start(kind).await;
    release(
        &a,
        "1.0.0",
        "stable",
        &[("app-linux.tar.gz", "linux-x86_64"), ("app-mac.dmg", "macos-arm64")],
        "2026-01-01T00:00:00Z",
    )
    .await;
    release(&a, "1.1.0", "stable", &[("app-linux.tar.gz", "linux-x86_64")], "2026-02-01T00:00:00Z").await;
    let key = customer(&a, "acme", json!({ "platforms": ["linux-x86_64"] })).await;

    // Newest first, only the files the entitlement covers.
    let r = a.customer(&key, "GET", "/v1/products/app/releases", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let list = Admin::json(&r);
    let items = list["items"].as_array().unwrap();
    let versions: Vec<&str> = items.iter().map(|i| i["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"]);
    let files: Vec<&str> =
        items[1]["artifacts"].as_array().unwrap().iter().map(|f| f["filename"].as_str().unwrap()).collect();
    assert_eq!(files, ["app-linux.tar.gz"]);
    assert!(items[0]["artifacts"][0].get("storage_key").is_none());
    let r = a.customer(&key, "GET", "/v1/products/app/releases?platform=macos-arm64", None).await;
    assert_eq!(Admin::json(&r)["items"], json!([]));

    // By file name and by platform.
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app-linux.tar.gz" })).await;
    assert_eq!(r.status, 201, "{r:?}");
    let d = Admin::json(&r);
    let data = test_bytes(10_000);
    assert_eq!((d["size"].as_u64(), d["sha256"].as_str()), (Some(10_000), Some(sha256_hex(&data).as_str())));
    assert!(d["grant_id"].as_str().unwrap().ends_with(".main"));
    assert!(d["expires_at"].as_str().unwrap().ends_with('Z'));
    let url = d["url"].as_str().unwrap();
    assert!(url.starts_with("http://") && url.contains("/d/app/1.0.0/app-linux.tar.gz?"), "{url}");
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.1.0", "platform": "linux-x86_64" })).await;
    assert_eq!(Admin::json(&r)["filename"], "app-linux.tar.gz");

    // The URL downloads the bytes, with their digest.
    let got = get(a.gw.public, target(url)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes().as_ref(), data.as_slice());
    assert_eq!(got.header("x-checksum-sha256"), Some(sha256_hex(&data).as_str()));
    assert!(got.header("repr-digest").unwrap().starts_with("sha-256=:"));
    assert_eq!(got.header("content-type"), Some("application/gzip"));
    let ranged = common::request(a.gw.public, "GET", target(url), &[("range", "bytes=100-199")]).await;
    assert_eq!((ranged.status, ranged.bytes().as_ref()), (206, &data[100..200]));
}

async fn a_url_is_rechecked_when_used(kind: StoreKind) {
    // One URL is used many times here: no bound on what its grant delivers.
    let a = Admin::start_tweaked(kind, Backend::Local, |c| c.downloads.deliveries_per_grant = 0).await;
    release(&a, "1.0.0", "stable", &[("app.zip", "any")], "2026-01-01T00:00:00Z").await;
    let key = customer(&a, "acme", json!({})).await;
    let d = Admin::json(&ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.zip" })).await);
    let url = target(d["url"].as_str().unwrap()).to_owned();
    assert_eq!(get(a.gw.public, &url).await.status, 200);
    // CI repeating the release's PUT does not unpublish it.
    let r = a
        .call("PUT", "/admin/v1/products/app/releases/1.0.0", Some(json!({ "channel": "stable", "notes": "n" })))
        .await;
    assert_eq!((r.status, Admin::json(&r)["status"].as_str()), (200, Some("published")));
    assert_eq!(get(a.gw.public, &url).await.status, 200);

    // Yanked after the URL was issued: refused; restored: served again.
    a.call("POST", "/admin/v1/products/app/releases/1.0.0/yank", None).await;
    let r = get(a.gw.public, &url).await;
    assert_eq!((r.status, r.code().as_str()), (403, "release_yanked"));
    a.call("POST", "/admin/v1/products/app/releases/1.0.0/restore", None).await;
    assert_eq!(get(a.gw.public, &url).await.status, 200);

    // Entitlement revoked, then deleted.
    let ent =
        json!({ "product": "app", "license": "perpetual", "starts_at": "2020-01-01T00:00:00Z", "status": "revoked" });
    a.call("PUT", "/admin/v1/customers/acme/entitlements/main", Some(ent)).await;
    let r = get(a.gw.public, &url).await;
    assert_eq!((r.status, r.code().as_str()), (403, "entitlement_inactive"));
    a.call("DELETE", "/admin/v1/customers/acme/entitlements/main", None).await;
    let r = get(a.gw.public, &url).await;
    assert_eq!((r.status, r.code().as_str()), (403, "not_entitled"));
    customer(&a, "acme", json!({})).await;
    assert_eq!(get(a.gw.public, &url).await.status, 200);

    // Customer suspended; customer limited to other networks.
    a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "status": "suspended" }))).await;
    let r = get(a.gw.public, &url).await;
    assert_eq!((r.status, r.code().as_str()), (403, "customer_suspended"));
    // A PUT that only renames keeps the suspension.
    a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "Acme Corp" }))).await;
    let r = get(a.gw.public, &url).await;
    assert_eq!((r.status, r.code().as_str()), (403, "customer_suspended"));
    let body = json!({ "name": "acme", "status": "active", "allowed_cidrs": ["192.0.2.0/24"] });
    a.call("PUT", "/admin/v1/customers/acme", Some(body)).await;
    let r = get(a.gw.public, &url).await;
    assert_eq!((r.status, r.code().as_str()), (403, "address_not_allowed"));
    a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "allowed_cidrs": ["127.0.0.0/8"] }))).await;
    assert_eq!(get(a.gw.public, &url).await.status, 200);

    // The file replaced in storage behind the gateway's back is not served
    // under the old digest: neither a different size nor the same size.
    let mut same_size = test_bytes(10_000);
    same_size[0] ^= 0xff;
    a.blobs.put("app/1.0.0/app.zip", &same_size).await;
    let r = get(a.gw.public, &url).await;
    assert_eq!((r.status, r.code().as_str()), (502, "artifact_changed"));
    a.blobs.put("app/1.0.0/app.zip", b"something else").await;
    let r = get(a.gw.public, &url).await;
    assert_eq!((r.status, r.code().as_str()), (502, "artifact_changed"));

    // A grant the gateway never issued, even when correctly signed.
    let forged = a.gw.signed_with("app/1.0.0/app.zip", |c| {
        c.customer = Some("acme".into());
        c.grant = Some("0123456789abcdef01234567.main".into());
    });
    let r = get(a.gw.public, &forged).await;
    assert_eq!((r.status, r.code().as_str()), (403, "unknown_grant"));
    let r = get(a.gw.public, &a.gw.signed_with("app/1.0.0/app.zip", |c| c.grant = Some("g1".into()))).await;
    assert_eq!((r.status, r.code().as_str()), (403, "unknown_grant"));
}

async fn refusals_name_their_rule(kind: StoreKind) {
    let a = Admin::start(kind).await;
    release(&a, "1.0.0", "stable", &[("app.zip", "any")], "2025-06-01T00:00:00Z").await;
    release(&a, "2.0.0", "stable", &[("app.zip", "any"), ("app.exe", "windows-x86_64")], "2026-06-01T00:00:00Z").await;
    a.call("PUT", "/admin/v1/products/app/releases/3.0.0-beta.1", Some(json!({ "channel": "beta" }))).await;
    a.blobs.put("app/3.0.0-beta.1/app.zip", b"beta").await;
    a.call("PUT", &artifact_path("3.0.0-beta.1", "app.zip", "any"), None).await;
    let want = |v: &str, f: &str| json!({ "product": "app", "version": v, "filename": f });

    // No entitlement for the product at all.
    a.call("PUT", "/admin/v1/products/other", Some(json!({ "name": "Other" }))).await;
    let stranger = customer(&a, "stranger", json!({ "product": "other" })).await;
    let cases: Vec<(String, Value, u16, &str)> = vec![
        (stranger, want("1.0.0", "app.zip"), 403, "not_entitled"),
        (
            customer(&a, "expired", json!({ "expires_at": "2021-01-01T00:00:00Z" })).await,
            want("1.0.0", "app.zip"),
            403,
            "entitlement_expired",
        ),
        (
            customer(&a, "future", json!({ "starts_at": "2099-01-01T00:00:00Z" })).await,
            want("1.0.0", "app.zip"),
            403,
            "entitlement_not_started",
        ),
        (
            customer(&a, "lapsed", json!({ "maintenance_until": "2025-12-31T00:00:00Z" })).await,
            want("2.0.0", "app.zip"),
            403,
            "outside_maintenance",
        ),
        (
            customer(&a, "v1only", json!({ "versions": "^1" })).await,
            want("2.0.0", "app.zip"),
            403,
            "version_not_covered",
        ),
        (
            customer(&a, "linux", json!({ "platforms": ["linux-x86_64"] })).await,
            want("2.0.0", "app.exe"),
            403,
            "platform_not_covered",
        ),
        (customer(&a, "stable", json!({})).await, want("3.0.0-beta.1", "app.zip"), 403, "release_not_published"),
        (customer(&a, "nofile", json!({})).await, want("1.0.0", "nope.zip"), 404, "not_found"),
        // A draft's files are not revealed: a missing one is refused like a present one.
        (customer(&a, "probe", json!({})).await, want("3.0.0-beta.1", "nope.zip"), 403, "release_not_published"),
    ];
    for (key, body, status, code) in &cases {
        let r = ask(&a, key, body.clone()).await;
        assert_eq!((r.status, r.code().as_str()), (*status, *code), "{body}");
    }
    // The maintenance window still covers the release published inside it.
    assert_eq!(ask(&a, &cases[3].0, want("1.0.0", "app.zip")).await.status, 201);

    // Beta: not covered by a stable entitlement, covered by a beta one, once published.
    a.call("POST", "/admin/v1/products/app/releases/3.0.0-beta.1/publish", None).await;
    let r = ask(&a, &cases[6].0, want("3.0.0-beta.1", "app.zip")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "channel_not_covered"));
    let beta = customer(&a, "beta", json!({ "channels": ["beta"] })).await;
    assert_eq!(ask(&a, &beta, want("3.0.0-beta.1", "app.zip")).await.status, 201);

    // Yanked.
    a.call("POST", "/admin/v1/products/app/releases/1.0.0/yank", None).await;
    let r = ask(&a, &beta, want("1.0.0", "app.zip")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "release_yanked"));
    // A yanked release is not listed either.
    let list = Admin::json(&a.customer(&beta, "GET", "/v1/products/app/releases", None).await);
    let versions: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|i| i["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["3.0.0-beta.1", "2.0.0"]);

    // Listing a product the caller has no entitlement for is refused, whether
    // or not it exists.
    for product in ["app", "no-such-product"] {
        let r = a.customer(&cases[0].0, "GET", &format!("/v1/products/{product}/releases"), None).await;
        assert_eq!((r.status, r.code().as_str()), (403, "not_entitled"));
    }
}

async fn upgrade_finds_the_newest_entitled_release(kind: StoreKind) {
    let a = Admin::start(kind).await;
    for (v, ch) in [("1.0.0", "stable"), ("1.1.0", "stable"), ("2.0.0", "stable"), ("2.1.0-rc.1", "rc")] {
        release(
            &a,
            v,
            ch,
            &[("app-linux.tar.gz", "linux-x86_64"), ("app.exe", "windows-x86_64")],
            "2026-01-01T00:00:00Z",
        )
        .await;
    }
    let up = |from: &str, extra: &str| format!("/v1/products/app/upgrade?from={from}&platform=linux-x86_64{extra}");

    // Entitled to rc: the release candidate is the newest.
    let rc = customer(&a, "rc", json!({ "channels": ["rc"] })).await;
    let r = a.customer(&rc, "GET", &up("1.0.0", ""), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let body = Admin::json(&r);
    assert_eq!(body["release"]["version"], "2.1.0-rc.1");
    assert_eq!(body["download"]["filename"], "app-linux.tar.gz");
    let url = body["download"]["url"].as_str().unwrap().to_owned();
    assert_eq!(get(a.gw.public, target(&url)).await.status, 200);
    let r = a.customer(&rc, "GET", &up("1.0.0", "&channel=stable"), None).await;
    assert_eq!(Admin::json(&r)["release"]["version"], "2.0.0");
    // A constraint follows semver: `<3` does not admit pre-releases.
    let r = a.customer(&rc, "GET", &up("1.0.0", "&constraint=%3C3"), None).await;
    assert_eq!(Admin::json(&r)["release"]["version"], "2.0.0");
    let r = a.customer(&rc, "GET", &up("2.1.0-rc.1", ""), None).await;
    assert_eq!(r.status, 204, "nothing newer");

    // Entitled to 1.x only.
    let v1 = customer(&a, "v1", json!({ "versions": "^1" })).await;
    let r = a.customer(&v1, "GET", &up("1.0.0", ""), None).await;
    assert_eq!(Admin::json(&r)["release"]["version"], "1.1.0");
    let r = a.customer(&v1, "GET", &up("1.0.0", "&constraint=~1.0"), None).await;
    assert_eq!(r.status, 204, "nothing newer within ~1.0");
    let r = a.customer(&v1, "GET", &up("1.1.0", ""), None).await;
    assert_eq!(r.status, 204, "2.x is not covered by ^1");
    let r = a.customer(&v1, "GET", "/v1/products/app/upgrade?from=1.0.0&platform=macos-arm64", None).await;
    assert_eq!(r.status, 204, "no file for the platform");

    let all = rc;
    for (q, code) in [
        (up("one", ""), "invalid_version"),
        (up("1.0.0", "&constraint=%3E%3Dbanana"), "invalid_constraint"),
        ("/v1/products/app/upgrade?platform=any".to_owned(), "invalid_request"),
        (up("1.0.0", "&channel=nightly"), "invalid_request"),
    ] {
        let r = a.customer(&all, "GET", &q, None).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{q}");
    }
}

async fn eligible_customers_before_publishing(kind: StoreKind) {
    let a = Admin::start(kind).await;
    release(&a, "1.0.0", "stable", &[("app.zip", "any")], "2025-01-01T00:00:00Z").await;
    customer(&a, "everyone", json!({})).await;
    customer(&a, "lapsed", json!({ "maintenance_until": "2025-06-01T00:00:00Z" })).await;
    customer(&a, "v1only", json!({ "versions": "<1.0.1" })).await;
    customer(&a, "linux", json!({ "platforms": ["linux-x86_64"] })).await;
    customer(&a, "revoked", json!({ "status": "revoked" })).await;
    customer(&a, "suspended", json!({})).await;
    a.call("PUT", "/admin/v1/customers/suspended", Some(json!({ "name": "s", "status": "suspended" }))).await;

    // A critical patch, still a draft, with a Linux and a Windows build.
    a.call("PUT", "/admin/v1/products/app/releases/1.0.1", Some(json!({ "channel": "stable", "critical": true })))
        .await;
    for (f, p) in [("app.tar.gz", "linux-x86_64"), ("app.exe", "windows-x86_64")] {
        a.blobs.put(&format!("app/1.0.1/{f}"), b"patch").await;
        a.call("PUT", &artifact_path("1.0.1", f, p), None).await;
    }
    let r = a.call("GET", "/admin/v1/products/app/releases/1.0.1/eligible-customers", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let body = Admin::json(&r);
    let reached: Vec<(&str, Vec<&str>)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let platforms = i["platforms"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
            (i["customer"].as_str().unwrap(), platforms)
        })
        .collect();
    assert_eq!(reached, [("everyone", vec!["linux-x86_64", "windows-x86_64"]), ("linux", vec!["linux-x86_64"])]);
    assert_eq!(body["count"], 2);

    // Once published, the customers it reached can get it and the others cannot.
    a.call("POST", "/admin/v1/products/app/releases/1.0.1/publish", None).await;
    let everyone = customer(&a, "everyone", json!({})).await;
    let r = ask(&a, &everyone, json!({ "product": "app", "version": "1.0.1", "platform": "windows-x86_64" })).await;
    assert_eq!(r.status, 201);
    let lapsed = customer(&a, "lapsed", json!({ "maintenance_until": "2025-06-01T00:00:00Z" })).await;
    let r = ask(&a, &lapsed, json!({ "product": "app", "version": "1.0.1", "platform": "windows-x86_64" })).await;
    assert_eq!((r.status, r.code().as_str()), (403, "outside_maintenance"));
}

async fn bad_requests_are_problems(kind: StoreKind) {
    let a = Admin::start(kind).await;
    release(&a, "1.0.0", "stable", &[("a.zip", "any"), ("b.zip", "any")], "2026-01-01T00:00:00Z").await;
    let key = customer(&a, "acme", json!({})).await;
    for (body, status, code) in [
        (json!({ "product": "app", "version": "1.0", "filename": "a.zip" }), 400, "invalid_version"),
        (json!({ "product": "app", "version": "1.0.0" }), 400, "invalid_request"),
        (
            json!({ "product": "app", "version": "1.0.0", "filename": "a.zip", "platform": "any" }),
            400,
            "invalid_request",
        ),
        (json!({ "product": "app", "version": "1.0.0", "filename": "a.zip", "extra": 1 }), 400, "invalid_request"),
        (json!({ "product": "app", "version": "1.0.0", "platform": "linux-x86_64" }), 409, "ambiguous_artifact"),
        (json!({ "product": "app", "version": "7.0.0", "filename": "a.zip" }), 404, "not_found"),
    ] {
        let r = ask(&a, &key, body.clone()).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{body}");
    }
    let r = a.customer(&key, "POST", "/v1/downloads", None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"));
    // An oversized body is a problem too, on both APIs (not a plain-text rejection).
    let huge = Value::String("x".repeat(3 * 1024 * 1024));
    let r = a.customer(&key, "POST", "/v1/downloads", Some(huge.clone())).await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
    let r = a.call("PUT", "/admin/v1/products/app", Some(huge)).await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
    let r = a.customer(&key, "GET", "/v1/products/app/releases?channel=gold", None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"));
    // Without a key, nothing.
    let r = a.customer("tg_nope", "POST", "/v1/downloads", Some(json!({}))).await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
}

/// The same download flow with the files in a real S3-compatible server.
#[tokio::test]
async fn downloads_through_s3_storage() {
    let a = Admin::start_on(StoreKind::Sqlite, Backend::S3).await;
    release(&a, "1.0.0", "stable", &[("app.zip", "any")], "2026-01-01T00:00:00Z").await;
    let key = customer(&a, "acme", json!({})).await;
    let d = Admin::json(&ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "platform": "any" })).await);
    assert_eq!(d["sha256"], sha256_hex(&test_bytes(10_000)));
    let r = get(a.gw.public, target(d["url"].as_str().unwrap())).await;
    assert_eq!((r.status, r.bytes().as_ref()), (200, test_bytes(10_000).as_slice()));
}
