//! Issuing a download: the entitlement decision, a look at the quota (a URL
//! the quota would refuse when used is refused now), then a grant and its
//! signed URL. A refusal on the entitlement's or the quota's grounds is
//! recorded as `download.denied`.

use std::net::IpAddr;

use semver::{Version, VersionReq};

use crate::catalog::{Artifact, Channel, Customer, Delivery, Entitlement, Timestamp};
use crate::entitlement::Denial;
use crate::entitlement::access::{self, AccessError, Downloadable, Filter, Issued, Issuer, Wanted};
use crate::events::{Detail, Subject};
use crate::quota::{self, Usage};
use crate::services::Services;

/// A customer's request for a download URL.
#[derive(Debug, Clone, Copy)]
pub struct IssueRequest<'a> {
    pub customer: &'a Customer,
    pub product: &'a str,
    pub version: &'a Version,
    pub wanted: Wanted<'a>,
    pub client: IpAddr,
    /// The door that asked, recorded with a refusal (`customer_api`, ...).
    pub surface: &'static str,
    /// The portal user who asked, recorded on the grant and its initiation.
    pub by: Option<&'a str>,
}

/// A grant and its URL, with the quota usage it was judged on.
#[derive(Debug, Clone)]
pub struct Granted {
    /// For an `edge` product, `issued.url` is the CDN's URL.
    pub issued: Issued,
    /// How the file will be delivered.
    pub delivery: Delivery,
    /// Cookies or a header the CDN's token travels in (`edge` profiles
    /// that put it there), `(name, value)`.
    pub cookies: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// Usage against every limit in force (empty when none applies); for the
    /// `RateLimit` fields.
    pub usage: Vec<Usage>,
    /// When it was judged, Unix seconds.
    pub now: u64,
}

/// Issue a grant for `req`, or say which rule refuses it.
pub async fn issue(svc: &Services, req: &IssueRequest<'_>) -> Result<Granted, AccessError> {
    let now = Timestamp(svc.clock.now_unix());
    let checked = match access::authorize(
        &svc.catalog,
        req.customer,
        req.product,
        req.version,
        req.wanted,
        req.client,
        now,
    )
    .await
    {
        Ok((artifact, entitlement)) => match look_at_quota(svc, req.customer, &entitlement, &artifact, now).await {
            Ok(usage) => Ok((artifact, entitlement, usage)),
            Err(e) => Err((e, Some(artifact))),
        },
        Err(e) => Err((e, None)),
    };
    let (artifact, entitlement, usage) = match checked {
        Ok(c) => c,
        Err((e, artifact)) => {
            record_denial(svc, req, &e, artifact.as_ref()).await;
            return Err(e);
        }
    };
    // The product's delivery mode: an `edge` product is handed to its CDN
    // now (the gateway may never see the download).
    let product = svc.catalog.product(req.product).await?;
    let (delivery, cdn_profile) = product.map(|p| (p.delivery, p.cdn_profile)).unwrap_or_default();
    let profile = super::edge::profile_for(svc, req.product, delivery, cdn_profile.as_deref());
    let issuer = Issuer { catalog: &svc.catalog, keys: &svc.keys, policy: &svc.downloads.urls };
    let door = access::Door { via: req.surface, by: req.by };
    let mut issued = issuer.issue(req.customer, &entitlement.id, artifact, req.client, now, door).await?;
    tracing::info!(grant = %issued.grant.id, product = %req.product, version = %req.version, "download URL issued");
    let Some(profile) = profile else {
        let delivery = if delivery == Delivery::Edge { Delivery::Proxy } else { delivery };
        return Ok(Granted { issued, delivery, cookies: Vec::new(), headers: Vec::new(), usage, now: now.0 });
    };
    match super::edge::hand_over(svc, req, &issued, &entitlement, profile, now.0).await {
        Ok(minted) => {
            issued.url = minted.url;
            issued.grant.expires_at = Timestamp(minted.expires);
            Ok(Granted {
                issued,
                delivery: Delivery::Edge,
                cookies: minted.cookies,
                headers: minted.headers,
                usage,
                now: now.0,
            })
        }
        Err(e) => {
            record_denial(svc, req, &e, Some(&issued.artifact)).await;
            Err(e)
        }
    }
}

/// Refuse a URL the quota would refuse when it is first used (counting
/// happens then, not here); returns the usage it was judged on.
async fn look_at_quota(
    svc: &Services,
    customer: &Customer,
    entitlement: &Entitlement,
    artifact: &Artifact,
    now: Timestamp,
) -> Result<Vec<Usage>, AccessError> {
    let limits = quota::limits_for(&svc.downloads.quota.defaults, customer, Some(entitlement));
    if limits.is_empty() {
        return Ok(Vec::new());
    }
    let quotas = svc.quotas.as_ref();
    let (usage, _) = quota::usage(quotas, &customer.id, &limits, Some(&artifact.key()), now.0).await?;
    if let Some(exceeded) = quota::first_exceeded(&usage, artifact.size, now.0) {
        return Err(exceeded.into());
    }
    Ok(usage)
}

async fn record_denial(svc: &Services, req: &IssueRequest<'_>, e: &AccessError, artifact: Option<&Artifact>) {
    let Some((reason, status)) = e.denial() else { return };
    // SECURITY: only names the catalog vouches for go into the log and its
    // report counters; a customer must not be able to mint groups by asking
    // for made-up products and files.
    let known = match (e, artifact) {
        (_, Some(a)) => Subject {
            product: Some(a.product.clone()),
            version: Some(a.version.to_string()),
            filename: Some(a.filename.clone()),
            platform: Some(a.platform.clone()),
            ..Subject::default()
        },
        // Refused before the product was looked at.
        (AccessError::Denied(Denial::CustomerSuspended | Denial::NotEntitled), None) => Subject::default(),
        // The release exists; the artifact, if looked at, too (asked for by
        // name), but not which platform answered.
        (AccessError::Denied(Denial::ReleaseNotPublished | Denial::ReleaseYanked), None) => Subject {
            product: Some(req.product.to_owned()),
            version: Some(req.version.to_string()),
            ..Subject::default()
        },
        (_, None) => Subject {
            product: Some(req.product.to_owned()),
            version: Some(req.version.to_string()),
            filename: match req.wanted {
                Wanted::File(f) => Some(f.to_owned()),
                Wanted::Platform(_) => None,
            },
            ..Subject::default()
        },
    };
    let subject = Subject { customer: Some(req.customer.id.clone()), ..known };
    let detail = Detail::DownloadDenied {
        reason: reason.to_owned(),
        status,
        grant: None,
        client_ip: Some(req.client.to_string()),
        surface: req.surface.to_owned(),
        count: 1,
    };
    svc.record_denial(subject, detail).await;
}

/// What an installed copy asks: is there something newer for me?
#[derive(Debug, Clone, Copy)]
pub struct UpgradeRequest<'a> {
    pub customer: &'a Customer,
    pub product: &'a str,
    /// The version installed now.
    pub from: &'a Version,
    /// A requirement the upgrade must meet, e.g. `^2`.
    pub constraint: Option<&'a VersionReq>,
    /// The platform to pick the file for (`any` when the caller has none).
    pub platform: &'a str,
    /// Only releases on channels this one covers.
    pub channel: Option<Channel>,
    pub client: IpAddr,
    pub surface: &'static str,
}

/// What an installed copy may update to, newest first: the releases of
/// `product` the customer may download (channel and platform per `filter`)
/// whose staged rollout reaches it, newer than `from` (all, without one)
/// and within `constraint`. The one rule behind `GET …/upgrade` and every
/// update feed; explicit downloads (`POST /v1/downloads`) do not follow
/// rollouts.
pub async fn offers(
    svc: &Services,
    customer: &Customer,
    product: &str,
    filter: Filter<'_>,
    from: Option<&Version>,
    constraint: Option<&VersionReq>,
) -> Result<Vec<Downloadable>, AccessError> {
    let now = Timestamp(svc.clock.now_unix());
    let mut releases = access::downloadable_releases(&svc.catalog, customer, product, filter, now).await?;
    releases.retain(|d| access::in_rollout(&customer.id, &d.release));
    access::upgrades(&mut releases, from, constraint);
    Ok(releases)
}

/// The newest release the customer may download that is newer than `from`,
/// and a grant for its file for the platform; `None` when there is none.
pub async fn upgrade(svc: &Services, req: &UpgradeRequest<'_>) -> Result<Option<(Downloadable, Granted)>, AccessError> {
    let filter = Filter { channel: req.channel, platform: Some(req.platform) };
    let offered = offers(svc, req.customer, req.product, filter, Some(req.from), req.constraint).await?;
    let Some(newest) = offered.first() else {
        return Ok(None);
    };
    let files: Vec<Artifact> = newest.artifacts.iter().map(|(a, _)| a.clone()).collect();
    let artifact = access::pick_artifact(&files, req.platform)?;
    let granted = issue(
        svc,
        &IssueRequest {
            customer: req.customer,
            product: req.product,
            version: &newest.release.version,
            wanted: Wanted::File(&artifact.filename),
            client: req.client,
            surface: req.surface,
            by: None,
        },
    )
    .await?;
    Ok(Some((newest.clone(), granted)))
}
