//! Portal sign-in with OpenID Connect against a real provider (npm
//! `oidc-provider`, started by the harness): in headless Chromium, the
//! whole journey through the provider's own sign-in and consent pages; over
//! HTTP, the answers an attacker forges (another browser's `state`, a made-up
//! code, a replayed answer, a provider error, a mixed-up issuer).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use common::jar::{Browser, code, field, html};
use common::oidc::{CLIENT_ID, CLIENT_SECRET, OidcProvider};
use common::{Admin, Reply, StoreKind, customer, no_rate_limits, release};
use serde_json::json;
use tollgate::config::portal::SsoProviderConfig;
use tollgate::config::secret::Secret;

fn provider(id: &str, name: &str, issuer: &str, customers: &[&str]) -> SsoProviderConfig {
    SsoProviderConfig {
        id: id.into(),
        name: name.into(),
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(Secret::new(CLIENT_SECRET)),
        client_secret_file: None,
        customers: customers.iter().map(|c| (*c).to_owned()).collect(),
        require_verified_email: true,
    }
}

/// A provider, and a gateway with two buttons for it: `test-idp` for any
/// customer's users, `globex-idp` for globex's alone. `ann@acme.test` is
/// acme's user, `gus@globex.test` globex's.
async fn setup() -> (Admin, OidcProvider) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = OidcProvider::start(&format!("{base}/portal/sso/callback"));
    let issuer = idp.issuer.clone();
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, |c| {
        no_rate_limits(c);
        c.server.listen = ([127, 0, 0, 1], port).into();
        c.server.public_url = base;
        c.portal.vendor_name = "Example".into();
        c.portal.sso = vec![
            provider("test-idp", "Test IdP", &issuer, &[]),
            provider("globex-idp", "Globex SSO", &issuer, &["globex"]),
        ];
    })
    .await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux-x86_64")], "2026-01-01T00:00:00Z").await;
    customer(&a, "acme", json!({})).await;
    customer(&a, "globex", json!({})).await;
    for (c, email) in [("acme", "ann@acme.test"), ("globex", "gus@globex.test")] {
        let r =
            a.call("PUT", &format!("/admin/v1/customers/{c}/users/{email}"), Some(json!({ "role": "member" }))).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    (a, idp)
}

fn screenshot(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots").join(format!("{name}.png"))
}

/// At the provider: its sign-in page (any login name; the password is not
/// checked), then its consent page.
async fn at_the_provider(b: &common::browser::Browser, login: &str) {
    b.wait_for_text("Enter any login").await;
    b.type_into("input[name=login]", login).await;
    b.type_into("input[name=password]", "any password").await;
    b.click("button[type=submit]").await;
    b.wait_for_text("value=\"consent\"").await;
    b.click("button[type=submit]").await;
}

/// Start over: signed out everywhere (the provider's cookies too: one host).
async fn fresh(b: &common::browser::Browser, base: &str) {
    b.goto(&format!("{base}/portal/sign-in")).await;
    b.wait_for_url("/portal/sign-in").await;
    b.clear_cookies().await;
    b.goto(&format!("{base}/portal/sign-in")).await;
    b.wait_for_url("/portal/sign-in").await;
}

/// The journey in Chromium: the button, the provider's pages, back signed
/// in; then the addresses the portal must turn away although the provider
/// vouches for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sign_in_with_their_company_account() {
    let (a, _idp) = setup().await;
    let downloads = tempfile::tempdir().unwrap();
    let b = common::browser::Browser::start(downloads.path()).await;
    let base = format!("http://{}", a.gw.public);
    b.window(1280, 900).await;

    fresh(&b, &base).await;
    let violations = b.accessibility_violations().await;
    assert!(violations.is_empty(), "{violations:#?}");
    b.screenshot(&screenshot("portal-sign-in-sso")).await;
    b.click("form.sso button").await;
    at_the_provider(&b, "ann@acme.test").await;
    b.wait_for_url("/portal/downloads").await;
    let page = b.source().await;
    assert!(page.contains("ann@acme.test") && page.contains("app.tar.gz"), "{page}");
    let mut events = serde_json::Value::Null;
    for _ in 0..200 {
        events = Admin::json(&a.call("GET", "/admin/v1/events?type=portal.signed_in", None).await);
        if !events["items"][0].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let data = &events["items"][0]["data"];
    assert_eq!(
        (data["email"].as_str(), data["via"].as_str()),
        (Some("ann@acme.test"), Some("sso:test-idp")),
        "{events}"
    );
    b.click("button.link").await;
    b.wait_for_url("/portal/sign-in").await;

    // Proven by the provider, refused by the portal: no such user; an
    // address the provider has not verified; a provider trusted for
    // another customer only.
    let refused: [(&str, &str); 3] = [
        ("form.sso button", "bob@acme.test"),
        ("form.sso button", "unverified.ann@acme.test"),
        ("form.sso:last-of-type button", "ann@acme.test"),
    ];
    for (button, login) in refused {
        fresh(&b, &base).await;
        b.click(button).await;
        at_the_provider(&b, login).await;
        b.wait_for_text("sso_not_allowed").await;
        if login == "bob@acme.test" {
            let violations = b.accessibility_violations().await;
            assert!(violations.is_empty(), "{violations:#?}");
            b.screenshot(&screenshot("portal-sso-refused")).await;
        }
        b.goto(&format!("{base}/portal/downloads")).await;
        b.wait_for_url("/portal/sign-in").await;
    }
    // The customer's own provider signs in the customer's own user.
    fresh(&b, &base).await;
    b.click("form.sso:last-of-type button").await;
    at_the_provider(&b, "gus@globex.test").await;
    b.wait_for_url("/portal/downloads").await;
    assert!(b.source().await.contains("gus@globex.test"));
}

/// Press a provider's button: the provider's authorization URL.
async fn start(jar: &mut Browser, provider: &str) -> Reply {
    let page = html(&jar.get("/portal/sign-in").await);
    jar.post("/portal/sso", &[("csrf", &field(&page, "csrf")), ("provider", provider)]).await
}

fn query(url: &str) -> std::collections::BTreeMap<String, String> {
    let q = url.split_once('?').unwrap().1;
    q.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned();
            (decode(k), decode(v))
        })
        .collect()
}

/// What an attacker can send to the callback gets no session: answers not
/// started in this browser, made-up codes, a provider's error, an answer
/// naming another issuer; each flow ends at its first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_answers_sign_nobody_in() {
    let (a, idp) = setup().await;
    // The admin API lists the providers, never their secrets.
    let listed = Admin::json(&a.call("GET", "/admin/v1/portal/sso", None).await);
    assert_eq!(listed[1]["id"], "globex-idp");
    assert_eq!(listed[1]["customers"], json!(["globex"]));
    assert!(!listed.to_string().contains(CLIENT_SECRET));
    let mut jar = Browser::public(&a);
    let r = start(&mut jar, "test-idp").await;
    assert_eq!(r.status, 303, "{r:?}");
    let to = r.header("location").unwrap().to_owned();
    assert!(to.starts_with(&format!("{}/auth?", idp.issuer)), "{to}");
    let q = query(&to);
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], format!("http://{}/portal/sso/callback", a.gw.public));
    assert_eq!((q["response_type"].as_str(), q["code_challenge_method"].as_str()), ("code", "S256"));
    assert_eq!(q["code_challenge"].len(), 43, "a SHA-256, base64url");
    assert!(q["nonce"].len() >= 43 && q["state"].len() >= 43);
    let state = q["state"].clone();
    assert_eq!(
        jar.cookies.get("tg_portal_sso").map(String::as_str),
        Some(state.as_str()),
        "the browser keeps its state"
    );

    // Another browser (the victim's, lured to the attacker's answer) has no
    // such state: refused, and the flow is still the first browser's.
    let mut victim = Browser::public(&a);
    let r = victim.get(&format!("/portal/sso/callback?code=abc&state={state}")).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "sso_flow_invalid"));
    victim.cookies.insert("tg_portal_sso".into(), "another-state".into());
    let r = victim.get(&format!("/portal/sso/callback?code=abc&state={state}")).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "sso_flow_invalid"));

    // A made-up code: the provider refuses it; the flow is used up.
    let r = jar.send("GET", &format!("/portal/sso/callback?code=made-up&state={state}"), "").await;
    assert_eq!((r.status, code(&r).as_str()), (403, "sso_denied"), "{r:?}");
    assert_eq!(jar.cookies.get("tg_portal_sso").cloned(), None, "the state cookie is cleared");
    jar.cookies.insert("tg_portal_sso".into(), state.clone());
    let r = jar.send("GET", &format!("/portal/sso/callback?code=made-up&state={state}"), "").await;
    assert_eq!((r.status, code(&r).as_str()), (403, "sso_flow_invalid"), "one answer per flow");

    // The provider's error, and an answer from another issuer (RFC 9207).
    for (answer, want) in [
        ("error=access_denied&error_description=The%20user%20said%20no", "sso_denied"),
        ("code=x&iss=http%3A%2F%2Fevil.test", "sso_invalid_token"),
    ] {
        let mut jar = Browser::public(&a);
        let state = query(start(&mut jar, "test-idp").await.header("location").unwrap())["state"].clone();
        let r = jar.send("GET", &format!("/portal/sso/callback?{answer}&state={state}"), "").await;
        assert_eq!((r.status, code(&r).as_str()), (403, want), "{answer}");
        assert!(!jar.cookies.contains_key("tg_portal"), "no session");
    }

    // Malformed: nothing, garbage, a huge state; an unknown provider; a
    // button without its form token.
    for target in [
        "/portal/sso/callback",
        "/portal/sso/callback?state=%00%ff&code=%",
        &format!("/portal/sso/callback?state={}", "a".repeat(10_000)),
    ] {
        let r = jar.send("GET", target, "").await;
        assert_eq!(r.status, 403, "{target}: {r:?}");
    }
    let r = start(&mut jar, "nobody").await;
    assert_eq!((r.status, code(&r).as_str()), (404, "unknown_provider"));
    let r = jar.send("POST", "/portal/sso", "provider=test-idp").await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
    let r = jar.send("GET", "/portal/downloads", "").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/portal/sign-in")), "nobody signed in");
}
