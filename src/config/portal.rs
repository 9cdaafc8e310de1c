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
