//! The customer portal over HTTP, as a browser without script uses it:
//! forms, cookies, redirects. Sign-in links arrive by e-mail through a real
//! SMTP server (aiosmtpd). The hostile cases: forms without their CSRF
//! token, links used twice or late, made-up session cookies, another
//! customer's files, a user removed or a customer suspended mid-session.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use common::jar::{Browser, code, field, html};
use common::smtp::SmtpServer;
use common::{Admin, Reply, StoreKind, customer, no_rate_limits, release, request_with_body, sha256_hex, test_bytes};
use serde_json::json;

/// The path and query of an absolute URL.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    &rest[rest.find('/').unwrap()..]
}

fn location(r: &Reply) -> &str {
    assert_eq!(r.status, 303, "{r:?}");
    r.header("location").unwrap()
}

struct Setup {
    a: Admin,
    smtp: SmtpServer,
}

/// `app` 1.0.0 with a file, customer `acme` entitled to it, `ann@acme.test`
/// its portal user; `globex` entitled to product `other` only.
async fn setup() -> Setup {
    setup_with(|_| {}).await
}

/// [`setup`], with a change to the configuration.
async fn setup_with(tweak: impl FnOnce(&mut tollgate::config::Config)) -> Setup {
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    // A known port, so that the links the gateway makes (in e-mails, in
    // redirects) are this gateway's: a browser follows them.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, |c| {
        no_rate_limits(c);
        c.server.listen = ([127, 0, 0, 1], port).into();
        c.server.public_url = format!("http://127.0.0.1:{port}");
        c.portal.smtp.url = Some(url);
        c.portal.smtp.from = "Example downloads <downloads@vendor.test>".into();
        c.portal.vendor_name = "Example".into();
        tweak(c);
    })
    .await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux-x86_64")], "2026-01-01T00:00:00Z").await;
    customer(&a, "acme", json!({})).await;
    a.call("PUT", "/admin/v1/products/other", Some(json!({ "name": "Other" }))).await;
    customer(&a, "globex", json!({ "product": "other" })).await;
    let r = a.call("PUT", "/admin/v1/customers/acme/users/Ann@Acme.test", Some(json!({ "role": "admin" }))).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(Admin::json(&r)["email"], "ann@acme.test");
    Setup { a, smtp }
}

/// Ask for a link for `email` and return its path (the `n`th mail to it).
async fn mailed_link(b: &mut Browser, smtp: &SmtpServer, email: &str, n: usize) -> String {
    let page = html(&b.get("/portal/sign-in").await);
    let r = b.post("/portal/sign-in", &[("csrf", &field(&page, "csrf")), ("email", email)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(html(&r).contains("Check your e-mail"), "{}", html(&r));
    let mail = smtp.wait_for(email, n).await;
    assert_eq!(mail.subject, "Sign in to Example downloads");
    let start = mail.body.find("http").expect("a link in the mail");
    let url = mail.body[start..].split_whitespace().next().unwrap();
    path_of(url).to_owned()
}

/// Follow a link to a signed-in session: the confirmation page, its button.
async fn sign_in(b: &mut Browser, link: &str) -> Reply {
    let confirm = b.get(link).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    let page = html(&confirm);
    b.post("/portal/auth", &[("csrf", &field(&page, "csrf")), ("token", &field(&page, "token"))]).await
}

/// Invite → e-mail link → sign in → browse → download (the file's SHA-256
/// matches) → sign out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_by_e_mail_and_downloads() {
    let Setup { a, smtp } = setup().await;
    let mut b = Browser::public(&a);
    assert_eq!(location(&b.get("/portal").await), "/portal/sign-in");
    let sign_in_page = b.get("/portal/sign-in").await;
    assert_eq!(sign_in_page.header("content-security-policy").map(|c| c.contains("default-src 'none'")), Some(true));
    assert_eq!(sign_in_page.header("x-frame-options"), Some("DENY"));

    let link = mailed_link(&mut b, &smtp, "ann@acme.test", 1).await;
    assert!(link.starts_with("/portal/auth?token="), "{link}");
    let signed = sign_in(&mut b, &link).await;
    assert_eq!(location(&signed), "/portal/downloads");
    let cookie = signed.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("tg_portal=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );

    let page = b.get("/portal/downloads").await;
    assert_eq!(page.status, 200, "{page:?}");
    let text = html(&page);
    assert!(text.contains("app.tar.gz") && text.contains(&sha256_hex(&test_bytes(10_000))), "{text}");
    assert!(text.contains("ann@acme.test"));
    assert!(!text.contains("Other"), "nothing of another customer's products: {text}");
    let csrf = field(&text, "csrf");
    let r = b
        .post(
            "/portal/downloads",
            &[("csrf", &csrf), ("product", "app"), ("version", "1.0.0"), ("filename", "app.tar.gz")],
        )
        .await;
    let grant = path_of(location(&r)).to_owned();
    assert!(grant.starts_with("/d/app/1.0.0/app.tar.gz?"), "{grant}");
    let file = common::request(a.gw.public, "GET", &grant, &[]).await;
    assert_eq!(sha256_hex(file.bytes()), sha256_hex(&test_bytes(10_000)));
    let initiated = common::initiations(&a, 1).await;
    assert_eq!(initiated[0]["data"]["via"], "portal");
    let mut events = serde_json::Value::Null;
    for _ in 0..200 {
        events = Admin::json(&a.call("GET", "/admin/v1/events?type=portal.signed_in", None).await);
        if !events["items"][0].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(events["items"][0]["data"]["email"], "ann@acme.test", "{events}");

    // Sign out: the cookie is cleared and no longer signs anyone in.
    let old = b.cookies.get("tg_portal").unwrap().clone();
    assert_eq!(location(&b.post("/portal/sign-out", &[("csrf", &csrf)]).await), "/portal/sign-in");
    assert!(!b.cookies.contains_key("tg_portal"));
    b.cookies.insert("tg_portal".into(), old);
    assert_eq!(location(&b.get("/portal/downloads").await), "/portal/sign-in");
}

/// What an attacker tries against sign-in and the forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_links_and_sessions_refuse_what_they_should() {
    let Setup { a, smtp } = setup().await;
    let mut b = Browser::public(&a);

    // A sign-in form without its token, or with another browser's.
    let r = b.post("/portal/sign-in", &[("csrf", "x"), ("email", "ann@acme.test")]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
    let page = html(&b.get("/portal/sign-in").await);
    let mut other = Browser::public(&a);
    let r = other.post("/portal/sign-in", &[("csrf", &field(&page, "csrf")), ("email", "ann@acme.test")]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"), "the token without its cookie");

    // An unknown address gets the same answer, and no mail.
    let page = html(&b.get("/portal/sign-in").await);
    let r = b.post("/portal/sign-in", &[("csrf", &field(&page, "csrf")), ("email", "eve@evil.test")]).await;
    assert_eq!(r.status, 200);
    assert!(html(&r).contains("Check your e-mail"));
    let page = html(&b.get("/portal/sign-in").await);
    let r = b.post("/portal/sign-in", &[("csrf", &field(&page, "csrf")), ("email", "not an address")]).await;
    assert_eq!(r.status, 400);

    // A made-up session cookie signs nobody in, and is not what sign-in
    // keeps (no fixation).
    b.cookies.insert("tg_portal".into(), "attacker-chosen".into());
    assert_eq!(location(&b.get("/portal/downloads").await), "/portal/sign-in");
    let link = mailed_link(&mut b, &smtp, "ann@acme.test", 1).await;
    assert_eq!(smtp.messages().len(), 1, "no mail for the unknown address");
    let r = sign_in(&mut b, &link).await;
    assert_eq!(location(&r), "/portal/downloads");
    assert_ne!(b.cookies["tg_portal"], "attacker-chosen");

    // The link works once; a made-up one not at all.
    let r = sign_in(&mut Browser::public(&a), &link).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "invalid_link"));
    let r = sign_in(&mut Browser::public(&a), "/portal/auth?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!((r.status, code(&r).as_str()), (403, "invalid_link"));

    // Forms of the session need its token.
    let page = html(&b.get("/portal/downloads").await);
    let csrf = field(&page, "csrf");
    let file = [("product", "app"), ("version", "1.0.0"), ("filename", "app.tar.gz")];
    let r = b.post("/portal/downloads", &file).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
    let r = b.post("/portal/sign-out", &[("csrf", "wrong")]).await;
    assert_eq!(r.status, 403);
    // Another customer's product, asked for by hand: refused as for an API key.
    let r = b
        .post(
            "/portal/downloads",
            &[("csrf", &csrf), ("product", "other"), ("version", "1.0.0"), ("filename", "app.tar.gz")],
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    for (version, want) in [("one", 400), ("9.9.9", 404)] {
        let r = b
            .post("/portal/downloads", &[("csrf", &csrf), ("product", "app"), ("version", version), ("filename", "x")])
            .await;
        assert_eq!(r.status, want, "{version}: {r:?}");
    }

    // A user removed mid-session is signed out at its next request.
    let r = a.call("DELETE", "/admin/v1/customers/acme/users/ann@acme.test", None).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(location(&b.get("/portal/downloads").await), "/portal/sign-in");
    let mut kinds = Vec::new();
    for _ in 0..200 {
        let changes = Admin::json(&a.call("GET", "/admin/v1/events?type=portal.user_changed", None).await);
        kinds = changes["items"].as_array().unwrap().iter().map(|e| e["data"]["change"].clone()).collect();
        if kinds.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(kinds, [json!("created"), json!("deleted")]);
}

/// A signed-in browser of `email` (its `n`th mail is the link).
async fn signed_in_as(a: &Admin, smtp: &SmtpServer, email: &str, n: usize) -> Browser {
    let mut b = Browser::public(a);
    let link = mailed_link(&mut b, smtp, email, n).await;
    assert_eq!(location(&sign_in(&mut b, &link).await), "/portal/downloads");
    b
}

/// The `portal.user_changed` events, once there are `n`.
async fn user_changes(a: &Admin, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let changes = Admin::json(&a.call("GET", "/admin/v1/events?type=portal.user_changed", None).await);
        let items = changes["items"].as_array().unwrap().clone();
        if items.len() >= n {
            return items.into_iter().map(|e| e["data"].clone()).collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} portal.user_changed events");
}

/// A customer's portal admin adds people (they are told by e-mail where to
/// sign in), promotes, demotes and removes them; a member cannot; nobody
/// touches another customer's users or changes themself; every change is
/// recorded with who made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_admins_manage_their_team() {
    let Setup { a, smtp } = setup().await;
    let r = a.call("PUT", "/admin/v1/customers/globex/users/gil@globex.test", None).await;
    assert_eq!(r.status, 201, "{r:?}");
    let mut ann = signed_in_as(&a, &smtp, "ann@acme.test", 1).await;
    let page = html(&ann.get("/portal/team").await);
    assert!(page.contains("ann@acme.test") && !page.contains("gil@globex.test"), "{page}");
    let csrf = field(&page, "csrf");

    let r = ann.post("/portal/team", &[("csrf", &csrf), ("email", "Bob@Acme.test"), ("role", "member")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(html(&r).contains("bob@acme.test was added"), "{}", html(&r));
    let invitation = smtp.wait_for("bob@acme.test", 1).await;
    assert!(invitation.body.contains("ann@acme.test added you") && invitation.body.contains("/portal/sign-in"));
    let mut bob = signed_in_as(&a, &smtp, "bob@acme.test", 2).await;

    // A member manages nobody.
    let bob_csrf = field(&html(&bob.get("/portal/team").await), "csrf");
    for (target, form) in [
        ("/portal/team", vec![("email", "eve@acme.test"), ("role", "admin")]),
        ("/portal/team/role", vec![("email", "ann@acme.test"), ("role", "member")]),
        ("/portal/team/remove", vec![("email", "ann@acme.test")]),
    ] {
        let mut form = form;
        form.push(("csrf", &bob_csrf));
        let r = bob.post(target, &form).await;
        assert_eq!((r.status, code(&r).as_str()), (403, "portal_admin_only"), "{target}");
    }
    // Without the session's token: refused.
    let r = ann.post("/portal/team/remove", &[("csrf", "x"), ("email", "bob@acme.test")]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
    // Not yourself.
    for (target, form) in [
        ("/portal/team/remove", [("csrf", csrf.as_str()), ("email", "ANN@acme.test"), ("role", "")]),
        ("/portal/team/role", [("csrf", csrf.as_str()), ("email", "ann@acme.test"), ("role", "member")]),
        ("/portal/team", [("csrf", csrf.as_str()), ("email", "ann@acme.test"), ("role", "member")]),
    ] {
        let r = ann.post(target, &form).await;
        assert_eq!((r.status, code(&r).as_str()), (409, "not_yourself"), "{target}");
    }
    // Another customer's user: not added, not found, untouched.
    let r = ann.post("/portal/team", &[("csrf", &csrf), ("email", "gil@globex.test"), ("role", "member")]).await;
    assert_eq!(r.status, 409, "{r:?}");
    for target in ["/portal/team/role", "/portal/team/remove"] {
        let r = ann.post(target, &[("csrf", &csrf), ("email", "gil@globex.test"), ("role", "admin")]).await;
        assert_eq!((r.status, code(&r).as_str()), (404, "not_found"), "{target}");
    }
    let gil = Admin::json(&a.call("GET", "/admin/v1/customers/globex/users/gil@globex.test", None).await);
    assert_eq!(gil["role"], "member");
    // Bad input.
    for (email, role) in [("not an address", "member"), ("eve@acme.test", "owner")] {
        let r = ann.post("/portal/team", &[("csrf", &csrf), ("email", email), ("role", role)]).await;
        assert_eq!(r.status, 400, "{email} {role}");
    }

    // Promoted: at its next request bob manages keys; demoted: no longer.
    let r = ann.post("/portal/team/role", &[("csrf", &csrf), ("email", "bob@acme.test"), ("role", "admin")]).await;
    assert_eq!(location(&r), "/portal/team");
    assert!(html(&bob.get("/portal/api-keys").await).contains("Create key"));
    ann.post("/portal/team/role", &[("csrf", &csrf), ("email", "bob@acme.test"), ("role", "member")]).await;
    assert!(!html(&bob.get("/portal/api-keys").await).contains("Create key"));
    // Removed: signed out at its next request.
    let r = ann.post("/portal/team/remove", &[("csrf", &csrf), ("email", "bob@acme.test")]).await;
    assert_eq!(location(&r), "/portal/team");
    assert_eq!(location(&bob.get("/portal/downloads").await), "/portal/sign-in");

    let changes = user_changes(&a, 6).await;
    let seen: Vec<(String, String, String)> = changes
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or("-").to_owned();
            (text("email"), text("change"), text("by"))
        })
        .collect();
    let want = [
        ("ann@acme.test", "created", "-"),
        ("gil@globex.test", "created", "-"),
        ("bob@acme.test", "created", "ann@acme.test"),
        ("bob@acme.test", "updated", "ann@acme.test"),
        ("bob@acme.test", "updated", "ann@acme.test"),
        ("bob@acme.test", "deleted", "ann@acme.test"),
    ];
    let want: Vec<(String, String, String)> =
        want.iter().map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned())).collect();
    assert_eq!(seen, want);
}

/// "Sign out everywhere" ends every session of the user, from the portal
/// or by the vendor; a user removed and added again does not get its old
/// sessions back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_everywhere_ends_every_session() {
    let Setup { a, smtp } = setup().await;
    let mut laptop = signed_in_as(&a, &smtp, "ann@acme.test", 1).await;
    let mut phone = signed_in_as(&a, &smtp, "ann@acme.test", 2).await;
    let csrf = field(&html(&laptop.get("/portal/team").await), "csrf");
    let r = laptop.post("/portal/sign-out-everywhere", &[("csrf", "wrong")]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
    assert_eq!(phone.get("/portal/downloads").await.status, 200);
    let r = laptop.post("/portal/sign-out-everywhere", &[("csrf", &csrf)]).await;
    assert_eq!(location(&r), "/portal/sign-in");
    assert_eq!(location(&phone.get("/portal/downloads").await), "/portal/sign-in");
    laptop.cookies.insert("tg_portal".into(), "x".into());
    assert_eq!(location(&laptop.get("/portal/downloads").await), "/portal/sign-in");

    // Signing in again works; the vendor can do the same.
    let mut phone = signed_in_as(&a, &smtp, "ann@acme.test", 3).await;
    let r = a.call("POST", "/admin/v1/customers/acme/users/ann@acme.test/sign-out", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(location(&phone.get("/portal/downloads").await), "/portal/sign-in");
    let r = a.call("POST", "/admin/v1/customers/globex/users/ann@acme.test/sign-out", None).await;
    assert_eq!(r.status, 404, "another customer's user");
    let changes = user_changes(&a, 3).await;
    assert_eq!(changes[1]["sessions_ended"], true);
    assert_eq!(changes[2]["by"], serde_json::Value::Null, "by the vendor");

    // Removed and added again between two requests: the old session stays over.
    let mut old = signed_in_as(&a, &smtp, "ann@acme.test", 4).await;
    assert_eq!(a.call("DELETE", "/admin/v1/customers/acme/users/ann@acme.test", None).await.status, 204);
    let r = a.call("PUT", "/admin/v1/customers/acme/users/ann@acme.test", Some(json!({ "role": "admin" }))).await;
    assert_eq!(r.status, 201);
    assert_eq!(location(&old.get("/portal/downloads").await), "/portal/sign-in");
}

/// Publish a new draft release of `app` (critical or not).
async fn publish(a: &Admin, version: &str, critical: bool) {
    let body = json!({ "channel": "stable", "critical": critical, "notes": "- Fixes the <b>crash</b>" });
    let r = a.call("PUT", &format!("/admin/v1/products/app/releases/{version}"), Some(body)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = a.call("POST", &format!("/admin/v1/products/app/releases/{version}/publish"), None).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Release notices go to the users who asked for them, of customers that
/// may download the release; critical ones to everyone when the vendor says
/// so; a restored release is not announced again. The company's feed
/// address is made by an admin, shown once, and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_notices_reach_who_asked_for_them() {
    let Setup { a, smtp } = setup_with(|c| c.portal.notify_critical_to_all = true).await;
    for (c, email, role) in [("acme", "bob@acme.test", "member"), ("globex", "gil@globex.test", "admin")] {
        let r = a.call("PUT", &format!("/admin/v1/customers/{c}/users/{email}"), Some(json!({ "role": role }))).await;
        assert_eq!(r.status, 201);
    }
    let mut ann = signed_in_as(&a, &smtp, "ann@acme.test", 1).await;
    let mut gil = signed_in_as(&a, &smtp, "gil@globex.test", 1).await;
    for b in [&mut ann, &mut gil] {
        let page = html(&b.get("/portal/notifications").await);
        assert!(!page.contains("checked"), "off until asked: {page}");
        let r = b.post("/portal/notifications", &[("csrf", "x"), ("notify", "on")]).await;
        assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
        let r = b.post("/portal/notifications", &[("csrf", &field(&page, "csrf")), ("notify", "on")]).await;
        assert_eq!(location(&r), "/portal/notifications");
        assert!(html(&b.get("/portal/notifications").await).contains("checked"));
    }

    // 1.1.0: ann asked and acme may download it; bob did not ask; globex
    // may not download app.
    publish(&a, "1.1.0", false).await;
    let notice = smtp.wait_for("ann@acme.test", 2).await;
    assert_eq!(notice.subject, "App 1.1.0 is available");
    assert!(
        notice.body.contains("is available to acme") && notice.body.contains("/portal/downloads"),
        "{}",
        notice.body
    );
    assert!(notice.body.contains("- Fixes the <b>crash</b>"), "notes as written, in a text e-mail");
    // 1.1.1, critical: bob too (the vendor's setting), still not globex.
    publish(&a, "1.1.1", true).await;
    let critical = smtp.wait_for("bob@acme.test", 1).await;
    assert_eq!(critical.subject, "App 1.1.1 (a critical update) is available");
    assert!(critical.body.contains("sends critical updates to everyone"));
    smtp.wait_for("ann@acme.test", 3).await;
    // Yanked and restored: not announced again. Ann turns notices off.
    a.call("POST", "/admin/v1/products/app/releases/1.1.1/yank", None).await;
    a.call("POST", "/admin/v1/products/app/releases/1.1.1/restore", None).await;
    let page = html(&ann.get("/portal/notifications").await);
    ann.post("/portal/notifications", &[("csrf", &field(&page, "csrf"))]).await;
    assert!(!html(&ann.get("/portal/notifications").await).contains("checked"));
    publish(&a, "1.2.0", false).await;
    publish(&a, "1.2.1", true).await;
    smtp.wait_for("bob@acme.test", 2).await;
    smtp.wait_for("ann@acme.test", 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let to = |who: &str| {
        smtp.messages().iter().filter(|m| m.to.contains(who)).map(|m| m.subject.clone()).collect::<Vec<_>>()
    };
    assert_eq!(to("gil@globex.test").len(), 1, "only its sign-in link: {:?}", to("gil@globex.test"));
    assert_eq!(
        to("ann@acme.test")[1..],
        [
            "App 1.1.0 is available",
            "App 1.1.1 (a critical update) is available",
            "App 1.2.1 (a critical update) is available"
        ]
    );
    assert_eq!(
        to("bob@acme.test"),
        ["App 1.1.1 (a critical update) is available", "App 1.2.1 (a critical update) is available"]
    );

    // The feed address: made by an admin, shown once; a member may not.
    let page = html(&ann.get("/portal/notifications").await);
    assert!(page.contains("no feed address yet"));
    let r = ann.post("/portal/notifications/feed", &[("csrf", &field(&page, "csrf"))]).await;
    assert_eq!(r.status, 201);
    let shown = html(&r);
    let start = shown.find("/feeds/acme/releases.atom?token=").expect("the address");
    let feed = &shown[start..start + shown[start..].find('<').unwrap()];
    let r = common::request(a.gw.public, "GET", feed, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(String::from_utf8_lossy(r.bytes()).contains("1.0.0"), "the release with a file");
    assert!(!html(&ann.get("/portal/notifications").await).contains("releases.atom?token="), "shown once");
    let mut bob = signed_in_as(&a, &smtp, "bob@acme.test", 3).await;
    let page = html(&bob.get("/portal/notifications").await);
    let r = bob.post("/portal/notifications/feed", &[("csrf", &field(&page, "csrf"))]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "portal_admin_only"));
}

/// Downloads filtered by channel and platform, and "what is new since my
/// last download"; History says who downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_filtered_and_news_shown() {
    let Setup { a, smtp } = setup().await;
    release(&a, "1.0.1", "stable", &[("app.dmg", "macos-arm64")], "2026-02-01T00:00:00Z").await;
    let mut ann = signed_in_as(&a, &smtp, "ann@acme.test", 1).await;
    let page = html(&ann.get("/portal/downloads").await);
    assert!(!page.contains("Your last download") && !page.contains("name=\"new\""), "nothing downloaded yet");
    assert!(page.contains("app.dmg") && page.contains("app.tar.gz"));
    let mac = html(&ann.get("/portal/downloads?platform=macos-arm64").await);
    assert!(mac.contains("app.dmg") && !mac.contains("app.tar.gz"), "{mac}");
    let linux = html(&ann.get("/portal/downloads?platform=linux-x86_64&channel=stable").await);
    assert!(!linux.contains("app.dmg") && linux.contains("app.tar.gz"), "{linux}");
    for odd in ["?channel=beta", "?platform=%3Cscript%3E", "?channel=stable&new=1&platform="] {
        let r = ann.get(&format!("/portal/downloads{odd}")).await;
        assert_eq!(r.status, 200, "{odd}");
        assert!(!html(&r).contains("<script>"), "{odd}");
    }
    assert!(html(&ann.get("/portal/downloads?channel=beta").await).contains("Nothing matches these filters"));

    let csrf = field(&page, "csrf");
    let file = [("csrf", csrf.as_str()), ("product", "app"), ("version", "1.0.0"), ("filename", "app.tar.gz")];
    let r = ann.post("/portal/downloads", &file).await;
    let got = common::request(a.gw.public, "GET", location(&r), &[]).await;
    assert_eq!(sha256_hex(got.bytes()), sha256_hex(&test_bytes(10_000)));
    let page = html(&ann.get("/portal/downloads?new=1").await);
    assert!(page.contains("Your last download") && page.contains("Nothing new since your last download"), "{page}");

    // A release published after it (a second later: times are in seconds).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    a.call("PUT", "/admin/v1/products/app/releases/1.2.0", Some(json!({ "channel": "stable" }))).await;
    a.blobs.put("app/1.2.0/app-1.2.tar.gz", &test_bytes(500)).await;
    let r = a.call("PUT", &common::artifact_path("1.2.0", "app-1.2.tar.gz", "linux-x86_64"), None).await;
    assert_eq!(r.status, 201, "{r:?}");
    a.call("POST", "/admin/v1/products/app/releases/1.2.0/publish", None).await;
    let page = html(&ann.get("/portal/downloads?new=1").await);
    assert!(page.contains("app-1.2.tar.gz") && page.contains("New since your last download"), "{page}");
    assert!(!page.contains("app.dmg") && !page.contains(">app.tar.gz<"), "only the new release: {page}");

    let mut history = String::new();
    for _ in 0..200 {
        history = html(&ann.get("/portal/history").await);
        if history.contains("by ann@acme.test") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(history.contains("via portal, by ann@acme.test"), "{history}");
}

/// Links nobody used and sessions nobody ended are swept away once they
/// have expired, and only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_links_and_sessions_are_swept() {
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    let clock = tollgate::clock::ManualClock::new(tollgate::clock::unix_seconds(std::time::SystemTime::now()));
    let a = Admin::start_clocked(clock.clone(), |c| {
        no_rate_limits(c);
        c.portal.smtp.url = Some(url);
        c.portal.vendor_name = "Example".into();
    })
    .await;
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    customer(&a, "acme", json!({})).await;
    a.call("PUT", "/admin/v1/customers/acme/users/ann@acme.test", None).await;
    let mut b = Browser::public(&a);
    let unused = mailed_link(&mut b, &smtp, "ann@acme.test", 1).await;
    let link = mailed_link(&mut b, &smtp, "ann@acme.test", 2).await;
    assert_eq!(location(&sign_in(&mut b, &link).await), "/portal/downloads");
    let portal = tollgate::portal::Portal::new(&a.gw.state);
    assert_eq!(portal.sweep().await.unwrap(), 0, "nothing has expired");
    assert_eq!(b.get("/portal/downloads").await.status, 200);

    clock.advance(16 * 60);
    assert_eq!(portal.sweep().await.unwrap(), 1, "the unused link");
    assert_eq!(b.get("/portal/downloads").await.status, 200, "the session is live");
    clock.advance(13 * 3600);
    assert_eq!(portal.sweep().await.unwrap(), 1, "the session, past its absolute limit");
    assert_eq!(location(&b.get("/portal/downloads").await), "/portal/sign-in");
    let r = sign_in(&mut Browser::public(&a), &unused).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "invalid_link"));
    assert_eq!(portal.sweep().await.unwrap(), 0);
}

/// The vendor sets the portal's name, colour and logo through the admin
/// API: pages, stylesheet and e-mails follow; bad values are refused and
/// change nothing; a reset goes back to the configuration's. The OpenID
/// providers are listed without their secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branding_is_set_through_the_admin_api() {
    let Setup { a, smtp } = setup().await;
    let r = a.call("GET", "/admin/v1/portal/branding", None).await;
    assert_eq!(Admin::json(&r)["vendor_name"], "Example", "the configuration's");
    let brand = json!({ "vendor_name": "Acme <Soft>", "accent_color": "#14532d", "logo_url": "/logo.svg" });
    let r = a.call("PUT", "/admin/v1/portal/branding", Some(brand.clone())).await;
    assert_eq!((r.status, Admin::json(&r)), (200, brand.clone()));
    let page = html(&Browser::public(&a).get("/portal/sign-in").await);
    assert!(page.contains("Acme &#60;Soft&#62; downloads") && page.contains("src=\"/logo.svg\""), "{page}");
    let css = common::request(a.gw.public, "GET", "/portal/style.css", &[]).await;
    assert!(String::from_utf8_lossy(css.bytes()).contains("--accent: #14532d"));
    let mut b = Browser::public(&a);
    let page = html(&b.get("/portal/sign-in").await);
    b.post("/portal/sign-in", &[("csrf", &field(&page, "csrf")), ("email", "ann@acme.test")]).await;
    assert_eq!(smtp.wait_for("ann@acme.test", 1).await.subject, "Sign in to Acme <Soft> downloads");

    for (bad, field) in [
        (json!({ "vendor_name": "x", "accent_color": "red" }), "accent_color"),
        (json!({ "vendor_name": " ", "accent_color": "#000000" }), "vendor_name"),
        (json!({ "vendor_name": "x", "accent_color": "#000000", "logo_url": "javascript:alert(1)" }), "logo_url"),
        (json!({ "vendor_name": "x", "accent_color": "#000000", "logo_url": "//evil.test/x.png" }), "logo_url"),
    ] {
        let r = a.call("PUT", "/admin/v1/portal/branding", Some(bad.clone())).await;
        assert_eq!((r.status, r.code().as_str()), (422, "invalid_field"), "{bad}");
        assert!(Admin::json(&r)["detail"].as_str().unwrap().starts_with(field), "{bad}: {r:?}");
    }
    for bad in [json!({ "vendor_name": "x" }), json!({ "vendor_name": "x", "accent_color": "#000000", "extra": 1 })] {
        assert_eq!(a.call("PUT", "/admin/v1/portal/branding", Some(bad)).await.status, 400);
    }
    assert_eq!(Admin::json(&a.call("GET", "/admin/v1/portal/branding", None).await), brand, "unchanged");

    let r = a.call("DELETE", "/admin/v1/portal/branding", None).await;
    assert_eq!(Admin::json(&r)["vendor_name"], "Example");
    assert!(html(&Browser::public(&a).get("/portal/sign-in").await).contains("Example downloads"));
    let r = a.call("GET", "/admin/v1/portal/sso", None).await;
    assert_eq!(Admin::json(&r), json!([]), "none configured here (tests/portal_sso.rs lists its own)");
}

/// A suspended customer's sessions end; its users' links stop working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_customer_is_signed_out() {
    let Setup { a, smtp } = setup().await;
    let mut b = Browser::public(&a);
    let link = mailed_link(&mut b, &smtp, "ann@acme.test", 1).await;
    let spare = mailed_link(&mut Browser::public(&a), &smtp, "ann@acme.test", 2).await;
    assert_eq!(location(&sign_in(&mut b, &link).await), "/portal/downloads");
    let r = a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "status": "suspended" }))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(location(&b.get("/portal/downloads").await), "/portal/sign-in");
    let r = sign_in(&mut Browser::public(&a), &spare).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "invalid_link"));
}

/// The admin API's side: addresses checked, one customer per address.
#[tokio::test]
async fn users_are_managed_by_the_vendor() {
    let Setup { a, .. } = setup().await;
    let r = a.call("PUT", "/admin/v1/customers/globex/users/ann@acme.test", None).await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"), "one customer per address: {r:?}");
    for bad in ["not-an-address", "a%20b@x.test", "ann@"] {
        let r = a.call("PUT", &format!("/admin/v1/customers/acme/users/{bad}"), None).await;
        assert!(r.status == 422 || r.status == 400, "{bad}: {r:?}");
    }
    let r = a.call("PUT", "/admin/v1/customers/nobody/users/x@y.test", None).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = a.call("PUT", "/admin/v1/customers/acme/users/bob@acme.test", Some(json!({ "role": "owner" }))).await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = a.call("PUT", "/admin/v1/customers/acme/users/bob@acme.test", None).await;
    assert_eq!((r.status, Admin::json(&r)["role"].as_str()), (201, Some("member")));
    let list = Admin::json(&a.call("GET", "/admin/v1/customers/acme/users", None).await);
    let emails: Vec<&str> = list.as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["ann@acme.test", "bob@acme.test"]);
    let r = a.call("GET", "/admin/v1/customers/globex/users/bob@acme.test", None).await;
    assert_eq!(r.status, 404, "another customer's user is not found through globex");
    let r = a.call("DELETE", "/admin/v1/customers/globex/users/bob@acme.test", None).await;
    assert_eq!(r.status, 404);
}

/// Licenses, usage and API keys: what the pages say, and who may change
/// keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licenses_usage_and_keys() {
    let Setup { a, smtp } = setup().await;
    release(&a, "2.0.0", "stable", &[("app.tar.gz", "linux-x86_64")], "2026-08-01T00:00:00Z").await;
    let r = a
        .call(
            "PUT",
            "/admin/v1/customers/acme/entitlements/main",
            Some(json!({ "product": "app", "license": "subscription", "starts_at": "2020-01-01T00:00:00Z",
                         "maintenance_until": "2026-06-01T00:00:00Z" })),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{r:?}");
    common::set_quota(&a, json!({ "downloads_per_day": 10, "bytes_per_month": 1_073_741_824u64 })).await;
    a.call("PUT", "/admin/v1/customers/acme/users/bob@acme.test", None).await;
    let globex_key = customer(&a, "globex", json!({ "product": "other" })).await;

    let mut ann = Browser::public(&a);
    let link = mailed_link(&mut ann, &smtp, "ann@acme.test", 1).await;
    sign_in(&mut ann, &link).await;
    let licenses = html(&ann.get("/portal/licenses").await);
    assert!(licenses.contains("subscription") && licenses.contains("2026-06-01"), "{licenses}");
    assert!(licenses.contains("does not cover: 2.0.0"), "the release past the maintenance window: {licenses}");

    let usage = html(&ann.get("/portal/usage").await);
    assert!(usage.contains("downloads per day") && usage.contains("0 of 10"), "{usage}");
    assert!(usage.contains("1.0 GiB"), "{usage}");
    let csrf = field(&html(&ann.get("/portal/downloads").await), "csrf");
    let r = ann
        .post(
            "/portal/downloads",
            &[("csrf", &csrf), ("product", "app"), ("version", "1.0.0"), ("filename", "app.tar.gz")],
        )
        .await;
    common::request(a.gw.public, "GET", path_of(location(&r)), &[]).await;
    assert!(html(&ann.get("/portal/usage").await).contains("1 of 10"));

    // History: the customer's own events, newest first; another customer's
    // refusal is not among them.
    let refused = json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" });
    assert_eq!(common::ask(&a, &globex_key, refused).await.status, 403);
    let mut history = String::new();
    for _ in 0..200 {
        history = html(&ann.get("/portal/history").await);
        if history.contains("Download completed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(history.contains("Download started") && history.contains("app 1.0.0 app.tar.gz"), "{history}");
    assert!(
        history.contains("via portal") && history.find("Download completed") < history.find("Download started"),
        "newest first: {history}"
    );
    assert!(!history.contains("not_entitled"), "globex's refusal is globex's: {history}");
    let refusals = html(&ann.get("/portal/history?kind=denied").await);
    assert!(refusals.contains("No downloads yet"), "{refusals}");
    let csv = ann.get("/portal/history.csv?kind=initiated&product=app").await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let csv = String::from_utf8_lossy(csv.bytes()).into_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "at,what,file,from,detail");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains("Download started,app 1.0.0 app.tar.gz,127.0.0.1,\"via portal, by ann@acme.test\""),
        "{csv}"
    );
    // Odd queries are not errors: an unknown kind is everything.
    assert_eq!(ann.get("/portal/history?kind=%00&product=%FF").await.status, 200);

    // Keys: an admin creates one (shown once), it works, and is revoked.
    let r = ann.post("/portal/api-keys", &[("csrf", &csrf), ("name", "build server")]).await;
    assert_eq!(r.status, 201, "{r:?}");
    let page = html(&r);
    let start = page.find("tg_acme_").expect("the new key");
    let key = page[start..start + page[start..].find('<').unwrap()].to_owned();
    assert_eq!(a.customer(&key, "GET", "/v1/usage", None).await.status, 200);
    let listed = html(&ann.get("/portal/api-keys").await);
    assert!(listed.contains("build server") && !listed.contains(&key), "never shown again: {listed}");
    let id = key.split('_').nth(2).unwrap().to_owned();
    // Another customer's key id, from this customer's portal: not found.
    let globex_id = globex_key.split('_').nth(2).unwrap();
    let r = ann.post("/portal/api-keys/revoke", &[("csrf", &csrf), ("id", globex_id)]).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(a.customer(&globex_key, "GET", "/v1/usage", None).await.status, 200);
    assert_eq!(
        location(&ann.post("/portal/api-keys/revoke", &[("csrf", &csrf), ("id", &id)]).await),
        "/portal/api-keys"
    );
    assert_eq!(a.customer(&key, "GET", "/v1/usage", None).await.status, 401);

    // A member sees the keys, and can change nothing.
    let mut bob = Browser::public(&a);
    let link = mailed_link(&mut bob, &smtp, "bob@acme.test", 1).await;
    sign_in(&mut bob, &link).await;
    let page = html(&bob.get("/portal/api-keys").await);
    assert!(page.contains("build server") && !page.contains("Create key"), "{page}");
    let csrf = field(&html(&bob.get("/portal/downloads").await), "csrf");
    for (target, form) in [
        ("/portal/api-keys", vec![("csrf", csrf.as_str()), ("name", "mine")]),
        ("/portal/api-keys/revoke", vec![("csrf", csrf.as_str()), ("id", id.as_str())]),
    ] {
        let r = bob.post(target, &form).await;
        assert_eq!((r.status, code(&r).as_str()), (403, "portal_admin_only"), "{target}");
    }
    let r = ann.post("/portal/api-keys", &[("csrf", "stale"), ("name", "x")]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_refused"));
}

/// Where the test run writes the portal's screenshots (the ones
/// docs/portal.md shows).
fn screenshot(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots").join(format!("{name}.png"))
}

/// The same journey in headless Chromium (Debian's, over WebDriver): the
/// pages as a person sees them, axe-core's check on each (no serious or
/// critical violation), screenshots at desktop and phone widths; the file
/// downloaded by clicking its button has the release's SHA-256 and is then
/// in History; an API key is created and revoked and a colleague invited,
/// by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_in_chromium() {
    let Setup { a, smtp } = setup().await;
    let notes =
        json!({ "channel": "stable", "notes": "## Fixes\n\n- Faster start-up\n- <b>raw HTML is shown as text</b>" });
    a.call("PUT", "/admin/v1/products/app/releases/1.0.0", Some(notes)).await;
    let downloads = tempfile::tempdir().unwrap();
    let b = common::browser::Browser::start(downloads.path()).await;
    let base = format!("http://{}", a.gw.public);

    b.window(1280, 900).await;
    b.goto(&format!("{base}/portal")).await;
    b.wait_for_url("/portal/sign-in").await;
    let mut pages = Vec::new();
    // Each page: axe-core's check and a screenshot at desktop width, then
    // again at a phone's.
    async fn look(b: &common::browser::Browser, name: &str, pages: &mut Vec<String>) {
        let violations = b.accessibility_violations().await;
        assert!(violations.is_empty(), "{name}: {violations:#?}");
        b.screenshot(&screenshot(&format!("portal-{name}"))).await;
        b.window(390, 844).await;
        let violations = b.accessibility_violations().await;
        assert!(violations.is_empty(), "{name} on a phone: {violations:#?}");
        b.screenshot(&screenshot(&format!("portal-{name}-phone"))).await;
        b.window(1280, 900).await;
        pages.push(name.to_owned());
    }
    look(&b, "sign-in", &mut pages).await;
    b.type_into("#email", "ann@acme.test").await;
    b.click("form button[type=submit]").await;
    b.wait_for_text("Check your e-mail").await;
    look(&b, "sent", &mut pages).await;

    let mail = smtp.wait_for("ann@acme.test", 1).await;
    let start = mail.body.find("http").unwrap();
    b.goto(mail.body[start..].split_whitespace().next().unwrap()).await;
    look(&b, "confirm", &mut pages).await;
    b.click("form button[type=submit]").await;
    b.wait_for_url("/portal/downloads").await;
    let source = b.source().await;
    assert!(
        source.contains("<h2>Fixes</h2>") && source.contains("&lt;b&gt;raw HTML"),
        "notes rendered safely: {source}"
    );
    look(&b, "downloads", &mut pages).await;
    for page in ["history", "licenses", "usage", "api-keys", "notifications", "team"] {
        b.goto(&format!("{base}/portal/{page}")).await;
        b.wait_for_url(&format!("/portal/{page}")).await;
        look(&b, page, &mut pages).await;
    }

    // The button downloads the file.
    b.goto(&format!("{base}/portal/downloads")).await;
    b.click("button[aria-label='Download app.tar.gz']").await;
    let file = common::browser::downloaded(downloads.path(), "app.tar.gz").await;
    assert_eq!(sha256_hex(&file), sha256_hex(&test_bytes(10_000)));
    // The download in History (who, by which door) and in Usage.
    for _ in 0..100 {
        b.goto(&format!("{base}/portal/history")).await;
        b.wait_for_url("/portal/history").await;
        if b.source().await.contains("via portal, by ann@acme.test") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(b.source().await.contains("via portal, by ann@acme.test"));
    b.goto(&format!("{base}/portal/usage")).await;
    b.wait_for_url("/portal/usage").await;
    assert!(b.source().await.contains("Downloads running now"));

    // An API key made and revoked by hand; a colleague invited.
    b.goto(&format!("{base}/portal/api-keys")).await;
    b.wait_for_url("/portal/api-keys").await;
    b.type_into("#name", "build server").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("it is not shown again").await;
    assert!(b.source().await.contains("id=\"new-key\">tg_acme_"));
    b.click("button[aria-label='Revoke build server']").await;
    b.wait_for_text("revoked ").await;
    b.goto(&format!("{base}/portal/team")).await;
    b.wait_for_url("/portal/team").await;
    b.type_into("#email", "bob@acme.test").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("bob@acme.test was added").await;
    assert!(smtp.wait_for("bob@acme.test", 1).await.body.contains("/portal/sign-in"));

    // An error page, as a person meets one: a link used a second time.
    b.goto(mail.body[start..].split_whitespace().next().unwrap()).await;
    b.click("form button[type=submit]").await;
    b.wait_for_text("invalid_link").await;
    look(&b, "error", &mut pages).await;

    b.goto(&format!("{base}/portal/downloads")).await;
    b.click("button.link").await;
    b.wait_for_url("/portal/sign-in").await;
    b.goto(&format!("{base}/portal/downloads")).await;
    b.wait_for_url("/portal/sign-in").await;
    assert_eq!(
        pages,
        [
            "sign-in",
            "sent",
            "confirm",
            "downloads",
            "history",
            "licenses",
            "usage",
            "api-keys",
            "notifications",
            "team",
            "error"
        ]
    );
}

/// A vendor that does not want the portal turns it off: every page is
/// unknown, signed-in pages too.
#[tokio::test]
async fn a_portal_turned_off_is_not_there() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, common::Backend::Local, |c| c.portal.enabled = false).await;
    for target in ["/portal", "/portal/sign-in", "/portal/downloads", "/portal/history.csv", "/portal/style.css"] {
        let r = common::request(a.gw.public, "GET", target, &[]).await;
        assert_eq!(r.status, 404, "{target}");
    }
    let r = request_with_body(a.gw.public, "POST", "/portal/sign-in", &[], "email=a%40b.c".into()).await;
    assert_eq!(r.status, 404);
}
