//! The JavaScript reference verifier in docs/signed-urls.md, run with node,
//! agrees with the Rust verifier on one shared table of URLs: the Rust code's
//! own, and tampered, expired, early, misplaced and foreign ones, and every
//! token-level case where an edge verifier could be looser than the origin
//! (padded or non-canonical signatures, empty fields, networks in another
//! spelling, dot segments, bad escapes). Both must give the same answer on
//! each; the expected one is written beside it.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use tollgate::signing::{Claims, KeyMaterial, KeyRing, Presented, UrlScope, encode_path};

const NOW: u64 = 1_800_000_000;
const RUNNER: &str = r#"
// Node 18 (Debian's) has WebCrypto only under node:crypto; later versions and
// edge runtimes have it as a global, which is what the verifier uses.
if (!globalThis.crypto?.subtle) globalThis.crypto = (await import("node:crypto")).webcrypto;
const { verifyTollgateUrl } = await import("./verifier.mjs");
let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const c of JSON.parse(input)) {
  const r = await verifyTollgateUrl(c.url, { keys: c.keys, now: c.now, skew: c.skew, clientIp: c.client_ip });
  out.push(r.ok ? "ok" : r.code);
}
console.log(JSON.stringify(out));
"#;

fn claims(path: &str) -> Claims {
    Claims {
        scope: UrlScope::Path(encode_path(path).into_owned()),
        expires: NOW + 600,
        not_before: None,
        customer: Some("acme".into()),
        grant: Some("g_42".into()),
        client_net: None,
    }
}

#[test]
fn javascript_reference_verifier_agrees_with_rust() {
    let old_secret = vec![0x11; 32];
    let new_secret = vec![0x22; 32];
    let old = KeyRing::new("k1", vec![KeyMaterial { id: "k1".into(), secret: old_secret.clone(), verify_only: false }])
        .unwrap();
    let ring = KeyRing::new(
        "k2",
        vec![
            KeyMaterial { id: "k1".into(), secret: old_secret.clone(), verify_only: true },
            KeyMaterial { id: "k2".into(), secret: new_secret.clone(), verify_only: false },
        ],
    )
    .unwrap();
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let keys = json!({ "k1": b64(&old_secret), "k2": b64(&new_secret) });

    let path = "/d/app/1.4.2/app.tar.gz";
    let url =
        |c: &Claims, ring: &KeyRing| format!("https://dl.example.com{}?{}", c.scope.as_str(), ring.sign(c).unwrap());
    let base = url(&claims(path), &ring);
    let mut cases: Vec<(String, Option<&str>, u64, &str)> = vec![
        (base.clone(), None, NOW, "ok"),
        (base.clone(), None, NOW + 629, "ok"),
        (base.clone(), None, NOW + 630, "expired"),
        (base.replace("acme", "acmf"), None, NOW, "invalid_signature"),
        (base.replace("exp=1800000600", "exp=1800000601"), None, NOW, "invalid_signature"),
        (base.replace("app.tar.gz", "app.zip"), None, NOW, "invalid_signature"),
        (base.replace("kid=k2", "kid=k7"), None, NOW, "unknown_key"),
        (base.split("&sig=").next().unwrap().to_owned(), None, NOW, "malformed_token"),
        (format!("{base}&exp=1"), None, NOW, "malformed_token"),
        (url(&claims(path), &old), None, NOW, "ok"),
    ];
    let mut sig_flip = base.clone().into_bytes();
    let i = sig_flip.len() - 5;
    sig_flip[i] = if sig_flip[i] == b'Q' { b'R' } else { b'Q' };
    cases.push((String::from_utf8(sig_flip).unwrap(), None, NOW, "invalid_signature"));

    let unicode = url(&claims("/d/app/2.0/Setup Café.exe"), &ring);
    cases.push((unicode.clone(), None, NOW, "ok"));
    cases.push((unicode.replace("%C3%A9", "%c3%a9"), None, NOW, "ok"));

    let mut c = claims(path);
    c.not_before = Some(NOW + 100);
    let early = url(&c, &ring);
    cases.push((early.clone(), None, NOW, "not_yet_valid"));
    cases.push((early, None, NOW + 70, "ok"));

    let mut c = claims("");
    c.scope = UrlScope::Prefix("/d/app/1.4.2/".into());
    let q = ring.sign(&c).unwrap();
    cases.push((format!("https://x/d/app/1.4.2/other.zip?{q}"), None, NOW, "ok"));
    cases.push((format!("https://x/d/app/1.4.20/app.zip?{q}"), None, NOW, "wrong_path"));

    let mut c = claims(path);
    c.client_net = Some("203.0.113.0/24".parse().unwrap());
    let v4 = url(&c, &ring);
    cases.push((v4.clone(), Some("203.0.113.77"), NOW, "ok"));
    cases.push((v4.clone(), Some("::ffff:203.0.113.77"), NOW, "ok"));
    cases.push((v4.clone(), Some("203.0.114.1"), NOW, "address_not_allowed"));
    cases.push((v4, None, NOW, "address_not_allowed"));
    c.client_net = Some("2001:db8::/32".parse().unwrap());
    let v6 = url(&c, &ring);
    cases.push((v6.clone(), Some("2001:db8:ffff::1"), NOW, "ok"));
    cases.push((v6.clone(), Some("2001:db9::1"), NOW, "address_not_allowed"));
    cases.push((v6, Some("203.0.113.77"), NOW, "address_not_allowed"));

    cases.extend(edge_cases(&ring, &base));

    // The Rust verdicts are what we expect...
    let mut input = Vec::new();
    for (u, ip, now, want) in &cases {
        let (p, q) =
            u.split_once("://").map(|(_, rest)| &rest[rest.find('/').unwrap()..]).unwrap().split_once('?').unwrap();
        let presented = Presented { path: p, query: q, client_ip: ip.map(|s| s.parse().unwrap()), now: *now, skew: 30 };
        let got = ring.verify(&presented).map_or_else(|e| e.code(), |_| "ok");
        assert_eq!(got, *want, "rust on {u} from {ip:?} at {now}");
        input.push(json!({ "url": u, "keys": keys, "now": now, "skew": 30, "client_ip": ip }));
    }

    // ...and node, running the documented code, says the same.
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/signed-urls.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("verifier.mjs"), common::fenced_block(&doc, "js verifier")).unwrap();
    std::fs::write(dir.path().join("runner.mjs"), RUNNER).unwrap();
    let mut child = Command::new("node")
        .arg("runner.mjs")
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`node` is needed for this test; scripts/test.sh installs it");
    child.stdin.take().unwrap().write_all(serde_json::to_string(&input).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    let verdicts: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdicts.len(), cases.len());
    for ((u, ip, now, want), got) in cases.iter().zip(&verdicts) {
        assert_eq!(got, want, "node on {u} from {ip:?} at {now}");
    }
}

/// Cases where a verifier could be looser than the origin: each mutation of a
/// valid URL and the answer the spec (docs/signed-urls.md) gives.
fn edge_cases(ring: &KeyRing, base: &str) -> Vec<(String, Option<&'static str>, u64, &'static str)> {
    let sig = base.split("&sig=").nth(1).unwrap().to_owned();
    let with_sig = |s: &str| base.replace(&format!("sig={sig}"), &format!("sig={s}"));
    let mut last = sig.clone().into_bytes();
    last[42] = if last[42] == b'A' { b'B' } else { last[42] + 1 };
    let flipped_bits = String::from_utf8(last).unwrap();
    // The standard alphabet's '+' and '/' are not base64url.
    let (plus, slash) = (format!("+{}", &sig[1..]), format!("/{}", &sig[1..]));
    let mut cases = vec![
        // The signature: one spelling per MAC.
        (with_sig(&format!("{sig}=")), None, NOW, "malformed_token"),
        (with_sig(&flipped_bits), None, NOW, "malformed_token"),
        (with_sig(&sig[..42]), None, NOW, "malformed_token"),
        (with_sig(&format!("{sig}A")), None, NOW, "malformed_token"),
        (with_sig(""), None, NOW, "malformed_token"),
        (with_sig(&plus), None, NOW, "malformed_token"),
        (with_sig(&slash), None, NOW, "malformed_token"),
        // Empty fields are not absent ones.
        (base.replace("cid=acme", "cid="), None, NOW, "malformed_token"),
        (base.replace("gid=g_42", "gid="), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&nbf=&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&ip=&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&ip&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("cid=acme", "cid=ac%6De"), None, NOW, "malformed_token"),
        // Networks: one spelling each.
        (base.replace("&kid=k2", "&ip=1.2.3.4/99&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&ip=203.0.113.7/24&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&ip=203.0.113.7&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&ip=203.0.113.0/024&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&ip=2001:DB8::/32&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&ip=2001:db8:0:0:0:0:0:0/32&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&ip=::ffff:203.0.113.0/120&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&ip=::ffff:cb00:7100/120&kid=k2"), None, NOW, "malformed_token"),
        // Prefixes: canonical, ending in '/'.
        (base.replace("&kid=k2", "&pfx=/d/app&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&pfx=/d/%7e/&kid=k2"), None, NOW, "malformed_token"),
        (base.replace("&kid=k2", "&pfx=/d/../&kid=k2"), None, NOW, "malformed_token"),
        // Paths: bad escapes, non-UTF-8 and dot segments are malformed, and
        // are found before the key is looked up.
        (base.replace("app.tar.gz", "app%zz.tar.gz"), None, NOW, "malformed_token"),
        (base.replace("app.tar.gz", "app%4.tar.gz"), None, NOW, "malformed_token"),
        (base.replace("app.tar.gz", "app%FF.tar.gz"), None, NOW, "malformed_token"),
        (base.replace("/1.4.2/", "/x/../1.4.2/"), None, NOW, "malformed_token"),
        (base.replace("/1.4.2/", "/x/%2e%2E/1.4.2/"), None, NOW, "malformed_token"),
        (base.replace("/1.4.2/", "/./1.4.2/"), None, NOW, "malformed_token"),
        (base.replace("app.tar.gz", "app%zz.tar.gz").replace("kid=k2", "kid=k9"), None, NOW, "malformed_token"),
        // Key ids are looked up as they are, never through a prototype.
        (base.replace("kid=k2", "kid=constructor"), None, NOW, "unknown_key"),
        (base.replace("kid=k2", "kid=__proto__"), None, NOW, "unknown_key"),
        // Equivalent spellings of the same URL verify; other names are ignored.
        (base.replace("app.tar.gz", "app%2Etar%2egz"), None, NOW, "ok"),
        (format!("{base}&utm=1&utm=2&EXP=3"), None, NOW, "ok"),
        (base.replace("exp=1800000600", "exp=01800000600"), None, NOW, "invalid_signature"),
    ];
    // Parameters in any order.
    let (head, query) = base.split_once('?').unwrap();
    let mut fields: Vec<&str> = query.split('&').collect();
    fields.reverse();
    cases.push((format!("{head}?{}", fields.join("&")), None, NOW, "ok"));
    // A compressed IPv6 network, as Rust prints it, with mapped and plain clients.
    let mut c = claims("/d/app/1.4.2/app.tar.gz");
    c.client_net = Some("::102:300/120".parse().unwrap());
    let v6 = format!("https://dl.example.com{}?{}", c.scope.as_str(), ring.sign(&c).unwrap());
    assert!(v6.contains("ip=::102:300/120"), "{v6}");
    cases.push((v6.clone(), Some("::102:3ff"), NOW, "ok"));
    cases.push((v6.clone(), Some("::103:0"), NOW, "address_not_allowed"));
    cases.push((v6, Some("1.2.3.4"), NOW, "address_not_allowed"));
    cases
}
