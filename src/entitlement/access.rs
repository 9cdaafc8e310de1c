//! The entitlement decision applied to the catalog: which releases a customer
//! may download, which artifact answers a request, minting a grant and its
//! signed URL, and re-checking a grant when its URL is used.

use std::net::IpAddr;

use ipnet::IpNet;
use semver::{Version, VersionReq};

use super::{Denial, decide, version_covered};
use crate::catalog::grants::new_grant_id;
use crate::catalog::store::StoreError;
use crate::catalog::{
    Artifact, CatalogError, CatalogRepo, Channel, Customer, Entitlement, Grant, PLATFORM_ANY, Release, ReleaseStatus,
    Timestamp,
};
use crate::errors::{Classified, ErrorKind};
use crate::signing::{Claims, KeyRing, SignError, UrlScope, canonical_ip, encode_path, signed_url};

/// Why a customer request or a grant was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Denied(#[from] Denial),
    /// The customer may only download from `allowed_cidrs`.
    #[error("downloads are not allowed from {0}")]
    AddressNotAllowed(IpAddr),
    /// The URL names a grant this gateway never issued (or one since removed).
    #[error("the grant in this URL is unknown")]
    UnknownGrant,
    #[error("no such {0}")]
    NotFound(&'static str),
    /// Several artifacts match; the request must name a file.
    #[error("{0}")]
    Ambiguous(String),
    #[error("cannot sign the URL: {0}")]
    Sign(#[from] SignError),
    /// A CDN profile could not mint a URL.
    #[error("cannot make the CDN's URL: {0}")]
    EdgeSign(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Quota(#[from] crate::quota::Exceeded),
    /// The grant has delivered its file `times` times over (whole downloads,
    /// resumes and ranges added up): its URL is spent.
    #[error("this download URL has delivered its file {times} times over; ask for a new one")]
    GrantExhausted { times: u64 },
    /// The grant was started from another network
    /// (`downloads.bind_started_grants`).
    #[error("this download URL was started from another network")]
    GrantBoundElsewhere,
}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> Self {
        AccessError::Catalog(e.into())
    }
}

impl Classified for AccessError {
    fn kind(&self) -> ErrorKind {
        match self {
            AccessError::Denied(_)
            | AccessError::AddressNotAllowed(_)
            | AccessError::UnknownGrant
            | AccessError::GrantExhausted { .. }
            | AccessError::GrantBoundElsewhere => ErrorKind::Denied,
            AccessError::Quota(_) => ErrorKind::LimitReached,
            AccessError::NotFound(_) => ErrorKind::NotFound,
            AccessError::Ambiguous(_) => ErrorKind::Conflict,
            AccessError::Sign(_) | AccessError::EdgeSign(_) => ErrorKind::Internal,
            AccessError::Catalog(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AccessError::Denied(d) => d.code(),
            AccessError::AddressNotAllowed(_) => "address_not_allowed",
            AccessError::UnknownGrant => "unknown_grant",
            AccessError::GrantExhausted { .. } => "grant_exhausted",
            AccessError::GrantBoundElsewhere => "grant_bound_elsewhere",
            AccessError::Quota(_) => "quota_exceeded",
            AccessError::NotFound(_) => "not_found",
            AccessError::Ambiguous(_) => "ambiguous_artifact",
            AccessError::Sign(_) | AccessError::EdgeSign(_) => "internal",
            AccessError::Catalog(e) => e.code(),
        }
    }
}

impl AccessError {
    /// A refusal on the entitlement's or the quota's grounds — what
    /// `download.denied` records, with its code and status — as opposed to a
    /// malformed request, an unknown name or a failure.
    pub fn denial(&self) -> Option<(&'static str, u16)> {
        let kind = self.kind();
        kind.is_refusal().then(|| (self.code(), kind.status()))
    }

    /// The state store could not be reached (as opposed to a refusal).
    pub fn store_unavailable(&self) -> bool {
        matches!(self, AccessError::Catalog(CatalogError::Store(StoreError::Unavailable(_))))
    }
}

/// A release with the artifacts of it the customer may download.
#[derive(Debug, Clone)]
pub struct Downloadable {
    pub release: Release,
    pub artifacts: Vec<(Artifact, String)>,
}

/// What to list: releases on channels `channel` covers, artifacts for
/// `platform` (or for `any`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub channel: Option<Channel>,
    pub platform: Option<&'a str>,
}

fn platform_matches(artifact: &Artifact, wanted: Option<&str>) -> bool {
    wanted.is_none_or(|p| artifact.platform == p || artifact.platform == PLATFORM_ANY)
}

/// The customer's entitlements for `product`, or `not_entitled` when there is
/// none (said before anything about the product's releases is revealed).
async fn entitlements_for(
    catalog: &CatalogRepo,
    customer: &Customer,
    product: &str,
) -> Result<Vec<Entitlement>, AccessError> {
    let all = catalog.entitlements_of(&customer.id).await?;
    let mine: Vec<Entitlement> = all.into_iter().filter(|e| e.product == product).collect();
    if mine.is_empty() {
        return Err(Denial::NotEntitled.into());
    }
    Ok(mine)
}

/// Every release of `product` with at least one artifact the customer may
/// download at `now`, newest version first. Each artifact is paired with the id
/// of the entitlement that allows it.
pub async fn downloadable_releases(
    catalog: &CatalogRepo,
    customer: &Customer,
    product: &str,
    filter: Filter<'_>,
    now: Timestamp,
) -> Result<Vec<Downloadable>, AccessError> {
    if customer.status == crate::catalog::CustomerStatus::Suspended {
        return Err(Denial::CustomerSuspended.into());
    }
    let entitlements = entitlements_for(catalog, customer, product).await?;
    let mut releases = catalog.all_releases(product).await?;
    releases.retain(|r| r.status == ReleaseStatus::Published && filter.channel.is_none_or(|c| c.covers(r.channel)));
    releases.sort_by(|a, b| b.version.cmp(&a.version));
    let artifacts = catalog.product_artifacts(product).await?;
    let mut out = Vec::new();
    for release in releases {
        let allowed: Vec<(Artifact, String)> = artifacts
            .iter()
            .filter(|a| a.version == release.version && platform_matches(a, filter.platform))
            .filter_map(|a| decide(customer, &entitlements, &release, a, now).ok().map(|e| (a.clone(), e.id.clone())))
            .collect();
        if !allowed.is_empty() {
            out.push(Downloadable { release, artifacts: allowed });
        }
    }
    Ok(out)
}

/// The artifact for `platform`: the one built for it, else the one for `any`.
/// Several of either kind is ambiguous.
pub fn pick_artifact<'a>(artifacts: &'a [Artifact], platform: &str) -> Result<&'a Artifact, AccessError> {
    for wanted in [platform, PLATFORM_ANY] {
        let matching: Vec<&Artifact> =
            artifacts.iter().filter(|a| a.platform == wanted && !is_update_metadata(&a.filename)).collect();
        match matching.as_slice() {
            [] => continue,
            [one] => return Ok(one),
            many => {
                let names: Vec<&str> = many.iter().map(|a| a.filename.as_str()).collect();
                return Err(AccessError::Ambiguous(format!(
                    "several files for platform {wanted}: {}; name one with \"filename\"",
                    names.join(", ")
                )));
            }
        }
    }
    Err(AccessError::NotFound("artifact for this platform"))
}

/// A file that describes another for update clients rather than being a
/// download of its own (electron-builder's `<file>.blockmap`): registered
/// with the platform of the file it describes, never picked for it.
pub fn is_update_metadata(filename: &str) -> bool {
    filename.ends_with(".blockmap")
}

/// What a customer asks to download.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    File(&'a str),
    Platform(&'a str),
}

/// Check the customer may download the artifact `wanted` of `product@version`
/// at `now` from `client`; returns the artifact and the entitlement allowing it.
pub async fn authorize(
    catalog: &CatalogRepo,
    customer: &Customer,
    product: &str,
    version: &Version,
    wanted: Wanted<'_>,
    client: IpAddr,
    now: Timestamp,
) -> Result<(Artifact, Entitlement), AccessError> {
    if customer.status == crate::catalog::CustomerStatus::Suspended {
        return Err(Denial::CustomerSuspended.into());
    }
    let entitlements = entitlements_for(catalog, customer, product).await?;
    let release = catalog.release(product, version).await?.ok_or(AccessError::NotFound("release"))?;
    // Nothing about an unpublished release's files (names, whether one exists)
    // is revealed: its status is refused before they are looked at.
    match release.status {
        ReleaseStatus::Draft => return Err(Denial::ReleaseNotPublished.into()),
        ReleaseStatus::Yanked => return Err(Denial::ReleaseYanked.into()),
        ReleaseStatus::Published => {}
    }
    let artifact = match wanted {
        Wanted::File(name) => {
            catalog.artifact(product, version, name).await?.ok_or(AccessError::NotFound("artifact"))?
        }
        Wanted::Platform(p) => pick_artifact(&catalog.artifacts(product, version).await?, p)?.clone(),
    };
    let entitlement = decide(customer, &entitlements, &release, &artifact, now)?.clone();
    check_address(customer, client)?;
    Ok((artifact, entitlement))
}

/// A customer with `allowed_cidrs` may only download from those networks.
pub fn check_address(customer: &Customer, client: IpAddr) -> Result<(), AccessError> {
    let client = canonical_ip(client);
    if customer.allowed_cidrs.is_empty() || customer.allowed_cidrs.iter().any(|n: &IpNet| n.contains(&client)) {
        Ok(())
    } else {
        Err(AccessError::AddressNotAllowed(client))
    }
}

/// Where signed URLs point and how long they live.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    pub public_url: String,
    pub ttl_secs: u64,
}

/// A download URL handed to a customer.
#[derive(Debug, Clone)]
pub struct Issued {
    pub url: String,
    pub grant: Grant,
    pub artifact: Artifact,
}

/// Who asked for a grant: the door (`customer_api`, `portal`, a feed) and,
/// through the portal, the person.
#[derive(Debug, Clone, Copy)]
pub struct Door<'a> {
    pub via: &'a str,
    pub by: Option<&'a str>,
}

/// Mints grants and their URLs.
#[derive(Debug, Clone, Copy)]
pub struct Issuer<'a> {
    pub catalog: &'a CatalogRepo,
    pub keys: &'a KeyRing,
    pub policy: &'a UrlPolicy,
}

impl Issuer<'_> {
    /// Store a grant for `artifact` and sign a URL bound to it and the customer.
    pub async fn issue(
        &self,
        customer: &Customer,
        entitlement: &str,
        artifact: Artifact,
        client: IpAddr,
        now: Timestamp,
        door: Door<'_>,
    ) -> Result<Issued, AccessError> {
        let grant = Grant {
            id: new_grant_id(entitlement)?,
            customer: customer.id.clone(),
            entitlement: entitlement.to_owned(),
            product: artifact.product.clone(),
            version: artifact.version.clone(),
            filename: artifact.filename.clone(),
            issued_at: now,
            expires_at: Timestamp(now.0.saturating_add(self.policy.ttl_secs.max(1))),
            started_at: None,
            requested_from: Some(client),
            started_from: None,
            via: Some(door.via.to_owned()),
            by: door.by.map(str::to_owned),
        };
        let path = download_path(&artifact);
        let claims = Claims {
            scope: UrlScope::Path(path.clone()),
            expires: grant.expires_at.0,
            not_before: None,
            customer: Some(customer.id.clone()),
            grant: Some(grant.id.clone()),
            client_net: None,
        };
        let query = self.keys.sign(&claims)?;
        // The grant is stored before the URL leaves: a URL never names a grant
        // the data plane cannot find.
        self.catalog.put_grant(&grant).await?;
        Ok(Issued { url: signed_url(&self.policy.public_url, &path, &query), grant, artifact })
    }
}

/// The canonical data-plane path of an artifact.
pub fn download_path(a: &Artifact) -> String {
    encode_path(&format!("/d/{}/{}/{}", a.product, a.version, a.filename)).into_owned()
}

/// Whether a release's update offer reaches `customer`: a staged rollout
/// (`rollout` percent) reaches the customers whose bucket — the first two
/// bytes of SHA-256 over customer, product and version, modulo 100 — is
/// below it; the same customer stays in or out as the percentage grows.
/// Critical releases are never staged.
pub fn in_rollout(customer: &str, release: &Release) -> bool {
    use sha2::Digest as _;
    let Some(percent) = release.rollout.filter(|_| !release.critical) else { return true };
    let digest = sha2::Sha256::digest(format!("{customer}\n{}\n{}", release.product, release.version));
    let bucket = u16::from_be_bytes([digest[0], digest[1]]) % 100;
    bucket < u16::from(percent)
}

/// Keep the releases an installed copy at `from` may move to: strictly
/// newer than `from` (any, without one), within `constraint`; newest first.
pub fn upgrades(releases: &mut Vec<Downloadable>, from: Option<&Version>, constraint: Option<&VersionReq>) {
    releases.retain(|d| {
        from.is_none_or(|f| d.release.version > *f) && constraint.is_none_or(|c| version_covered(c, &d.release.version))
    });
    releases.sort_by(|a, b| b.release.version.cmp(&a.release.version));
}

/// Re-check a grant when its URL is used: the grant exists and is for this
/// file; the customer, the entitlement and the release still allow it. Time
/// rules (entitlement dates, maintenance) are evaluated at the grant's issue
/// time — they held then, and the URL's own expiry bounds the rest — while
/// state changes since (suspension, revocation, yanking, narrowed coverage)
/// apply at once. One store round trip.
pub async fn recheck_grant(
    catalog: &CatalogRepo,
    customer_id: &str,
    grant_id: &str,
    product: &str,
    version: &Version,
    filename: &str,
    client: IpAddr,
) -> Result<Checked, AccessError> {
    let ctx = catalog
        .grant_context(customer_id, grant_id, product, version, filename)
        .await?
        .ok_or(AccessError::UnknownGrant)?;
    let grant = ctx.grant.ok_or(AccessError::UnknownGrant)?;
    if grant.product != product || grant.version != *version || grant.filename != filename {
        return Err(AccessError::UnknownGrant);
    }
    let customer = ctx.customer.ok_or(Denial::NotEntitled)?;
    let entitlement = ctx.entitlement.ok_or(Denial::NotEntitled)?;
    let release = ctx.release.ok_or(AccessError::NotFound("release"))?;
    let artifact = ctx.artifact.ok_or(AccessError::NotFound("artifact"))?;
    decide(&customer, std::slice::from_ref(&entitlement), &release, &artifact, grant.issued_at)?;
    check_address(&customer, client)?;
    // A release cannot outlive its product (deletion is refused while it has
    // releases); a missing record is served the default way.
    let (delivery, cdn_profile) = ctx.product.map(|p| (p.delivery, p.cdn_profile)).unwrap_or_default();
    Ok(Checked { grant, customer, entitlement, artifact, delivery, cdn_profile })
}

/// A grant that passed its re-check, with what it was checked against.
#[derive(Debug, Clone)]
pub struct Checked {
    pub grant: Grant,
    pub customer: Customer,
    pub entitlement: Entitlement,
    /// The file to serve.
    pub artifact: Artifact,
    /// How the product's downloads are delivered.
    pub delivery: crate::catalog::Delivery,
    /// The product's CDN, for `edge` delivery.
    pub cdn_profile: Option<String>,
}

/// A customer a release reaches, with the platforms it may download.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Eligible {
    pub customer: String,
    pub name: String,
    /// The first entitlement that allows it.
    pub entitlement: String,
    pub platforms: Vec<String>,
}

/// The customers who may download `release` once it is published (or, for a
/// published one, now): the rules are evaluated as if it were published at its
/// `published_at`, or at `now` when it has none yet. Suspended customers are
/// not counted. Reads every customer and entitlement: an admin report, not a
/// request-path call.
pub async fn eligible_customers(
    catalog: &CatalogRepo,
    release: &Release,
    artifacts: &[Artifact],
    now: Timestamp,
) -> Result<Vec<Eligible>, AccessError> {
    let mut published = release.clone();
    published.status = ReleaseStatus::Published;
    published.published_at = Some(release.published_at.unwrap_or(now));
    // A release without files yet is judged on everything but the platform.
    let placeholder;
    let artifacts = if artifacts.is_empty() {
        placeholder = [Artifact {
            product: release.product.clone(),
            version: release.version.clone(),
            filename: String::new(),
            platform: PLATFORM_ANY.to_owned(),
            size: 0,
            sha256: String::new(),
            sha512: None,
            content_type: None,
            storage_key: String::new(),
            etag: None,
            status: Default::default(),
            signature: None,
        }];
        &placeholder[..]
    } else {
        artifacts
    };
    let mut entitlements = catalog.all_entitlements().await?;
    entitlements.retain(|e| e.product == release.product);
    let mut out = Vec::new();
    for customer in catalog.all_customers().await? {
        let mine: Vec<Entitlement> = entitlements.iter().filter(|e| e.customer == customer.id).cloned().collect();
        let mut first = None;
        let mut platforms = Vec::new();
        for a in artifacts {
            if let Ok(e) = decide(&customer, &mine, &published, a, now) {
                first.get_or_insert_with(|| e.id.clone());
                if !platforms.contains(&a.platform) {
                    platforms.push(a.platform.clone());
                }
            }
        }
        if let Some(entitlement) = first {
            platforms.sort();
            out.push(Eligible { customer: customer.id, name: customer.name, entitlement, platforms });
        }
    }
    Ok(out)
}
