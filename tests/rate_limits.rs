//! Request-rate limits on a real gateway: per API key on the customer API, per
//! client address on the data plane, and refused credentials per address.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::{Admin, Backend, StoreKind, get};
use serde_json::json;

/// A gateway with tight limits, one published file, and two customers' keys.
async fn gateway(tweak: impl FnOnce(&mut tollgate::config::LimitsConfig)) -> (Admin, String, String) {
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, |c| tweak(&mut c.limits)).await;
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    a.call("PUT", "/admin/v1/products/app/releases/1.0.0", Some(json!({ "channel": "stable" }))).await;
    a.blobs.put("app/1.0.0/app.zip", b"zip").await;
    a.call("PUT", "/admin/v1/products/app/releases/1.0.0/artifacts/app.zip?source=existing", None).await;
    a.call("POST", "/admin/v1/products/app/releases/1.0.0/publish", None).await;
    let mut keys = Vec::new();
    for c in ["acme", "globex"] {
        a.call("PUT", &format!("/admin/v1/customers/{c}"), Some(json!({ "name": c }))).await;
        let ent = json!({ "product": "app", "license": "perpetual", "starts_at": "2020-01-01T00:00:00Z" });
        a.call("PUT", &format!("/admin/v1/customers/{c}/entitlements/e1"), Some(ent)).await;
        let r = a.call("POST", &format!("/admin/v1/customers/{c}/api-keys"), None).await;
        keys.push(Admin::json(&r)["key"].as_str().unwrap().to_owned());
    }
    let globex = keys.pop().unwrap();
    (a, keys.pop().unwrap(), globex)
}

/// The path and query of a fresh download URL for the published file.
async fn download_target(a: &Admin, key: &str) -> String {
    let body = json!({ "product": "app", "version": "1.0.0", "platform": "any" });
    let d = Admin::json(&a.customer(key, "POST", "/v1/downloads", Some(body)).await);
    let url = d["url"].as_str().unwrap();
    url[url.find("/d/").unwrap()..].to_owned()
}

#[tokio::test]
async fn api_keys_are_limited_one_by_one() {
    let (a, acme, globex) = gateway(|l| {
        l.api_key_per_second = 1;
        l.api_key_burst = 2;
    })
    .await;
    for _ in 0..2 {
        assert_eq!(a.customer(&acme, "GET", "/v1/entitlements", None).await.status, 200);
    }
    let r = a.customer(&acme, "GET", "/v1/entitlements", None).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another key is not affected.
    assert_eq!(a.customer(&globex, "GET", "/v1/entitlements", None).await.status, 200);
    // The limit recovers at its rate.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(a.customer(&acme, "GET", "/v1/entitlements", None).await.status, 200);
}

#[tokio::test]
async fn refused_credentials_turn_into_429_per_address() {
    let (a, acme, _) = gateway(|l| {
        l.bad_credentials_per_minute = 1;
        l.bad_credentials_burst = 3;
    })
    .await;
    let good = &download_target(&a, &acme).await;
    // A well-formed signature, one character changed.
    let at = good.find("sig=").unwrap() + 4;
    let other = if &good[at..=at] == "A" { "B" } else { "A" };
    let bad = format!("{}{other}{}", &good[..at], &good[at + 1..]);
    // Bad tokens and bad API keys share the budget.
    assert_eq!(get(a.gw.public, &bad).await.code(), "invalid_signature");
    assert_eq!(get(a.gw.public, &bad).await.code(), "invalid_signature");
    assert_eq!(a.customer("tg_bogus", "GET", "/v1/entitlements", None).await.status, 401);
    let r = get(a.gw.public, &bad).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    assert!(r.header("retry-after").is_some());
    let r = a.customer("tg_bogus", "GET", "/v1/entitlements", None).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    // Valid credentials from the same address are still served.
    assert_eq!(get(a.gw.public, good).await.status, 200);
    assert_eq!(a.customer(&acme, "GET", "/v1/entitlements", None).await.status, 200);
}

#[tokio::test]
async fn data_plane_requests_are_limited_per_address() {
    let (a, acme, _) = gateway(|l| {
        l.address_per_second = 1;
        l.address_burst = 3;
    })
    .await;
    let good = &download_target(&a, &acme).await;
    for _ in 0..3 {
        assert_eq!(get(a.gw.public, good).await.status, 200);
    }
    let r = get(a.gw.public, good).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    // Health checks and the customer API are not data-plane requests.
    assert_eq!(get(a.gw.public, "/healthz").await.status, 200);
    assert_eq!(a.customer(&acme, "GET", "/v1/entitlements", None).await.status, 200);
}

#[tokio::test]
async fn zero_turns_a_limit_off() {
    let (a, acme, _) = gateway(|l| {
        l.api_key_per_second = 0;
        l.api_key_burst = 0;
    })
    .await;
    for _ in 0..150 {
        assert_eq!(a.customer(&acme, "GET", "/v1/entitlements", None).await.status, 200);
    }
}

/// Refusals of a well-signed URL (here: a suspended customer's) count against
/// the address like bad credentials: past the budget they are `429
/// rate_limited`, and only the refusals answered as such are recorded as
/// `download.denied`, so hammering an old link cannot flood the event log.
#[tokio::test]
async fn refusals_of_signed_urls_are_limited_and_recorded_within_the_budget() {
    let (a, acme, _) = gateway(|l| {
        l.bad_credentials_per_minute = 1;
        l.bad_credentials_burst = 3;
    })
    .await;
    let url = download_target(&a, &acme).await;
    a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "status": "suspended" }))).await;
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(get(a.gw.public, &url).await.code());
    }
    assert_eq!(codes.iter().filter(|c| *c == "customer_suspended").count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| *c == "rate_limited").count(), 17, "{codes:?}");
    // Identical refusals are one event per `events.denial_window`: close
    // the window now, so that its summary is recorded too.
    let state = a.gw.state.clone();
    for (subject, detail) in state.denials.close(u64::MAX) {
        state.record(subject, detail).await;
    }
    state.events.flush().await;
    let r = a.call("GET", "/admin/v1/events?type=download.denied&limit=100", None).await;
    let items = Admin::json(&r)["items"].as_array().unwrap().clone();
    assert!(items.iter().all(|e| e["data"]["reason"] == "customer_suspended"), "{items:?}");
    let refusals: u64 = items.iter().map(|e| e["data"]["count"].as_u64().unwrap_or(1)).sum();
    assert_eq!(refusals, 3, "{items:?}");
}
