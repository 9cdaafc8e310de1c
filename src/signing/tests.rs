use super::*;

const NOW: u64 = 1_800_000_000;

fn ring() -> KeyRing {
    KeyRing::new(
        "k2",
        vec![
            KeyMaterial { id: "k1".into(), secret: vec![1; 32], verify_only: true },
            KeyMaterial { id: "k2".into(), secret: vec![2; 32], verify_only: false },
        ],
    )
    .unwrap()
}

fn claims(path: &str) -> Claims {
    Claims {
        scope: UrlScope::Path(path.into()),
        expires: NOW + 900,
        not_before: None,
        customer: Some("acme".into()),
        grant: Some("g1".into()),
        client_net: None,
    }
}

fn presented<'a>(path: &'a str, query: &'a str) -> Presented<'a> {
    Presented { path, query, client_ip: None, now: NOW, skew: 30 }
}

#[test]
fn signed_url_verifies_and_reports_its_claims() {
    let q = ring().sign(&claims("/d/app/1.0/app.tar.gz")).unwrap();
    let v = ring().verify(&presented("/d/app/1.0/app.tar.gz", &q)).unwrap();
    assert_eq!(v.key_id, "k2");
    assert_eq!(v.customer, Some("acme"));
    assert_eq!(v.grant, Some("g1"));
    assert_eq!(v.expires, NOW + 900);
}

#[test]
fn every_single_character_change_is_refused() {
    let q = ring().sign(&claims("/d/app/1.0/app.tar.gz")).unwrap();
    for i in 0..q.len() {
        let mut bytes = q.clone().into_bytes();
        if matches!(bytes[i], b'&' | b'=') {
            continue;
        }
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        let err = ring().verify(&presented("/d/app/1.0/app.tar.gz", &tampered));
        assert!(err.is_err(), "tampered query {tampered} was accepted");
    }
}

#[test]
fn signature_binds_the_path() {
    let q = ring().sign(&claims("/d/app/1.0/app.tar.gz")).unwrap();
    let err = ring().verify(&presented("/d/app/1.0/app.zip", &q)).unwrap_err();
    assert_eq!(err, TokenError::InvalidSignature);
}

#[test]
fn equivalent_encodings_of_the_path_verify() {
    let path = encode_path("/d/app/1.0/My App~1.dmg").into_owned();
    assert_eq!(path, "/d/app/1.0/My%20App~1.dmg");
    let q = ring().sign(&claims(&path)).unwrap();
    assert!(ring().verify(&presented("/d/app/1.0/My%20App%7e1.dmg", &q)).is_ok());
}

#[test]
fn expiry_honours_skew_at_the_exact_boundary() {
    let q = ring().sign(&claims("/d/a")).unwrap();
    let mut p = presented("/d/a", &q);
    p.now = NOW + 900 + 29;
    assert!(ring().verify(&p).is_ok());
    p.now = NOW + 900 + 30;
    assert_eq!(ring().verify(&p).unwrap_err().code(), "expired");
    p.skew = 0;
    p.now = NOW + 899;
    assert!(ring().verify(&p).is_ok());
    p.now = NOW + 900;
    assert_eq!(ring().verify(&p).unwrap_err().code(), "expired");
}

#[test]
fn grace_accepts_an_expired_token_only_within_it_and_says_so() {
    let q = ring().sign(&claims("/d/a")).unwrap();
    let mut p = presented("/d/a", &q);
    p.skew = 0;
    assert!(!ring().verify_with_grace(&p, 60).unwrap().expired);
    p.now = NOW + 900 + 59;
    assert!(ring().verify_with_grace(&p, 60).unwrap().expired);
    p.now = NOW + 900 + 60;
    assert_eq!(ring().verify_with_grace(&p, 60).unwrap_err().code(), "expired");
}

#[test]
fn not_before_honours_skew() {
    let mut c = claims("/d/a");
    c.not_before = Some(NOW + 100);
    let q = ring().sign(&c).unwrap();
    let mut p = presented("/d/a", &q);
    p.now = NOW + 69;
    assert_eq!(ring().verify(&p).unwrap_err().code(), "not_yet_valid");
    p.now = NOW + 70;
    assert!(ring().verify(&p).is_ok());
}

#[test]
fn prefix_tokens_cover_only_their_subtree() {
    let mut c = claims("");
    c.scope = UrlScope::Prefix("/d/app/1.2/".into());
    let q = ring().sign(&c).unwrap();
    assert!(ring().verify(&presented("/d/app/1.2/a.zip", &q)).is_ok());
    assert!(ring().verify(&presented("/d/app/1.2/sub/b.zip", &q)).is_ok());
    let err = ring().verify(&presented("/d/app/1.2.3/a.zip", &q)).unwrap_err();
    assert_eq!(err.code(), "wrong_path");
    c.scope = UrlScope::Prefix("/d/app/1.2".into());
    assert_eq!(ring().sign(&c), Err(SignError::PrefixWithoutSlash));
}

#[test]
fn client_network_is_enforced_for_v4_v6_and_mapped_addresses() {
    let mut c = claims("/d/a");
    c.client_net = Some("203.0.113.7/24".parse().unwrap());
    let q = ring().sign(&c).unwrap();
    assert!(q.contains("ip=203.0.113.0/24"), "network is truncated to its base: {q}");
    let mut p = presented("/d/a", &q);
    for (ip, ok) in
        [("203.0.113.200", true), ("::ffff:203.0.113.9", true), ("203.0.114.1", false), ("2001:db8::1", false)]
    {
        p.client_ip = Some(ip.parse().unwrap());
        assert_eq!(ring().verify(&p).is_ok(), ok, "{ip}");
    }
    p.client_ip = None;
    assert_eq!(ring().verify(&p).unwrap_err().code(), "address_not_allowed");

    c.client_net = Some("2001:db8::/32".parse().unwrap());
    let q = ring().sign(&c).unwrap();
    let mut p = presented("/d/a", &q);
    p.client_ip = Some("2001:db8:1::5".parse().unwrap());
    assert!(ring().verify(&p).is_ok());
}

#[test]
fn rotation_keeps_old_urls_valid_and_unknown_keys_are_named() {
    let old =
        KeyRing::new("k1", vec![KeyMaterial { id: "k1".into(), secret: vec![1; 32], verify_only: false }]).unwrap();
    let q = old.sign(&claims("/d/a")).unwrap();
    // After rotation k2 signs and k1 only verifies.
    assert_eq!(ring().verify(&presented("/d/a", &q)).unwrap().key_id, "k1");
    let q3 = q.replace("kid=k1", "kid=k3");
    assert_eq!(ring().verify(&presented("/d/a", &q3)).unwrap_err(), TokenError::UnknownKey("k3".into()));
}

#[test]
fn a_key_only_verifies_its_own_signatures() {
    // The same claims signed by k1 do not verify when the token claims k2.
    let old =
        KeyRing::new("k1", vec![KeyMaterial { id: "k1".into(), secret: vec![1; 32], verify_only: false }]).unwrap();
    let q = old.sign(&claims("/d/a")).unwrap().replace("kid=k1", "kid=k2");
    assert_eq!(ring().verify(&presented("/d/a", &q)).unwrap_err(), TokenError::InvalidSignature);
}

#[test]
fn malformed_tokens_are_named_as_such() {
    for q in ["", "exp=1", "exp=abc&kid=k2&sig=x", "exp=99999999999999999999&kid=k2&sig=x"] {
        assert_eq!(ring().verify(&presented("/d/a", q)).unwrap_err().code(), "malformed_token", "{q}");
    }
    let q = ring().sign(&claims("/d/a")).unwrap();
    // A signature not in its one spelling is malformed; a well-formed wrong
    // one is invalid.
    let bad_sig = format!("{}!!", q);
    assert_eq!(ring().verify(&presented("/d/a", &bad_sig)).unwrap_err().code(), "malformed_token");
    let at = q.find("&sig=").unwrap() + 5;
    let other = if &q[at..=at] == "A" { "B" } else { "A" };
    let wrong_sig = format!("{}{other}{}", &q[..at], &q[at + 1..]);
    assert_eq!(ring().verify(&presented("/d/a", &wrong_sig)).unwrap_err().code(), "invalid_signature");
    // Dot segments are refused before the key is looked up.
    assert_eq!(ring().verify(&presented("/d/../a", &q)).unwrap_err().code(), "malformed_token");
}

#[test]
fn sign_rejects_bad_claims() {
    let mut c = claims("/d/a b");
    assert_eq!(ring().sign(&c), Err(SignError::NotCanonical));
    c = claims("/d/a");
    c.customer = Some("a b".into());
    assert_eq!(ring().sign(&c), Err(SignError::BadId("customer")));
    c = claims("/d/a");
    c.not_before = Some(c.expires);
    assert_eq!(ring().sign(&c), Err(SignError::EmptyWindow));
}

mod properties {
    //! Property tests (proptest, stable toolchain): no input panics the token
    //! parser, and what it accepts is exactly what was signed. `PROPTEST_CASES`
    //! raises the case count for a longer run (docs/testing.md).

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_query_and_path_are_refused_or_verified_never_a_panic(path in ".{0,80}", query in ".{0,200}") {
            let _ = ring().verify(&presented(&path, &query));
        }

        #[test]
        fn token_like_queries_with_any_field_values_never_panic(
            exp in ".{0,24}", nbf in ".{0,24}", kid in ".{0,12}", cid in ".{0,40}", sig in ".{0,90}", ip in ".{0,50}",
        ) {
            let q = format!("exp={exp}&nbf={nbf}&kid={kid}&cid={cid}&gid=g1&ip={ip}&sig={sig}");
            prop_assert!(ring().verify(&presented("/d/app/1.0/a", &q)).is_err());
        }

        #[test]
        fn what_is_signed_verifies_and_any_change_to_it_is_refused(
            segment in "[A-Za-z0-9._-]{1,20}", flip in 0usize..200,
        ) {
            prop_assume!(segment != "." && segment != "..");
            let path = format!("/d/app/1.0/{segment}");
            let q = ring().sign(&claims(&path)).unwrap();
            prop_assert!(ring().verify(&presented(&path, &q)).is_ok());
            // Change one character of the query: refused, whichever it is.
            let mut bytes = q.clone().into_bytes();
            let i = flip % bytes.len();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != q {
                prop_assert!(ring().verify(&presented(&path, &changed)).is_err());
            }
        }
    }
}
