//! `edge` delivery (issue 16) end to end: the gateway is the origin behind a
//! stand-in CDN edge (`common::edge`) that checks each CDN's token with code
//! written from that CDN's documentation and forwards with the origin
//! secret. Customers get the CDN's URL from `POST /v1/downloads`; the quota
//! is counted when it is minted; the origin answers the CDN only.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::atomic::Ordering;

use common::edge::{self, Bound, Check};
use common::{
    Admin, Backend, StoreKind, curl, customer, initiations, no_rate_limits, release, request, set_quota, sha256_hex,
    used,
};
use serde_json::{Value, json};
use tollgate::config::cdn::{CdnKeyConfig, OriginAuthConfig};
use tollgate::config::{CdnKind, CdnProfileConfig, Config, Secret, TokenPlacement};

const ORIGIN_HEADER: &str = "x-origin-auth";
const ORIGIN_SECRET: &str = "origin-secret-shared-with-the-cdn";
const CLOUDFLARE_KEY: &str = "cloudflare-waf-secret";
const AKAMAI_KEY: &str = "7a5c2be9f42a1f32cd889d1cf775f05d0cd162bd2871d00fe705ab28c9bba5a5";

fn profile(id: &str, kind: CdnKind, base_url: String, key_id: &str, key: String) -> CdnProfileConfig {
    CdnProfileConfig {
        id: id.into(),
        kind,
        base_url,
        lifetime: std::time::Duration::from_secs(600),
        bind_client: false,
        token_in: TokenPlacement::Query,
        hash: None,
        policy: Default::default(),
        token_name: None,
        salt: None,
        salt_file: None,
        url_safe: false,
        accept: false,
        active_key: None,
        keys: vec![CdnKeyConfig { id: key_id.into(), key: Some(Secret::new(key)), key_file: None, verify_only: false }],
        origin: Some(OriginAuthConfig {
            header: ORIGIN_HEADER.into(),
            secret: Some(Secret::new(ORIGIN_SECRET)),
            secret_file: None,
            client_certificate: false,
            client_certificate_sha256: Vec::new(),
        }),
    }
}

/// An RSA key pair as CloudFront's console takes it: the private key PEM
/// (the gateway's) and the public key's PKCS#1 DER (the edge's).
fn rsa_key() -> (String, Vec<u8>) {
    use rcgen::PublicKeyData as _;
    let k = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    (k.serialize_pem(), k.der_bytes().to_vec())
}

/// `app` 1.0.0 with `app.tar.gz`, delivered through `profile`; customer
/// `acme` and its key.
async fn edge_catalog(a: &Admin, profile: &str) -> String {
    release(a, "1.0.0", "stable", &[("app.tar.gz", "any")], "2026-01-01T00:00:00Z").await;
    let body = json!({ "name": "App", "delivery": "edge", "cdn_profile": profile });
    let r = a.call("PUT", "/admin/v1/products/app", Some(body)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        (Admin::json(&r)["delivery"].as_str(), Admin::json(&r)["cdn_profile"].as_str()),
        (Some("edge"), Some(profile))
    );
    customer(a, "acme", json!({})).await
}

async fn ask(a: &Admin, key: &str) -> common::Reply {
    common::ask(a, key, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await
}

/// The gateway, and edges in front of it for CloudFront (canned, RSA
/// SHA-1), Cloudflare and Akamai (a cookie token).
struct Setup {
    a: Admin,
    cloudfront: edge::Edge,
    cloudflare: edge::Edge,
    akamai: edge::Edge,
}

async fn setup(tweak: impl FnOnce(&mut Config)) -> Setup {
    let (cf_bound, cl_bound, ak_bound) = (Bound::new().await, Bound::new().await, Bound::new().await);
    let (private_pem, public_der) = rsa_key();
    let (cf_base, cl_base, ak_base) = (cf_bound.base_url(), cl_bound.base_url(), ak_bound.base_url());
    let profiles = vec![
        profile("cf", CdnKind::Cloudfront, cf_base.clone(), "KTESTPAIR", private_pem),
        profile("cl", CdnKind::Cloudflare, cl_base, "waf", CLOUDFLARE_KEY.into()),
        CdnProfileConfig {
            token_in: TokenPlacement::Cookie,
            ..profile("ak", CdnKind::Akamai, ak_base, "edgeauth", AKAMAI_KEY.into())
        },
    ];
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, |c| {
        no_rate_limits(c);
        c.cdn.profiles = profiles;
        tweak(c);
    })
    .await;
    let origin = a.gw.public;
    let secret = (ORIGIN_HEADER, ORIGIN_SECRET.to_owned());
    let check: Check = edge::cloudfront_canned(cf_base, "KTESTPAIR", public_der);
    let cloudfront = cf_bound.serve(origin, secret.clone(), check);
    let cloudflare = cl_bound.serve(origin, secret.clone(), edge::cloudflare(CLOUDFLARE_KEY, 600));
    let akamai = ak_bound.serve(origin, secret, edge::akamai_cookie(AKAMAI_KEY));
    Setup { a, cloudfront, cloudflare, akamai }
}

/// Customers get the CDN's URL; curl fetches the file through the edge,
/// which checked the token its own way; the download was counted once, when
/// the URL was minted, and recorded with `delivery: edge`.
// curl blocks its thread: the gateway and the edge need another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_download_through_the_cdn_and_are_counted_at_issuance() {
    let s = setup(|_| {}).await;
    let a = &s.a;
    let key = edge_catalog(a, "cf").await;
    let expected = sha256_hex(&common::test_bytes(10_000));
    set_quota(a, json!({ "downloads_per_day": 10 })).await;

    let r = ask(a, &key).await;
    assert_eq!(r.status, 201, "{r:?}");
    let body = Admin::json(&r);
    assert_eq!(body["delivery"], "edge");
    let url = body["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("http://{}/d/app/1.0.0/app.tar.gz?Expires=", s.cloudfront.addr)), "{url}");
    assert!(url.contains("&Key-Pair-Id=KTESTPAIR"), "{url}");
    assert_eq!(used(a, &key).await, 1, "counted when minted");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("app.tar.gz");
    let o = curl(&["-sf", "-o", out.to_str().unwrap(), &url]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), expected);
    assert_eq!(s.cloudfront.forwarded.load(Ordering::SeqCst), 1);
    // Fetched again (a second cache fill, a retry): not counted again.
    let o = curl(&["-sf", "-o", out.to_str().unwrap(), &url]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(used(a, &key).await, 1);

    // The edge's own check refuses a tampered URL before the origin sees it.
    let tampered = url.replace("app.tar.gz?", "app.tar.gzz?");
    let o = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &tampered]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "403");
    assert_eq!(s.cloudfront.forwarded.load(Ordering::SeqCst), 2);

    let events = initiations(a, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["delivery"], "edge", "{events:?}");
    assert_eq!(events[0]["data"]["grant"], body["grant_id"]);
}

/// The other CDNs' formats through their edges: Cloudflare's query token
/// and Akamai's cookie token (the response names the cookie to set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_and_akamai_edges_take_their_own_tokens() {
    let s = setup(|_| {}).await;
    let a = &s.a;
    let key = edge_catalog(a, "cl").await;
    set_quota(a, json!({ "downloads_per_day": 10 })).await;
    let expected = sha256_hex(&common::test_bytes(10_000));
    let body = Admin::json(&ask(a, &key).await);
    let url = body["url"].as_str().unwrap().to_owned();
    assert!(url.contains("?verify="), "{url}");
    let o = curl(&["-sf", &url]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha256_hex(&o.stdout), expected);
    assert_eq!(s.cloudflare.forwarded.load(Ordering::SeqCst), 1);

    let r = a
        .call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App", "delivery": "edge", "cdn_profile": "ak" })))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let body = Admin::json(&ask(a, &key).await);
    let url = body["url"].as_str().unwrap().to_owned();
    assert!(!url.contains('?'), "the token is in a cookie: {url}");
    let cookie = &body["cookies"][0];
    assert_eq!(cookie[0], "__token__", "{body}");
    let o = curl(&["-sf", "-H", &format!("Cookie: __token__={}", cookie[1].as_str().unwrap()), &url]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha256_hex(&o.stdout), expected);
    // Without the cookie the edge refuses.
    let o = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "403");
    assert_eq!(s.akamai.forwarded.load(Ordering::SeqCst), 1);
    assert_eq!(used(a, &key).await, 2);
}

/// The origin answers its CDN only: a customer (or anyone) going around
/// the CDN, with the CDN's URL or none, a wrong or repeated secret, is
/// refused with a problem; the CDN's secret alone lets a request in.
#[tokio::test]
async fn the_origin_refuses_whoever_is_not_the_cdn() {
    let s = setup(|_| {}).await;
    let a = &s.a;
    let key = edge_catalog(a, "cf").await;
    let url = Admin::json(&ask(a, &key).await)["url"].as_str().unwrap().to_owned();
    let target = common::target(&url).to_owned();
    let origin = a.gw.public;
    for headers in [
        vec![],
        vec![(ORIGIN_HEADER, "origin-secret-shared-with-the-cdX")],
        vec![(ORIGIN_HEADER, "")],
        vec![(ORIGIN_HEADER, ORIGIN_SECRET), (ORIGIN_HEADER, ORIGIN_SECRET)],
    ] {
        let r = request(origin, "GET", &target, &headers).await;
        assert_eq!((r.status, r.code().as_str()), (403, "origin_auth_required"), "{headers:?} {r:?}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let r = request(origin, "GET", "/d/app/1.0.0/app.tar.gz", &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "origin_auth_required"), "{r:?}");
    let r = request(origin, "GET", "/d/app/1.0.0/app.tar.gz", &[(ORIGIN_HEADER, ORIGIN_SECRET)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    // A file that does not exist, behind the secret: not found, not served.
    let r = request(origin, "GET", "/d/app/1.0.0/other.tar.gz", &[(ORIGIN_HEADER, ORIGIN_SECRET)]).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"), "{r:?}");
    // A native grant URL of an edge product is refused at the origin too.
    let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    assert_eq!(r.status, 200, "{r:?}");
    let native = common::url(a, &key, "app.tar.gz").await;
    let r = a
        .call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App", "delivery": "edge", "cdn_profile": "cf" })))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(origin, "GET", &native, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "origin_auth_required"), "{r:?}");
    // A proxy product's files are not opened by the CDN's secret.
    let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(origin, "GET", "/d/app/1.0.0/app.tar.gz", &[(ORIGIN_HEADER, ORIGIN_SECRET)]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "malformed_token"), "{r:?}");
}

/// Every rule applies before a CDN URL is minted, and the origin refuses a
/// yanked release even to the CDN; the quota is taken at issuance, so a
/// customer at its limit gets no URL at all.
#[tokio::test]
async fn rules_and_quotas_apply_before_the_cdn_url_is_minted() {
    let s = setup(|_| {}).await;
    let a = &s.a;
    let key = edge_catalog(a, "cf").await;
    set_quota(a, json!({ "downloads_per_day": 2 })).await;
    // Racing requests for URLs: exactly the quota's worth are minted.
    let asks = (0..6).map(|_| ask(a, &key));
    let answers = futures_util::future::join_all(asks).await;
    let minted = answers.iter().filter(|r| r.status == 201).count();
    assert_eq!(minted, 2, "{answers:?}");
    for r in answers.iter().filter(|r| r.status != 201) {
        assert_eq!((r.status, r.code().as_str()), (429, "quota_exceeded"), "{r:?}");
    }
    assert_eq!(used(a, &key).await, 2);

    set_quota(a, json!({})).await;
    let yank = a.call("POST", "/admin/v1/products/app/releases/1.0.0/yank", None).await;
    assert_eq!(yank.status, 200, "{yank:?}");
    let r = ask(a, &key).await;
    assert_eq!((r.status, r.code().as_str()), (403, "release_yanked"), "{r:?}");
    let r = request(a.gw.public, "GET", "/d/app/1.0.0/app.tar.gz", &[(ORIGIN_HEADER, ORIGIN_SECRET)]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "release_yanked"), "{r:?}");
}

/// With `accept`, the origin checks the CDN's token too (Cloud CDN, for
/// one, forwards unsigned requests): the secret without a valid token is
/// refused, the CDN's URL with the secret is served.
#[tokio::test]
async fn an_accepted_profile_has_the_origin_check_the_token_too() {
    let s = setup(|c| c.cdn.profiles[0].accept = true).await;
    let a = &s.a;
    let key = edge_catalog(a, "cf").await;
    let url = Admin::json(&ask(a, &key).await)["url"].as_str().unwrap().to_owned();
    let target = common::target(&url).to_owned();
    let secret = [(ORIGIN_HEADER, ORIGIN_SECRET)];
    let r = request(a.gw.public, "GET", &target, &secret).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(a.gw.public, "GET", "/d/app/1.0.0/app.tar.gz", &secret).await;
    assert_eq!((r.status, r.code().as_str()), (403, "malformed_token"), "{r:?}");
    let tampered = target.replace("Expires=", "Expires=1");
    let r = request(a.gw.public, "GET", &tampered, &secret).await;
    assert_eq!((r.status, r.code().as_str()), (403, "invalid_signature"), "{r:?}");
}

/// The admin API refuses what cannot be delivered, and writes nothing.
#[tokio::test]
async fn edge_needs_a_configured_profile() {
    let s = setup(|_| {}).await;
    let a = &s.a;
    let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    assert_eq!(r.status, 201, "{r:?}");
    for body in [
        json!({ "name": "X", "delivery": "edge" }),
        json!({ "name": "X", "delivery": "edge", "cdn_profile": "nope" }),
        json!({ "name": "X", "delivery": "proxy", "cdn_profile": "cf" }),
    ] {
        let r = a.call("PUT", "/admin/v1/products/app", Some(body.clone())).await;
        assert_eq!((r.status, r.code().as_str()), (422, "delivery_unsupported"), "{body} {r:?}");
        let p = Admin::json(&a.call("GET", "/admin/v1/products/app", None).await);
        assert_eq!((p["name"].as_str(), p["delivery"].as_str()), (Some("App"), Some("proxy")));
    }
    let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App", "cdn_profile": "../x" }))).await;
    assert_eq!(r.status / 100, 4, "{r:?}");
}

/// A CA and a client certificate it issued (the CDN's), PEM: CA cert,
/// client cert, client key; and the client certificate's SHA-256.
fn client_pki() -> (String, String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "CDN origin CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(vec!["edge.cdn.example".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    (ca.pem(), client.pem(), client_key.serialize_pem(), sha256_hex(client.der()))
}

/// Origin authentication by TLS client certificate: the CDN's certificate
/// (issued by `server.tls.client_ca_file`) opens the origin, a connection
/// without one is refused with a problem, one from another CA fails the
/// handshake, and pinning refuses the CA's other certificates. Customers'
/// connections without a certificate are still served (proxy products).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_can_prove_the_cdn() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = write("server.pem", &server.cert.pem());
    let key_file = write("server.key", &server.signing_key.serialize_pem());
    let (ca, client_cert, client_key, fingerprint) = client_pki();
    let ca_file = write("ca.pem", &ca);
    let client_cert_file = write("client.pem", &client_cert);
    let client_key_file = write("client.key", &client_key);
    let (other_ca, other_cert, other_key, _) = client_pki();
    drop(other_ca);
    let other_cert_file = write("other.pem", &other_cert);
    let other_key_file = write("other.key", &other_key);

    // (pins, whether the CDN's certificate opens the origin)
    for (pins, opens) in [(vec![], true), (vec![fingerprint.clone()], true), (vec!["ab".repeat(32)], false)] {
        let (cert_file, key_file, ca_file) = (cert_file.clone(), key_file.clone(), ca_file.clone());
        let s = setup(move |c| {
            c.server.tls = Some(tollgate::config::TlsConfig { cert_file, key_file, client_ca_file: Some(ca_file) });
            let origin = c.cdn.profiles[0].origin.as_mut().unwrap();
            origin.secret = None;
            origin.client_certificate = true;
            origin.client_certificate_sha256 = pins;
        })
        .await;
        let a = &s.a;
        edge_catalog(a, "cf").await;
        let url = format!("https://localhost:{}/d/app/1.0.0/app.tar.gz", a.gw.public.port());
        let server_pem = dir.path().join("server.pem");
        let body = dir.path().join("body");
        let get = |identity: Option<(&std::path::Path, &std::path::Path)>| {
            let mut args = vec!["-s", "--cacert", server_pem.to_str().unwrap(), "-o", body.to_str().unwrap()];
            args.extend(["-w", "%{http_code}"]);
            if let Some((cert, key)) = identity {
                args.extend(["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()]);
            }
            args.push(&url);
            let o = curl(&args);
            let body = std::fs::read(&body).unwrap_or_default();
            (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), body)
        };
        let refused = |(ok, status, body): (bool, String, Vec<u8>)| {
            assert!(ok);
            assert_eq!(status, "403");
            let problem: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["code"], "origin_auth_required", "{problem}");
        };
        let (ok, status, body) = get(Some((&client_cert_file, &client_key_file)));
        if opens {
            assert_eq!((ok, status.as_str()), (true, "200"));
            assert_eq!(sha256_hex(&body), sha256_hex(&common::test_bytes(10_000)));
        } else {
            refused((ok, status, body));
        }
        refused(get(None));
        let (ok, _, _) = get(Some((&other_cert_file, &other_key_file)));
        assert!(!ok, "a certificate from another CA fails the handshake");
    }
}
