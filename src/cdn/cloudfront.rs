//! Amazon CloudFront signed URLs and cookies ("Create a signed URL using a
//! canned policy / a custom policy", "Set signed cookies"):
//! - the policy is JSON; a canned one names one resource and an expiry and
//!   is not carried (`Expires=` is), a custom one may add a start
//!   (`DateGreaterThan`), a client network (`IpAddress`) and a `*`
//!   resource, and is carried (`Policy=`);
//! - the signature is RSA PKCS#1 v1.5 over SHA-1 (or SHA-256, announced by
//!   `Hash-Algorithm=SHA256`), or ECDSA P-256 over SHA-256 (DER), of the
//!   policy's bytes;
//! - policy and signature are base64 with CloudFront's substitutions
//!   (`+` → `-`, `=` → `_`, `/` → `~`); `Key-Pair-Id` names the public key;
//! - cookies carry the same values as `CloudFront-Expires` or
//!   `CloudFront-Policy`, `CloudFront-Signature`, `CloudFront-Key-Pair-Id`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ipnet::IpNet;

use super::keys::ec_public;
use super::{Accepted, CdnHash, Key, Material, Offered, Token, check_times, cookie, glob, params};
use crate::signing::TokenError;

/// The policy a URL is signed with.
#[derive(Debug, Clone)]
pub enum Policy<'a> {
    Canned {
        resource: &'a str,
        expires: u64,
    },
    /// The JSON text of a custom policy.
    Custom(String),
}

impl Policy<'_> {
    /// The bytes that are signed.
    pub fn text(&self) -> String {
        match self {
            Policy::Canned { resource, expires } => canned_policy(resource, *expires),
            Policy::Custom(json) => json.clone(),
        }
    }
}

/// A canned policy, exactly as CloudFront rebuilds it to check a signature.
pub fn canned_policy(resource: &str, expires: u64) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// A custom policy for `resource` (which may hold `*`).
pub fn custom_policy(resource: &str, expires: u64, starts: Option<u64>, client: Option<IpNet>) -> String {
    let mut condition = format!(r#""DateLessThan":{{"AWS:EpochTime":{expires}}}"#);
    if let Some(net) = client {
        condition.push_str(&format!(r#","IpAddress":{{"AWS:SourceIp":"{}"}}"#, net.trunc()));
    }
    if let Some(starts) = starts {
        condition.push_str(&format!(r#","DateGreaterThan":{{"AWS:EpochTime":{starts}}}"#));
    }
    let resource = serde_json::to_string(resource).unwrap_or_default();
    format!(r#"{{"Statement":[{{"Resource":{resource},"Condition":{{{condition}}}}}]}}"#)
}

/// CloudFront's URL-safe base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes).replace('+', "-").replace('=', "_").replace('/', "~")
}

/// The inverse of [`encode`].
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if text.contains(['+', '=', '/']) {
        return None;
    }
    STANDARD.decode(text.replace('-', "+").replace('_', "=").replace('~', "/")).ok()
}

/// The digest a key signs with: ECDSA keys SHA-256, RSA keys the
/// profile's (SHA-1 unless it says otherwise).
pub fn hash_for(key: &Key, configured: Option<CdnHash>) -> CdnHash {
    match key.material {
        Material::Ecdsa(_) => CdnHash::Sha256,
        _ => configured.unwrap_or(CdnHash::Sha1),
    }
}

/// The signature of `policy` under `key`.
pub fn signature(key: &Key, hash: CdnHash, policy: &[u8]) -> Result<Vec<u8>, String> {
    match (&key.material, hash) {
        (Material::Rsa(k), CdnHash::Sha1) => k.pkcs1v15_sign::<sha1::Sha1>(policy).map_err(|e| e.to_string()),
        (Material::Rsa(k), CdnHash::Sha256) => k.pkcs1v15_sign::<sha2::Sha256>(policy).map_err(|e| e.to_string()),
        (Material::Ecdsa(k), CdnHash::Sha256) => {
            k.sign(&SystemRandom::new(), policy).map(|s| s.as_ref().to_vec()).map_err(|_| "ECDSA signing failed".into())
        }
        _ => Err("CloudFront signs with RSA (SHA-1 or SHA-256) or ECDSA (SHA-256) keys".into()),
    }
}

/// The query parameters (or cookie values) for `policy`.
pub fn sign(key: &Key, hash: CdnHash, policy: &Policy<'_>) -> Result<Token, String> {
    let text = policy.text();
    let sig = encode(&signature(key, hash, text.as_bytes())?);
    let mut pairs = match policy {
        Policy::Canned { expires, .. } => vec![("Expires".to_owned(), expires.to_string())],
        Policy::Custom(json) => vec![("Policy".to_owned(), encode(json.as_bytes()))],
    };
    pairs.push(("Signature".into(), sig));
    pairs.push(("Key-Pair-Id".into(), key.id.clone()));
    if hash == CdnHash::Sha256 {
        pairs.push(("Hash-Algorithm".into(), "SHA256".into()));
    }
    Ok(Token::Pairs(pairs))
}

/// The names CloudFront reads, in the query and (prefixed `CloudFront-`) in
/// cookies.
const FIELDS: [&str; 5] = ["Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm"];

/// Check a request: the URL is `base_url` + the request's path, plus any
/// query parameters that are not CloudFront's.
pub fn verify(keys: &[Key], base_url: &str, r: &Offered<'_>) -> Result<Accepted, TokenError> {
    let in_query = params(r.query).any(|(k, _)| k == "Key-Pair-Id");
    let mut found: [Option<&str>; 5] = [None; 5];
    for (name, value) in params(r.query) {
        if let Some(i) = FIELDS.iter().position(|f| *f == name)
            && in_query
            && found[i].replace(value).is_some()
        {
            return Err(TokenError::Malformed("a token parameter appears twice"));
        }
    }
    if !in_query {
        let cookies = r.cookies.ok_or(TokenError::Malformed("no CloudFront signature"))?;
        for (i, f) in FIELDS.iter().enumerate() {
            found[i] = cookie(cookies, &format!("CloudFront-{f}"));
        }
    }
    let [expires, policy, sig, key_id, hash] = found;
    let key_id = key_id.ok_or(TokenError::Malformed("no Key-Pair-Id"))?;
    let sig = sig.ok_or(TokenError::Malformed("no Signature"))?;
    let hash = match hash {
        None | Some("SHA1") => CdnHash::Sha1,
        Some("SHA256") => CdnHash::Sha256,
        Some(_) => return Err(TokenError::Malformed("Hash-Algorithm is SHA1 or SHA256")),
    };
    let rest: Vec<&str> =
        r.query.split('&').filter(|p| !p.is_empty() && !FIELDS.contains(&p.split('=').next().unwrap_or(""))).collect();
    let url = if rest.is_empty() || !in_query {
        format!("{base_url}{}", r.path)
    } else {
        format!("{base_url}{}?{}", r.path, rest.join("&"))
    };
    let text = match (expires, policy) {
        (Some(e), None) => canned_policy(&url, super::timestamp(e)?),
        (None, Some(p)) => {
            let bytes = decode(p).ok_or(TokenError::Malformed("Policy is not CloudFront base64"))?;
            String::from_utf8(bytes).map_err(|_| TokenError::Malformed("Policy is not UTF-8"))?
        }
        _ => return Err(TokenError::Malformed("give Expires or Policy, one of them")),
    };
    let key = keys.iter().find(|k| k.id == key_id).ok_or_else(|| TokenError::UnknownKey(key_id.to_owned()))?;
    let sig = decode(sig).ok_or(TokenError::InvalidSignature)?;
    if !signature_matches(key, hash, text.as_bytes(), &sig) {
        return Err(TokenError::InvalidSignature);
    }
    let conditions = parse_policy(&text)?;
    if !glob(&conditions.resource, &url) {
        return Err(TokenError::WrongPath { prefix: conditions.resource });
    }
    check_times(r, conditions.starts, conditions.expires)?;
    if let Some(net) = conditions.client {
        let client = r.client.map(crate::signing::canonical_ip);
        if !client.is_some_and(|c| net.contains(&c)) {
            return Err(TokenError::AddressNotAllowed { allowed: net.to_string() });
        }
    }
    let mut fields = vec![
        ("Key-Pair-Id", key_id.to_owned()),
        ("Hash-Algorithm", if hash == CdnHash::Sha256 { "SHA256" } else { "SHA1" }.to_owned()),
        ("policy", if expires.is_some() { "canned".to_owned() } else { text.clone() }),
        ("Resource", conditions.resource.clone()),
    ];
    if let Some(s) = conditions.starts {
        fields.push(("DateGreaterThan", s.to_string()));
    }
    if let Some(n) = conditions.client {
        fields.push(("IpAddress", n.to_string()));
    }
    Ok(Accepted { key: key.id.clone(), expires: conditions.expires, fields })
}

fn signature_matches(key: &Key, hash: CdnHash, message: &[u8], sig: &[u8]) -> bool {
    match (&key.material, hash) {
        (Material::Rsa(k), CdnHash::Sha1) => k.to_public_key().pkcs1v15_verify::<sha1::Sha1>(message, sig).is_ok(),
        (Material::Rsa(k), CdnHash::Sha256) => k.to_public_key().pkcs1v15_verify::<sha2::Sha256>(message, sig).is_ok(),
        (Material::Ecdsa(k), CdnHash::Sha256) => {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, ec_public(k)).verify(message, sig).is_ok()
        }
        _ => false,
    }
}

/// What a (signed, so trusted) policy allows.
#[derive(Debug)]
struct Conditions {
    resource: String,
    expires: u64,
    starts: Option<u64>,
    client: Option<IpNet>,
}

fn parse_policy(text: &str) -> Result<Conditions, TokenError> {
    let bad = TokenError::Malformed;
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| bad("the policy is not JSON"))?;
    let statements = v.get("Statement").and_then(|s| s.as_array()).ok_or(bad("the policy has no Statement"))?;
    let [s] = statements.as_slice() else {
        return Err(bad("the policy has one Statement"));
    };
    let resource = s.get("Resource").map_or(Some("*"), |r| r.as_str()).ok_or(bad("Resource is a string"))?;
    let condition = s.get("Condition").ok_or(bad("the policy has no Condition"))?;
    let epoch = |name: &str| -> Result<Option<u64>, TokenError> {
        match condition.get(name) {
            None => Ok(None),
            Some(c) => {
                c.get("AWS:EpochTime").and_then(|t| t.as_u64()).map(Some).ok_or(bad("AWS:EpochTime is a number"))
            }
        }
    };
    let expires = epoch("DateLessThan")?.ok_or(bad("the policy has no DateLessThan"))?;
    let starts = epoch("DateGreaterThan")?;
    let client = match condition.get("IpAddress") {
        None => None,
        Some(ip) => {
            let text = ip.get("AWS:SourceIp").and_then(|s| s.as_str()).ok_or(bad("AWS:SourceIp is a string"))?;
            Some(text.parse::<IpNet>().map_err(|_| bad("AWS:SourceIp is not a CIDR block"))?)
        }
    };
    Ok(Conditions { resource: resource.to_owned(), expires, starts, client })
}
