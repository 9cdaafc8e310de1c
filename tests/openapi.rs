//! The OpenAPI document: generated from the code, kept in `docs/openapi.json`,
//! served on the admin listener, and describing only routes that exist.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::{Admin, StoreKind, get};
use serde_json::Value;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

#[test]
fn the_snapshot_is_up_to_date() {
    let doc = tollgate::http::openapi::document();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &doc).unwrap();
    }
    let snapshot = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        doc == snapshot,
        "docs/openapi.json differs from the code's document; regenerate it with \
         UPDATE_SNAPSHOTS=1 cargo test --test openapi and review the diff"
    );
    let v: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
    assert!(v["components"]["securitySchemes"]["admin_token"].is_object());
    assert!(v["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn served_without_a_token_and_every_operation_exists() {
    let a = Admin::start(StoreKind::Sqlite).await;
    let r = get(a.gw.admin, "/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(String::from_utf8_lossy(r.bytes()), tollgate::http::openapi::document());

    let doc: Value = serde_json::from_slice(r.bytes()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{}", paths.len());
    let mut checked = 0;
    for (template, item) in paths {
        let path = template
            .replace("{version}", "1.0.0")
            .replace("{product}", "p")
            .replace("{customer}", "c")
            .replace("{entitlement}", "e")
            .replace("{filename}", "f.zip")
            .replace("{key}", "k");
        // Every `{name}` of the template is a declared path parameter (a
        // second `params(...)` in a `utoipa::path` replaces the first).
        let names: Vec<&str> = template.split('{').skip(1).filter_map(|t| t.split('}').next()).collect();
        for method in ["get", "put", "post", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            for name in &names {
                assert!(declared.contains(name), "{method} {template} does not declare its path parameter {name}");
            }
            let admin = template.starts_with("/admin/");
            assert!(op["security"].is_array(), "{method} {template} names its credentials");
            let r = if admin {
                a.call(&method.to_uppercase(), &path, None).await
            } else {
                a.customer("tg_nobody", &method.to_uppercase(), &path, None).await
            };
            // The route exists: not the fallback's 404 nor 405. (What it answers
            // for made-up ids and no body does not matter here.)
            let body = String::from_utf8_lossy(r.bytes());
            assert_ne!(r.status, 405, "{method} {template}");
            assert!(
                !body.contains("There is nothing at this path"),
                "{method} {template} is documented but not routed"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");
}
