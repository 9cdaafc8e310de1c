//! Admin bearer tokens: kept only as SHA-256 digests in memory, compared in
//! constant time. The admin listener's middleware (`http::admin_auth`)
//! requires one on every `/admin/v1` route.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Prefix of generated admin tokens, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "tga_";

pub use crate::config::AdminRole;

#[derive(Clone)]
pub struct AdminTokens {
    entries: Vec<(String, AdminRole, [u8; 32])>,
}

impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|(id, ..)| id)).finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl AdminTokens {
    /// From (id, token) pairs, each with every right; only digests are kept.
    pub fn new(tokens: Vec<(String, Secret)>) -> Self {
        Self::with_roles(tokens.into_iter().map(|(id, t)| (id, AdminRole::Owner, t)).collect())
    }

    /// From (id, role, token); only digests are kept.
    pub fn with_roles(tokens: Vec<(String, AdminRole, Secret)>) -> Self {
        Self { entries: tokens.into_iter().map(|(id, role, t)| (id, role, digest(t.expose()))).collect() }
    }

    /// A new random token: `tga_` and 32 random bytes in base64url.
    pub fn generate() -> Result<String, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
        Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The role of the token with id `id`, and a fingerprint of its secret
    /// (a digest of its digest), if it is configured: a console session
    /// keeps both, and ends when either changes (a rotated secret).
    pub fn role_of(&self, id: &str) -> Option<(AdminRole, String)> {
        self.entries.iter().find(|(i, ..)| i == id).map(|(_, role, d)| (*role, hex::encode(&Sha256::digest(d)[..16])))
    }

    /// The id of the token `presented` is, if any. Every entry is compared, in
    /// constant time, so timing reveals neither which token nor how much of it
    /// matched.
    pub fn check(&self, presented: &str) -> Option<(&str, AdminRole)> {
        let d = digest(presented);
        let mut found = None;
        for (id, role, expected) in &self.entries {
            if bool::from(expected.ct_eq(&d)) {
                found = Some((id.as_str(), *role));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_tokens_pass() {
        let a = AdminTokens::generate().unwrap();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40);
        let tokens =
            AdminTokens::new(vec![("ci".into(), Secret::new(a.clone())), ("ems".into(), Secret::new("other"))]);
        assert_eq!(tokens.check(&a), Some(("ci", AdminRole::Owner)));
        assert_eq!(tokens.check("other"), Some(("ems", AdminRole::Owner)));
        assert_eq!(tokens.check(""), None);
        assert_eq!(tokens.check(&format!("{a}x")), None);
        assert_eq!(format!("{tokens:?}"), "[\"ci\", \"ems\"]");
        // A rotated secret under the same id and role: another fingerprint.
        let rotated = AdminTokens::new(vec![("ci".into(), Secret::new("new secret"))]);
        let (role, before) = tokens.role_of("ci").unwrap();
        assert_eq!(role, AdminRole::Owner);
        assert_ne!(rotated.role_of("ci").unwrap().1, before);
        assert_eq!(tokens.role_of("nobody"), None);
    }

    #[test]
    fn roles_change_only_their_areas() {
        use http::Method;
        let (get, put, post, delete) = (Method::GET, Method::PUT, Method::POST, Method::DELETE);
        let cases = [
            (AdminRole::ReadOnly, &get, "/admin/v1/webhooks", true),
            (AdminRole::ReadOnly, &put, "/admin/v1/customers/a", false),
            (AdminRole::ReadOnly, &post, "/admin/v1/products/a/releases/1.0.0/publish", false),
            (AdminRole::ReleaseManager, &post, "/admin/v1/products/a/releases/1.0.0/publish", true),
            (AdminRole::ReleaseManager, &put, "/admin/v1/customers/a", false),
            (AdminRole::ReleaseManager, &delete, "/admin/v1/webhooks/w", false),
            (AdminRole::Support, &put, "/admin/v1/customers/a/entitlements/e", true),
            (AdminRole::Support, &delete, "/admin/v1/products/a", false),
            (AdminRole::Owner, &delete, "/admin/v1/webhooks/w", true),
        ];
        for (role, method, path, allowed) in cases {
            assert_eq!(role.may(method, path), allowed, "{role:?} {method} {path}");
        }
    }
}
