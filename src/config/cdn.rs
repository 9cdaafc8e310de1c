//! `[[cdn.profiles]]`: CDNs that deliver `edge` products' bytes, each with
//! the keys its native signed URLs are made with. The formats themselves
//! are in `crate::cdn`; here is what an operator writes.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;
use super::duration;

/// The default lifetime of a CDN URL.
pub const DEFAULT_CDN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Akamai EdgeAuth's default token name.
pub const DEFAULT_AKAMAI_TOKEN_NAME: &str = "__token__";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdnConfig {
    pub profiles: Vec<CdnProfileConfig>,
}

/// Which CDN's format a profile speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CdnKind {
    /// Amazon CloudFront signed URLs and cookies (RSA or ECDSA key pairs).
    Cloudfront,
    /// Google Cloud CDN signed URLs, URL-prefix URLs and signed cookies.
    CloudCdn,
    /// Akamai EdgeAuth 2.0 tokens.
    Akamai,
    /// Cloudflare's `is_timed_hmac_valid_v0` WAF function.
    Cloudflare,
    /// Fastly's URL token (`exp_hmac`) in VCL or Compute.
    Fastly,
}

impl CdnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CdnKind::Cloudfront => "cloudfront",
            CdnKind::CloudCdn => "cloud_cdn",
            CdnKind::Akamai => "akamai",
            CdnKind::Cloudflare => "cloudflare",
            CdnKind::Fastly => "fastly",
        }
    }
}

/// Where the token travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenPlacement {
    /// In the URL's query (every kind).
    #[default]
    Query,
    /// In cookies set for the CDN's host (CloudFront, Cloud CDN, Akamai).
    Cookie,
    /// In a request header named like the token (Akamai).
    Header,
}

/// CloudFront's two policy forms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudfrontPolicy {
    /// Resource and expiry only (`Expires=`); the shortest URL. A URL that
    /// needs more (a start time, a client address, a wildcard) is made with
    /// a custom policy anyway.
    #[default]
    Canned,
    /// A JSON policy in the URL (`Policy=`).
    Custom,
}

/// The digest a profile's signatures use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CdnHash {
    Sha1,
    Sha256,
    Md5,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnProfileConfig {
    /// Names the profile in products (`cdn_profile`) and the CLI.
    pub id: String,
    pub kind: CdnKind,
    /// The CDN's address for the gateway's download paths, e.g.
    /// `https://d111111abcdef8.cloudfront.net`: URLs are this plus `/d/…`.
    pub base_url: String,
    /// How long a minted URL is good for.
    #[serde(with = "duration", default = "default_lifetime")]
    pub lifetime: Duration,
    /// Bind URLs to the requesting client's address (CloudFront custom
    /// policy `IpAddress`, Akamai `ip`).
    #[serde(default)]
    pub bind_client: bool,
    #[serde(default)]
    pub token_in: TokenPlacement,
    /// CloudFront: `sha1` (default) or `sha256` (`Hash-Algorithm=SHA256`;
    /// ECDSA keys always use it). Akamai: `sha256` (default), `sha1`, `md5`.
    /// Fastly: `sha1` (default, as in Fastly's guide) or `sha256`.
    pub hash: Option<CdnHash>,
    /// CloudFront only.
    #[serde(default)]
    pub policy: CloudfrontPolicy,
    /// Akamai only: the token's name in the query, cookie or header.
    pub token_name: Option<String>,
    /// Akamai only: the salt EdgeAuth mixes into the signed string.
    pub salt: Option<Secret>,
    pub salt_file: Option<PathBuf>,
    /// Cloudflare only: the `s` flag, URL-safe base64 without padding.
    #[serde(default)]
    pub url_safe: bool,
    /// `/d/…` accepts this profile's tokens as well as native ones (the
    /// gateway as the CDN's origin double-checks the CDN's token).
    #[serde(default)]
    pub accept: bool,
    /// Id of the key that signs; defaults to the only key that is not
    /// verify-only.
    pub active_key: Option<String>,
    pub keys: Vec<CdnKeyConfig>,
    /// How the CDN proves to the origin that a request comes from it. With
    /// it set, `/d/…` serves this profile's products only to requests that
    /// carry the header.
    pub origin: Option<OriginAuthConfig>,
}

fn default_lifetime() -> Duration {
    DEFAULT_CDN_LIFETIME
}

/// One key of a profile. What the key text is depends on the kind:
/// CloudFront a PEM private key (RSA or EC P-256; the id is the public key's
/// id, `Key-Pair-Id`); Cloud CDN the base64url 128-bit key (the id is the
/// key's name, `KeyName`); Akamai the hex key; Cloudflare the secret as
/// typed into the WAF rule; Fastly the base64 secret of the VCL snippet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnKeyConfig {
    pub id: String,
    pub key: Option<Secret>,
    pub key_file: Option<PathBuf>,
    /// Kept to verify URLs minted before a rotation; never signs.
    #[serde(default)]
    pub verify_only: bool,
}

/// How the CDN proves itself to the origin: a shared secret it adds to
/// every origin request as a header, a TLS client certificate, or both
/// (then both are required).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginAuthConfig {
    /// Default `X-Origin-Auth`.
    #[serde(default = "default_origin_header")]
    pub header: String,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    /// Require a client certificate issued by `server.tls.client_ca_file`
    /// (CloudFront, Akamai and Fastly can present one to an origin).
    #[serde(default)]
    pub client_certificate: bool,
    /// With `client_certificate`: only these certificates (SHA-256 of the
    /// DER, hex), when the CA issues others too.
    #[serde(default)]
    pub client_certificate_sha256: Vec<String>,
}

fn default_origin_header() -> String {
    "X-Origin-Auth".into()
}

impl CdnConfig {
    /// Structural checks; key material is parsed when the profiles are built
    /// (`crate::cdn::Profiles::load`), which names the key at fault too.
    pub fn validate(&self) -> Result<(), String> {
        for (i, p) in self.profiles.iter().enumerate() {
            let at = |field: &str| format!("cdn.profiles[{i}].{field}");
            if !crate::signing::is_valid_id(&p.id) {
                return Err(format!("{}: must be 1-128 characters of A-Z a-z 0-9 . _ -", at("id")));
            }
            if self.profiles[..i].iter().any(|o| o.id == p.id) {
                return Err(format!("{}: duplicate profile id {:?}", at("id"), p.id));
            }
            let base = p.base_url.as_str();
            if !(base.starts_with("https://") || base.starts_with("http://"))
                || base.contains(['?', '#'])
                || base.split("://").nth(1).is_none_or(|rest| rest.is_empty() || rest.starts_with('/'))
            {
                return Err(format!("{}: {base:?} must be an http(s) URL without query or fragment", at("base_url")));
            }
            if !(Duration::from_secs(1)..=Duration::from_secs(7 * 86_400)).contains(&p.lifetime) {
                return Err(format!("{}: must be 1s to 7d", at("lifetime")));
            }
            let placement_ok = match p.token_in {
                TokenPlacement::Query => true,
                TokenPlacement::Cookie => matches!(p.kind, CdnKind::Cloudfront | CdnKind::CloudCdn | CdnKind::Akamai),
                TokenPlacement::Header => p.kind == CdnKind::Akamai,
            };
            if !placement_ok {
                return Err(format!(
                    "{}: {} tokens cannot travel in a {:?}",
                    at("token_in"),
                    p.kind.as_str(),
                    p.token_in
                ));
            }
            let hash_ok = match (p.kind, p.hash) {
                (_, None) => true,
                (CdnKind::Cloudfront, Some(h)) => h != CdnHash::Md5,
                (CdnKind::Akamai, Some(_)) => true,
                (CdnKind::Fastly, Some(h)) => h != CdnHash::Md5,
                _ => false,
            };
            if !hash_ok {
                return Err(format!("{}: not a digest {} signs with", at("hash"), p.kind.as_str()));
            }
            let only = |set: bool, field: &str, kind: CdnKind| -> Result<(), String> {
                if set && p.kind != kind {
                    return Err(format!("{}: only for kind = \"{}\"", at(field), kind.as_str()));
                }
                Ok(())
            };
            only(p.policy != CloudfrontPolicy::Canned, "policy", CdnKind::Cloudfront)?;
            only(p.token_name.is_some(), "token_name", CdnKind::Akamai)?;
            only(p.salt.is_some() || p.salt_file.is_some(), "salt", CdnKind::Akamai)?;
            only(p.url_safe, "url_safe", CdnKind::Cloudflare)?;
            if p.bind_client && !matches!(p.kind, CdnKind::Cloudfront | CdnKind::Akamai) {
                return Err(format!("{}: {} tokens cannot name a client address", at("bind_client"), p.kind.as_str()));
            }
            if p.token_name.as_deref().is_some_and(|n| {
                n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            }) {
                return Err(format!("{}: letters, digits, _ and - only", at("token_name")));
            }
            if p.keys.is_empty() {
                return Err(format!("{}: at least one key", at("keys")));
            }
            for (j, k) in p.keys.iter().enumerate() {
                let key_at = format!("cdn.profiles[{i}].keys[{j}]");
                if k.id.is_empty() || k.id.len() > 128 || !k.id.bytes().all(|b| b.is_ascii_graphic() && b != b'&') {
                    return Err(format!("{key_at}.id: 1-128 visible characters, no '&'"));
                }
                if p.keys[..j].iter().any(|o| o.id == k.id) {
                    return Err(format!("{key_at}.id: duplicate key id"));
                }
                if k.key.is_some() == k.key_file.is_some() {
                    return Err(format!("{key_at}.key: give exactly one of key or key_file"));
                }
            }
            if p.active_key().is_none() {
                return Err(format!(
                    "{}: must name a key of this profile that is not verify_only (required when several could sign)",
                    at("active_key")
                ));
            }
            if let Some(o) = &p.origin {
                if http::HeaderName::from_bytes(o.header.as_bytes()).is_err() {
                    return Err(format!("{}: {:?} is not a header name", at("origin.header"), o.header));
                }
                if o.secret.is_some() && o.secret_file.is_some() {
                    return Err(format!("{}: give secret or secret_file, not both", at("origin.secret")));
                }
                if o.secret.is_none() && o.secret_file.is_none() && !o.client_certificate {
                    return Err(format!(
                        "{}: give a secret (secret or secret_file), client_certificate = true, or both",
                        at("origin")
                    ));
                }
                if !o.client_certificate_sha256.is_empty() && !o.client_certificate {
                    return Err(format!("{}: needs client_certificate = true", at("origin.client_certificate_sha256")));
                }
                if o.client_certificate_sha256.iter().any(|h| h.len() != 64 || hex::decode(h).is_err()) {
                    return Err(format!("{}: 64 hex digits each", at("origin.client_certificate_sha256")));
                }
            }
        }
        Ok(())
    }

    pub fn profile(&self, id: &str) -> Option<&CdnProfileConfig> {
        self.profiles.iter().find(|p| p.id == id)
    }
}

impl CdnProfileConfig {
    /// The id of the signing key.
    pub fn active_key(&self) -> Option<&str> {
        let signing = |id: &str| self.keys.iter().any(|k| k.id == id && !k.verify_only);
        match &self.active_key {
            Some(id) => signing(id).then_some(id.as_str()),
            None => {
                let mut candidates = self.keys.iter().filter(|k| !k.verify_only);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(only.id.as_str()),
                    _ => None,
                }
            }
        }
    }
}
