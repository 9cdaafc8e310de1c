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
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, |c| {
        common::no_rate_limits(c);
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

/// The numbers the chart draws: (series, value) of every bar.
fn bars(page: &str) -> Vec<(String, u64)> {
    page.split("<rect ")
        .filter_map(|r| {
            let attr = |name: &str| {
                let marker = format!("{name}=\"");
                let start = r.find(&marker)? + marker.len();
                Some(r[start..start + r[start..].find('"')?].to_owned())
            };
            Some((attr("data-series")?, attr("data-value")?.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium() {
    let (a, key) = setup().await;
    // A download of 1.0.0 before: the report has something to draw.
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    let url = Admin::json(&r)["url"].as_str().unwrap().to_owned();
    assert_eq!(common::request(a.gw.public, "GET", target(&url), &[]).await.status, 200);

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
    b.wait_for_text("Recent events").await;
    assert!(b.source().await.contains("download.initiated"));
    look(&b, "customer").await;

    // The draft's customers, seen before publishing it.
    b.goto(&format!("{base}/console/releases")).await;
    b.wait_for_url("/console/releases").await;
    look(&b, "releases").await;
    b.click("a[href='/console/releases/app/1.1.0']").await;
    b.wait_for_url("/console/releases/app/1.1.0").await;
    let page = b.source().await;
    assert!(page.contains("Customers it will reach: <span id=\"eligible-count\">1</span>"), "{page}");
    assert!(page.contains("/console/customers/acme") && !page.contains("/console/customers/globex"));
    look(&b, "release-draft").await;
    b.click("form button[type=submit]:not(.link)").await;
    b.wait_for_text("Yank: 1 customers").await;
    let r = a.call("GET", "/admin/v1/products/app/releases/1.1.0", None).await;
    assert_eq!(Admin::json(&r)["status"], "published");

    // The customer downloads it; the chart shows the API's numbers.
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.1.0", "platform": "linux-x86_64" })).await;
    assert_eq!(r.status, 201, "{r:?}");
    let url = Admin::json(&r)["url"].as_str().unwrap().to_owned();
    assert_eq!(common::request(a.gw.public, "GET", target(&url), &[]).await.status, 200);
    let mut api = serde_json::Value::Null;
    for _ in 0..200 {
        api = Admin::json(&a.call("GET", "/admin/v1/reports/downloads?group_by=product&from=2026-01-01", None).await);
        if api["total"]["initiations"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(api["total"]["initiations"], 2, "{api}");
    b.goto(&format!("{base}/console/reports")).await;
    b.wait_for_url("/console/reports").await;
    let page = b.source().await;
    let drawn: u64 = bars(&page).iter().filter(|(s, _)| s == "app").map(|(_, n)| n).sum();
    let app_row = api["rows"].as_array().unwrap().iter().find(|r| r["group"] == "app").unwrap();
    assert_eq!(drawn, app_row["initiations"].as_u64().unwrap(), "{page}");
    assert!(page.contains("<span id=\"total\">2</span>"));
    look(&b, "reports").await;

    // Live activity: the page open, a download appears on it as it happens.
    b.goto(&format!("{base}/console/activity?customer=acme")).await;
    b.wait_for_url("/console/activity").await;
    look(&b, "activity").await;
    let r = ask(&a, &key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    let grant = Admin::json(&r)["grant_id"].as_str().unwrap().to_owned();
    let live = Admin::json(&r)["url"].as_str().unwrap().to_owned();
    assert_eq!(common::request(a.gw.public, "GET", target(&live), &[]).await.status, 200);
    b.wait_for_text("Live: ").await;
    b.wait_for_text(&grant).await;

    // Yank: the URL the customer holds is refused.
    b.goto(&format!("{base}/console/releases/app/1.1.0")).await;
    b.wait_for_text("Yank: 1 customers").await;
    b.click("form button[type=submit]:not(.link)").await;
    b.wait_for_text("Restore").await;
    look(&b, "release-yanked").await;
    let r = common::request(a.gw.public, "GET", target(&url), &[]).await;
    assert!(r.status >= 400, "a yanked release's URL: {r:?}");

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
