//! Native signed URLs: HMAC-SHA256 over a canonical string that binds the path
//! (exact or a prefix), expiry, optional not-before, customer, grant, key id and
//! an optional client CIDR. Specified byte for byte in `docs/signed-urls.md`.

mod canonical;
mod keyring;

use std::borrow::Cow;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use ipnet::IpNet;

pub use canonical::{FORMAT_TAG, PathError, RawToken, canonical_path, decode_segment, encode_segment, is_valid_id};
pub use keyring::{GENERATED_KEY_BYTES, KeyMaterial, KeyRing, KeyRingError, MIN_KEY_BYTES, decode_key, generate_key};

/// What a URL may be used for; what [`KeyRing::sign`] binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub scope: UrlScope,
    /// Unix seconds; the URL is refused from this instant on (less clock skew).
    pub expires: u64,
    /// Unix seconds; the URL is refused before this instant (less clock skew).
    pub not_before: Option<u64>,
    pub customer: Option<String>,
    pub grant: Option<String>,
    /// Only clients inside this network may use the URL.
    pub client_net: Option<IpNet>,
}

/// The paths a token is good for. Both hold canonical, percent-encoded paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlScope {
    /// Exactly this path.
    Path(String),
    /// Every path that starts with this one; it ends in `/`, so `/d/app/1.2/`
    /// never covers `/d/app/1.2.3/`.
    Prefix(String),
}

impl UrlScope {
    pub fn as_str(&self) -> &str {
        match self {
            UrlScope::Path(p) | UrlScope::Prefix(p) => p,
        }
    }
}

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("path: {0}")]
    Path(#[from] PathError),
    #[error("the path is not in canonical form (see signing::encode_path)")]
    NotCanonical,
    #[error("a prefix must end in '/'")]
    PrefixWithoutSlash,
    #[error("{0} must be 1-128 characters of A-Z a-z 0-9 . _ -")]
    BadId(&'static str),
    #[error("not-before must be earlier than expiry")]
    EmptyWindow,
    #[error("the key ring has no signing key")]
    NoSigningKey,
}

/// Why a URL was refused. `code()` is the stable machine code of the problem body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the URL's token is missing or malformed: {0}")]
    Malformed(&'static str),
    #[error("the URL was signed with key {0:?}, which this gateway does not have")]
    UnknownKey(String),
    #[error("the URL's signature does not match its contents")]
    InvalidSignature,
    #[error("the URL is valid only for paths under {prefix}")]
    WrongPath { prefix: String },
    #[error("the URL is not valid before {not_before} (now {now})")]
    NotYetValid { not_before: u64, now: u64 },
    #[error("the URL expired at {expired_at} (now {now})")]
    Expired { expired_at: u64, now: u64 },
    #[error("the URL may only be used from {allowed}")]
    AddressNotAllowed { allowed: String },
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed_token",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::InvalidSignature => "invalid_signature",
            TokenError::WrongPath { .. } => "wrong_path",
            TokenError::NotYetValid { .. } => "not_yet_valid",
            TokenError::Expired { .. } => "expired",
            TokenError::AddressNotAllowed { .. } => "address_not_allowed",
        }
    }
}

impl crate::errors::Classified for TokenError {
    fn kind(&self) -> crate::errors::ErrorKind {
        crate::errors::ErrorKind::Denied
    }

    fn code(&self) -> &'static str {
        TokenError::code(self)
    }
}

/// What a request presents for verification.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// The request path as received (percent-encoded, without the query).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub client_ip: Option<IpAddr>,
    /// Unix seconds.
    pub now: u64,
    /// Seconds of clock difference tolerated on `exp` and `nbf`.
    pub skew: u64,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'a> {
    pub key_id: &'a str,
    pub expires: u64,
    pub customer: Option<&'a str>,
    pub grant: Option<&'a str>,
    pub prefix: Option<&'a str>,
    /// Past its expiry, but within the grace [`KeyRing::verify_with_grace`]
    /// was given.
    pub expired: bool,
}

impl KeyRing {
    /// Mint the query string (without `?`) for `claims`, signed by the active key.
    pub fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        let (path, pfx) = match &claims.scope {
            UrlScope::Path(p) => (p.as_str(), None),
            UrlScope::Prefix(p) => {
                if !p.ends_with('/') {
                    return Err(SignError::PrefixWithoutSlash);
                }
                ("", Some(p.as_str()))
            }
        };
        if canonical_path(claims.scope.as_str())? != claims.scope.as_str() {
            return Err(SignError::NotCanonical);
        }
        for (name, value) in [("customer", &claims.customer), ("grant", &claims.grant)] {
            if value.as_deref().is_some_and(|v| !is_valid_id(v)) {
                return Err(SignError::BadId(name));
            }
        }
        if claims.not_before.is_some_and(|nbf| nbf >= claims.expires) {
            return Err(SignError::EmptyWindow);
        }
        let exp = claims.expires.to_string();
        let nbf = claims.not_before.map(|n| n.to_string());
        let ip = claims.client_net.map(|n| n.trunc().to_string());
        let token = RawToken {
            exp: &exp,
            nbf: nbf.as_deref(),
            cid: claims.customer.as_deref(),
            gid: claims.grant.as_deref(),
            ip: ip.as_deref(),
            pfx,
            kid: self.active_id(),
            sig: "",
        };
        // KeyRing::new guarantees the active key is present; no panic if not.
        let mut mac = self.mac(self.active_id()).ok_or(SignError::NoSigningKey)?;
        token.write_canonical(path, |b| mac.update(b));
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(RawToken { sig: &sig, ..token }.to_query())
    }

    /// Check a presented URL. Checks run in a fixed order, and nothing the token
    /// says is trusted before its signature is: shape, key id, signature, path
    /// scope, not-before, expiry, client address. The first failure is returned.
    pub fn verify<'q>(&self, p: &Presented<'q>) -> Result<Verified<'q>, TokenError> {
        self.verify_with_grace(p, 0)
    }

    /// [`KeyRing::verify`], except that a token past its expiry by less than
    /// `grace` seconds is accepted, marked `expired`: the caller decides what
    /// such a token still allows (a started grant's resumes).
    pub fn verify_with_grace<'q>(&self, p: &Presented<'q>, grace: u64) -> Result<Verified<'q>, TokenError> {
        let token = RawToken::from_query(p.query).map_err(TokenError::Malformed)?;
        let path = canonical_path(p.path).map_err(|_| TokenError::Malformed("the path is not a valid URL path"))?;
        let mut mac = self.mac(token.kid).ok_or_else(|| TokenError::UnknownKey(token.kid.to_owned()))?;
        token.write_canonical(&path, |b| mac.update(b));
        // An undecodable signature is simply a wrong one.
        let sig = URL_SAFE_NO_PAD.decode(token.sig).map_err(|_| TokenError::InvalidSignature)?;
        // SECURITY: constant-time comparison (`verify_slice`), so response timing
        // tells an attacker nothing about how much of a forged signature is right.
        mac.verify_slice(&sig).map_err(|_| TokenError::InvalidSignature)?;

        if let Some(prefix) = token.pfx
            && !path.starts_with(prefix)
        {
            return Err(TokenError::WrongPath { prefix: prefix.to_owned() });
        }
        let expires = parse_ts(token.exp)?;
        if let Some(nbf) = token.nbf {
            let not_before = parse_ts(nbf)?;
            if p.now.saturating_add(p.skew) < not_before {
                return Err(TokenError::NotYetValid { not_before, now: p.now });
            }
        }
        let expired = p.now >= expires.saturating_add(p.skew);
        if expired && p.now >= expires.saturating_add(p.skew).saturating_add(grace) {
            return Err(TokenError::Expired { expired_at: expires, now: p.now });
        }
        if let Some(ip) = token.ip {
            let net = canonical::network(ip).ok_or(TokenError::Malformed("'ip' is not a CIDR block"))?;
            if !p.client_ip.is_some_and(|addr| net.contains(&canonical_ip(addr))) {
                return Err(TokenError::AddressNotAllowed { allowed: ip.to_owned() });
            }
        }
        Ok(Verified { key_id: token.kid, expires, customer: token.cid, grant: token.gid, prefix: token.pfx, expired })
    }
}

/// Build a full URL from a base (`https://dl.example.com`), a canonical path and a
/// signed query string.
pub fn signed_url(base: &str, path: &str, query: &str) -> String {
    format!("{}{}?{}", base.trim_end_matches('/'), path, query)
}

/// The canonical path for a human-written path: each `/`-separated segment is
/// percent-encoded, so `tollgate sign '/d/app/1.0/My App.dmg'` works as typed.
pub fn encode_path(path: &str) -> Cow<'_, str> {
    if path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/')) {
        return Cow::Borrowed(path);
    }
    let encoded: Vec<Cow<'_, str>> = path.split('/').map(encode_segment).collect();
    Cow::Owned(encoded.join("/"))
}

fn parse_ts(s: &str) -> Result<u64, TokenError> {
    s.parse().map_err(|_| TokenError::Malformed("a timestamp is out of range"))
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as seen on dual-stack sockets)
/// are compared as the IPv4 address they carry.
pub fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
