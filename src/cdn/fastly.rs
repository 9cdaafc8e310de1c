//! Fastly's URL token ("Enabling URL token validation", and
//! fastly/token-functions): `token=<expiration>_<hex HMAC>` in the query,
//! the HMAC-SHA1 (the guide's; SHA-256 when the VCL is changed to
//! `digest.hmac_sha256`) of the request URL without its token parameter —
//! for the gateway's URLs, the path — followed by the expiration, under the
//! base64-decoded secret, in lower-case hex (VCL's `0x` dropped).

use super::{Accepted, CdnHash, Key, Offered, Token, check_times, hmac, hmac_matches, query_param, timestamp};
use crate::signing::TokenError;

/// The query parameter the VCL reads.
pub const PARAM: &str = "token";

/// The `token` parameter for `path`, valid until `expires`.
pub fn sign(key: &Key, hash: CdnHash, path: &str, expires: u64) -> Result<Token, &'static str> {
    let secret = key.hmac().ok_or("not an HMAC key")?;
    let mac = hex::encode(hmac(hash, secret, &[path.as_bytes(), expires.to_string().as_bytes()]));
    Ok(Token::Pairs(vec![(PARAM.to_owned(), format!("{expires}_{mac}"))]))
}

/// Check a request's `token` parameter.
pub fn verify(keys: &[Key], hash: CdnHash, r: &Offered<'_>) -> Result<Accepted, TokenError> {
    let value = query_param(r.query, PARAM)?.ok_or(TokenError::Malformed("no 'token' parameter"))?;
    let (expires, mac) = value.split_once('_').ok_or(TokenError::Malformed("'token' is <expiration>_<hmac>"))?;
    // The VCL's pattern: ten or eleven digits.
    if !(10..=11).contains(&expires.len()) {
        return Err(TokenError::Malformed("the expiration is ten or eleven digits"));
    }
    let signed_expiry = expires;
    let expires = timestamp(expires)?;
    let offered = hex::decode(mac).map_err(|_| TokenError::InvalidSignature)?;
    let key = keys
        .iter()
        .find(|k| {
            k.hmac()
                .is_some_and(|s| hmac_matches(&hmac(hash, s, &[r.path.as_bytes(), signed_expiry.as_bytes()]), &offered))
        })
        .ok_or(TokenError::InvalidSignature)?;
    check_times(r, None, expires)?;
    Ok(Accepted { key: key.id.clone(), expires, fields: vec![("path", r.path.to_owned())] })
}
