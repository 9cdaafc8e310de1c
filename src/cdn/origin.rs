//! The origin's check that a request comes from the CDN: a shared secret
//! the CDN adds as a header to every origin request (CloudFront "custom
//! origin headers", Cloud CDN custom request headers, Akamai and Fastly
//! origin header rules, a Cloudflare Transform Rule).

use http::{HeaderMap, HeaderName};
use subtle::ConstantTimeEq as _;

use crate::config::Secret;
use crate::config::cdn::OriginAuthConfig;

/// A profile's origin secret.
#[derive(Debug)]
pub struct OriginAuth {
    pub header: HeaderName,
    secret: Secret,
}

impl OriginAuth {
    pub fn load(profile: &str, c: &OriginAuthConfig, allow_world_readable: bool) -> Result<OriginAuth, String> {
        let key = format!("cdn.profiles.{profile}.origin.secret");
        let secret =
            crate::config::secret::resolve(&key, c.secret.as_ref(), c.secret_file.as_deref(), allow_world_readable)
                .map_err(|e| e.to_string())?;
        if secret.expose().len() < 16 {
            return Err(format!("{key}: at least 16 characters"));
        }
        let header = HeaderName::from_bytes(c.header.as_bytes()).map_err(|_| format!("{key}: a bad header name"))?;
        Ok(OriginAuth { header, secret })
    }

    /// Whether `headers` carry the secret (exactly once).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.header).iter();
        match (values.next(), values.next()) {
            // SECURITY: constant-time, so timing does not reveal how much of
            // a guessed secret is right.
            (Some(v), None) => bool::from(v.as_bytes().ct_eq(self.secret.expose().as_bytes())),
            _ => false,
        }
    }

    /// The header and secret, for a test's stand-in edge or `tollgate
    /// verify --explain`.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}
