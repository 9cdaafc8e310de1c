//! Cloudflare's `is_timed_hmac_valid_v0` (WAF custom rules, "Configure token
//! authentication"): the MAC is HMAC-SHA256 over the path followed by the
//! issue time, in base64 (standard alphabet, padded, percent-escaped in the
//! URL; with the `s` flag URL-safe and unpadded); the URL carries
//! `verify=<issued>-<mac>`, and the rule's TTL makes it valid while
//! `now < issued + ttl`.

use super::{Accepted, CdnHash, Key, Offered, Token, hmac, hmac_matches, query_param, timestamp, unescape};
use crate::signing::TokenError;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The query parameter the WAF rule reads.
pub const PARAM: &str = "verify";

fn mac(key: &[u8], path: &str, issued: u64) -> Vec<u8> {
    hmac(CdnHash::Sha256, key, &[path.as_bytes(), issued.to_string().as_bytes()])
}

/// The `verify` parameter for `path` issued at `issued`.
pub fn sign(key: &Key, path: &str, issued: u64, url_safe: bool) -> Result<Token, &'static str> {
    let secret = key.hmac().ok_or("not an HMAC key")?;
    let tag = mac(secret, path, issued);
    let encoded = if url_safe { URL_SAFE_NO_PAD.encode(tag) } else { super::query_escape(&STANDARD.encode(tag)) };
    Ok(Token::Pairs(vec![(PARAM.to_owned(), format!("{issued}-{encoded}"))]))
}

/// Check a request's `verify` parameter: `ttl` is the WAF rule's.
pub fn verify(keys: &[Key], ttl: u64, url_safe: bool, r: &Offered<'_>) -> Result<Accepted, TokenError> {
    let raw = query_param(r.query, PARAM)?.ok_or(TokenError::Malformed("no 'verify' parameter"))?;
    let value = unescape(raw)?;
    let (issued, tag) = value.split_once('-').ok_or(TokenError::Malformed("'verify' is <time>-<mac>"))?;
    let issued = timestamp(issued)?;
    let tag = if url_safe { URL_SAFE_NO_PAD.decode(tag) } else { STANDARD.decode(tag) }
        .map_err(|_| TokenError::InvalidSignature)?;
    let key = keys
        .iter()
        .find(|k| k.hmac().is_some_and(|s| hmac_matches(&mac(s, r.path, issued), &tag)))
        .ok_or(TokenError::InvalidSignature)?;
    if issued > r.now.saturating_add(r.skew) {
        return Err(TokenError::NotYetValid { not_before: issued, now: r.now });
    }
    let expires = issued.saturating_add(ttl);
    super::check_times(r, None, expires)?;
    Ok(Accepted {
        key: key.id.clone(),
        expires,
        fields: vec![("issued", issued.to_string()), ("path", r.path.to_owned())],
    })
}
