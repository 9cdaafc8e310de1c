//! The test vectors published in docs/signed-urls.md hold for this code.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::path::Path;

use tollgate::signing::{Claims, KeyMaterial, KeyRing, Presented, RawToken, UrlScope, canonical_path, decode_key};

#[test]
fn documented_vectors_reproduce_byte_for_byte() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/signed-urls.md")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&common::fenced_block(&doc, "json vectors")).unwrap();
    let key_text = v["key_b64url"].as_str().unwrap();
    let vectors = v["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 4);
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let kid = vector["kid"].as_str().unwrap();
        let ring = KeyRing::new(
            kid,
            vec![KeyMaterial { id: kid.into(), secret: decode_key(kid, key_text).unwrap(), verify_only: false }],
        )
        .unwrap();
        let request_path = vector["request_path"].as_str().unwrap();
        let text = |k: &str| vector[k].as_str().map(str::to_owned);
        let claims = Claims {
            scope: match text("pfx") {
                Some(p) => UrlScope::Prefix(p),
                None => UrlScope::Path(request_path.into()),
            },
            expires: vector["exp"].as_u64().unwrap(),
            not_before: vector["nbf"].as_u64(),
            customer: text("cid"),
            grant: text("gid"),
            client_net: text("ip").map(|s| s.parse().unwrap()),
        };
        let query = ring.sign(&claims).unwrap();
        assert_eq!(query, vector["query"].as_str().unwrap(), "{name}: query");
        let token = RawToken::from_query(&query).unwrap();
        let canonical = token.canonical_string(&canonical_path(request_path).unwrap());
        assert_eq!(canonical, vector["canonical_string"].as_str().unwrap(), "{name}: canonical string");

        let client_ip = text("ip").map(|net| {
            let net: ipnet::IpNet = net.parse().unwrap();
            net.hosts().next().unwrap()
        });
        let presented = Presented { path: request_path, query: &query, client_ip, now: 1_767_222_000, skew: 30 };
        ring.verify(&presented).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
