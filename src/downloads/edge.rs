//! `edge` delivery: a CDN serves the bytes and checks a token in its own
//! format, so the gateway may never see the download.
//!
//! - At issuance the grant is started (counted against every quota, once,
//!   as a first `GET` would be), the file's size is charged to the byte
//!   quotas, its lease is held for the URL's lifetime, `download.initiated`
//!   is recorded with `delivery: edge`, and the customer is given the CDN's
//!   URL (with its cookies or header when the profile puts the token
//!   there).
//! - The gateway is the CDN's origin: an `edge` product's files are served
//!   to requests that carry the profile's origin secret, and, when the
//!   profile is `accept`ed, to requests whose CDN token verifies here too.
//!   Origin requests are not counted again: a CDN fetches once per cache
//!   fill, not once per customer.

use std::net::IpAddr;

use ipnet::IpNet;

use super::DownloadError;
use super::issue::IssueRequest;
use super::redeem::{Started, redirected, start};
use crate::catalog::{Delivery, Entitlement};
use crate::cdn::{Accepted, Mint, Minted, Offered, OriginProof, Profile};
use crate::entitlement::access::{AccessError, Checked, Issued, download_path};
use crate::events::{Detail, Subject};
use crate::services::Services;
use crate::signing::canonical_ip;

/// The profile an `edge` product's URLs are made with, if this gateway has
/// it (a profile removed from the configuration leaves the product
/// streamed, with a warning). `None` for other modes.
pub fn profile_for<'s>(
    svc: &'s Services,
    product: &str,
    delivery: Delivery,
    cdn_profile: Option<&str>,
) -> Option<&'s Profile> {
    if delivery != Delivery::Edge {
        return None;
    }
    let profile = cdn_profile.and_then(|id| svc.cdn.get(id));
    if profile.is_none() {
        tracing::warn!(%product, profile = ?cdn_profile, "edge product without a configured CDN profile: streaming instead");
    }
    profile
}

/// Start `issued`'s grant now and mint the CDN's URL for it.
pub(super) async fn hand_over(
    svc: &Services,
    req: &IssueRequest<'_>,
    issued: &Issued,
    entitlement: &Entitlement,
    profile: &Profile,
    now: u64,
) -> Result<Minted, AccessError> {
    let path = download_path(&issued.artifact);
    let client = profile.bind_client.then(|| IpNet::from(canonical_ip(req.client)));
    // Minted before anything is counted: a profile that cannot sign costs
    // the customer nothing.
    let minted = profile
        .mint(&Mint {
            path: &path,
            prefix: None,
            starts: None,
            expires: now.saturating_add(profile.lifetime.as_secs()),
            client,
            session: Some(&issued.grant.id),
        })
        .map_err(AccessError::EdgeSign)?;
    let checked = Checked {
        grant: issued.grant.clone(),
        customer: req.customer.clone(),
        entitlement: entitlement.clone(),
        artifact: issued.artifact.clone(),
        delivery: Delivery::Edge,
        cdn_profile: Some(profile.id.clone()),
    };
    let started: Started = match start(svc, &checked, now, issued.artifact.size, req.client).await {
        Ok(s) => s,
        Err(DownloadError::Access(e)) => return Err(e),
        Err(e) => return Err(AccessError::EdgeSign(e.to_string())),
    };
    if started.initiated {
        let a = &issued.artifact;
        let subject = Subject {
            customer: Some(req.customer.id.clone()),
            product: Some(a.product.clone()),
            version: Some(a.version.to_string()),
            filename: Some(a.filename.clone()),
            platform: Some(a.platform.clone()),
        };
        let detail = Detail::DownloadInitiated {
            grant: issued.grant.id.clone(),
            client_ip: Some(req.client.to_string()),
            user_agent: None,
            range: None,
            delivery: Delivery::Edge.as_str().to_owned(),
            via: Some(req.surface.to_owned()),
            by: req.by.map(str::to_owned),
        };
        svc.record(subject, detail).await;
    }
    redirected(svc, started, issued.artifact.size, profile.lifetime).await;
    Ok(minted)
}

/// What an origin request showed.
#[derive(Debug, Clone, Copy)]
pub struct OriginRequest<'a> {
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub client: IpAddr,
}

/// The origin's first check for an `edge` product's file: the profile's
/// secret header and client certificate. A profile with neither an origin
/// check nor `accept` cannot tell its CDN from anyone, and its files are
/// refused at the origin.
pub(super) fn check_origin(profile: &Profile, proof: &OriginProof<'_>) -> Result<(), DownloadError> {
    match &profile.origin {
        Some(origin) if origin.admits(proof) => Ok(()),
        None if profile.accept => Ok(()),
        _ => Err(DownloadError::OriginAuthRequired),
    }
}

/// The origin's second check, for an accepted profile: the CDN's own token,
/// as the CDN checked it.
pub(super) fn check_token(
    svc: &Services,
    profile: &Profile,
    r: &OriginRequest<'_>,
    now: u64,
) -> Result<Accepted, DownloadError> {
    let cookies = cookies(r.headers);
    let header = profile.token_header().and_then(|h| r.headers.get(h)).and_then(|v| v.to_str().ok());
    let offered = Offered {
        path: r.path,
        query: r.query,
        cookies: cookies.as_deref(),
        header,
        client: Some(r.client),
        now,
        skew: svc.downloads.clock_skew,
    };
    Ok(profile.verify(&offered)?)
}

/// The request's cookies, joined as one `Cookie` header.
fn cookies(headers: &http::HeaderMap) -> Option<String> {
    let all: Vec<&str> = headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    (!all.is_empty()).then(|| all.join("; "))
}
