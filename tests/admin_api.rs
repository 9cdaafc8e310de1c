//! The admin API over HTTP on a real gateway, with the state store on SQLite
//! and on a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use bytes::Bytes;
use common::{Admin, Backend, Blobs, Gateway, RedisServer, StoreKind, request_with_body};
use serde_json::json;

backend_suite!(
    sqlite = super::StoreKind::Sqlite, redis = super::StoreKind::Redis;
    requires_an_admin_token,
    products_are_idempotent_puts,
    release_lifecycle_over_http,
    customers_and_entitlements,
    bad_input_is_a_problem,
    api_keys_authenticate_customers,
);

async fn requires_an_admin_token(kind: StoreKind) {
    let a = Admin::start(kind).await;
    let path = "/admin/v1/products";
    let r = common::get(a.gw.admin, path).await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
    let wrong =
        request_with_body(a.gw.admin, "GET", path, &[("authorization", "Bearer tga_wrong")], Bytes::new()).await;
    assert_eq!(wrong.status, 401);
    let basic = format!("Basic {}", a.token);
    let r = request_with_body(a.gw.admin, "GET", path, &[("authorization", &basic)], Bytes::new()).await;
    assert_eq!(r.status, 401);
    assert_eq!(a.call("GET", path, None).await.status, 200);
    // Probes stay open.
    assert_eq!(common::get(a.gw.admin, "/healthz").await.status, 200);
    let ready = common::get(a.gw.admin, "/readyz").await;
    assert_eq!(ready.status, 200);
    let expected_store = if kind == StoreKind::Sqlite { "sqlite" } else { "redis" };
    assert_eq!(Admin::json(&ready)["store"], expected_store);
}

async fn products_are_idempotent_puts(kind: StoreKind) {
    let a = Admin::start(kind).await;
    let body = json!({ "name": "App", "delivery": "proxy" });
    let r = a.call("PUT", "/admin/v1/products/app", Some(body.clone())).await;
    assert_eq!(r.status, 201);
    assert_eq!(Admin::json(&r), json!({ "id": "app", "name": "App", "delivery": "proxy" }));
    assert_eq!(a.call("PUT", "/admin/v1/products/app", Some(body)).await.status, 200);
    assert_eq!(a.call("PUT", "/admin/v1/products/tool", Some(json!({ "name": "Tool" }))).await.status, 201);
    let page = Admin::json(&a.call("GET", "/admin/v1/products?limit=1", None).await);
    assert_eq!(page["items"][0]["id"], "app");
    let next = page["next"].as_str().unwrap().to_owned();
    let page2 = Admin::json(&a.call("GET", &format!("/admin/v1/products?limit=1&cursor={next}"), None).await);
    assert_eq!(page2["items"][0]["id"], "tool");
    assert!(page2["next"].is_null());
    assert_eq!(a.call("DELETE", "/admin/v1/products/tool", None).await.status, 204);
    let r = a.call("GET", "/admin/v1/products/tool", None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
}

async fn release_lifecycle_over_http(kind: StoreKind) {
    let a = Admin::start(kind).await;
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    let base = "/admin/v1/products/app/releases/1.4.2";
    let r = a.call("PUT", base, Some(json!({ "channel": "stable", "critical": true }))).await;
    assert_eq!(r.status, 201);
    assert_eq!(Admin::json(&r)["status"], "draft");
    let r = a.call("POST", &format!("{base}/yank"), None).await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"));
    let r = a.call("POST", &format!("{base}/publish"), None).await;
    assert_eq!(r.status, 200);
    let published = Admin::json(&r);
    assert_eq!(published["status"], "published");
    assert!(published["published_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(Admin::json(&a.call("POST", &format!("{base}/yank"), None).await)["status"], "yanked");
    assert_eq!(Admin::json(&a.call("POST", &format!("{base}/restore"), None).await)["status"], "published");
    let r = a.call("PUT", "/admin/v1/products/app/releases/1.0.0", Some(json!({ "channel": "stable" }))).await;
    assert_eq!(r.status, 201);
    let backdated = json!({ "backdated_to": "2024-01-01T00:00:00Z" });
    let r = a.call("POST", "/admin/v1/products/app/releases/1.0.0/publish", Some(backdated)).await;
    assert_eq!(Admin::json(&r)["published_at"], "2024-01-01T00:00:00Z");
    let list = Admin::json(&a.call("GET", "/admin/v1/products/app/releases", None).await);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let r = a.call("PUT", "/admin/v1/products/nope/releases/1.0.0", Some(json!({ "channel": "stable" }))).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = a.call("DELETE", "/admin/v1/products/app", None).await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"));
}

async fn customers_and_entitlements(kind: StoreKind) {
    let a = Admin::start(kind).await;
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    let r = a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "Acme Corp" }))).await;
    assert_eq!(r.status, 201);
    assert_eq!(Admin::json(&r)["status"], "active");
    let ent = json!({
        "product": "app", "license": "subscription",
        "starts_at": "2026-01-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z",
        "versions": "^1", "channels": ["beta"], "platforms": ["linux-x86_64"]
    });
    let r = a.call("PUT", "/admin/v1/customers/acme/entitlements/sub-2026", Some(ent.clone())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let stored = Admin::json(&r);
    assert_eq!((stored["versions"].as_str(), stored["status"].as_str()), (Some("^1"), Some("active")));
    assert_eq!(a.call("PUT", "/admin/v1/customers/acme/entitlements/sub-2026", Some(ent.clone())).await.status, 200);
    let list = Admin::json(&a.call("GET", "/admin/v1/customers/acme/entitlements", None).await);
    assert_eq!(list["items"][0]["id"], "sub-2026");
    let r = a.call("PUT", "/admin/v1/customers/ghost/entitlements/e1", Some(ent)).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    assert_eq!(a.call("DELETE", "/admin/v1/customers/acme/entitlements/sub-2026", None).await.status, 204);
    assert_eq!(a.call("DELETE", "/admin/v1/customers/acme/entitlements/sub-2026", None).await.status, 404);
}

const LONG_VERSION: &str = concat!(
    "/admin/v1/products/app/releases/1.0.0-",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
);

async fn bad_input_is_a_problem(kind: StoreKind) {
    let a = Admin::start(kind).await;
    let cases = [
        ("PUT", "/admin/v1/products/app", Some(json!({ "nme": "typo" })), 400, "invalid_request"),
        ("PUT", "/admin/v1/products/app", Some(json!([1, 2])), 400, "invalid_request"),
        ("PUT", "/admin/v1/products/bad%20id", Some(json!({ "name": "x" })), 422, "invalid_field"),
        ("PUT", "/admin/v1/products/app", Some(json!({ "name": "" })), 422, "invalid_field"),
        ("GET", "/admin/v1/products/app/releases/not-semver", None, 422, "invalid_field"),
        ("GET", "/admin/v1/products?limit=many", None, 400, "invalid_request"),
        ("GET", "/admin/v1/products?cursor=%25%25", None, 422, "invalid_field"),
        ("GET", "/admin/v1/products?limit=0", None, 422, "invalid_field"),
        // A version is a path segment and storage key segment: at most 128.
        ("PUT", LONG_VERSION, Some(json!({ "channel": "stable" })), 422, "invalid_field"),
        ("GET", "/admin/v1/products?limit=1000", None, 422, "invalid_field"),
        ("PATCH", "/admin/v1/products/app", None, 405, "method_not_allowed"),
        // Lists are not objects, even where serde would read the fields in order.
        ("PUT", "/admin/v1/products/app", Some(json!(["App"])), 400, "invalid_request"),
        (
            "PUT",
            "/admin/v1/customers/acme",
            Some(json!({ "name": "Acme", "quota": [5, 6, 7] })),
            400,
            "invalid_request",
        ),
        // Nor inside lists: a part is an object, not `[number, etag]`.
        (
            "POST",
            "/admin/v1/products/app/releases/1.0.0/artifacts/app.zip/complete",
            Some(json!({ "parts": [[1, "\"etag\""]] })),
            400,
            "invalid_request",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let r = a.call(method, path, body).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{method} {path}");
    }
    let r = a.call("PUT", "/admin/v1/products/app", None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"));
    // Nothing was written by the refused requests.
    assert_eq!(a.call("GET", "/admin/v1/products/app", None).await.status, 404);
    assert_eq!(a.call("GET", "/admin/v1/customers/acme", None).await.status, 404);
}

#[tokio::test]
async fn store_outage_is_503_and_readiness_fails() {
    let blobs = Blobs::new(Backend::Local).await;
    let config = blobs.config();
    let mut server = RedisServer::start().await;
    let gw = Gateway::start_on_redis(&config, &server).await;
    let token = std::fs::read_to_string(config.default_admin_token_path()).unwrap();
    let auth = format!("Bearer {}", token.trim());
    server.kill();
    let r = request_with_body(gw.admin, "GET", "/admin/v1/products", &[("authorization", &auth)], Bytes::new()).await;
    assert_eq!((r.status, r.code().as_str()), (503, "store_unavailable"));
    let body = String::from_utf8_lossy(r.bytes()).to_string();
    assert!(!body.contains("127.0.0.1") && !body.contains("refused"), "internal detail leaked: {body}");
    let ready = common::get(gw.admin, "/readyz").await;
    assert_eq!((ready.status, ready.code().as_str()), (503, "not_ready"));
}

async fn api_keys_authenticate_customers(kind: StoreKind) {
    let a = Admin::start(kind).await;
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    a.call("PUT", "/admin/v1/customers/acme_corp", Some(json!({ "name": "Acme" }))).await;
    let ent = json!({ "product": "app", "license": "perpetual", "starts_at": "2020-01-01T00:00:00Z" });
    a.call("PUT", "/admin/v1/customers/acme_corp/entitlements/e1", Some(ent)).await;
    let expired = json!({ "product": "app", "license": "trial", "starts_at": "2020-01-01T00:00:00Z", "expires_at": "2020-02-01T00:00:00Z" });
    a.call("PUT", "/admin/v1/customers/acme_corp/entitlements/trial", Some(expired)).await;

    let r = a.call("POST", "/admin/v1/customers/acme_corp/api-keys", Some(json!({ "name": "build server" }))).await;
    assert_eq!(r.status, 201);
    let created = Admin::json(&r);
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tg_acme_corp_"), "{key}");
    assert!(created.get("sha256").is_none(), "the digest is never shown");
    let id = created["id"].as_str().unwrap().to_owned();
    let r = a.call("POST", "/admin/v1/customers/ghost/api-keys", None).await;
    assert_eq!(r.status, 404);

    // The customer API with the key.
    let auth = format!("Bearer {key}");
    let r = request_with_body(a.gw.public, "GET", "/v1/entitlements", &[("authorization", &auth)], Bytes::new()).await;
    assert_eq!(r.status, 200);
    let items = Admin::json(&r)["items"].as_array().unwrap().clone();
    let active: Vec<(&str, bool)> =
        items.iter().map(|e| (e["id"].as_str().unwrap(), e["active_now"].as_bool().unwrap())).collect();
    assert_eq!(active, [("e1", true), ("trial", false)]);
    assert_eq!(items[0]["versions"], "*");
    assert_eq!(items[0]["channels"], json!(["stable"]));

    // Listing keys shows the use; the key text and digest never appear.
    let list = Admin::json(&a.call("GET", "/admin/v1/customers/acme_corp/api-keys", None).await);
    assert!(list["items"][0]["last_used_at"].is_string());
    assert!(!list.to_string().contains(&key[20..]));

    // Wrong, malformed and revoked keys are all 401.
    for bad in [format!("{key}0"), "tg_nope".to_owned(), key.replace("tg_acme_corp", "tg_globex")] {
        let h = format!("Bearer {bad}");
        let r = request_with_body(a.gw.public, "GET", "/v1/entitlements", &[("authorization", &h)], Bytes::new()).await;
        assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "{bad}");
    }
    let r = a.call("DELETE", &format!("/admin/v1/customers/acme_corp/api-keys/{id}"), None).await;
    assert!(Admin::json(&r)["revoked_at"].is_string());
    let r = request_with_body(a.gw.public, "GET", "/v1/entitlements", &[("authorization", &auth)], Bytes::new()).await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));

    // A suspended customer's key is refused with the reason.
    let r = a.call("POST", "/admin/v1/customers/acme_corp/api-keys", None).await;
    let key2 = Admin::json(&r)["key"].as_str().unwrap().to_owned();
    a.call("PUT", "/admin/v1/customers/acme_corp", Some(json!({ "name": "Acme", "status": "suspended" }))).await;
    let h = format!("Bearer {key2}");
    let r = request_with_body(a.gw.public, "GET", "/v1/entitlements", &[("authorization", &h)], Bytes::new()).await;
    assert_eq!((r.status, r.code().as_str()), (403, "customer_suspended"));
    // The admin token is not a customer key, and no key is not one either.
    let admin = format!("Bearer {}", a.token);
    let r = request_with_body(a.gw.public, "GET", "/v1/entitlements", &[("authorization", &admin)], Bytes::new()).await;
    assert_eq!(r.status, 401);
    assert_eq!(common::get(a.gw.public, "/v1/entitlements").await.status, 401);
}
