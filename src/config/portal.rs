//! `[portal]`: the customer portal on the public listener (`/portal`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

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
}

impl PortalConfig {
    /// The rules a portal configuration keeps; the error starts with the key.
    pub fn validate(&self) -> Result<(), String> {
        let accent = &self.accent_color;
        if !(accent.len() == 7 && accent.starts_with('#') && accent[1..].bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(format!("portal.accent_color: {accent:?} is not a #rrggbb colour"));
        }
        if self.vendor_name.trim().is_empty() || self.vendor_name.chars().any(char::is_control) {
            return Err("portal.vendor_name: must be a name, without control characters".into());
        }
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
        if let Some(logo) = &self.logo_url
            && !(logo.starts_with("https://") || logo.starts_with('/'))
        {
            return Err(format!("portal.logo_url: {logo:?} must be an https: URL or a path on this origin"));
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
}
