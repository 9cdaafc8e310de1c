//! The catalog's resources, as DESIGN.md names them: products, releases,
//! artifacts, customers and entitlements. Plain data; the rules that relate
//! them live in [`crate::entitlement`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use ipnet::IpNet;
use semver::{Version, VersionReq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::quota_limits::Quota;
use utoipa::openapi::{KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type};

/// An instant, in whole seconds since the Unix epoch; RFC 3339 text in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(self.0)))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339, UTC, whole seconds"))
            .examples([serde_json::json!("2026-01-31T00:00:00Z")])
            .into()
    }
}

impl ToSchema for Timestamp {}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map(|t| Timestamp(crate::clock::unix_seconds(t))).map_err(|_| {
            serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time like 2026-01-31T00:00:00Z"))
        })
    }
}

/// How a product's downloads are delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// The gateway streams the bytes.
    #[default]
    Proxy,
    /// The gateway redirects to a short-lived presigned storage URL.
    Redirect,
    /// A CDN serves the bytes and validates a CDN-native token: the
    /// product's `cdn_profile` names the configured CDN.
    Edge,
}

impl Delivery {
    /// The name in records, events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Proxy => "proxy",
            Delivery::Redirect => "redirect",
            Delivery::Edge => "edge",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub delivery: Delivery,
    /// The `[[cdn.profiles]]` id an `edge` product's URLs are made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn_profile: Option<String>,
    /// Update feeds: the artifact platform to offer for a platform an
    /// update client names, where the vendor registers files under names of
    /// its own (`darwin-aarch64` → `macos-universal`). Keys: Tauri's
    /// `{target}-{arch}[-{bundle_type}]`, the appcast's `platform`,
    /// `electron-windows`, `electron-mac`, `electron-linux`,
    /// `electron-linux-arm64`, `electron-linux-armv7l`; see docs/updates.md.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub update_platforms: BTreeMap<String, String>,
}

impl Product {
    /// The artifact platform files for the client platform `asked` are
    /// registered under.
    pub fn update_platform<'a>(&'a self, asked: &'a str) -> &'a str {
        self.update_platforms.get(asked).map_or(asked, String::as_str)
    }
}

/// Release channels. `stable ⊂ rc ⊂ beta ⊂ alpha`: an entitlement to `beta`
/// covers stable, rc and beta releases. `dev` stands apart and covers only
/// itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Stable,
    Rc,
    Beta,
    Alpha,
    Dev,
}

impl Channel {
    /// Does an entitlement to `self` cover a release on `release`?
    pub fn covers(self, release: Channel) -> bool {
        match (self.rank(), release.rank()) {
            (Some(mine), Some(theirs)) => theirs <= mine,
            _ => self == release,
        }
    }

    /// Position in the inclusion chain; `dev` has none.
    fn rank(self) -> Option<u8> {
        match self {
            Channel::Stable => Some(0),
            Channel::Rc => Some(1),
            Channel::Beta => Some(2),
            Channel::Alpha => Some(3),
            Channel::Dev => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    Draft,
    Published,
    Yanked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub product: String,
    #[schema(value_type = String, example = "1.4.2")]
    pub version: Version,
    pub channel: Channel,
    pub status: ReleaseStatus,
    /// Stamped at publication; compared with an entitlement's `maintenance_until`.
    pub published_at: Option<Timestamp>,
    #[serde(default)]
    pub critical: bool,
    #[serde(default)]
    pub notes: Option<String>,
    /// A staged rollout: the percentage of customers (1-100, bucketed by
    /// customer and release) that update offers reach; `None`: all. Critical
    /// releases are never staged. Explicit downloads are not staged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<u8>,
    /// The oldest OS version the release runs on (Sparkle's
    /// `minimumSystemVersion`), as the platform writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_system_version: Option<String>,
}

/// The platform an artifact runs on, e.g. `linux-x86_64`; `any` runs everywhere.
pub const PLATFORM_ANY: &str = "any";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Artifact {
    pub product: String,
    #[schema(value_type = String, example = "1.4.2")]
    pub version: Version,
    pub filename: String,
    pub platform: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Lower-case hex SHA-512 of the content, measured on upload (what
    /// electron-updater verifies); absent on files registered before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    pub content_type: Option<String>,
    pub storage_key: String,
    /// The object's ETag when it was measured: a download finding another one
    /// refuses to serve bytes the digest above no longer describes.
    #[serde(default)]
    pub etag: Option<String>,
    /// Stored artifacts are always `ready`. `pending` is how the admin API
    /// shows a direct upload that has not been completed yet; those live
    /// apart (see [`PendingUpload`]) so no download path can find them.
    #[serde(default)]
    pub status: ArtifactStatus,
    /// The update signature published with the file: the contents of its
    /// `.sig` (Tauri's minisign signature, Sparkle's EdDSA signature).
    /// Replacing the file drops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactStatus {
    /// Verified and downloadable.
    #[default]
    Ready,
    /// A direct upload: planned, not yet completed and verified.
    Pending,
}

/// A direct (presigned) upload between its plan and its `complete`: what the
/// vendor declared, to be verified against what storage then holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpload {
    pub product: String,
    pub version: Version,
    pub filename: String,
    pub platform: String,
    pub content_type: String,
    /// Declared size and SHA-256 (lower-case hex).
    pub size: u64,
    pub sha256: String,
    pub storage_key: String,
    /// The multipart upload's id; `None` for a single presigned `PUT`.
    pub upload_id: Option<String>,
    pub created_at: Timestamp,
    /// When the presigned requests stop working; after it the upload can only
    /// be abandoned.
    pub expires_at: Timestamp,
    /// Set when a `complete` starts verifying: the sweep leaves the upload
    /// alone meanwhile.
    #[serde(default)]
    pub completing_since: Option<Timestamp>,
}

impl PendingUpload {
    /// The admin API's view: an artifact with status `pending` and the
    /// declared size and digest.
    pub fn as_artifact(&self) -> Artifact {
        Artifact {
            product: self.product.clone(),
            version: self.version.clone(),
            filename: self.filename.clone(),
            platform: self.platform.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            sha512: None,
            content_type: Some(self.content_type.clone()),
            storage_key: self.storage_key.clone(),
            etag: None,
            status: ArtifactStatus::Pending,
            signature: None,
        }
    }
}

impl Artifact {
    /// `product/version/filename`: its key in the store, and how quotas and
    /// reports name it.
    pub fn key(&self) -> String {
        super::artifacts::artifact_key(&self.product, &self.version, &self.filename)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CustomerStatus {
    Active,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub status: CustomerStatus,
    /// When set, downloads are allowed only from these networks.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["203.0.113.0/24"]))]
    pub allowed_cidrs: Vec<IpNet>,
    /// Download quotas; absent fields use `[downloads.quota]` from the configuration.
    #[serde(default, skip_serializing_if = "Quota::is_empty")]
    pub quota: Quota,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum License {
    Perpetual,
    Term,
    Subscription,
    Trial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntitlementStatus {
    Active,
    Suspended,
    Revoked,
}

fn default_versions() -> VersionReq {
    VersionReq::STAR
}

fn default_channels() -> Vec<Channel> {
    vec![Channel::Stable]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Entitlement {
    pub id: String,
    pub customer: String,
    pub product: String,
    pub license: License,
    pub starts_at: Timestamp,
    /// Exclusive: the entitlement ends at this instant.
    pub expires_at: Option<Timestamp>,
    /// Releases published up to and including this instant are covered.
    pub maintenance_until: Option<Timestamp>,
    /// A semver requirement: `*`, `^2`, `>=2.1, <3`.
    #[serde(default = "default_versions")]
    #[schema(value_type = String, example = "^2")]
    pub versions: VersionReq,
    #[serde(default = "default_channels")]
    pub channels: Vec<Channel>,
    /// `None`: every platform.
    #[serde(default)]
    pub platforms: Option<Vec<String>>,
    pub status: EntitlementStatus,
    /// Quotas for downloads under this entitlement; absent fields use the customer's.
    #[serde(default, skip_serializing_if = "Quota::is_empty")]
    pub quota: Quota,
}

/// One download authorisation, created when a customer asks for a URL and
/// looked up by the data plane on every request that presents it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    /// `<24 hex>.<entitlement id>`; see [`crate::catalog::grants`].
    pub id: String,
    pub customer: String,
    pub entitlement: String,
    pub product: String,
    #[schema(value_type = String)]
    pub version: Version,
    pub filename: String,
    pub issued_at: Timestamp,
    /// The URL must be used before this instant.
    pub expires_at: Timestamp,
    /// The first `GET`, the initiation; from then the grant may be resumed for
    /// `downloads.resume_window`, even past `expires_at`.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// The address the URL was asked for from.
    #[schema(value_type = Option<String>)]
    pub requested_from: Option<std::net::IpAddr>,
    /// With `downloads.bind_started_grants`: the network of the client that
    /// started the grant; other networks are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub started_from: Option<IpNet>,
    /// The door that issued it: `customer_api`, or the update feed
    /// (`tauri`, `sparkle`, `electron`); recorded with its initiation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The portal user who asked for it (`via: portal`); recorded with its
    /// initiation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}
