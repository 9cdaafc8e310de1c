//! The entitlement decision: a pure function of (customer, entitlements,
//! release, artifact, now) to "allowed by this entitlement" or the rule that
//! failed. No I/O here; [`access`] gathers the inputs from the catalog and
//! applies the decision to the customer API and the data plane.

pub mod access;

use semver::{Version, VersionReq};

use crate::catalog::{
    Artifact, Customer, CustomerStatus, Entitlement, EntitlementStatus, PLATFORM_ANY, Release, ReleaseStatus, Timestamp,
};

/// Why a download is refused. `code()` is the stable code of the problem body.
///
/// Variants after `ReleaseYanked` are per-entitlement rules, declared in the
/// order they are checked: when several entitlements fail, the refusal names the
/// rule of the one that got furthest (the most specific reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum Denial {
    #[error("the customer account is suspended")]
    CustomerSuspended,
    #[error("no entitlement for this product")]
    NotEntitled,
    #[error("the release is not published")]
    ReleaseNotPublished,
    #[error("the release was withdrawn")]
    ReleaseYanked,
    #[error("the entitlement is suspended or revoked")]
    EntitlementInactive,
    #[error("the entitlement has not started yet")]
    EntitlementNotStarted,
    #[error("the entitlement has expired")]
    EntitlementExpired,
    #[error("the entitlement does not cover this version")]
    VersionNotCovered,
    #[error("the entitlement does not cover this release channel")]
    ChannelNotCovered,
    #[error("the entitlement does not cover this platform")]
    PlatformNotCovered,
    #[error("the release was published after the entitlement's maintenance period")]
    OutsideMaintenance,
}

impl Denial {
    pub fn code(self) -> &'static str {
        match self {
            Denial::CustomerSuspended => "customer_suspended",
            Denial::NotEntitled => "not_entitled",
            Denial::ReleaseNotPublished => "release_not_published",
            Denial::ReleaseYanked => "release_yanked",
            Denial::EntitlementInactive => "entitlement_inactive",
            Denial::EntitlementNotStarted => "entitlement_not_started",
            Denial::EntitlementExpired => "entitlement_expired",
            Denial::VersionNotCovered => "version_not_covered",
            Denial::ChannelNotCovered => "channel_not_covered",
            Denial::PlatformNotCovered => "platform_not_covered",
            Denial::OutsideMaintenance => "outside_maintenance",
        }
    }
}

/// May `customer` download `artifact` of `release` at `now`? Returns the first
/// entitlement (in the order given) that allows it, or the refusal.
///
/// Order: the customer's status; whether any entitlement is for this product
/// (before anything about the release is revealed); the release's status; then
/// each entitlement's own rules in [`Denial`] order.
pub fn decide<'e>(
    customer: &Customer,
    entitlements: &'e [Entitlement],
    release: &Release,
    artifact: &Artifact,
    now: Timestamp,
) -> Result<&'e Entitlement, Denial> {
    if customer.status == CustomerStatus::Suspended {
        return Err(Denial::CustomerSuspended);
    }
    let mut candidates =
        entitlements.iter().filter(|e| e.customer == customer.id && e.product == release.product).peekable();
    if candidates.peek().is_none() {
        return Err(Denial::NotEntitled);
    }
    match release.status {
        ReleaseStatus::Draft => return Err(Denial::ReleaseNotPublished),
        ReleaseStatus::Yanked => return Err(Denial::ReleaseYanked),
        ReleaseStatus::Published => {}
    }
    let mut best = Denial::EntitlementInactive;
    for e in candidates {
        match check(e, release, artifact, now) {
            Ok(()) => return Ok(e),
            Err(d) => best = best.max(d),
        }
    }
    Err(best)
}

/// One entitlement's rules, in order.
pub fn check(e: &Entitlement, release: &Release, artifact: &Artifact, now: Timestamp) -> Result<(), Denial> {
    if e.status != EntitlementStatus::Active {
        return Err(Denial::EntitlementInactive);
    }
    if now < e.starts_at {
        return Err(Denial::EntitlementNotStarted);
    }
    if e.expires_at.is_some_and(|end| now >= end) {
        return Err(Denial::EntitlementExpired);
    }
    if !version_covered(&e.versions, &release.version) {
        return Err(Denial::VersionNotCovered);
    }
    if !e.channels.iter().any(|c| c.covers(release.channel)) {
        return Err(Denial::ChannelNotCovered);
    }
    if !platform_covered(e.platforms.as_deref(), &artifact.platform) {
        return Err(Denial::PlatformNotCovered);
    }
    if let Some(until) = e.maintenance_until {
        // A release without a publication time cannot be shown to fall inside.
        if release.published_at.is_none_or(|p| p > until) {
            return Err(Denial::OutsideMaintenance);
        }
    }
    Ok(())
}

/// Semver matching, with one exception: the default requirement `*` covers
/// pre-releases too (semver's `*` does not), since "any version" is what it
/// means here and the channel rule already decides about pre-release channels.
/// Any other requirement follows semver: `^2` does not match `2.1.0-beta.1`,
/// `>=2.1.0-beta.1` does.
pub fn version_covered(req: &VersionReq, version: &Version) -> bool {
    *req == VersionReq::STAR || req.matches(version)
}

/// `None` covers all platforms; an artifact for `any` platform is covered by
/// every list; otherwise the list must name the platform.
pub fn platform_covered(platforms: Option<&[String]>, platform: &str) -> bool {
    match platforms {
        None => true,
        Some(list) => platform == PLATFORM_ANY || list.iter().any(|p| p == platform || p == PLATFORM_ANY),
    }
}

#[cfg(test)]
mod tests;
