//! `[portal]`: the customer portal on the public listener (`/portal`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::secret::Secret;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// Serve the portal. Off: `/portal` answers `404`.
    pub enabled: bool,
    /// The vendor's name, in page titles, the header and the e-mails.
    pub vendor_name: String,
    /// The header's and buttons' colour (CSS hex, `#rrggbb`); text on it is
    /// white, so it must be dark enough for 4.5:1 contrast.
    pub accent_color: String,
    /// A logo's URL (an `https:` address or a path on this origin); none:
    /// the name alone.
    pub logo_url: Option<String>,
    /// How long a sign-in link works (single use).
    #[serde(with = "duration")]
    pub link_ttl: Duration,
    /// A session ends after this long without a request…
    #[serde(with = "duration")]
    pub session_idle: Duration,
    /// …and this long after sign-in, whatever happens.
    #[serde(with = "duration")]
    pub session_absolute: Duration,
    /// Sign-in e-mails one address may be sent per hour.
    pub links_per_email_per_hour: u32,
    /// Sign-in requests one client address may make per hour.
    pub links_per_address_per_hour: u32,
    pub smtp: SmtpConfig,
    /// Mail every portal user a notice of each critical release their
    /// company may download, whether or not they asked for notices.
    pub notify_critical_to_all: bool,
    /// OpenID Connect providers users may sign in with, besides e-mail
    /// links (`[[portal.sso]]`); a button each on the sign-in page.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sso: Vec<SsoProviderConfig>,
}

/// One OpenID Connect provider (authorization code flow with PKCE). It
/// proves an e-mail address; that address must be a portal user's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoProviderConfig {
    /// In URLs and events: `[a-z0-9-]`, 1-32.
    pub id: String,
    /// On the button: "Sign in with {name}".
    pub name: String,
    /// The issuer; its `/.well-known/openid-configuration` is read. `https:`,
    /// or `http:` on a loopback address (tests).
    pub issuer: String,
    pub client_id: String,
    /// `client_secret` inline or `client_secret_file`.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Only users of these customers may sign in with it: a customer's own
    /// identity provider must list that customer alone, or it could assert
    /// another customer's addresses. Empty: any customer's users (the
    /// vendor's own provider).
    #[serde(default)]
    pub customers: Vec<String>,
    /// Refuse an address the provider does not say is verified
    /// (`email_verified`). Default on.
    #[serde(default = "yes")]
    pub require_verified_email: bool,
}

fn yes() -> bool {
    true
}

impl SsoProviderConfig {
    fn validate(&self, at: &str) -> Result<(), String> {
        let id_ok = (1..=32).contains(&self.id.len())
            && self.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(format!("{at}.id: {:?} must be 1-32 of a-z, 0-9 and -", self.id));
        }
        if self.name.trim().is_empty() || self.name.chars().any(char::is_control) || self.name.len() > 64 {
            return Err(format!("{at}.name: must be a name of at most 64 bytes, without control characters"));
        }
        if !issuer_allowed(&self.issuer) {
            return Err(format!(
                "{at}.issuer: {:?} must be an https: URL (http: only on a loopback address)",
                self.issuer
            ));
        }
        if self.client_id.is_empty() || self.client_id.chars().any(char::is_control) {
            return Err(format!("{at}.client_id: must be given"));
        }
        if self.client_secret.is_some() == self.client_secret_file.is_some() {
            return Err(format!("{at}.client_secret: give exactly one of client_secret or client_secret_file"));
        }
        Ok(())
    }
}

/// An issuer's URL: `https:`, or `http:` to a loopback host.
pub fn issuer_allowed(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("https://") {
        return !rest.is_empty() && !rest.starts_with('/');
    }
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host = rest.split('/').next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// What the portal shows of the vendor: from configuration, or set through
/// the admin API (which then wins, on every replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// In page titles, the header and the e-mails.
    #[schema(max_length = 100)]
    pub vendor_name: String,
    /// `#rrggbb`, dark enough for white text (4.5:1).
    #[schema(pattern = r"^#[0-9A-Fa-f]{6}$")]
    pub accent_color: String,
    /// An `https:` URL or a path on this origin.
    #[serde(default)]
    pub logo_url: Option<String>,
}

impl Branding {
    /// The rules branding keeps; the error starts with the key's name
    /// (after `prefix`).
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let accent = &self.accent_color;
        if !(accent.len() == 7 && accent.starts_with('#') && accent[1..].bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(format!("{prefix}accent_color: {accent:?} is not a #rrggbb colour"));
        }
        let name = &self.vendor_name;
        if name.trim().is_empty() || name.chars().any(char::is_control) || name.chars().count() > 100 {
            return Err(format!(
                "{prefix}vendor_name: must be a name of at most 100 characters, without control characters"
            ));
        }
        if let Some(logo) = &self.logo_url {
            let path_ok = logo.starts_with('/') && !logo.starts_with("//");
            let url_ok = logo.starts_with("https://") && logo.len() > 8;
            if !(path_ok || url_ok)
                || logo.len() > 2048
                || logo.chars().any(|c| c.is_control() || c.is_whitespace() || c == '"')
            {
                return Err(format!("{prefix}logo_url: {logo:?} must be an https: URL or a path on this origin"));
            }
        }
        Ok(())
    }
}

impl PortalConfig {
    /// The branding configured.
    pub fn branding(&self) -> Branding {
        Branding {
            vendor_name: self.vendor_name.clone(),
            accent_color: self.accent_color.clone(),
            logo_url: self.logo_url.clone(),
        }
    }

    /// The rules a portal configuration keeps; the error starts with the key.
    pub fn validate(&self) -> Result<(), String> {
        self.branding().validate("portal.")?;
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.link_ttl) {
            return Err("portal.link_ttl: must be 1m to 1d".into());
        }
        // A session's last request is written once a minute at most.
        if self.session_idle < Duration::from_secs(60) {
            return Err("portal.session_idle: must be at least 1m".into());
        }
        if self.session_absolute < self.session_idle {
            return Err("portal.session_absolute: must be at least portal.session_idle".into());
        }
        for (i, p) in self.sso.iter().enumerate() {
            p.validate(&format!("portal.sso[{i}]"))?;
            if self.sso[..i].iter().any(|q| q.id == p.id) {
                return Err(format!("portal.sso[{i}].id: {:?} is given twice", p.id));
            }
        }
        Ok(())
    }
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            vendor_name: "Tollgate".into(),
            accent_color: "#1a4f8b".into(),
            logo_url: None,
            link_ttl: Duration::from_secs(15 * 60),
            session_idle: Duration::from_secs(2 * 3600),
            session_absolute: Duration::from_secs(12 * 3600),
            links_per_email_per_hour: 5,
            links_per_address_per_hour: 30,
            smtp: SmtpConfig::default(),
            notify_critical_to_all: false,
            sso: Vec::new(),
        }
    }
}

/// Where sign-in e-mails go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain; `?tls=required` for STARTTLS),
    /// `smtps://host:port` (TLS), with `user:password@` when the relay
    /// wants it. None: no e-mail is sent (sign-in links cannot reach
    /// anyone; a warning is logged per attempt).
    pub url: Option<String>,
    /// The `From` of every e-mail, e.g. `Downloads <downloads@example.com>`.
    pub from: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self { url: None, from: "Downloads <downloads@localhost>".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change to a valid configuration, and the key its error names.
    type Breakage = (fn(&mut PortalConfig), &'static str);

    #[test]
    fn the_default_holds_and_each_rule_names_its_key() {
        assert_eq!(PortalConfig::default().validate(), Ok(()));
        let bad: [Breakage; 7] = [
            (|c| c.accent_color = "red; } body { x".into(), "portal.accent_color"),
            (|c| c.accent_color = "#12345g".into(), "portal.accent_color"),
            (|c| c.vendor_name = " ".into(), "portal.vendor_name"),
            (|c| c.link_ttl = Duration::from_secs(5), "portal.link_ttl"),
            (|c| c.session_idle = Duration::from_secs(30), "portal.session_idle"),
            (|c| c.session_absolute = Duration::from_secs(60), "portal.session_absolute"),
            (|c| c.logo_url = Some("javascript:alert(1)".into()), "portal.logo_url"),
        ];
        for (change, key) in bad {
            let mut c = PortalConfig::default();
            change(&mut c);
            assert!(c.validate().is_err_and(|e| e.starts_with(key)), "{key}");
        }
    }

    fn provider() -> SsoProviderConfig {
        SsoProviderConfig {
            id: "okta".into(),
            name: "Okta".into(),
            issuer: "https://login.example.com".into(),
            client_id: "tollgate".into(),
            client_secret: Some(Secret::new("s")),
            client_secret_file: None,
            customers: vec![],
            require_verified_email: true,
        }
    }

    #[test]
    fn sso_providers_are_checked_and_name_their_key() {
        let mut c = PortalConfig { sso: vec![provider()], ..PortalConfig::default() };
        assert_eq!(c.validate(), Ok(()));
        let bad: [fn(&mut SsoProviderConfig); 6] = [
            |p| p.id = "Okta".into(),
            |p| p.name = "a\nb".into(),
            |p| p.issuer = "http://login.example.com".into(),
            |p| p.client_id = String::new(),
            |p| p.client_secret = None,
            |p| p.client_secret_file = Some("/x".into()),
        ];
        for change in bad {
            let mut p = provider();
            change(&mut p);
            c.sso = vec![p];
            assert!(c.validate().is_err_and(|e| e.starts_with("portal.sso[0].")), "{:?}", c.sso);
        }
        c.sso = vec![provider(), provider()];
        assert!(c.validate().is_err_and(|e| e.starts_with("portal.sso[1].id")));
    }

    #[test]
    fn issuers_are_https_or_loopback_http() {
        for good in [
            "https://id.example.com",
            "https://id.example.com/tenant/1",
            "http://127.0.0.1:4000",
            "http://localhost",
            "http://[::1]:80/x",
        ] {
            assert!(issuer_allowed(good), "{good}");
        }
        for bad in [
            "http://id.example.com",
            "http://127.0.0.1.example.com",
            "ftp://x",
            "https://",
            "http://localhost.evil:80",
            "//x",
        ] {
            assert!(!issuer_allowed(bad), "{bad}");
        }
    }
}
