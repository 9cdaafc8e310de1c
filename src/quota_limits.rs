//! Quota limits as plain data: what a customer, an entitlement or the
//! configuration sets (`downloads_per_day = 100`, `"unlimited"`). They sit at
//! the bottom of the module graph, so configuration and catalog records can
//! hold them; what they mean for a download is [`crate::quota`]'s.

#![allow(
    unused_qualifications,
    reason = "utoipa's generated schema code names types defined in this module by a qualified path"
)]

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use utoipa::openapi::{ObjectBuilder, OneOfBuilder, RefOr, Schema, Type};

/// A quota limit: a number, or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    At(u64),
}

impl Limit {
    pub fn value(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::At(n) => Some(n),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Unlimited => s.serialize_str("unlimited"),
            Limit::At(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Number(n)) => Ok(Limit::At(n)),
            Ok(Raw::Text(t)) if t == "unlimited" => Ok(Limit::Unlimited),
            _ => Err(serde::de::Error::custom("a limit is a whole number of at least 0, or \"unlimited\"")),
        }
    }
}

impl utoipa::PartialSchema for Limit {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["unlimited"])))
            .description(Some("a whole number, or \"unlimited\""))
            .into()
    }
}

impl ToSchema for Limit {}

/// Quota settings. On a customer or an entitlement an absent field inherits
/// (entitlement → customer → configured default); `"unlimited"` lifts a limit
/// that would otherwise be inherited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloads_per_day: Option<Limit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloads_per_month: Option<Limit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_day: Option<Limit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_month: Option<Limit>,
    /// Initiations of any one artifact, ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloads_per_artifact: Option<Limit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_downloads: Option<Limit>,
}

impl Quota {
    pub fn is_empty(&self) -> bool {
        *self == Quota::default()
    }

    pub fn get(&self, kind: LimitKind) -> Option<Limit> {
        match kind {
            LimitKind::DownloadsPerDay => self.downloads_per_day,
            LimitKind::DownloadsPerMonth => self.downloads_per_month,
            LimitKind::BytesPerDay => self.bytes_per_day,
            LimitKind::BytesPerMonth => self.bytes_per_month,
            LimitKind::DownloadsPerArtifact => self.downloads_per_artifact,
            LimitKind::ConcurrentDownloads => self.concurrent_downloads,
        }
    }
}

/// The kinds of limit; the names are those of the [`Quota`] fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    DownloadsPerDay,
    DownloadsPerMonth,
    BytesPerDay,
    BytesPerMonth,
    DownloadsPerArtifact,
    ConcurrentDownloads,
}

impl LimitKind {
    pub const ALL: [LimitKind; 6] = [
        LimitKind::DownloadsPerDay,
        LimitKind::DownloadsPerMonth,
        LimitKind::BytesPerDay,
        LimitKind::BytesPerMonth,
        LimitKind::DownloadsPerArtifact,
        LimitKind::ConcurrentDownloads,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::DownloadsPerDay => "downloads_per_day",
            LimitKind::DownloadsPerMonth => "downloads_per_month",
            LimitKind::BytesPerDay => "bytes_per_day",
            LimitKind::BytesPerMonth => "bytes_per_month",
            LimitKind::DownloadsPerArtifact => "downloads_per_artifact",
            LimitKind::ConcurrentDownloads => "concurrent_downloads",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
