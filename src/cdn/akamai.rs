//! Akamai EdgeAuth 2.0 tokens (Akamai's "Auth Token 2.0" and its reference
//! SDKs, EdgeAuth-Token-Python/Node): fields `ip`, `st`, `exp`, `acl`, `id`,
//! `data` joined by `~` in that order; a URL token signs `~url=<path>` after
//! them without carrying it, and a salt is signed as `~salt=<salt>` the same
//! way; the HMAC (SHA-256, SHA-1 or MD5) of that string under the
//! hex-decoded key, in lower-case hex, ends the token as `~hmac=<hex>`. An
//! ACL is one or more path patterns joined by `!`, `*` matching anything.
//! Values are signed as given (EdgeAuth's `escape_early` off, its default).

use super::{Accepted, CdnHash, Key, Offered, Token, check_times, glob, hmac, hmac_matches, timestamp};
use crate::signing::TokenError;

/// A token's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub ip: Option<String>,
    pub start: Option<u64>,
    pub expires: u64,
    pub acl: Option<String>,
    pub session: Option<String>,
    pub data: Option<String>,
}

impl Fields {
    fn write(&self) -> String {
        let mut parts = Vec::with_capacity(6);
        if let Some(ip) = &self.ip {
            parts.push(format!("ip={ip}"));
        }
        if let Some(st) = self.start {
            parts.push(format!("st={st}"));
        }
        parts.push(format!("exp={}", self.expires));
        if let Some(acl) = &self.acl {
            parts.push(format!("acl={acl}"));
        }
        if let Some(id) = &self.session {
            parts.push(format!("id={id}"));
        }
        if let Some(data) = &self.data {
            parts.push(format!("data={data}"));
        }
        parts.join("~")
    }
}

/// The string EdgeAuth signs: the token's fields, then what it signs
/// without carrying.
fn signed_string(fields: &str, url: Option<&str>, salt: Option<&str>) -> String {
    let mut s = fields.to_owned();
    if let Some(url) = url {
        s.push_str("~url=");
        s.push_str(url);
    }
    if let Some(salt) = salt {
        s.push_str("~salt=");
        s.push_str(salt);
    }
    s
}

/// The lower-case hex HMAC of a token.
pub fn tag(key: &[u8], hash: CdnHash, fields: &str, url: Option<&str>, salt: Option<&str>) -> String {
    hex::encode(hmac(hash, key, &[signed_string(fields, url, salt).as_bytes()]))
}

/// A token for `fields`; `url` for a URL token (then `fields.acl` is
/// `None`).
pub fn sign(key: &Key, hash: CdnHash, fields: &Fields, url: Option<&str>, salt: Option<&str>) -> Result<Token, String> {
    let secret = key.hmac().ok_or("not an HMAC key")?;
    if fields.acl.is_some() == url.is_some() {
        return Err("an EdgeAuth token has an ACL or a URL, not both".into());
    }
    for v in [&fields.ip, &fields.acl, &fields.session, &fields.data].into_iter().flatten() {
        if v.contains(['~', '&', ';', ' ']) || v.chars().any(char::is_control) {
            return Err(format!("{v:?} cannot go into an EdgeAuth token"));
        }
    }
    let text = fields.write();
    let mac = tag(secret, hash, &text, url, salt);
    Ok(Token::Value(format!("{text}~hmac={mac}")))
}

/// Check a token presented with `r`.
pub fn verify(
    keys: &[Key],
    hash: CdnHash,
    token: &str,
    r: &Offered<'_>,
    salt: Option<&str>,
) -> Result<Accepted, TokenError> {
    let (text, mac) = token.rsplit_once("~hmac=").ok_or(TokenError::Malformed("no ~hmac= in the token"))?;
    let fields = parse(text)?;
    let offered = hex::decode(mac).map_err(|_| TokenError::InvalidSignature)?;
    let url = fields.acl.is_none().then_some(r.path);
    let key = keys
        .iter()
        .find(|k| {
            k.hmac()
                .is_some_and(|s| hmac_matches(&hmac(hash, s, &[signed_string(text, url, salt).as_bytes()]), &offered))
        })
        .ok_or(TokenError::InvalidSignature)?;
    if let Some(acl) = &fields.acl
        && !acl.split('!').any(|pattern| glob(pattern, r.path))
    {
        return Err(TokenError::WrongPath { prefix: acl.clone() });
    }
    check_times(r, fields.start, fields.expires)?;
    if let Some(ip) = &fields.ip {
        let allowed: std::net::IpAddr = ip.parse().map_err(|_| TokenError::Malformed("'ip' is not an address"))?;
        if r.client.map(crate::signing::canonical_ip) != Some(crate::signing::canonical_ip(allowed)) {
            return Err(TokenError::AddressNotAllowed { allowed: ip.clone() });
        }
    }
    let mut shown = vec![("exp", fields.expires.to_string())];
    let optional = [
        ("ip", fields.ip.clone()),
        ("st", fields.start.map(|s| s.to_string())),
        ("acl", fields.acl.clone()),
        ("url", url.map(str::to_owned)),
        ("id", fields.session.clone()),
        ("data", fields.data.clone()),
    ];
    shown.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    Ok(Accepted { key: key.id.clone(), expires: fields.expires, fields: shown })
}

/// The fields of a token, which must come in EdgeAuth's order, once each.
fn parse(text: &str) -> Result<Fields, TokenError> {
    const ORDER: [&str; 6] = ["ip", "st", "exp", "acl", "id", "data"];
    let mut fields = Fields::default();
    let mut expires = None;
    let mut last = None;
    for part in text.split('~') {
        let (name, value) = part.split_once('=').ok_or(TokenError::Malformed("a token field without '='"))?;
        let at = ORDER.iter().position(|n| *n == name).ok_or(TokenError::Malformed("an unknown token field"))?;
        if last.is_some_and(|l| at <= l) {
            return Err(TokenError::Malformed("token fields out of order or repeated"));
        }
        last = Some(at);
        match name {
            "ip" => fields.ip = Some(value.to_owned()),
            "st" => fields.start = Some(timestamp(value)?),
            "exp" => expires = Some(timestamp(value)?),
            "acl" => fields.acl = Some(value.to_owned()),
            "id" => fields.session = Some(value.to_owned()),
            _ => fields.data = Some(value.to_owned()),
        }
    }
    fields.expires = expires.ok_or(TokenError::Malformed("no exp in the token"))?;
    Ok(fields)
}
