//! Google Cloud CDN signed requests ("Use signed URLs", "Use signed
//! cookies"): HMAC-SHA1 under the 128-bit key, in base64url with padding.
//! - A signed URL signs `<url>?Expires=<t>&KeyName=<name>` and appends
//!   `&Signature=<sig>`.
//! - A URL-prefix URL signs `URLPrefix=<base64url(prefix)>&Expires=<t>&KeyName=<name>`
//!   and carries it, with the signature, on any URL under the prefix.
//! - A signed cookie `Cloud-CDN-Cookie` carries the URL-prefix fields joined
//!   by `:` instead of `&`, signed the same way.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

use super::{Accepted, CdnHash, Key, Offered, Token, check_times, hmac, hmac_matches, params, timestamp};
use crate::signing::TokenError;

/// The signed cookie's name.
pub const COOKIE: &str = "Cloud-CDN-Cookie";

fn signature(secret: &[u8], signed: &str) -> String {
    URL_SAFE.encode(hmac(CdnHash::Sha1, secret, &[signed.as_bytes()]))
}

fn secret(key: &Key) -> Result<&[u8], &'static str> {
    key.hmac().ok_or("not an HMAC key")
}

/// A signed URL for exactly `url` (which has no query).
pub fn sign_url(key: &Key, url: &str, expires: u64) -> Result<Token, &'static str> {
    let signed = format!("{url}?Expires={expires}&KeyName={}", key.id);
    let sig = signature(secret(key)?, &signed);
    Ok(Token::Pairs(vec![
        ("Expires".into(), expires.to_string()),
        ("KeyName".into(), key.id.clone()),
        ("Signature".into(), sig),
    ]))
}

/// The signed fields of a URL prefix, with `sep` between them.
fn prefix_fields(prefix: &str, expires: u64, key_name: &str, sep: char) -> String {
    format!("URLPrefix={}{sep}Expires={expires}{sep}KeyName={key_name}", URL_SAFE.encode(prefix))
}

/// A URL-prefix token, good on every URL that starts with `prefix`.
pub fn sign_prefix(key: &Key, prefix: &str, expires: u64) -> Result<Token, &'static str> {
    let sig = signature(secret(key)?, &prefix_fields(prefix, expires, &key.id, '&'));
    Ok(Token::Pairs(vec![
        ("URLPrefix".into(), URL_SAFE.encode(prefix)),
        ("Expires".into(), expires.to_string()),
        ("KeyName".into(), key.id.clone()),
        ("Signature".into(), sig),
    ]))
}

/// A `Cloud-CDN-Cookie` for every URL under `prefix`.
pub fn cookie(key: &Key, prefix: &str, expires: u64) -> Result<Token, &'static str> {
    let fields = prefix_fields(prefix, expires, &key.id, ':');
    let sig = signature(secret(key)?, &fields);
    Ok(Token::Pairs(vec![(COOKIE.into(), format!("{fields}:Signature={sig}"))]))
}

/// Check a request to `url` (the CDN's URL for the path, without query).
pub fn verify(keys: &[Key], url: &str, r: &Offered<'_>) -> Result<Accepted, TokenError> {
    if let Some((signed_part, sig)) = r.query.rsplit_once("&Signature=") {
        let (signed, fields, prefix) =
            match signed_part.find("URLPrefix=").filter(|&i| i == 0 || signed_part[..i].ends_with('&')) {
                Some(at) => {
                    let fields = &signed_part[at..];
                    (fields.to_owned(), fields, true)
                }
                None => (format!("{url}?{signed_part}"), signed_part, false),
            };
        return check(keys, url, r, &signed, fields, '&', sig, prefix);
    }
    if let Some(value) = r.cookies.and_then(|c| super::cookie(c, COOKIE)) {
        let (fields, sig) =
            value.rsplit_once(":Signature=").ok_or(TokenError::Malformed("no Signature in the cookie"))?;
        return check(keys, url, r, fields, fields, ':', sig, true);
    }
    Err(TokenError::Malformed("no Cloud CDN signature"))
}

#[allow(clippy::too_many_arguments, reason = "the three token forms' parts, parsed by the caller")]
fn check(
    keys: &[Key],
    url: &str,
    r: &Offered<'_>,
    signed: &str,
    fields: &str,
    sep: char,
    sig: &str,
    prefix: bool,
) -> Result<Accepted, TokenError> {
    let mut found: [Option<&str>; 3] = [None; 3];
    let pairs: Vec<(&str, &str)> = if sep == '&' {
        params(fields).collect()
    } else {
        fields.split(':').map(|p| p.split_once('=').unwrap_or((p, ""))).collect()
    };
    for (k, v) in pairs {
        let slot = match k {
            "URLPrefix" => 0,
            "Expires" => 1,
            "KeyName" => 2,
            _ => continue,
        };
        if found[slot].replace(v).is_some() {
            return Err(TokenError::Malformed("a token parameter appears twice"));
        }
    }
    let [url_prefix, expires, key_name] = found;
    let expires = timestamp(expires.ok_or(TokenError::Malformed("no Expires"))?)?;
    let key_name = key_name.ok_or(TokenError::Malformed("no KeyName"))?;
    let key = keys.iter().find(|k| k.id == key_name).ok_or_else(|| TokenError::UnknownKey(key_name.to_owned()))?;
    let offered = URL_SAFE.decode(sig).map_err(|_| TokenError::InvalidSignature)?;
    let secret = key.hmac().ok_or(TokenError::InvalidSignature)?;
    if !hmac_matches(&hmac(CdnHash::Sha1, secret, &[signed.as_bytes()]), &offered) {
        return Err(TokenError::InvalidSignature);
    }
    let mut shown = vec![("KeyName", key_name.to_owned()), ("Expires", expires.to_string())];
    if prefix {
        let encoded = url_prefix.ok_or(TokenError::Malformed("no URLPrefix"))?;
        let decoded = URL_SAFE.decode(encoded).map_err(|_| TokenError::Malformed("URLPrefix is not base64url"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| TokenError::Malformed("URLPrefix is not UTF-8"))?;
        if !url.starts_with(&decoded) {
            return Err(TokenError::WrongPath { prefix: decoded });
        }
        shown.push(("URLPrefix", decoded));
    }
    check_times(r, None, expires)?;
    Ok(Accepted { key: key.id.clone(), expires, fields: shown })
}
