//! The origin's check that a request comes from the CDN: a shared secret
//! the CDN adds as a header to every origin request (CloudFront "custom
//! origin headers", Cloud CDN custom request headers, Akamai and Fastly
//! origin header rules, a Cloudflare Transform Rule), a TLS client
//! certificate the CDN presents to the origin (verified by the listener
//! against `server.tls.client_ca_file`), or both.

use http::{HeaderMap, HeaderName};
use subtle::ConstantTimeEq as _;

use crate::config::Secret;
use crate::config::cdn::OriginAuthConfig;

/// What a request shows of where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct OriginProof<'a> {
    pub headers: &'a HeaderMap,
    /// The SHA-256 (hex) of the client certificate the connection presented,
    /// when the listener verified one.
    pub client_certificate: Option<&'a str>,
}

/// A profile's origin check.
#[derive(Debug)]
pub struct OriginAuth {
    secret: Option<(HeaderName, Secret)>,
    client_certificate: bool,
    pinned: Vec<String>,
}

impl OriginAuth {
    pub fn load(profile: &str, c: &OriginAuthConfig, allow_world_readable: bool) -> Result<OriginAuth, String> {
        let key = format!("cdn.profiles.{profile}.origin.secret");
        let secret = match (&c.secret, &c.secret_file) {
            (None, None) => None,
            (inline, file) => {
                let secret =
                    crate::config::secret::resolve(&key, inline.as_ref(), file.as_deref(), allow_world_readable)
                        .map_err(|e| e.to_string())?;
                if secret.expose().len() < 16 {
                    return Err(format!("{key}: at least 16 characters"));
                }
                let header =
                    HeaderName::from_bytes(c.header.as_bytes()).map_err(|_| format!("{key}: a bad header name"))?;
                Some((header, secret))
            }
        };
        let pinned = c.client_certificate_sha256.iter().map(|h| h.to_ascii_lowercase()).collect();
        Ok(OriginAuth { secret, client_certificate: c.client_certificate, pinned })
    }

    /// Whether the request proves it comes from the CDN: every configured
    /// proof holds.
    pub fn admits(&self, proof: &OriginProof<'_>) -> bool {
        let secret_ok = self.secret.as_ref().is_none_or(|(header, secret)| {
            let mut values = proof.headers.get_all(header).iter();
            match (values.next(), values.next()) {
                // SECURITY: constant-time, so timing does not reveal how much
                // of a guessed secret is right; exactly one copy, so a client
                // cannot add its own next to the CDN's.
                (Some(v), None) => bool::from(v.as_bytes().ct_eq(secret.expose().as_bytes())),
                _ => false,
            }
        });
        let certificate_ok = !self.client_certificate
            || proof.client_certificate.is_some_and(|fp| self.pinned.is_empty() || self.pinned.iter().any(|p| p == fp));
        secret_ok && certificate_ok
    }

    /// The header the secret travels in, if there is one.
    pub fn header(&self) -> Option<&HeaderName> {
        self.secret.as_ref().map(|(h, _)| h)
    }
}
