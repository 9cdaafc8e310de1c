//! The vendor console on the admin listener: in headless Chromium, sign in
//! with an admin token → customers → a release's eligible customers before
//! publishing → a customer downloads → the report's chart matches the report
//! API → yank → the customer's URL is refused; axe-core on every page and
//! screenshots. Over HTTP: roles (a read-only token changes nothing, in the
//! console or the API), CSRF, made-up sessions, bad input, and the console
//! absent from the public listener.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use common::jar::{Browser, code, field, html};
use common::{Admin, Reply, StoreKind, ask, customer, release, request_with_body, target, test_bytes};
use serde_json::json;
use tollgate::admin_tokens::AdminRole;
use tollgate::config::AdminTokenConfig;
use tollgate::config::secret::Secret;

const VIEWER: &str = "tga_viewer-token-for-tests-only-000000000000";

/// A gateway whose owner token is the test's usual one (written where the
/// embedded default keeps it), and a read-only `viewer` token; app 1.0.0
/// published, a draft 1.1.0 with a file, acme entitled to app, globex to
/// another product.
async fn setup() -> (Admin, String) {
    // A known public port, so that the portal links the console makes
    // ("view as customer") are this gateway's: a browser follows them.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, |c| {
        common::no_rate_limits(c);
        c.server.listen = ([127, 0, 0, 1], port).into();
        c.server.public_url = format!("http://127.0.0.1:{port}");
        let path = c.default_admin_token_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        tollgate::config::secret::create_secret_file(&path, "tga_owner-token-for-tests-only-0000000000000").unwrap();
        c.admin.tokens = vec![
            AdminTokenConfig { id: "ops".into(), secret: None, secret_file: Some(path), role: AdminRole::Owner },
            AdminTokenConfig {
                id: "viewer".into(),
                secret: Some(Secret::new(VIEWER)),
                secret_file: None,
                role: AdminRole::ReadOnly,
            },
        ];
    })
    .await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux-x86_64")], "2026-01-01T00:00:00Z").await;
    let key = customer(&a, "acme", json!({})).await;
    a.call("PUT", "/admin/v1/products/other", Some(json!({ "name": "Other" }))).await;
    customer(&a, "globex", json!({ "product": "other" })).await;
    a.call("PUT", "/admin/v1/products/app/releases/1.1.0", Some(json!({ "channel": "stable" }))).await;
    a.blobs.put("app/1.1.0/app-1.1.tar.gz", &test_bytes(3000)).await;
    let r = a.call("PUT", &common::artifact_path("1.1.0", "app-1.1.tar.gz", "linux-x86_64"), None).await;
    assert_eq!(r.status, 201, "{r:?}");
    (a, key)
}

fn screenshot(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots").join(format!("{name}.png"))
}

async fn look(b: &common::browser::Browser, name: &str) {
    let violations = b.accessibility_violations().await;
    assert!(violations.is_empty(), "{name}: {violations:#?}");
    b.screenshot(&screenshot(&format!("console-{name}"))).await;
}

/// The bars of chart `id` on a page: (series, label, value) each.
fn chart(page: &str, id: &str) -> Vec<(String, String, u64)> {
    let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no chart {id}: {page}"));
    let svg = &page[start..start + page[start..].find("</svg>").unwrap()];
    svg.split("<rect ")
        .filter_map(|r| {
            let attr = |name: &str| {
                let marker = format!("{name}=\"");
                let start = r.find(&marker)? + marker.len();
                Some(r[start..start + r[start..].find('"')?].to_owned())
            };
            Some((attr("data-series").unwrap_or_default(), attr("data-label")?, attr("data-value")?.parse().ok()?))
        })
        .collect()
}

/// The report API's JSON for `group_by` over 2026 to today.
async fn report(a: &Admin, group_by: &str) -> serde_json::Value {
    Admin::json(&a.call("GET", &format!("/admin/v1/reports/downloads?group_by={group_by}&from=2026-01-01"), None).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium() {
    let (a, key) = setup().await;
    // A download of 1.0.0 before, and a refusal: the reports have
    // something to draw.
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    let url = Admin::json(&r)["url"].as_str().unwrap().to_owned();
    assert_eq!(common::request(a.gw.public, "GET", target(&url), &[]).await.status, 200);
    let r = ask(&a, &key, json!({ "product": "other", "version": "1.0.0", "filename": "x" })).await;
    assert!(r.status >= 400, "{r:?}");

    let downloads = tempfile::tempdir().unwrap();
    let b = common::browser::Browser::start(downloads.path()).await;
    let base = format!("http://{}", a.gw.admin);
    b.window(1280, 900).await;
    b.goto(&format!("{base}/console")).await;
    b.wait_for_url("/console/sign-in").await;
    look(&b, "sign-in").await;
    b.type_into("#token", &a.token).await;
    b.click("form button[type=submit]").await;
    b.wait_for_url("/console/customers").await;
    let page = b.source().await;
    assert!(page.contains("acme") && page.contains("globex") && page.contains("ops (owner)"), "{page}");
    look(&b, "customers").await;
    b.goto(&format!("{base}/console/customers?q=GLO")).await;
    b.wait_for_url("/console/customers").await;
    let page = b.source().await;
    assert!(page.contains("/console/customers/globex") && !page.contains("/console/customers/acme"), "{page}");
    b.goto(&format!("{base}/console/customers/acme")).await;
    b.wait_for_text("Recent downloads").await;
    let page = b.source().await;
    assert!(page.contains("download.initiated") && page.contains("not_entitled"), "a download and a denial: {page}");
    look(&b, "customer").await;

    // View as the customer: its portal, read-only, on the public listener.
    b.click("form[action='/console/customers/acme/view-as'] button").await;
    b.wait_for_url("/console/customers/acme/view-as").await;
    b.click("#open-view").await;
    b.wait_for_url("/portal/auth").await;
    b.click("form[action='/portal/auth'] button[type=submit]").await;
    b.wait_for_url("/portal/downloads").await;
    b.wait_for_text("read-only view of this customer").await;
    look(&b, "view-as").await;

    // A new customer, with an entitlement: first refused beside its field,
    // then saved.
    b.goto(&format!("{base}/console/customers")).await;
    b.type_into("#new-id", "initech").await;
    b.type_into("#new-name", "Initech").await;
    b.click("form[method='post'][action='/console/customers'] button[type=submit]").await;
    b.wait_for_url("/console/customers/initech").await;
    b.click("a[href='/console/customers/initech/new-entitlement']").await;
    b.wait_for_url("/console/customers/initech/new-entitlement").await;
    b.type_into("#id", "initech-app").await;
    b.click("#product option[value='app']").await;
    b.clear("#versions").await;
    b.type_into("#versions", "one point oh").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("field(s) need a change").await;
    let page = b.source().await;
    assert!(page.contains("id=\"versions-error\"") && page.contains("is not a version requirement"), "{page}");
    assert!(page.contains("value=\"initech-app\""), "what was typed is kept: {page}");
    look(&b, "entitlement-invalid").await;
    b.clear("#versions").await;
    b.type_into("#versions", "^1").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_url("/console/customers/initech").await;
    b.wait_for_text("initech-app").await;
    let r = a.call("GET", "/admin/v1/customers/initech/entitlements/initech-app", None).await;
    let e = Admin::json(&r);
    assert_eq!((e["product"].as_str(), e["versions"].as_str()), (Some("app"), Some("^1")), "{e}");
    let changed = events(&a, "type=entitlement.changed&customer=initech", 1).await;
    assert_eq!(changed[0]["actor"], "console:ops", "the change names who made it");

    // The draft's customers, seen before publishing it: acme and initech.
    b.goto(&format!("{base}/console/releases")).await;
    b.wait_for_url("/console/releases").await;
    look(&b, "releases").await;
    b.click("a[href='/console/releases/app/1.1.0']").await;
    b.wait_for_url("/console/releases/app/1.1.0").await;
    let page = b.source().await;
    assert!(page.contains("Customers it will reach: <span id=\"eligible-count\">2</span>"), "{page}");
    assert!(page.contains("/console/customers/initech") && !page.contains("/console/customers/globex"));
    look(&b, "release-draft").await;
    b.click("form button[type=submit]:not(.link)").await;
    b.wait_for_text("Yank: 2 customers").await;
    let r = a.call("GET", "/admin/v1/products/app/releases/1.1.0", None).await;
    assert_eq!(Admin::json(&r)["status"], "published");

    // The new customer downloads it.
    let r = a.call("POST", "/admin/v1/customers/initech/api-keys", None).await;
    let initech = Admin::json(&r)["key"].as_str().unwrap().to_owned();
    let r = ask(&a, &initech, json!({ "product": "app", "version": "1.1.0", "platform": "linux-x86_64" })).await;
    assert_eq!(r.status, 201, "{r:?}");
    let url = Admin::json(&r)["url"].as_str().unwrap().to_owned();
    let first_grant = Admin::json(&r)["grant_id"].as_str().unwrap().to_owned();
    assert_eq!(common::request(a.gw.public, "GET", target(&url), &[]).await.status, 200);
    let mut api = serde_json::Value::Null;
    for _ in 0..200 {
        api = report(&a, "product").await;
        if api["total"]["initiations"] == 2 && api["total"]["completions"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(api["total"]["initiations"], 2, "{api}");

    // Every chart draws the report API's numbers.
    b.goto(&format!("{base}/console/reports")).await;
    b.wait_for_url("/console/reports").await;
    let page = b.source().await;
    let drawn: u64 = chart(&page, "started").iter().filter(|(s, _, _)| s == "app").map(|(_, _, n)| n).sum();
    let app_row = api["rows"].as_array().unwrap().iter().find(|r| r["group"] == "app").unwrap();
    assert_eq!(drawn, app_row["initiations"].as_u64().unwrap(), "{page}");
    assert!(page.contains("<span id=\"total\">2</span>"));
    let by_day = report(&a, "day").await;
    for (series, field) in [("started", "initiations"), ("completed", "completions")] {
        let mut drawn: Vec<(String, u64)> =
            chart(&page, "compared").into_iter().filter(|(s, _, _)| s == series).map(|(_, day, n)| (day, n)).collect();
        drawn.sort();
        let mut api: Vec<(String, u64)> = by_day["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r[field].as_u64().unwrap() > 0)
            .map(|r| (r["group"].as_str().unwrap().to_owned(), r[field].as_u64().unwrap()))
            .collect();
        api.sort();
        assert_eq!(drawn, api, "{series} per day");
    }
    let denials: Vec<(String, u64)> = chart(&page, "denials").into_iter().map(|(_, r, n)| (r, n)).collect();
    let api_denials: Vec<(String, u64)> =
        api["total"]["denials"].as_object().unwrap().iter().map(|(r, n)| (r.clone(), n.as_u64().unwrap())).collect();
    assert!(!api_denials.is_empty());
    assert_eq!(
        denials.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        api_denials.into_iter().collect()
    );
    let by_platform = report(&a, "platform").await;
    let platforms: std::collections::BTreeMap<String, u64> =
        chart(&page, "platforms").into_iter().map(|(_, p, n)| (p, n)).collect();
    let api_platforms: std::collections::BTreeMap<String, u64> = by_platform["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["group"].as_str().unwrap().to_owned(), r["initiations"].as_u64().unwrap()))
        .collect();
    assert_eq!(platforms, api_platforms);
    look(&b, "reports").await;
    // Grouped by customer: both customers' bars.
    b.goto(&format!("{base}/console/reports?group=customer")).await;
    b.wait_for_text("by customer").await;
    let page = b.source().await;
    let series: std::collections::BTreeSet<String> = chart(&page, "started").into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(series, ["acme".to_owned(), "initech".to_owned()].into());

    // The release's adoption: initech has it, acme still needs it; as the
    // adoption API says, and as CSV.
    b.goto(&format!("{base}/console/releases/app/1.1.0")).await;
    b.wait_for_text("Adoption: ").await;
    let page = b.source().await;
    assert!(page.contains("<span id=\"adopted\">1</span> of 2 customers"), "{page}");
    let adopters = &page[page.find("id=\"adopters\"").unwrap()..page.find("id=\"not-adopted\"").unwrap()];
    let waiting = &page[page.find("id=\"not-adopted\"").unwrap()..];
    assert!(adopters.contains("initech") && !adopters.contains(">acme<"), "{adopters}");
    assert!(waiting.contains(">acme<") && !waiting.contains("initech"), "{waiting}");
    let api = Admin::json(&a.call("GET", "/admin/v1/products/app/releases/1.1.0/adoption", None).await);
    assert_eq!(api["downloaded"][0]["customer"], "initech", "{api}");
    assert_eq!(chart(&page, "adoption").last().map(|(_, _, n)| *n), Some(1), "adopters by today");
    look(&b, "release-adoption").await;

    // Live activity: the page open, a download appears on it as it happens.
    // The new customer's download is listed; another appears as it happens.
    b.goto(&format!("{base}/console/activity?customer=initech")).await;
    b.wait_for_url("/console/activity").await;
    assert!(b.source().await.contains(&first_grant), "the download listed");
    look(&b, "activity").await;
    let r = ask(&a, &initech, json!({ "product": "app", "version": "1.1.0", "platform": "linux-x86_64" })).await;
    let grant = Admin::json(&r)["grant_id"].as_str().unwrap().to_owned();
    let live = Admin::json(&r)["url"].as_str().unwrap().to_owned();
    assert_eq!(common::request(a.gw.public, "GET", target(&live), &[]).await.status, 200);
    b.wait_for_text("Live: ").await;
    b.wait_for_text(&grant).await;

    b.goto(&format!("{base}/console/webhooks")).await;
    b.wait_for_url("/console/webhooks").await;
    look(&b, "webhooks").await;

    // Yank: the URL the customer holds is refused.
    b.goto(&format!("{base}/console/releases/app/1.1.0")).await;
    b.wait_for_text("Yank: 2 customers").await;
    b.click("form button[type=submit]:not(.link)").await;
    b.wait_for_text("Restore").await;
    look(&b, "release-yanked").await;
    let r = common::request(a.gw.public, "GET", target(&url), &[]).await;
    assert!(r.status >= 400, "a yanked release's URL: {r:?}");

    // Phone width: the pages still read.
    b.window(390, 844).await;
    for (path, name) in [
        ("/console/customers/initech", "customer-phone"),
        ("/console/releases/app/1.1.0", "release-phone"),
        ("/console/reports", "reports-phone"),
    ] {
        b.goto(&format!("{base}{path}")).await;
        b.wait_for_url(path).await;
        look(&b, name).await;
    }
    b.window(1280, 900).await;

    b.click("button.link").await;
    b.wait_for_url("/console/sign-in").await;
    b.goto(&format!("{base}/console/customers")).await;
    b.wait_for_url("/console/sign-in").await;
}

/// Sign in to the console with `token`.
async fn sign_in(jar: &mut Browser, token: &str) -> Reply {
    let page = html(&jar.get("/console/sign-in").await);
    jar.post("/console/sign-in", &[("csrf", &field(&page, "csrf")), ("token", token)]).await
}

/// Read a response's bytes from `stream` until `text` shows up (10 s).
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut String, text: &str) {
    use tokio::io::AsyncReadExt as _;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !seen.contains(text) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{text:?} never came: {seen}"))
            .unwrap();
        assert!(n > 0, "the stream ended before {text:?}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// The live stream: server-sent events from now, filtered; a reconnection
/// with `Last-Event-ID` goes on from there (nothing twice, nothing missed);
/// without a session, no stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_stream_follows_the_log() {
    use tokio::io::AsyncWriteExt as _;
    let (a, key) = setup().await;
    let mut ops = Browser::admin(&a);
    sign_in(&mut ops, &a.token).await;
    let cookie = ops.cookie_header();
    let open = |cookie: String, last: Option<String>| {
        let admin = a.gw.admin;
        async move {
            let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
            let last = last.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
            let head = format!(
                "GET /console/activity/stream?type=download.initiated HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n{last}\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream
        }
    };
    let download = || async {
        let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
        let body = Admin::json(&r);
        let url = body["url"].as_str().unwrap().to_owned();
        assert_eq!(common::request(a.gw.public, "GET", target(&url), &[]).await.status, 200);
        body["grant_id"].as_str().unwrap().to_owned()
    };
    let before = download().await;
    // In the log (events are written in the background) before the stream opens.
    common::initiations(&a, 1).await;
    let mut stream = open(cookie.clone(), None).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "text/event-stream").await;
    let first = download().await;
    read_until(&mut stream, &mut seen, &first).await;
    assert!(!seen.contains(&before), "from now on, not the past: {seen}");
    assert!(!seen.contains("download.completed"), "filtered by type: {seen}");
    let id = seen.lines().rev().find_map(|l| l.strip_prefix("id:")).unwrap().trim().to_owned();
    drop(stream);

    // Gone a while: two downloads meanwhile, then reconnected from `id`.
    let (second, third) = (download().await, download().await);
    let mut stream = open(cookie.clone(), Some(id)).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, &third).await;
    assert!(seen.contains(&second) && !seen.contains(&first), "{seen}");

    // Signed out: the open stream ends (within its 5 s check).
    let page = html(&ops.get("/console/customers").await);
    ops.post("/console/sign-out", &[("csrf", &field(&page, "csrf"))]).await;
    {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await.expect("the stream ended").unwrap();
            if n == 0 || String::from_utf8_lossy(&buf[..n]).ends_with("0\r\n\r\n") {
                break;
            }
        }
    }
    let mut ops = Browser::admin(&a);
    sign_in(&mut ops, &a.token).await;
    let cookie = ops.cookie_header();

    // No session, no stream; a made-up Last-Event-ID is not trusted.
    let r = request_with_body(a.gw.admin, "GET", "/console/activity/stream", &[], Default::default()).await;
    assert_eq!(r.status, 303);
    let mut stream = open(cookie.clone(), Some("'; DROP TABLE events".into())).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "text/event-stream").await;
    let fourth = download().await;
    read_until(&mut stream, &mut seen, &fourth).await;
    assert!(!seen.contains(&third), "a bad Last-Event-ID starts from now: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_what_it_should() {
    let (a, _) = setup().await;
    // Never on the public listener.
    for path in ["/console", "/console/sign-in", "/console/customers", "/console/style.css"] {
        assert_eq!(common::request(a.gw.public, "GET", path, &[]).await.status, 404, "{path}");
    }
    let mut jar = Browser::admin(&a);
    // Not signed in: every page sends to sign-in.
    for path in ["/console/customers", "/console/customers/acme", "/console/releases/app/1.1.0", "/console/reports"] {
        let r = jar.send("GET", path, "").await;
        assert_eq!((r.status, r.header("location")), (303, Some("/console/sign-in")), "{path}");
    }
    let r = jar.send("POST", "/console/releases/app/1.1.0/publish", "csrf=x").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/console/sign-in")));
    // Wrong tokens, a form without its token, a made-up session.
    let r = sign_in(&mut jar, "tga_not-a-token").await;
    assert_eq!(r.status, 401);
    let r = jar.send("POST", "/console/sign-in", &format!("csrf=x&token={}", a.token)).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
    jar.cookies.insert("tg_console".into(), "made-up".into());
    assert_eq!(jar.send("GET", "/console/customers", "").await.status, 303);

    // Read-only: sees, changes nothing (the console and the API alike).
    let mut viewer = Browser::admin(&a);
    assert_eq!(sign_in(&mut viewer, VIEWER).await.header("location"), Some("/console/customers"));
    let page = html(&viewer.send("GET", "/console/releases/app/1.1.0", "").await);
    assert!(page.contains("Your role does not change releases") && !page.contains("/publish\""), "{page}");
    let csrf = field(&page, "csrf");
    for action in ["publish", "yank", "restore"] {
        let r = viewer.send("POST", &format!("/console/releases/app/1.1.0/{action}"), &format!("csrf={csrf}")).await;
        assert_eq!((r.status, code(&r).as_str()), (403, "role_forbids"), "{action}");
    }
    let auth = format!("Bearer {VIEWER}");
    let api = |method: &'static str, path: &'static str| {
        let auth = auth.clone();
        let a = &a;
        async move { request_with_body(a.gw.admin, method, path, &[("authorization", &auth)], "{}".into()).await }
    };
    assert_eq!(api("GET", "/admin/v1/customers").await.status, 200);
    for (method, path) in [
        ("PUT", "/admin/v1/customers/evil"),
        ("POST", "/admin/v1/products/app/releases/1.1.0/publish"),
        ("DELETE", "/admin/v1/webhooks/w"),
    ] {
        let r = api(method, path).await;
        assert_eq!((r.status, r.code().as_str()), (403, "role_forbids"), "{method} {path}");
    }
    let r = a.call("GET", "/admin/v1/products/app/releases/1.1.0", None).await;
    assert_eq!(Admin::json(&r)["status"], "draft", "nothing changed");
    assert_eq!(a.call("GET", "/admin/v1/customers/evil", None).await.status, 404);

    // The owner: a form without the session's token is refused.
    let mut ops = Browser::admin(&a);
    sign_in(&mut ops, &a.token).await;
    let r = ops.send("POST", "/console/releases/app/1.1.0/publish", "csrf=wrong").await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
    // Bad input: not a version, an unknown release or action, odd dates.
    let page = html(&ops.send("GET", "/console/releases/app/1.1.0", "").await);
    let csrf = field(&page, "csrf");
    for (method, path, want) in [
        ("GET", "/console/releases/app/one".to_owned(), 404),
        ("GET", "/console/releases/app/9.9.9".to_owned(), 404),
        ("GET", "/console/customers/nobody".to_owned(), 404),
        ("POST", "/console/releases/app/1.1.0/delete".to_owned(), 404),
        ("POST", "/console/releases/app/9.9.9/publish".to_owned(), 404),
        ("GET", "/console/reports?from=yesterday".to_owned(), 400),
        ("GET", "/console/reports?from=2026-12-01&to=2026-01-01".to_owned(), 400),
        ("GET", "/console/reports?from=2000-01-01&to=2026-01-01".to_owned(), 400),
        ("GET", format!("/console/customers?q={}", "%00".repeat(100)), 200),
    ] {
        let r = ops.send(method, &path, &format!("csrf={csrf}")).await;
        assert_eq!(r.status, want, "{method} {path}: {}", html(&r));
    }
    // Publishing a yanked-then-restored release is not a publish.
    let r = ops.send("POST", "/console/releases/app/1.0.0/publish", &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303, "publishing a published release is idempotent");
}

/// The events `query` selects, once there are at least `n` (events are
/// written in the background).
async fn events(a: &Admin, query: &str, n: usize) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    for _ in 0..200 {
        let r = a.call("GET", &format!("/admin/v1/events?{query}"), None).await;
        items = Admin::json(&r)["items"].as_array().unwrap().clone();
        if items.len() >= n {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{query}: {} events of {n}: {items:?}", items.len());
}

/// The value of `name`'s hidden input on a page.
fn revision(page: &str) -> String {
    field(page, "revision")
}

/// Customer and entitlement forms: every field's bad value is refused
/// beside it with nothing written; two people saving one record from the
/// same read — the second is shown the news, not written over it; a
/// read-only token posts every form and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_forms_refuse_bad_input_and_lost_updates() {
    let (a, _) = setup().await;
    let mut ops = Browser::admin(&a);
    sign_in(&mut ops, &a.token).await;
    let page = html(&ops.get("/console/customers").await);
    let csrf = field(&page, "csrf");
    let stored = |path: &'static str| {
        let a = &a;
        async move { a.call("GET", path, None).await }
    };

    // New customers: empty fields, an id that is not one, one taken.
    for (id, name, problem) in [
        ("", "Nameless", "Give the customer an id"),
        ("ok-id", "", "Give the customer a name"),
        ("../etc", "Traversal", "must be 1-128 characters"),
        ("acme", "Acme again", "There is a customer &#34;acme&#34; already"),
    ] {
        let r = ops.post("/console/customers", &[("csrf", &csrf), ("id", id), ("name", name)]).await;
        let body = html(&r);
        let want = if id == "acme" { 409 } else { 422 };
        assert_eq!(r.status, want, "{id:?}: {body}");
        assert!(body.contains(problem) && body.contains("aria-invalid=\"true\""), "{id:?}: {body}");
    }
    assert_eq!(Admin::json(&stored("/admin/v1/customers/acme").await)["name"], "acme", "not renamed");
    assert_eq!(stored("/admin/v1/customers/ok-id").await.status, 404);

    // Editing acme: bad values each refused, nothing written.
    let page = html(&ops.get("/console/customers/acme").await);
    let rev = revision(&page);
    for (name, status, networks, problem) in [
        ("", "active", "", "A customer needs a name"),
        ("Acme", "deleted", "", "is not a status"),
        ("Acme", "active", "10.0.0.0/33", "is not a network"),
        ("Acme", "active", "192.0.2.1/24\nnot-a-net", "&#34;not-a-net&#34; is not a network"),
    ] {
        let form =
            [("csrf", csrf.as_str()), ("revision", &rev), ("name", name), ("status", status), ("networks", networks)];
        let r = ops.post("/console/customers/acme", &form).await;
        let body = html(&r);
        assert_eq!(r.status, 422, "{name:?} {status:?} {networks:?}: {body}");
        assert!(body.contains(problem), "{problem}: {body}");
    }
    let r = ops
        .post("/console/customers/acme", &[("csrf", &csrf), ("revision", "abc"), ("name", "X"), ("status", "active")])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(Admin::json(&stored("/admin/v1/customers/acme").await)["name"], "acme", "nothing written");

    // Two people opened acme's page; the first suspends it, the second's
    // rename (from the same read) is refused and shown what is stored now.
    let suspend = [
        ("csrf", csrf.as_str()),
        ("revision", &rev),
        ("name", "Acme Corp"),
        ("status", "suspended"),
        ("networks", "198.51.100.0/24"),
    ];
    let r = ops.post("/console/customers/acme", &suspend).await;
    assert_eq!(r.status, 303, "{}", html(&r));
    let rename =
        [("csrf", csrf.as_str()), ("revision", &rev), ("name", "Acme Renamed"), ("status", "active"), ("networks", "")];
    // A refusal of a field keeps the revision the form was read at…
    let mut stale = rename;
    stale[2] = ("name", "");
    let page = html(&ops.post("/console/customers/acme", &stale).await);
    assert_eq!(revision(&page), rev, "a refused form keeps its revision");
    // …so saving it again is a conflict, answered with what is stored now.
    let r = ops.post("/console/customers/acme", &rename).await;
    let body = html(&r);
    assert_eq!(r.status, 409);
    assert!(body.contains("Someone changed this since you opened the form"), "{body}");
    assert!(body.contains("value=\"Acme Corp\"") && revision(&body) != rev, "the stored record, its revision: {body}");
    let now = Admin::json(&stored("/admin/v1/customers/acme").await);
    assert_eq!((now["name"].as_str(), now["status"].as_str()), (Some("Acme Corp"), Some("suspended")), "{now}");
    assert_eq!(now["allowed_cidrs"], json!(["198.51.100.0/24"]));
    // setup()'s creation, then this change.
    let changed = events(&a, "type=customer.changed&customer=acme", 2).await;
    let last = changed.last().unwrap();
    assert_eq!(
        (last["actor"].as_str(), last["data"]["status"].as_str()),
        (Some("console:ops"), Some("suspended")),
        "{last}"
    );
    let page = html(&ops.get("/console/activity?type=customer.changed&customer=acme").await);
    assert!(page.contains("acme · by console:ops"), "the activity page names who: {page}");
    // The API's own changes name the API's token.
    let r = a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "Acme Corp", "status": "active" }))).await;
    assert_eq!(r.status, 200);
    let changed = events(&a, "type=customer.changed&customer=acme", 3).await;
    assert_eq!(changed.last().unwrap()["actor"], "admin:ops", "{changed:?}");

    // Entitlements: each bad field refused beside it, nothing written.
    let good = |over: &[(&'static str, &'static str)]| {
        let mut f: Vec<(&'static str, &'static str)> = vec![
            ("id", "second"),
            ("product", "app"),
            ("license", "term"),
            ("starts", "2026-01-01"),
            ("expires", "2027-01-01"),
            ("maintenance", ""),
            ("versions", "^1"),
            ("channels", "stable"),
            ("platforms", "linux-x86_64"),
            ("status", "active"),
        ];
        for (k, v) in over {
            f.retain(|(name, _)| name != k);
            if !v.is_empty() || *k == "id" || *k == "starts" || *k == "product" {
                f.push((k, v));
            }
        }
        f
    };
    for (over, field_id, problem) in [
        (vec![("id", "")], "id-error", "Give the entitlement an id"),
        (vec![("id", "bad/id")], "id-error", "must be 1-128 characters"),
        (vec![("id", "main")], "id-error", "is taken"),
        (vec![("product", "")], "product-error", "Choose a product"),
        (vec![("product", "nothing")], "product-error", "no product"),
        (vec![("license", "forever")], "license-error", "Choose a license"),
        (vec![("starts", "")], "starts-error", "Give the day it starts"),
        (vec![("starts", "2026-13-45")], "starts-error", "is not a date"),
        (vec![("starts", "yesterday")], "starts-error", "is not a date"),
        (vec![("expires", "2025-01-01")], "expires-error", "must not end before it starts"),
        (vec![("maintenance", "2026-01-01T00:00:00Z")], "maintenance-error", "is not a date"),
        (vec![("versions", ">>1")], "versions-error", "is not a version requirement"),
        (vec![("channels", "")], "channels-error", "Tick at least one channel"),
        (vec![("channels", "nightly")], "channels-error", "is not a channel"),
        (vec![("platforms", "../../etc")], "platforms-error", "is not a platform name"),
        (vec![("status", "gone")], "status-error", "Choose a status"),
    ] {
        let mut form = good(&over);
        form.push(("csrf", &csrf));
        form.push(("revision", ""));
        let r = ops.post("/console/customers/acme/entitlements", &form).await;
        let body = html(&r);
        let want = if field_id == "id-error" && problem == "is taken" { 409 } else { 422 };
        assert_eq!(r.status, want, "{over:?}: {body}");
        assert!(body.contains(&format!("id=\"{field_id}\"")) && body.contains(problem), "{over:?} {problem}: {body}");
    }
    let r = a.call("GET", "/admin/v1/customers/acme/entitlements", None).await;
    assert_eq!(Admin::json(&r)["items"].as_array().unwrap().len(), 1, "nothing written");
    let main = Admin::json(&a.call("GET", "/admin/v1/customers/acme/entitlements/main", None).await);
    assert_eq!(main["license"], "perpetual", "the taken id was not overwritten");

    // A good one, two channels; then edited from two reads of one revision.
    let mut form = good(&[]);
    form.push(("channels", "beta"));
    form.push(("csrf", &csrf));
    form.push(("revision", ""));
    let r = ops.post("/console/customers/acme/entitlements", &form).await;
    assert_eq!(r.status, 303, "{}", html(&r));
    let e = Admin::json(&a.call("GET", "/admin/v1/customers/acme/entitlements/second", None).await);
    assert_eq!(e["channels"], json!(["stable", "beta"]), "{e}");
    assert_eq!(
        (e["starts_at"].as_str(), e["expires_at"].as_str()),
        (Some("2026-01-01T00:00:00Z"), Some("2027-01-02T00:00:00Z")),
        "works through its last day"
    );
    let page = html(&ops.get("/console/customers/acme/entitlements/second").await);
    let rev = revision(&page);
    assert!(page.contains("value=\"2026-01-01\"") && page.contains("value=\"2027-01-01\""), "{page}");
    let mut first = good(&[("versions", "^2")]);
    first.extend([("csrf", csrf.as_str()), ("revision", rev.as_str())]);
    let r = ops.post("/console/customers/acme/entitlements/second", &first).await;
    assert_eq!(r.status, 303, "{}", html(&r));
    let mut second = good(&[("license", "trial")]);
    second.extend([("csrf", csrf.as_str()), ("revision", rev.as_str())]);
    // Refused for a field first: the form keeps the revision read.
    let mut bad = second.clone();
    bad.retain(|(k, _)| *k != "versions");
    bad.push(("versions", "nope"));
    let page = html(&ops.post("/console/customers/acme/entitlements/second", &bad).await);
    assert_eq!(revision(&page), rev, "a refused form keeps its revision");
    let r = ops.post("/console/customers/acme/entitlements/second", &second).await;
    let body = html(&r);
    assert_eq!(r.status, 409);
    assert!(body.contains("Someone changed this") && body.contains("value=\"^2\""), "shows what is stored: {body}");
    let e = Admin::json(&a.call("GET", "/admin/v1/customers/acme/entitlements/second", None).await);
    assert_eq!((e["versions"].as_str(), e["license"].as_str()), (Some("^2"), Some("term")), "{e}");
    // An id in the URL that the customer does not have is not created.
    let mut other = good(&[]);
    other.extend([("csrf", csrf.as_str()), ("revision", "1")]);
    let r = ops.post("/console/customers/globex/entitlements/second", &other).await;
    assert_eq!(r.status, 404);
    assert_eq!(a.call("GET", "/admin/v1/customers/globex/entitlements/second", None).await.status, 404);
    // Removed.
    let r = ops.post("/console/customers/acme/entitlements/second/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(a.call("GET", "/admin/v1/customers/acme/entitlements/second", None).await.status, 404);
    let r = ops.post("/console/customers/acme/entitlements/second/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 404);
    // Not a form at all, and not UTF-8.
    let r = ops.send("POST", "/console/customers/acme/entitlements", "%FF%FE=%00&&==").await;
    assert_eq!(r.status, 403, "no CSRF token: refused before anything else");

    // Read-only: every form posted with its own session's token is refused.
    let mut viewer = Browser::admin(&a);
    sign_in(&mut viewer, VIEWER).await;
    let page = html(&viewer.get("/console/customers/acme").await);
    assert!(!page.contains("new-entitlement") && !page.contains("name=\"revision\""), "no forms shown: {page}");
    let vcsrf = field(&page, "csrf");
    let mut form = good(&[("id", "viewer")]);
    form.extend([("csrf", vcsrf.as_str()), ("revision", "")]);
    for path in [
        "/console/customers",
        "/console/customers/acme",
        "/console/customers/acme/entitlements",
        "/console/customers/acme/entitlements/main",
        "/console/customers/acme/entitlements/main/delete",
        "/console/customers/acme/view-as",
        "/console/webhooks/w/dead-letters/ev_1/redeliver",
    ] {
        let mut form = form.clone();
        form.extend([("name", "Viewer"), ("status", "suspended")]);
        let r = viewer.post(path, &form).await;
        assert_eq!((r.status, code(&r).as_str()), (403, "role_forbids"), "{path}");
    }
    let r = a.call("GET", "/admin/v1/customers/acme/entitlements", None).await;
    assert_eq!(Admin::json(&r)["items"].as_array().unwrap().len(), 1, "nothing changed");
    assert_eq!(Admin::json(&stored("/admin/v1/customers/acme").await)["status"], "active");
}

/// Reports and adoption as CSV: the report API's numbers, formulas
/// defused; bad ranges and tables refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_tables_export_as_csv() {
    let (a, key) = setup().await;
    a.call("PUT", "/admin/v1/customers/-evil", Some(json!({ "name": "=HYPERLINK(\"x\")" }))).await;
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    let url = Admin::json(&r)["url"].as_str().unwrap().to_owned();
    assert_eq!(common::request(a.gw.public, "GET", target(&url), &[]).await.status, 200);
    common::initiations(&a, 1).await;
    let mut ops = Browser::admin(&a);
    sign_in(&mut ops, &a.token).await;
    let r = ops.get("/console/reports/downloads.csv?from=2026-01-01&group=product").await;
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let api = a.call("GET", "/admin/v1/reports/downloads?group_by=product&from=2026-01-01&format=csv", None).await;
    assert_eq!(html(&r), html(&api), "the report API's CSV");
    let r = ops.get("/console/reports/customers.csv?from=2026-01-01").await;
    assert!(html(&r).lines().any(|l| l.starts_with("acme,1,")), "{}", html(&r));
    for bad in [
        "/console/reports/secrets.csv",
        "/console/reports/downloads.csv?group=password",
        "/console/reports/downloads.csv?from=tomorrow",
    ] {
        let r = ops.get(bad).await;
        assert!(r.status == 404 || r.status == 400, "{bad}: {}", r.status);
        assert_ne!(r.header("content-type"), Some("text/csv; charset=utf-8"), "{bad}");
    }
    // Adoption: every entitled customer, the one with a formula for a name defused.
    a.call(
        "PUT",
        "/admin/v1/customers/-evil/entitlements/e",
        Some(json!({ "product": "app", "license": "perpetual", "starts_at": "2020-01-01T00:00:00Z" })),
    )
    .await;
    let r = ops.get("/console/releases/app/1.0.0/adoption.csv").await;
    let body = html(&r);
    assert!(r.header("content-disposition").unwrap().contains("adoption-app-1.0.0.csv"));
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "customer,name,downloaded,first_started,first_completed");
    assert!(lines.iter().any(|l| l.starts_with("acme,acme,yes,20")), "{body}");
    assert!(lines.contains(&"'-evil,\"'=HYPERLINK(\"\"x\"\")\",no,,"), "{body}");
    assert_eq!(ops.get("/console/releases/app/1.0.0/other.csv").await.status, 404);
    assert_eq!(ops.get("/console/releases/app/9.0.0/adoption.csv").await.status, 404);
}

/// "View as customer": the customer's portal opened read-only from the
/// console through a single-use link, every change refused, over after 15
/// minutes, recorded with who opened it; refused to a read-only role and
/// for a suspended customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_as_customer_is_read_only_time_limited_and_audited() {
    let clock = tollgate::clock::ManualClock::new(tollgate::clock::unix_seconds(std::time::SystemTime::now()));
    let a = Admin::start_clocked(clock.clone(), common::no_rate_limits).await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux-x86_64")], "2026-01-01T00:00:00Z").await;
    customer(&a, "acme", json!({})).await;
    a.call("PUT", "/admin/v1/customers/acme/users/ann@acme.test", None).await;
    let mut ops = Browser::admin(&a);
    sign_in(&mut ops, &a.token).await;
    let page = html(&ops.get("/console/customers/acme").await);
    assert!(page.contains("View as this customer"), "{page}");
    let csrf = field(&page, "csrf");
    let r = ops.post("/console/customers/acme/view-as", &[("csrf", "wrong")]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
    let r = ops.post("/console/customers/nobody/view-as", &[("csrf", &csrf)]).await;
    assert_eq!((r.status, code(&r).as_str()), (409, "customer_unavailable"));

    let r = ops.post("/console/customers/acme/view-as", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200);
    let page = html(&r);
    let at = page.find("id=\"open-view\" href=\"").unwrap() + "id=\"open-view\" href=\"".len();
    let link = page[at..at + page[at..].find('"').unwrap()].to_owned();
    // On the public listener, at the gateway's public URL.
    let base = a.gw.state.downloads.urls.public_url.trim_end_matches('/').to_owned();
    assert!(link.starts_with(&format!("{base}/portal/auth?token=")), "{link}");
    let link = link[base.len()..].to_owned();
    let mut view = Browser::public(&a);
    let confirm = html(&view.get(&link).await);
    let auth = [("csrf", field(&confirm, "csrf")), ("token", field(&confirm, "token"))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = view.post("/portal/auth", &auth).await;
    assert_eq!(r.header("location"), Some("/portal/downloads"), "{}", html(&r));
    // Used once.
    let mut other = Browser::public(&a);
    let confirm = html(&other.get(&link).await);
    let r =
        other.post("/portal/auth", &[("csrf", &field(&confirm, "csrf")), ("token", &field(&confirm, "token"))]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "invalid_link"));

    // Every page reads; every change is refused.
    for path in [
        "/portal/downloads",
        "/portal/licenses",
        "/portal/usage",
        "/portal/history",
        "/portal/api-keys",
        "/portal/team",
        "/portal/notifications",
    ] {
        let r = view.get(path).await;
        let body = html(&r);
        assert_eq!(r.status, 200, "{path}: {body}");
        assert!(body.contains("read-only view of this customer"), "{path}: {body}");
    }
    let page = html(&view.get("/portal/downloads").await);
    let vcsrf = field(&page, "csrf");
    for (path, form) in [
        ("/portal/downloads", vec![("product", "app"), ("version", "1.0.0"), ("filename", "app.tar.gz")]),
        ("/portal/api-keys", vec![("name", "mine")]),
        ("/portal/api-keys/revoke", vec![("id", "x")]),
        ("/portal/team", vec![("email", "eve@evil.test"), ("role", "admin")]),
        ("/portal/team/role", vec![("email", "ann@acme.test"), ("role", "admin")]),
        ("/portal/team/remove", vec![("email", "ann@acme.test")]),
        ("/portal/notifications", vec![("notify", "on")]),
        ("/portal/notifications/feed", vec![]),
        ("/portal/sign-out-everywhere", vec![]),
    ] {
        let mut form = form;
        form.push(("csrf", &vcsrf));
        let r = view.post(path, &form).await;
        assert_eq!((r.status, code(&r).as_str()), (403, "view_only"), "{path}");
    }
    assert!(common::initiations(&a, 0).await.is_empty(), "nothing downloaded");
    let r = a.call("GET", "/admin/v1/customers/acme/api-keys", None).await;
    assert_eq!(Admin::json(&r)["items"].as_array().unwrap().len(), 1, "setup's key only");
    assert!(a.call("GET", "/admin/v1/customers/acme/users/eve@evil.test", None).await.status == 404);

    // Audited: who, whose, until when.
    let viewed = events(&a, "type=portal.viewed_as", 1).await;
    assert_eq!(viewed[0]["customer"], "acme");
    assert!(viewed[0]["actor"].as_str().unwrap().starts_with("console:"), "{viewed:?}");
    assert!(viewed[0]["data"]["until"].is_string(), "{viewed:?}");

    // Over after 15 minutes, however busy.
    for _ in 0..3 {
        clock.advance(4 * 60);
        assert_eq!(view.get("/portal/downloads").await.status, 200);
    }
    clock.advance(4 * 60);
    assert_eq!(view.get("/portal/downloads").await.header("location"), Some("/portal/sign-in"));

    // A read-only console role may not open it; nor may anyone once the
    // customer is suspended.
    a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "status": "suspended" }))).await;
    let page = html(&ops.get("/console/customers/acme").await);
    let r = ops.post("/console/customers/acme/view-as", &[("csrf", &field(&page, "csrf"))]).await;
    assert_eq!((r.status, code(&r).as_str()), (409, "customer_unavailable"));
}
