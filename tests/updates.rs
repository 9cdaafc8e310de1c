//! Update feeds (issue 17, in part): the Tauri updater's dynamic server and
//! a Sparkle appcast, each checked field by field against the client's
//! documented format, with every entitlement rule applied as on
//! `POST /v1/downloads`; the credentials stock clients send (Bearer, and
//! Basic with user `license`); update signatures published with the files;
//! staged rollouts.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use base64::Engine as _;
use common::{
    Admin, Reply, StoreKind, customer, initiations, no_rate_limits, release, request, set_quota, sha256_hex, test_bytes,
};
use serde_json::{Value, json};

const SIG_110: &str = "untrusted comment: signature from tauri secret key\nRUQ0example1.1.0signature==\ntrusted comment: timestamp:1767225600\tfile:app.AppImage\nAAAAglobalsignature==";

/// 1.1.0's notes: Markdown, with raw HTML in it.
const NOTES: &str = "Fixes **speed** and <b>&</b> things";
/// What clients that show HTML get of them: the Markdown rendered, the raw
/// HTML shown as text.
const NOTES_HTML: &str = "<p>Fixes <strong>speed</strong> and &lt;b&gt;&amp;&lt;/b&gt; things</p>\n";

/// `app` 1.0.0 and 1.1.0, each with a Linux AppImage (1.1.0 also an
/// `appimage`-bundle build and a signed macOS zip), 1.1.0's files signed;
/// customer `acme` entitled to everything, with `overrides`.
async fn catalog(a: &Admin, overrides: Value) -> String {
    release(a, "1.0.0", "stable", &[("app.AppImage", "linux-x86_64")], "2026-01-01T00:00:00Z").await;
    release(
        a,
        "1.1.0",
        "stable",
        &[("app.AppImage", "linux-x86_64"), ("app.zip", "macos"), ("app-bundle.AppImage", "linux-x86_64-appimage")],
        "2026-06-01T00:00:00Z",
    )
    .await;
    for file in ["app.AppImage", "app.zip", "app-bundle.AppImage"] {
        sign(a, "1.1.0", file, SIG_110).await;
    }
    let notes = json!({ "channel": "stable", "notes": NOTES, "minimum_system_version": "12.0" });
    let r = a.call("PUT", "/admin/v1/products/app/releases/1.1.0", Some(notes)).await;
    assert_eq!(r.status, 200, "{r:?}");
    customer(a, "acme", overrides).await
}

async fn sign(a: &Admin, version: &str, file: &str, sig: &str) -> Reply {
    let path = format!("/admin/v1/products/app/releases/{version}/artifacts/{file}/signature");
    let r = a.call_raw("PUT", &path, sig.as_bytes().to_vec()).await;
    assert_eq!(r.status, 200, "{r:?}");
    r
}

async fn get(a: &Admin, key: &str, target: &str) -> Reply {
    request(a.gw.public, "GET", target, &[("authorization", &format!("Bearer {key}"))]).await
}

const TAURI: &str = "/v1/updates/tauri/app?target=linux&arch=x86_64&current_version=1.0.0";

/// The fields Tauri's updater requires of a dynamic server's answer
/// (tauri-plugin-updater `RemoteRelease`: `version` semver, `url` and
/// `signature` strings, `notes` optional string, `pub_date` optional RFC
/// 3339), and nothing it would misread.
fn tauri_update(r: &Reply) -> Value {
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("content-type").unwrap().starts_with("application/json"), "{r:?}");
    let v = Admin::json(r);
    semver::Version::parse(v["version"].as_str().unwrap()).unwrap();
    assert!(v["url"].as_str().unwrap().starts_with("http"), "{v}");
    assert!(!v["signature"].as_str().unwrap().is_empty(), "{v}");
    assert!(v["notes"].is_string(), "{v}");
    humantime::parse_rfc3339(v["pub_date"].as_str().unwrap()).unwrap();
    v
}

#[tokio::test]
async fn tauri_gets_the_newest_signed_release_for_its_platform() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    let v = tauri_update(&get(&a, &key, TAURI).await);
    assert_eq!(v["version"], "1.1.0");
    assert_eq!(v["pub_date"], "2026-06-01T00:00:00Z");
    assert_eq!(v["signature"], SIG_110, "the .sig's contents, not a URL to it");
    assert_eq!(v["notes"], NOTES, "Tauri gets the notes as written (Markdown)");
    // The URL is a grant URL: it downloads the platform's file, no header.
    let url = common::target(v["url"].as_str().unwrap()).to_owned();
    assert!(url.starts_with("/d/app/1.1.0/app.AppImage?"), "{url}");
    let file = request(a.gw.public, "GET", &url, &[]).await;
    assert_eq!(file.status, 200);
    assert_eq!(sha256_hex(file.bytes()), sha256_hex(&test_bytes(10_000)));
    let initiated = initiations(&a, 1).await;
    assert_eq!(initiated[0]["data"]["via"], "tauri", "the feed that issued it: {initiated:#?}");

    // The URL-template form and the bundle type.
    let v = tauri_update(&get(&a, &key, "/v1/updates/tauri/app/linux/x86_64/1.0.0").await);
    assert_eq!(v["version"], "1.1.0");
    let v = tauri_update(&get(&a, &key, &format!("{TAURI}&bundle_type=appimage")).await);
    assert!(v["url"].as_str().unwrap().contains("/app-bundle.AppImage?"), "{v}");
    // A bundle without a file of its own gets the platform's.
    let v = tauri_update(&get(&a, &key, &format!("{TAURI}&bundle_type=deb")).await);
    assert!(v["url"].as_str().unwrap().contains("/app.AppImage?"), "{v}");

    // Up to date, or a platform with no file: 204 and no body.
    for target in [
        "/v1/updates/tauri/app?target=linux&arch=x86_64&current_version=1.1.0",
        "/v1/updates/tauri/app?target=windows&arch=x86_64&current_version=1.0.0",
        "/v1/updates/tauri/app/linux/x86_64/2.0.0",
    ] {
        let r = get(&a, &key, target).await;
        assert_eq!(r.status, 204, "{target}: {r:?}");
        assert!(r.bytes().is_empty());
    }
    // Malformed requests are problems, not panics.
    for (target, code) in [
        ("/v1/updates/tauri/app?target=linux&arch=x86_64&current_version=one", "invalid_field"),
        ("/v1/updates/tauri/app?target=lin%2Fux&arch=x86_64&current_version=1.0.0", "invalid_field"),
        ("/v1/updates/tauri/app?target=linux&current_version=1.0.0", "invalid_request"),
        ("/v1/updates/tauri/app?target=linux&arch=x86_64&current_version=1.0.0&bundle_type=", "invalid_field"),
    ] {
        let r = get(&a, &key, target).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{target}: {r:?}");
    }
    let r = get(&a, &key, "/v1/updates/tauri/%C2%84/linux/x86_64/1.0.0").await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_field"), "not a product id: {r:?}");
    // An unsigned file cannot be offered to an updater that checks
    // signatures: said, not hidden.
    let r = a
        .call_raw("DELETE", "/admin/v1/products/app/releases/1.1.0/artifacts/app.AppImage/signature", Vec::new())
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(&a, &key, TAURI).await;
    assert_eq!((r.status, r.code().as_str()), (409, "unsigned_update"), "{r:?}");
}

/// A vendor that registers files under platform names of its own maps the
/// clients' names to them, per product; the mapping is checked on write.
#[tokio::test]
async fn a_product_maps_client_platforms_to_its_own() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    let darwin = "/v1/updates/tauri/app?target=darwin&arch=aarch64&current_version=1.0.0";
    assert_eq!(get(&a, &key, darwin).await.status, 204, "no file is registered as darwin-aarch64");
    let yaml =
        String::from_utf8_lossy(get(&a, &key, "/v1/updates/electron/app/latest-linux.yml").await.bytes()).into_owned();
    assert!(yaml.contains("1.1.0/app.AppImage"), "{yaml}");

    let mapping =
        json!({ "name": "App", "update_platforms": { "darwin-aarch64": "macos", "electron-linux": "macos" } });
    let r = a.call("PUT", "/admin/v1/products/app", Some(mapping.clone())).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(Admin::json(&r)["update_platforms"], mapping["update_platforms"]);
    let v = tauri_update(&get(&a, &key, darwin).await);
    assert!(v["url"].as_str().unwrap().contains("/app.zip?"), "{v}");
    let yaml =
        String::from_utf8_lossy(get(&a, &key, "/v1/updates/electron/app/latest-linux.yml").await.bytes()).into_owned();
    assert!(yaml.contains("1.1.0/app.zip") && !yaml.contains("AppImage"), "{yaml}");

    let too_many: serde_json::Map<String, Value> = (0..65).map(|i| (format!("p{i}"), json!("x"))).collect();
    for bad in [json!({ "a/b": "x" }), json!({ "x": "" }), json!({ "x": 1 }), Value::Object(too_many)] {
        let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App", "update_platforms": bad }))).await;
        assert!(r.status == 422 || r.status == 400, "{bad}: {r:?}");
    }
    let r = a.call("GET", "/admin/v1/products/app", None).await;
    assert_eq!(Admin::json(&r)["update_platforms"], mapping["update_platforms"], "nothing half-written");
}

#[tokio::test]
async fn update_clients_authenticate_as_they_can() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    let basic = |user: &str, password: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    };
    for user in ["license", "token"] {
        let r = request(a.gw.public, "GET", TAURI, &[("authorization", &basic(user, &key))]).await;
        assert_eq!(r.status, 200, "{user}: {r:?}");
    }
    for auth in [basic("admin", &key), basic("license", "tg_wrong"), "Basic !!!".to_owned(), String::new()] {
        let r = request(a.gw.public, "GET", TAURI, &[("authorization", &auth)]).await;
        assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "{auth}: {r:?}");
        let challenges: Vec<&str> = r.headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap()).collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer")) && challenges.iter().any(|c| c.starts_with("Basic"))
        );
    }
}

/// Every rule of `POST /v1/downloads` applies to the feeds: each case
/// leaves the customer nothing to update to.
#[tokio::test]
async fn entitlement_rules_apply_in_the_feeds() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    assert_eq!(get(&a, &key, TAURI).await.status, 200);

    // Outside the maintenance window: 1.1.0 was published after it ended.
    let ent = |extra: Value| {
        let mut e = json!({ "product": "app", "license": "perpetual", "starts_at": "2020-01-01T00:00:00Z" });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let put = |e: Value| a.call("PUT", "/admin/v1/customers/acme/entitlements/main", Some(e));
    assert_eq!(put(ent(json!({ "maintenance_until": "2026-03-01T00:00:00Z" }))).await.status, 200);
    assert_eq!(get(&a, &key, TAURI).await.status, 204, "outside the maintenance window");
    // Another platform only.
    assert_eq!(put(ent(json!({ "platforms": ["macos"] }))).await.status, 200);
    assert_eq!(get(&a, &key, TAURI).await.status, 204, "platform not covered");
    assert_eq!(put(ent(json!({}))).await.status, 200);
    assert_eq!(get(&a, &key, TAURI).await.status, 200);

    // Over quota: the grant cannot be issued, so nothing is offered.
    set_quota(&a, json!({ "downloads_per_day": 1 })).await;
    let first = get(&a, &key, TAURI).await;
    let url = common::target(Admin::json(&first)["url"].as_str().unwrap()).to_owned();
    assert_eq!(request(a.gw.public, "GET", &url, &[]).await.status, 200);
    assert_eq!(get(&a, &key, TAURI).await.status, 204, "over quota");
    set_quota(&a, json!({})).await;

    // Staged out: a rollout this customer's bucket is not in; critical
    // releases are never staged.
    let bucket = rollout_bucket("acme", "app", "1.1.0");
    let release = |extra: Value| {
        let mut r = json!({ "channel": "stable", "minimum_system_version": "12.0" });
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        a.call("PUT", "/admin/v1/products/app/releases/1.1.0", Some(r))
    };
    if bucket > 0 {
        assert_eq!(release(json!({ "rollout": bucket })).await.status, 200);
        assert_eq!(get(&a, &key, TAURI).await.status, 204, "staged out (bucket {bucket})");
        assert_eq!(release(json!({ "rollout": bucket, "critical": true })).await.status, 200);
        assert_eq!(get(&a, &key, TAURI).await.status, 200, "critical releases are not staged");
    }
    assert_eq!(release(json!({ "rollout": bucket + 1 })).await.status, 200);
    assert_eq!(get(&a, &key, TAURI).await.status, 200, "staged in (bucket {bucket})");
    for bad in [json!({ "rollout": 0 }), json!({ "rollout": 101 }), json!({ "minimum_system_version": "1 2" })] {
        let r = release(bad.clone()).await;
        assert_eq!((r.status, r.code().as_str()), (422, "invalid_field"), "{bad}: {r:?}");
    }
    assert_eq!(release(json!({})).await.status, 200);

    // Wrong channel: 1.1.0 moved to beta, the entitlement covers stable.
    assert_eq!(release(json!({ "channel": "beta" })).await.status, 200);
    let v = get(&a, &key, TAURI).await;
    assert_eq!(v.status, 204, "wrong channel: {v:?}");
    assert_eq!(release(json!({})).await.status, 200);

    // Yanked.
    assert_eq!(a.call("POST", "/admin/v1/products/app/releases/1.1.0/yank", None).await.status, 200);
    assert_eq!(get(&a, &key, TAURI).await.status, 204, "yanked");
    assert_eq!(a.call("POST", "/admin/v1/products/app/releases/1.1.0/restore", None).await.status, 200);

    // Suspended: the customer's key opens nothing.
    a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "status": "suspended" }))).await;
    let r = get(&a, &key, TAURI).await;
    assert_eq!((r.status, r.code().as_str()), (403, "customer_suspended"), "{r:?}");
}

/// The rollout bucket as `docs/updates.md` specifies it.
fn rollout_bucket(customer: &str, product: &str, version: &str) -> u8 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(format!("{customer}\n{product}\n{version}"));
    u8::try_from(u16::from_be_bytes([d[0], d[1]]) % 100).unwrap()
}

/// Run a Python `script` on `input` (its stdin); the JSON it prints.
fn python_json(script: &str, input: &[u8]) -> Value {
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(input));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Parse an appcast with Python's XML parser (a real one, not ours) into
/// JSON: the channel's title and each item's fields.
fn parse_appcast(xml: &[u8]) -> Value {
    const SCRIPT: &str = r#"
import json, sys, xml.etree.ElementTree as ET
S = "{http://www.andymatuschak.org/xml-namespaces/sparkle}"
root = ET.fromstring(sys.stdin.buffer.read())
assert root.tag == "rss" and root.get("version") == "2.0"
channel = root.find("channel")
items = []
for item in channel.findall("item"):
    enc = item.find("enclosure")
    items.append({
        "title": item.findtext("title"),
        "pubDate": item.findtext("pubDate"),
        "version": item.findtext(S + "version"),
        "shortVersionString": item.findtext(S + "shortVersionString"),
        "minimumSystemVersion": item.findtext(S + "minimumSystemVersion"),
        "critical": item.find(S + "criticalUpdate") is not None,
        "description": item.findtext("description"),
        "url": enc.get("url"), "length": enc.get("length"), "type": enc.get("type"),
        "edSignature": enc.get(S + "edSignature"),
    })
print(json.dumps({"title": channel.findtext("title"), "items": items}))
"#;
    python_json(SCRIPT, xml)
}

#[tokio::test]
async fn sparkle_reads_an_appcast_of_what_it_may_install() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, no_rate_limits).await;
    let key = catalog(&a, json!({})).await;
    let ed = "pVYtY5ZTW2Ij2k1Hn0EkYgSQs3bq4bYcFTdD4HmPzmB4j4rz5pl0+d1P7sgDVYCKcoF0bMx7G1OjaQ0/8oF4Dw==";
    sign(&a, "1.1.0", "app.zip", ed).await;
    release(&a, "1.2.0", "stable", &[("app.zip", "macos")], "2026-09-01T00:00:00Z").await;
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App & Co" }))).await;
    let r = a
        .call("PUT", "/admin/v1/products/app/releases/1.2.0", Some(json!({ "channel": "stable", "critical": true })))
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    let r = get(&a, &key, "/v1/updates/sparkle/app/appcast.xml").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/rss+xml; charset=utf-8"));
    let appcast = parse_appcast(r.bytes());
    assert_eq!(appcast["title"], "App & Co");
    let items = appcast["items"].as_array().unwrap();
    let versions: Vec<&str> = items.iter().map(|i| i["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.2.0", "1.1.0"], "newest first; 1.0.0 has no macOS file");
    let (newest, signed) = (&items[0], &items[1]);
    assert_eq!(newest["critical"], true);
    assert_eq!(newest["edSignature"], Value::Null, "an unsigned file has no edSignature");
    assert_eq!(signed["critical"], false);
    assert_eq!(signed["shortVersionString"], "1.1.0");
    assert_eq!(signed["minimumSystemVersion"], "12.0");
    assert_eq!(signed["description"], NOTES_HTML, "notes as safe HTML, escaped in the XML");
    assert_eq!(signed["edSignature"], ed);
    assert_eq!(signed["pubDate"], "Mon, 01 Jun 2026 00:00:00 GMT");
    assert_eq!(signed["length"], "10001");
    // Each enclosure is a grant URL for the file: no header needed.
    let url = common::target(signed["url"].as_str().unwrap()).to_owned();
    assert!(url.starts_with("/d/app/1.1.0/app.zip?"), "{url}");
    let file = request(a.gw.public, "GET", &url, &[]).await;
    assert_eq!((file.status, file.bytes().len()), (200, 10_001));

    // Only what is newer than the installed version; none: an empty appcast.
    let r = get(&a, &key, "/v1/updates/sparkle/app/appcast.xml?current_version=1.1.0").await;
    let items = parse_appcast(r.bytes())["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    let r = get(&a, &key, "/v1/updates/sparkle/app/appcast.xml?current_version=1.2.0").await;
    assert_eq!(parse_appcast(r.bytes())["items"], json!([]));
    // Not entitled to the product: refused like the customer API.
    let r = get(&a, &key, "/v1/updates/sparkle/other/appcast.xml").await;
    assert_eq!((r.status, r.code().as_str()), (403, "not_entitled"), "{r:?}");
    // A bad signature body is refused, and nothing is written.
    for bad in ["", "   ", "sig\u{7f}", &"x".repeat(5000)] {
        let r = a
            .call_raw(
                "PUT",
                "/admin/v1/products/app/releases/1.1.0/artifacts/app.zip/signature",
                bad.as_bytes().to_vec(),
            )
            .await;
        assert_eq!((r.status, r.code().as_str()), (422, "invalid_field"), "{r:?}");
    }
    let r =
        a.call_raw("PUT", "/admin/v1/products/app/releases/1.1.0/artifacts/nope.zip/signature", b"s".to_vec()).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"), "{r:?}");
    let art = Admin::json(&a.call("GET", "/admin/v1/products/app/releases/1.1.0/artifacts/app.zip", None).await);
    assert_eq!(art["signature"], ed);
}

/// Where electron-updater is (scripts/test.sh installs it from npm).
fn electron_updater_modules() -> String {
    std::env::var("TOLLGATE_ELECTRON_UPDATER").unwrap_or_else(|_| {
        let local = concat!(env!("CARGO_MANIFEST_DIR"), "/target/electron-updater/node_modules");
        assert!(
            std::path::Path::new(local).join("electron-updater").exists(),
            "electron-updater is needed for this test; scripts/test.sh installs it ({local})"
        );
        local.to_owned()
    })
}

/// Run electron-updater's `DebUpdater` (generic provider), under node with
/// `electron` stubbed (tests/electron), against `feed` as version
/// `installed`: what it found and downloaded.
async fn electron_updater(feed: String, key: String, installed: &str, home: &std::path::Path) -> Value {
    run_electron_updater(feed, key, installed, home, false).await
}

async fn run_electron_updater(
    feed: String,
    key: String,
    installed: &str,
    home: &std::path::Path,
    differential: bool,
) -> Value {
    let stub = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/electron/stub");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/electron/check.js");
    let node_path = format!("{}:{stub}", electron_updater_modules());
    let (installed, home) = (installed.to_owned(), home.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .env("NODE_PATH", node_path)
            .env("FEED", feed)
            .env("API_KEY", key)
            .env("APP_VERSION", installed)
            .env("UPDATER_HOME", &home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("DIFFERENTIAL", if differential { "1" } else { "0" })
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// electron-updater's own code reads the channel file (`latest-linux.yml`),
/// sees 1.1.0, downloads its `.deb` through the feed's redirect to a grant
/// URL and verifies its SHA-512; counted once. Up to date: nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_checks_and_downloads_through_the_generic_feed() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, no_rate_limits).await;
    release(&a, "1.0.0", "stable", &[("app_1.0.0_amd64.deb", "linux-x86_64")], "2026-01-01T00:00:00Z").await;
    release(
        &a,
        "1.1.0",
        "stable",
        &[("app_1.1.0_amd64.deb", "linux-x86_64"), ("app-1.1.0.exe", "windows-x86_64")],
        "2026-06-01T00:00:00Z",
    )
    .await;
    let key = customer(&a, "acme", json!({})).await;
    set_quota(&a, json!({ "downloads_per_day": 10 })).await;
    let feed = format!("http://{}/v1/updates/electron/app/", a.gw.public);

    // The channel file as the client reads it.
    let r = get(&a, &key, "/v1/updates/electron/app/latest-linux.yml").await;
    assert_eq!(r.status, 200, "{r:?}");
    let yaml = String::from_utf8_lossy(r.bytes()).into_owned();
    assert!(yaml.starts_with("version: \"1.1.0\"\nfiles:\n  - url: \"1.1.0/app_1.1.0_amd64.deb\"\n"), "{yaml}");
    let sha512 =
        base64::engine::general_purpose::STANDARD.encode(hex::decode(common::sha512_hex(&test_bytes(10_000))).unwrap());
    assert!(yaml.contains(&format!("sha512: \"{sha512}\"")), "{yaml}");
    assert!(!yaml.contains(".exe"), "only the platform's files: {yaml}");
    let r = get(&a, &key, "/v1/updates/electron/app/latest.yml").await;
    assert!(String::from_utf8_lossy(r.bytes()).contains("1.1.0/app-1.1.0.exe"), "{r:?}");
    for missing in ["/v1/updates/electron/app/latest-solaris.yml", "/v1/updates/electron/app/nightly.yml"] {
        let r = get(&a, &key, missing).await;
        assert_eq!((r.status, r.code().as_str()), (404, "not_found"), "{missing}: {r:?}");
    }

    let home = tempfile::tempdir().unwrap();
    let seen = electron_updater(feed.clone(), key.clone(), "1.0.0", home.path()).await;
    assert_eq!(seen["available"], true, "{seen}");
    assert_eq!(seen["info"]["version"], "1.1.0", "{seen}");
    let downloaded = seen["downloaded"][0].as_str().unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(sha256_hex(&std::fs::read(downloaded).unwrap()), sha256_hex(&test_bytes(10_000)));
    assert_eq!(common::used(&a, &key).await, 1, "one download, counted once");

    let seen = electron_updater(feed.clone(), key.clone(), "1.1.0", home.path()).await;
    assert_eq!(seen["available"], false, "up to date: {seen}");
    // A wrong key: the client fails, and says why.
    let seen = electron_updater(feed, "tg_wrong".into(), "1.0.0", home.path()).await;
    assert!(
        seen["error"].as_str().unwrap_or_default().contains("401")
            || seen["stack"].as_str().unwrap_or_default().contains("401"),
        "{seen}"
    );
}

/// Publish `version` of `app` with `files` (name, platform, bytes).
async fn release_with(a: &Admin, version: &str, files: &[(&str, &str, &[u8])], published: &str) {
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    let r = a
        .call("PUT", &format!("/admin/v1/products/app/releases/{version}"), Some(json!({ "channel": "stable" })))
        .await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    for (file, platform, bytes) in files {
        a.blobs.put(&format!("app/{version}/{file}"), bytes).await;
        let r = a.call("PUT", &common::artifact_path(version, file, platform), None).await;
        assert!(r.status == 201 || r.status == 200, "{r:?}");
    }
    let publish = json!({ "backdated_to": published });
    let r = a.call("POST", &format!("/admin/v1/products/app/releases/{version}/publish"), Some(publish)).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// electron-builder's blockmap of `bytes`, made by tests/electron/blockmap.js.
fn blockmap(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Vec<u8> {
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/electron/blockmap.js");
    let out = std::process::Command::new("node").arg(script).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(dir.join(format!("{name}.blockmap"))).unwrap()
}

/// A differential update, as electron-updater's NsisUpdater makes one: it
/// reads both versions' `.blockmap`s through the feed (not counted), copies
/// the unchanged blocks from the installed installer, and asks the grant
/// URL for the two changed ones in one multi-range request, which the
/// gateway answers `multipart/byteranges`. The result has the new
/// installer's SHA-512 (electron-updater checks it, and fails the run
/// rather than fall back to a full download); one download is counted, and
/// the bytes sent are the changed blocks, not the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_downloads_differentially_through_the_blockmaps() {
    const BLOCK: usize = 64 * 1024;
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, no_rate_limits).await;
    let old = test_bytes(16 * BLOCK + 1234);
    let mut new = old.clone();
    for b in &mut new[3 * BLOCK + 100..3 * BLOCK + 300] {
        *b ^= 0xff;
    }
    for b in &mut new[10 * BLOCK..10 * BLOCK + 10] {
        *b ^= 0x5a;
    }
    let scratch = tempfile::tempdir().unwrap();
    let old_map = blockmap(scratch.path(), "old.exe", &old);
    let new_map = blockmap(scratch.path(), "new.exe", &new);
    let win = "windows-x86_64";
    release_with(
        &a,
        "1.0.0",
        &[("app-1.0.0.exe", win, &old), ("app-1.0.0.exe.blockmap", win, &old_map)],
        "2026-01-01T00:00:00Z",
    )
    .await;
    release_with(
        &a,
        "1.1.0",
        &[("app-1.1.0.exe", win, &new), ("app-1.1.0.exe.blockmap", win, &new_map)],
        "2026-06-01T00:00:00Z",
    )
    .await;
    let key = customer(&a, "acme", json!({})).await;
    set_quota(&a, json!({ "downloads_per_day": 10 })).await;

    // The channel file names the blockmap's size; the blockmap is served
    // as it is, without a grant.
    let yaml = String::from_utf8_lossy(get(&a, &key, "/v1/updates/electron/app/latest.yml").await.bytes()).into_owned();
    assert!(yaml.contains(&format!("blockMapSize: {}", new_map.len())), "{yaml}");
    let r = get(&a, &key, "/v1/updates/electron/app/1.0.0/app-1.0.0.exe.blockmap").await;
    assert_eq!((r.status, &r.bytes()[..]), (200, &old_map[..]), "{r:?}");
    let r = get(&a, &key, "/v1/updates/electron/app/1.0.0/nothing.exe.blockmap").await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"), "{r:?}");
    // Another customer's product is not served, blockmap or not.
    a.call("PUT", "/admin/v1/products/other", Some(json!({ "name": "Other" }))).await;
    let other = customer(&a, "globex", json!({ "product": "other" })).await;
    let r = get(&a, &other, "/v1/updates/electron/app/1.0.0/app-1.0.0.exe.blockmap").await;
    assert_eq!((r.status, r.code().as_str()), (403, "not_entitled"), "{r:?}");
    assert_eq!(common::used(&a, &key).await, 0, "blockmaps are not downloads");
    // Registered with the installer's platform, a blockmap is never what a
    // request by platform picks.
    let r = common::ask(&a, &key, json!({ "product": "app", "version": "1.1.0", "platform": "windows-x86_64" })).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(Admin::json(&r)["url"].as_str().unwrap().contains("/app-1.1.0.exe?"), "{r:?}");

    // The installed installer, where the updater keeps it.
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache/tollgate-check-updater");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("installer.exe"), &old).unwrap();
    let feed = format!("http://{}/v1/updates/electron/app/", a.gw.public);
    let seen = run_electron_updater(feed, key.clone(), "1.0.0", home.path(), true).await;
    assert_eq!(seen["info"]["version"], "1.1.0", "{seen}");
    let downloaded = seen["downloaded"][0].as_str().unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(sha256_hex(&std::fs::read(downloaded).unwrap()), sha256_hex(&new));
    assert_eq!(common::used(&a, &key).await, 1, "one download, counted once");

    let initiated = initiations(&a, 1).await;
    assert_eq!(initiated.len(), 1, "{initiated:#?}");
    let range = initiated[0]["data"]["range"].as_str().unwrap_or_default().to_owned();
    assert_eq!(range.matches(',').count(), 1, "two ranges in one request: {range}");
    assert_eq!(initiated[0]["data"]["via"], "electron", "the feed that issued it: {initiated:#?}");
    let completed = loop {
        let r = a.call("GET", "/admin/v1/events?type=download.completed&limit=10", None).await;
        let items = Admin::json(&r)["items"].as_array().unwrap().clone();
        if let Some(e) = items.first() {
            break e.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(completed["data"]["result"], "complete", "{completed}");
    assert_eq!(completed["data"]["bytes_sent"], 2 * BLOCK as u64, "the two changed blocks only: {completed}");
}

/// Parse an Atom feed with Python's XML parser and check what Atom 1.0
/// (RFC 4287) requires: the namespace, a feed `id`, `title`, `updated` and
/// `author`, and an `id`, `title` and `updated` (RFC 3339) in every entry.
fn parse_atom(xml: &[u8]) -> Value {
    const SCRIPT: &str = r#"
import json, sys, re, xml.etree.ElementTree as ET
A = "{http://www.w3.org/2005/Atom}"
root = ET.fromstring(sys.stdin.buffer.read())
assert root.tag == A + "feed", root.tag
date = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
for name in ("id", "title", "updated"):
    assert root.find(A + name) is not None and root.findtext(A + name).strip(), name
assert root.find(A + "author/" + A + "name") is not None
assert date.match(root.findtext(A + "updated"))
entries = []
for e in root.findall(A + "entry"):
    for name in ("id", "title", "updated"):
        assert e.findtext(A + name), name
    assert date.match(e.findtext(A + "updated"))
    entries.append({
        "id": e.findtext(A + "id"), "title": e.findtext(A + "title"), "updated": e.findtext(A + "updated"),
        "categories": [c.get("term") for c in e.findall(A + "category")],
        "content": e.findtext(A + "content"), "link": e.find(A + "link").get("href"),
    })
print(json.dumps({"id": root.findtext(A + "id"), "title": root.findtext(A + "title"), "entries": entries}))
"#;
    python_json(SCRIPT, xml)
}

/// A feed reader (no headers) follows a customer's releases: new ones,
/// critical patches flagged, yanks; the token is the customer's alone,
/// revocable, and replaced by a new one.
#[tokio::test]
async fn an_atom_feed_of_a_customers_releases_for_feed_readers() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, no_rate_limits).await;
    catalog(&a, json!({})).await;
    customer(&a, "other", json!({})).await;
    release(&a, "1.2.0", "stable", &[("app.zip", "macos")], "2026-09-01T00:00:00Z").await;
    let r = a
        .call("PUT", "/admin/v1/products/app/releases/1.2.0", Some(json!({ "channel": "stable", "critical": true })))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(a.call("POST", "/admin/v1/products/app/releases/1.0.0/yank", None).await.status, 200);

    let r = a.call("POST", "/admin/v1/customers/acme/feed-token", None).await;
    assert_eq!(r.status, 201, "{r:?}");
    let created = Admin::json(&r);
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tgf_"), "{created}");
    let path_of = |url: &Value| {
        let url = url.as_str().unwrap();
        url[url.find("/feeds/").unwrap()..].to_owned()
    };
    let feed = path_of(&created["url"]);
    assert_eq!(feed, format!("/feeds/acme/releases.atom?token={token}"));

    let r = request(a.gw.public, "GET", &feed, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/atom+xml; charset=utf-8"));
    let atom = parse_atom(r.bytes());
    assert_eq!(atom["id"], "urn:tollgate:feed:acme");
    let titles: Vec<&str> = atom["entries"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["App 1.2.0 (critical)", "App 1.1.0", "App 1.0.0 (yanked)"], "newest first");
    let entries = atom["entries"].as_array().unwrap();
    assert_eq!(entries[0]["categories"], json!(["stable", "critical"]));
    assert_eq!(entries[0]["updated"], "2026-09-01T00:00:00Z");
    assert_eq!(entries[1]["content"], NOTES_HTML, "notes as safe HTML, escaped in the XML");
    assert_eq!(entries[2]["categories"], json!(["stable", "yanked"]));

    // Refused: no token, a wrong one, acme's token on another customer's
    // feed (whose id exists), a customer with no token.
    for target in [
        "/feeds/acme/releases.atom".to_owned(),
        "/feeds/acme/releases.atom?token=tgf_0000".to_owned(),
        format!("/feeds/other/releases.atom?token={token}"),
        format!("/feeds/nobody/releases.atom?token={token}"),
        format!("/feeds/..%2Facme/releases.atom?token={token}"),
    ] {
        let r = request(a.gw.public, "GET", &target, &[]).await;
        assert_eq!((r.status, r.code().as_str()), (403, "invalid_feed_token"), "{target}: {r:?}");
    }
    // A new token replaces the old one; revoking leaves none.
    let again = Admin::json(&a.call("POST", "/admin/v1/customers/acme/feed-token", None).await);
    assert_ne!(again["token"], created["token"]);
    assert_eq!(request(a.gw.public, "GET", &feed, &[]).await.status, 403, "the old token is revoked");
    let fresh = path_of(&again["url"]);
    assert_eq!(request(a.gw.public, "GET", &fresh, &[]).await.status, 200);
    // A suspended customer's feed says so.
    a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "status": "suspended" }))).await;
    let r = request(a.gw.public, "GET", &fresh, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "customer_suspended"), "{r:?}");
    assert_eq!(a.call("DELETE", "/admin/v1/customers/acme/feed-token", None).await.status, 204);
    assert_eq!(a.call("DELETE", "/admin/v1/customers/acme/feed-token", None).await.status, 404);
    let r = request(a.gw.public, "GET", &fresh, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "invalid_feed_token"), "{r:?}");
    let r = a.call("POST", "/admin/v1/customers/nobody/feed-token", None).await;
    assert_eq!(r.status, 404, "{r:?}");
}
