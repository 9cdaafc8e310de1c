//! CDN-native signed URLs: what an `edge` product's customers are given, and
//! what the gateway, as the CDN's origin, can check again.
//!
//! One module per CDN, each written from that CDN's documentation and held
//! to its published vectors (`tests/vectors/cdn-tokens.json`, and for
//! CloudFront the AWS SDKs' own): [`cloudfront`], [`cloud_cdn`], [`akamai`],
//! [`cloudflare`], [`fastly`]. A [`Profile`] is one configured CDN: its
//! format, its keys (one signs, the others verify, as in the native key
//! ring), where the token travels, and the secret the CDN shows the origin.

pub mod akamai;
pub mod cloud_cdn;
pub mod cloudflare;
pub mod cloudfront;
pub mod fastly;
mod keys;
mod origin;

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

pub use keys::{Key, KeyError, Material};
pub use origin::{OriginAuth, OriginProof};

use crate::config::{CdnConfig, CdnProfileConfig};
pub use crate::config::{CdnHash, CdnKind as Kind, CloudfrontPolicy, TokenPlacement};
use crate::signing::TokenError;

/// What a minted URL is good for.
#[derive(Debug, Clone, Copy)]
pub struct Mint<'a> {
    /// The canonical, percent-encoded path on the CDN (`/d/app/1.0/app.zip`).
    pub path: &'a str,
    /// Good for every path under this one (ends in `/`) instead of `path`
    /// alone: CloudFront's wildcard resource, Cloud CDN's `URLPrefix`,
    /// Akamai's ACL. Cloudflare and Fastly sign one path only.
    pub prefix: Option<&'a str>,
    /// Not before (CloudFront custom policy, Akamai `st`).
    pub starts: Option<u64>,
    pub expires: u64,
    /// Only from this network (CloudFront `IpAddress`, Akamai `ip`: one
    /// address).
    pub client: Option<IpNet>,
    /// A session id carried in the token (Akamai `id`): the grant's.
    pub session: Option<&'a str>,
}

/// A minted URL, with the cookies or header that carry its token when the
/// profile puts it there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Minted {
    pub url: String,
    /// `(name, value)`; set them for the CDN's host, path `/`.
    pub cookies: Vec<(String, String)>,
    /// `(name, value)` of a header to send with the request.
    pub headers: Vec<(String, String)>,
    pub expires: u64,
}

/// A request offered to a verifier.
#[derive(Debug, Clone, Copy)]
pub struct Offered<'a> {
    /// The request path as received, percent-encoded.
    pub path: &'a str,
    /// The raw query, without `?`.
    pub query: &'a str,
    /// The `Cookie` header(s), joined with `; `.
    pub cookies: Option<&'a str>,
    /// The value of the header named like the profile's token (Akamai).
    pub header: Option<&'a str>,
    pub client: Option<IpAddr>,
    pub now: u64,
    pub skew: u64,
}

/// What a valid CDN token said, field by field (for `tollgate verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub key: String,
    pub expires: u64,
    pub fields: Vec<(&'static str, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cdn profile {profile:?}: {error}")]
    Key { profile: String, error: KeyError },
    #[error("cdn profile {profile:?}: {message}")]
    Invalid { profile: String, message: String },
}

/// A configured CDN.
#[derive(Debug)]
pub struct Profile {
    pub id: String,
    pub kind: Kind,
    pub base_url: String,
    pub lifetime: Duration,
    pub bind_client: bool,
    pub placement: TokenPlacement,
    pub accept: bool,
    pub origin: Option<OriginAuth>,
    options: Options,
    keys: Vec<Key>,
    active: usize,
}

/// The kind-specific settings.
#[derive(Debug, Clone)]
struct Options {
    hash: Option<CdnHash>,
    policy: CloudfrontPolicy,
    token_name: String,
    salt: Option<crate::config::Secret>,
    url_safe: bool,
}

impl Profile {
    /// Build a profile from its configuration, reading and parsing its keys.
    pub fn load(c: &CdnProfileConfig, allow_world_readable: bool) -> Result<Profile, ProfileError> {
        let invalid = |message: String| ProfileError::Invalid { profile: c.id.clone(), message };
        let mut keys = Vec::with_capacity(c.keys.len());
        for (j, k) in c.keys.iter().enumerate() {
            let name = format!("cdn.profiles.{}.keys[{j}].key", c.id);
            let text =
                crate::config::secret::resolve(&name, k.key.as_ref(), k.key_file.as_deref(), allow_world_readable)
                    .map_err(|e| invalid(e.to_string()))?;
            let key = Key::parse(c.kind, &k.id, text.expose(), k.verify_only)
                .map_err(|error| ProfileError::Key { profile: c.id.clone(), error })?;
            keys.push(key);
        }
        let active_id = c.active_key().ok_or_else(|| invalid("no signing key".into()))?;
        let active = keys.iter().position(|k| k.id == active_id).ok_or_else(|| invalid("no signing key".into()))?;
        let salt = match (&c.salt, &c.salt_file) {
            (None, None) => None,
            (inline, file) => Some(
                crate::config::secret::resolve(
                    &format!("cdn.profiles.{}.salt", c.id),
                    inline.as_ref(),
                    file.as_deref(),
                    allow_world_readable,
                )
                .map_err(|e| invalid(e.to_string()))?,
            ),
        };
        if c.kind == Kind::Cloudfront
            && c.hash == Some(CdnHash::Sha1)
            && keys.iter().any(|k| matches!(k.material, Material::Ecdsa(_)))
        {
            return Err(invalid(
                "CloudFront ECDSA keys sign with SHA-256; set hash = \"sha256\" or leave it out".into(),
            ));
        }
        let origin =
            c.origin.as_ref().map(|o| OriginAuth::load(&c.id, o, allow_world_readable)).transpose().map_err(invalid)?;
        Ok(Profile {
            id: c.id.clone(),
            kind: c.kind,
            base_url: c.base_url.trim_end_matches('/').to_owned(),
            lifetime: c.lifetime,
            bind_client: c.bind_client,
            placement: c.token_in,
            accept: c.accept,
            origin,
            options: Options {
                hash: c.hash,
                policy: c.policy,
                token_name: c
                    .token_name
                    .clone()
                    .unwrap_or_else(|| crate::config::cdn::DEFAULT_AKAMAI_TOKEN_NAME.into()),
                salt,
                url_safe: c.url_safe,
            },
            keys,
            active,
        })
    }

    /// The key that signs.
    pub fn active_key(&self) -> &Key {
        &self.keys[self.active]
    }

    /// Mint a URL (and cookies or header) for `m` with the active key.
    pub fn mint(&self, m: &Mint<'_>) -> Result<Minted, String> {
        if m.starts.is_some_and(|s| s >= m.expires) {
            return Err("the start must be earlier than the expiry".into());
        }
        if m.prefix.is_some_and(|p| !p.ends_with('/') || !m.path.starts_with(p)) {
            return Err("a prefix ends in '/' and covers the path".into());
        }
        let key = self.active_key();
        let url = format!("{}{}", self.base_url, m.path);
        let o = &self.options;
        let token = match self.kind {
            Kind::Cloudfront => {
                let hash = cloudfront::hash_for(key, o.hash);
                let resource = match m.prefix {
                    Some(p) => format!("{}{p}*", self.base_url),
                    None => url.clone(),
                };
                // A canned policy names one URL and an expiry; anything
                // more needs a custom one.
                let custom = o.policy == CloudfrontPolicy::Custom
                    || m.prefix.is_some()
                    || m.starts.is_some()
                    || m.client.is_some();
                let policy = if custom {
                    cloudfront::Policy::Custom(cloudfront::custom_policy(&resource, m.expires, m.starts, m.client))
                } else {
                    cloudfront::Policy::Canned { resource: &resource, expires: m.expires }
                };
                cloudfront::sign(key, hash, &policy).map_err(|e| e.to_string())?
            }
            Kind::CloudCdn => match (m.prefix, self.placement) {
                (_, TokenPlacement::Cookie) => {
                    let prefix = format!("{}{}", self.base_url, m.prefix.unwrap_or(m.path));
                    cloud_cdn::cookie(key, &prefix, m.expires)
                }
                (Some(p), _) => cloud_cdn::sign_prefix(key, &format!("{}{p}", self.base_url), m.expires),
                (None, _) => cloud_cdn::sign_url(key, &url, m.expires),
            }
            .map_err(|e| e.to_string())?,
            Kind::Akamai => {
                let acl = m.prefix.map(|p| format!("{p}*"));
                let fields = akamai::Fields {
                    ip: m.client.map(|n| n.addr().to_string()),
                    start: m.starts,
                    expires: m.expires,
                    acl,
                    session: m.session.map(str::to_owned),
                    data: None,
                };
                let url_path = if fields.acl.is_none() { Some(m.path) } else { None };
                let hash = o.hash.unwrap_or(CdnHash::Sha256);
                akamai::sign(key, hash, &fields, url_path, o.salt.as_ref().map(|s| s.expose()))
                    .map_err(|e| e.to_string())?
            }
            Kind::Cloudflare => {
                if m.prefix.is_some() {
                    return Err("Cloudflare tokens sign one path".into());
                }
                // The token carries its issue time; the WAF rule's TTL is the
                // profile's lifetime.
                let issued = m.expires.saturating_sub(self.lifetime.as_secs());
                cloudflare::sign(key, m.path, issued, o.url_safe).map_err(|e| e.to_string())?
            }
            Kind::Fastly => {
                if m.prefix.is_some() {
                    return Err("Fastly tokens sign one path".into());
                }
                fastly::sign(key, o.hash.unwrap_or(CdnHash::Sha1), m.path, m.expires).map_err(|e| e.to_string())?
            }
        };
        Ok(self.place(url, token, m.expires))
    }

    /// Put a token where the profile says it travels.
    fn place(&self, url: String, token: Token, expires: u64) -> Minted {
        let mut minted = Minted { url, cookies: Vec::new(), headers: Vec::new(), expires };
        let name = &self.options.token_name;
        match (token, self.placement) {
            (Token::Value(v), TokenPlacement::Query) => minted.url = format!("{}?{name}={v}", minted.url),
            (Token::Value(v), TokenPlacement::Cookie) => minted.cookies.push((name.clone(), v)),
            (Token::Value(v), TokenPlacement::Header) => minted.headers.push((name.clone(), v)),
            (Token::Pairs(pairs), TokenPlacement::Cookie) => {
                minted.cookies = pairs.into_iter().map(|(k, v)| (cookie_name(self.kind, &k), v)).collect();
            }
            // Configuration allows headers for Akamai's single value only.
            (Token::Pairs(pairs), TokenPlacement::Query | TokenPlacement::Header) => {
                let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                minted.url = format!("{}?{}", minted.url, q.join("&"));
            }
        }
        minted
    }

    /// Check a request's token in this profile's format, with every key of
    /// the profile. The checks mirror the CDN's: signature first, then path,
    /// times and client.
    pub fn verify(&self, r: &Offered<'_>) -> Result<Accepted, TokenError> {
        let url = format!("{}{}", self.base_url, r.path);
        let o = &self.options;
        match self.kind {
            Kind::Cloudfront => cloudfront::verify(&self.keys, &self.base_url, r),
            Kind::CloudCdn => cloud_cdn::verify(&self.keys, &url, r),
            Kind::Akamai => {
                let token = match self.placement {
                    TokenPlacement::Query => query_param(r.query, &o.token_name)?,
                    TokenPlacement::Cookie => r.cookies.and_then(|c| cookie(c, &o.token_name)),
                    TokenPlacement::Header => r.header,
                };
                let token = token.ok_or(TokenError::Malformed("no EdgeAuth token"))?;
                akamai::verify(
                    &self.keys,
                    o.hash.unwrap_or(CdnHash::Sha256),
                    token,
                    r,
                    o.salt.as_ref().map(|s| s.expose()),
                )
            }
            Kind::Cloudflare => cloudflare::verify(&self.keys, self.lifetime.as_secs(), o.url_safe, r),
            Kind::Fastly => fastly::verify(&self.keys, o.hash.unwrap_or(CdnHash::Sha1), r),
        }
    }

    /// Whether a request carries something that looks like this profile's
    /// token (so that a refusal can name the right format).
    pub fn offered(&self, r: &Offered<'_>) -> bool {
        let has = |name: &str| params(r.query).any(|(k, _)| k == name);
        let cookie_has = |name: &str| r.cookies.is_some_and(|c| cookie(c, name).is_some());
        match self.kind {
            Kind::Cloudfront => has("Key-Pair-Id") || cookie_has("CloudFront-Key-Pair-Id"),
            Kind::CloudCdn => has("KeyName") || cookie_has(cloud_cdn::COOKIE),
            Kind::Akamai => has(&self.options.token_name) || cookie_has(&self.options.token_name) || r.header.is_some(),
            Kind::Cloudflare => has(cloudflare::PARAM),
            Kind::Fastly => has(fastly::PARAM),
        }
    }

    /// The name of the header carrying the token, for Akamai header tokens.
    pub fn token_header(&self) -> Option<&str> {
        (self.kind == Kind::Akamai && self.placement == TokenPlacement::Header)
            .then_some(self.options.token_name.as_str())
    }
}

/// A format's token before placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// One value under the profile's token name (Akamai).
    Value(String),
    /// Named values, in order, each already safe in a query and a cookie.
    Pairs(Vec<(String, String)>),
}

/// The cookie a query parameter becomes.
fn cookie_name(kind: Kind, param: &str) -> String {
    match kind {
        Kind::Cloudfront => format!("CloudFront-{param}"),
        _ => param.to_owned(),
    }
}

/// The configured profiles, by id.
#[derive(Debug, Default)]
pub struct Profiles {
    profiles: Vec<Profile>,
}

impl Profiles {
    pub fn load(c: &CdnConfig, allow_world_readable: bool) -> Result<Profiles, ProfileError> {
        let profiles = c.profiles.iter().map(|p| Profile::load(p, allow_world_readable)).collect::<Result<_, _>>()?;
        Ok(Profiles { profiles })
    }

    pub fn get(&self, id: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter()
    }

    /// The profiles whose tokens `/d/` accepts.
    pub fn accepted(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter().filter(|p| p.accept)
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Whether a request proves it comes from some profile's CDN.
    pub fn origin_admits(&self, proof: &OriginProof<'_>) -> bool {
        self.profiles.iter().any(|p| p.origin.as_ref().is_some_and(|o| o.admits(proof)))
    }
}

/// `name=value` pairs of a raw query, values still escaped.
pub fn params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The one value of `name` in a raw query, still escaped.
// SECURITY: a parameter given twice is refused, as the CDNs and the native
// format refuse it: a verifier and a cache must not read different copies.
pub fn query_param<'q>(query: &'q str, name: &str) -> Result<Option<&'q str>, TokenError> {
    let mut found = None;
    for (k, v) in params(query) {
        if k == name {
            if found.is_some() {
                return Err(TokenError::Malformed("a token parameter appears twice"));
            }
            found = Some(v);
        }
    }
    Ok(found)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'c>(header: &'c str, name: &str) -> Option<&'c str> {
    header.split(';').map(str::trim).find_map(|c| c.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// Percent-decode a query value (`+` stays `+`: none of the formats writes
/// spaces as `+`).
pub fn unescape(v: &str) -> Result<String, TokenError> {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(v).collect();
    if v.contains('%') && v.split('%').skip(1).any(|h| h.len() < 2 || !h[..2].bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(TokenError::Malformed("a bad % escape in a token parameter"));
    }
    String::from_utf8(bytes).map_err(|_| TokenError::Malformed("a token parameter is not UTF-8"))
}

/// Escape a value for a query: everything but unreserved characters.
pub fn query_escape(v: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(v, SET).to_string()
}

/// Unix seconds from a token field.
pub fn timestamp(s: &str) -> Result<u64, TokenError> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Malformed("a time is not Unix seconds"));
    }
    s.parse().map_err(|_| TokenError::Malformed("a time is out of range"))
}

/// HMAC of the concatenated `parts` under `key` with `hash`.
pub fn hmac(hash: CdnHash, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::KeyInit as _;
    fn run<M: hmac::Mac>(mut mac: M, parts: &[&[u8]]) -> Vec<u8> {
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    match hash {
        CdnHash::Sha256 => hmac::Hmac::<sha2::Sha256>::new_from_slice(key).map(|m| run(m, parts)),
        CdnHash::Sha1 => hmac::Hmac::<sha1::Sha1>::new_from_slice(key).map(|m| run(m, parts)),
        CdnHash::Md5 => hmac::Hmac::<md5::Md5>::new_from_slice(key).map(|m| run(m, parts)),
    }
    .unwrap_or_default()
}

/// Compare MACs in constant time.
pub fn hmac_matches(expected: &[u8], offered: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    !expected.is_empty() && bool::from(expected.ct_eq(offered))
}

/// Wildcard patterns as CloudFront's resources and Akamai's ACLs write
/// them: `*` any run of characters, `?` one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The window checks every format shares.
pub fn check_times(r: &Offered<'_>, starts: Option<u64>, expires: u64) -> Result<(), TokenError> {
    if let Some(not_before) = starts
        && r.now.saturating_add(r.skew) < not_before
    {
        return Err(TokenError::NotYetValid { not_before, now: r.now });
    }
    if r.now >= expires.saturating_add(r.skew) {
        return Err(TokenError::Expired { expired_at: expires, now: r.now });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
