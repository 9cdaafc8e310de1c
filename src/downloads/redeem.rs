//! Redeeming a download URL: verify the token (nothing touches storage
//! before that), re-check the grant, apply the resume window and the
//! fail-open rule, look the object up; then, when the door delivers, start
//! the grant (counted once), hold its lease and record the initiation.

use std::net::IpAddr;
use std::sync::Arc;

use super::completion::{Charge, Completion};
use super::{Delivery, DownloadError};
use crate::catalog::store::StoreError;
use crate::catalog::{Grant, Timestamp};
use crate::cuts;
use crate::entitlement::Denial;
use crate::entitlement::access::{AccessError, Checked, recheck_grant};
use crate::errors::{Classified, ErrorKind};
use crate::events::{Detail, Subject};
use crate::quota::{self, LeaseGuard, Outcome};
use crate::services::Services;
use crate::signing::{Presented, TokenError, decode_segment};
use crate::storage::{self, ByteRange, ByteStream, ObjectKey, ObjectMeta, StorageError};

/// A download URL as presented.
#[derive(Debug, Clone, Copy)]
pub struct RedeemRequest<'a> {
    /// The request path, `/d/{product}/{version}/{filename}`.
    pub path: &'a str,
    /// The query string carrying the signed token.
    pub query: &'a str,
    pub client: IpAddr,
    /// A `GET` (fetches bytes: starts the grant, and a refusal is recorded)
    /// rather than a `HEAD` (a look at an old link is not a download).
    pub fetch: bool,
    /// The request's headers: an `edge` product's origin checks its CDN's
    /// secret and token cookies in them.
    pub headers: Option<&'a http::HeaderMap>,
    /// The SHA-256 (hex) of the TLS client certificate the connection
    /// presented and the listener verified.
    pub client_certificate: Option<&'a str>,
}

/// A URL that passed every check, and the object it names.
#[derive(Debug)]
pub struct Redemption {
    pub key: ObjectKey,
    pub meta: ObjectMeta,
    /// The re-checked grant; `None` for an operator's URL (`tollgate sign`)
    /// and for a grant URL served on its signature while the store is down.
    pub checked: Option<Checked>,
    /// How the bytes reach the customer.
    pub delivery: Delivery,
    subject: Subject,
    grant: Option<String>,
    client: IpAddr,
    now: u64,
}

impl Redemption {
    /// The file name the customer asked for (the artifact's, not the
    /// storage key's).
    pub fn file_name(&self) -> &str {
        self.checked.as_ref().map_or(self.key.file_name(), |c| c.artifact.filename.as_str())
    }
}

/// What the door asks to deliver.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliverRequest<'a> {
    /// The parts of the object the response carries, in order (ascending,
    /// not overlapping); none for all of it.
    pub ranges: &'a [ByteRange],
    /// The `Range` header as sent, for the events.
    pub range_header: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// How the door hands over the bytes.
pub enum Delivered {
    /// The gateway streams these bytes (exactly the ranges' lengths, one
    /// range after the other; a failure mid-way fails the stream). `None`:
    /// there are none.
    Proxy(Option<ByteStream>),
    /// Storage serves the bytes: the client is sent to a presigned URL.
    Redirect(Redirect),
}

/// A presigned storage URL for the grant's file, counted and recorded like a
/// streamed download's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Needs no header: everything it takes is in its query.
    pub location: String,
    /// Unix seconds after which storage refuses it.
    pub expires_at: u64,
}

impl std::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivered::Proxy(body) => f.debug_tuple("Proxy").field(&body.as_ref().map(|_| "stream")).finish(),
            Delivered::Redirect(r) => f.debug_tuple("Redirect").field(r).finish(),
        }
    }
}

/// What a request has established so far, for its events: nothing a client
/// could make up goes in before the URL's signature is verified.
#[derive(Debug)]
struct Known {
    client: IpAddr,
    grant: Option<String>,
    subject: Subject,
}

/// Redeem a download URL. A refusal of a `GET` is recorded as
/// `download.denied`; a refused URL or grant counts against the client's
/// address (past the limit the answer is `rate_limited`).
pub async fn redeem(svc: &Services, req: &RedeemRequest<'_>) -> Result<Redemption, DownloadError> {
    let mut known = Known { client: req.client, grant: None, subject: Subject::default() };
    match open(svc, req, &mut known).await {
        Ok(r) => Ok(r),
        Err(e) => {
            let e = count_refusal(svc, req.client, e);
            if req.fetch {
                record_denial(svc, known.subject, known.grant, known.client, &e).await;
            }
            Err(e)
        }
    }
}

async fn open(svc: &Services, req: &RedeemRequest<'_>, known: &mut Known) -> Result<Redemption, DownloadError> {
    let policy = &svc.downloads;
    let key = object_key_for_path(req.path)?;
    // Without a native token, an `edge` product's file may be asked by its
    // CDN (the gateway as origin).
    let native = crate::cdn::params(req.query).any(|(k, _)| k == "sig" || k == "kid");
    if !native
        && !svc.cdn.is_empty()
        && let Some(headers) = req.headers
        && let Some(r) = from_edge(svc, req, headers, &key, known).await?
    {
        return Ok(r);
    }
    let presented = Presented {
        path: req.path,
        query: req.query,
        client_ip: Some(req.client),
        now: svc.clock.now_unix(),
        skew: policy.clock_skew,
    };
    // A started grant stays resumable past its URL's expiry, for the resume
    // window; whether it was started is the grant's to say, below.
    let token = svc.keys.verify_with_grace(&presented, policy.quota.resume_window)?;
    let expired = || DownloadError::Token(TokenError::Expired { expired_at: token.expires, now: presented.now });
    if token.expired && token.grant.is_none() {
        return Err(expired());
    }
    let span = tracing::Span::current();
    span.record("customer", token.customer.unwrap_or("-"));
    span.record("grant", token.grant.unwrap_or("-"));
    // Signed: the customer, grant and path are the gateway's own words now.
    known.grant = token.grant.map(str::to_owned);
    known.subject.customer = token.customer.map(str::to_owned);
    if let [p, v, f] = key.segments().collect::<Vec<_>>().as_slice() {
        known.subject.product = Some((*p).to_owned());
        known.subject.version = Some((*v).to_owned());
        known.subject.filename = Some((*f).to_owned());
    }

    // A URL minted for a grant is re-checked against the catalog (one store
    // round trip); a URL without one was minted by an operator (`tollgate
    // sign`) for the object at its path.
    let checked = match token.grant {
        Some(grant) => match recheck(svc, token.customer, grant, &key, req.client).await {
            Ok(c) => {
                let resumable =
                    c.grant.started_at.is_some_and(|t| presented.now < t.0.saturating_add(policy.quota.resume_window));
                if token.expired && !resumable {
                    return Err(expired());
                }
                Some(c)
            }
            Err(DownloadError::Access(e)) if e.store_unavailable() && policy.quota.fail_open && !token.expired => {
                tracing::warn!(error = %e, "store unavailable: serving the grant URL on its signature alone (fail open)");
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    // SECURITY: an `edge` product's origin answers its CDN only, whatever
    // URL is shown.
    if let Some(c) = &checked
        && let Some(headers) = req.headers
        && let Some(profile) = super::edge::profile_for(svc, &c.artifact.product, c.delivery, c.cdn_profile.as_deref())
    {
        let proof = crate::cdn::OriginProof { headers, client_certificate: req.client_certificate };
        super::edge::check_origin(profile, &proof)?;
    }
    let artifact = checked.as_ref().map(|c| &c.artifact);
    known.subject.platform = artifact.map(|a| a.platform.clone());
    let key = match artifact {
        Some(a) => ObjectKey::parse(&a.storage_key).map_err(|_| DownloadError::ArtifactChanged)?,
        None => key,
    };
    let meta = svc.metrics.time_storage(svc.storage.backend(), "head", svc.storage.head(&key)).await?;
    if artifact.is_some_and(|a| a.size != meta.size || a.etag.as_ref().is_some_and(|e| *e != meta.etag)) {
        return Err(DownloadError::ArtifactChanged);
    }
    let delivery = delivery_for(svc, checked.as_ref());
    Ok(Redemption {
        key,
        meta,
        checked,
        delivery,
        subject: known.subject.clone(),
        grant: known.grant.clone(),
        client: req.client,
        now: presented.now,
    })
}

impl Redemption {
    /// Deliver a `GET`: the grant's first one is its initiation (every quota
    /// checked and the download counted, atomically, once per grant however
    /// many requests race for it), recorded as `download.initiated`; every
    /// stream of the grant holds its lease; `download.completed` is recorded
    /// when the bytes are done, cut, or dropped. In `redirect` mode the
    /// answer is a presigned URL instead of a stream: see `redirected` for
    /// what stands in for the stream's accounting.
    pub async fn deliver(self, svc: &Arc<Services>, req: DeliverRequest<'_>) -> Result<Delivered, DownloadError> {
        let Redemption { key, meta, checked, delivery, subject, grant, client, now } = self;
        // A redirect hands storage the client's `Range` as it is, and S3
        // serves several ranges as the whole file: charged as such.
        let whole = req.ranges.is_empty() || (delivery == Delivery::Redirect && req.ranges.len() > 1);
        let length = if whole { meta.size } else { req.ranges.iter().map(|r| r.len).sum() };
        // Presigned before anything is counted: a storage that cannot sign
        // costs the customer nothing.
        let redirect = match (delivery, &checked) {
            (Delivery::Redirect, Some(c)) => Some(presign(svc, &key, &meta, c, now).await?),
            _ => None,
        };
        let started = match &checked {
            Some(c) => match start(svc, c, now, length, client).await {
                Ok(s) => s,
                Err(e) => {
                    let e = count_refusal(svc, client, e);
                    record_denial(svc, subject, grant, client, &e).await;
                    return Err(e);
                }
            },
            None => Started::default(),
        };
        let range_header = req.range_header.map(str::to_owned);
        if started.initiated
            && let Some(c) = &checked
        {
            let detail = Detail::DownloadInitiated {
                grant: c.grant.id.clone(),
                client_ip: Some(client.to_string()),
                user_agent: req.user_agent.map(str::to_owned),
                range: range_header.clone(),
                delivery: delivery.as_str().to_owned(),
                via: c.grant.via.clone(),
                by: c.grant.by.clone(),
            };
            svc.record(subject.clone(), detail).await;
        }
        if let Some(redirect) = redirect {
            redirected(svc, started, length, svc.downloads.redirect_ttl).await;
            return Ok(Delivered::Redirect(redirect));
        }
        let mut completion = Completion {
            services: svc.clone(),
            subject,
            grant,
            range: range_header,
            expected: length,
            to_the_end: req.ranges.last().is_none_or(|r| r.last() + 1 == meta.size),
            started: std::time::Instant::now(),
            _gauge: svc.active_downloads.start(),
            _lease: started.lease,
            charge: started.charge,
        };
        // Streamed (`proxy`, and an `edge` file asked by its CDN).
        if length == 0 {
            storage::StreamEnd::end(&mut completion, 0, true);
            return Ok(Delivered::Proxy(None));
        }
        let get = async {
            match req.ranges {
                [] => svc.storage.get(&key, None, &meta).await,
                [one] => svc.storage.get(&key, Some(*one), &meta).await,
                many => storage::get_ranges(svc.storage.clone(), key.clone(), many.to_vec(), meta.clone()).await,
            }
        };
        let stream = match svc.metrics.time_storage(svc.storage.backend(), "get", get).await {
            Ok(s) => s,
            Err(e) => {
                storage::StreamEnd::end(&mut completion, 0, false);
                return Err(e.into());
            }
        };
        let stream = svc.streams.watch(stream, running(&completion.subject), svc.clock.now_millis());
        let idle = svc.downloads.idle_timeout;
        Ok(Delivered::Proxy(Some(storage::guarded(stream, length, idle, completion))))
    }
}

/// The mode a redemption is delivered in: the product's, when this gateway
/// can. Operator URLs and grants served on their signature alone (the
/// store down) are streamed; so is a `redirect` product on a storage that
/// cannot presign (its setting was refused on write, so the storage changed
/// since), and an `edge` product's file asked of the origin by its CDN.
fn delivery_for(svc: &Services, checked: Option<&Checked>) -> Delivery {
    let Some(c) = checked else { return Delivery::Proxy };
    let delivery = c.delivery;
    // An `edge` grant asked of the origin (it passed the origin's check) is
    // streamed: that is what the origin is for.
    if delivery == Delivery::Edge {
        return Delivery::Proxy;
    }
    match super::unavailable(svc, delivery, c.cdn_profile.as_deref()) {
        None => delivery,
        Some(why) => {
            tracing::warn!(delivery = delivery.as_str(), "streaming instead: {why}");
            Delivery::Proxy
        }
    }
}

/// A presigned `GET` of the grant's file, named and typed as the gateway
/// would answer it.
async fn presign(
    svc: &Services,
    key: &ObjectKey,
    meta: &ObjectMeta,
    c: &Checked,
    now: u64,
) -> Result<Redirect, DownloadError> {
    let name = c.artifact.filename.as_str();
    let content_type = storage::naming::content_type(c.artifact.content_type.as_deref(), meta, name);
    let ttl = svc.downloads.redirect_ttl;
    let presigned = svc.storage.presign_download(key, ttl, name, &content_type).await?;
    let location = presigned.ok_or_else(|| StorageError::Upstream("this storage cannot presign downloads".into()))?;
    Ok(Redirect { location, expires_at: now.saturating_add(ttl.as_secs()) })
}

/// What a redirect (or an `edge` URL) leaves behind, since the gateway sees
/// no byte of it: the bytes asked for are charged at once (to the grant's
/// bound and past the file's size to the byte quotas, as a stream's are when
/// it ends), and the grant's lease is held for `hold`, the lifetime of the
/// URL given out, so that `concurrent_downloads` counts it while it can be
/// used.
pub(super) async fn redirected(svc: &Services, started: Started, length: u64, hold: std::time::Duration) {
    let now = svc.clock.now_unix();
    if let Some(Charge { customer, delivered, size, counters }) = started.charge
        && length > 0
        && let Err(e) = svc.quotas.record_delivery(&customer, &delivered, length, size, &counters, now).await
    {
        tracing::warn!(%customer, error = %e, length, "could not record the bytes a redirect delivers");
    }
    if let Some(lease) = started.lease {
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            drop(lease);
        });
    }
}

/// What a stream is a download of, for cut orders.
fn running(subject: &Subject) -> cuts::Running {
    cuts::Running {
        customer: subject.customer.clone(),
        product: subject.product.clone().unwrap_or_default(),
        version: subject.version.clone().unwrap_or_default(),
    }
}

/// What starting a stream of a grant established.
#[derive(Debug, Default)]
pub(super) struct Started {
    /// The lease this stream holds (none when the store was down and the
    /// grant is served on its signature).
    lease: Option<LeaseGuard>,
    /// This request was the grant's initiation, and was counted.
    pub(super) initiated: bool,
    /// What the stream's bytes are recorded against when it ends.
    charge: Option<Charge>,
}

/// The initiation, when this is the grant's first `GET`; for a grant started
/// before, the bound on what it delivers; then the lease.
pub(super) async fn start(
    svc: &Services,
    c: &Checked,
    now: u64,
    length: u64,
    client: IpAddr,
) -> Result<Started, DownloadError> {
    let g = &c.grant;
    let settings = &svc.downloads.quota;
    let limits = quota::limits_for(&settings.defaults, &c.customer, Some(&c.entitlement));
    let mut plan = quota::plan(g, &c.artifact, &limits, settings, now);
    // The initiation's lease is this process's hold, as its renewals are.
    plan.lease_member = svc.leases.member(&g.id);
    let exceeded = |index: usize, used: u64, oldest: Option<u64>| -> DownloadError {
        match plan.exceeded(index, used, oldest) {
            Some(e) => AccessError::Quota(e).into(),
            None => AccessError::from(StoreError::Internal(format!("the store refused unlimited step {index}"))).into(),
        }
    };
    // The starting client's network, when started grants are bound to it.
    let network = svc.downloads.bind_started.and_then(|b| network_of(client, b));
    // SECURITY: a grant started from one network is refused from others.
    if let (Some(bound), Some(_)) = (g.started_from, g.started_at)
        && svc.downloads.bind_started.is_some()
        && !bound.contains(&client)
    {
        return Err(AccessError::GrantBoundElsewhere.into());
    }
    let mut initiated = false;
    if g.started_at.is_none() {
        let backend = svc.catalog.records().backend();
        match svc.metrics.time_store(backend, "quota_initiate", svc.quotas.initiate(&plan)).await {
            Ok(Outcome::Started) => {
                tracing::info!(product = %g.product, version = %g.version, filename = %g.filename, "download initiated");
                initiated = true;
                record_start(svc, g, now, network).await;
            }
            // Started by a racing request, or its record's update was lost:
            // the record learns the start (resumes past expiry need it); the
            // network is the initiating request's to write.
            Ok(Outcome::AlreadyStarted { at }) => record_start(svc, g, at, None).await,
            Ok(Outcome::Refused { index, used, oldest_lease_expires }) => {
                return Err(exceeded(index, used, oldest_lease_expires));
            }
            Err(e @ StoreError::Unavailable(_)) if settings.fail_open => {
                tracing::warn!(error = %e, "store unavailable: download not counted (fail open)");
                return Ok(Started::default());
            }
            Err(e) => return Err(AccessError::from(e).into()),
        }
    }
    // SECURITY: a started grant is a URL anyone holding it can use for the
    // resume window; it delivers at most `deliveries_per_grant` times its
    // file, whatever the requests (what is sent is recorded as it ends).
    if !initiated && settings.deliveries_per_grant > 0 {
        let bound = settings.deliveries_per_grant.saturating_mul(c.artifact.size);
        match svc.quotas.read(&g.customer, now, std::slice::from_ref(&plan.delivered), &[]).await {
            Ok((delivered, _)) => {
                let delivered = delivered.first().copied().unwrap_or(0);
                if delivered.saturating_add(length) > bound {
                    return Err(AccessError::GrantExhausted { times: settings.deliveries_per_grant }.into());
                }
            }
            // As for leases: a store that cannot say does not stop a stream.
            Err(e @ StoreError::Unavailable(_)) => {
                tracing::warn!(grant = %g.id, error = %e, "could not read what the grant delivered; serving");
            }
            Err(e) => return Err(AccessError::from(e).into()),
        }
    }
    let charge = Some(Charge {
        customer: g.customer.clone(),
        delivered: plan.delivered.clone(),
        size: c.artifact.size,
        counters: plan.byte_counters.clone(),
    });
    // Every stream holds the grant's lease; a resume takes it within the
    // concurrency limits, like the initiation did.
    match svc.leases.hold(&g.customer, &g.id, &plan.leases, initiated).await {
        Ok(lease) => Ok(Started { lease: Some(lease), initiated, charge }),
        // The lease sets come after the counting steps in the plan.
        Err(refused) => Err(exceeded(plan.steps.len() + refused.index, refused.used, refused.oldest_lease_expires)),
    }
}

/// Write the grant's start into its record. The store's started mark is what
/// counts; the record lets later requests skip the quota step and tells
/// whether an expired URL may still resume. A failure is logged: the next
/// request repairs it.
async fn record_start(svc: &Services, g: &Grant, at: u64, from: Option<ipnet::IpNet>) {
    if let Err(e) = svc.catalog.mark_grant_started(g, Timestamp(at), from).await {
        tracing::warn!(grant = %g.id, error = %e, "could not record the grant's start");
    }
}

/// `client`'s network under `binding`'s prefix lengths.
fn network_of(client: IpAddr, binding: crate::config::GrantBinding) -> Option<ipnet::IpNet> {
    let prefix = if client.is_ipv4() { binding.ipv4_prefix } else { binding.ipv6_prefix };
    ipnet::IpNet::new(client, prefix).ok().map(|n| n.trunc())
}

async fn recheck(
    svc: &Services,
    customer: Option<&str>,
    grant: &str,
    key: &ObjectKey,
    client: IpAddr,
) -> Result<Checked, DownloadError> {
    // Grant URLs always carry the customer; one without is not ours.
    let customer = customer.ok_or(AccessError::UnknownGrant)?;
    let parts: Vec<&str> = key.segments().collect();
    let [product, version, filename] = parts.as_slice() else {
        return Err(DownloadError::BadPath);
    };
    let version = semver::Version::parse(version).map_err(|_| DownloadError::NotFound)?;
    Ok(recheck_grant(&svc.catalog, customer, grant, product, &version, filename, client).await?)
}

/// A `403` refusal — a bad token, an unknown grant, or a well-signed URL the
/// rules refuse — counts against the client's address; past the limit the
/// answer is `429 rate_limited` (one map lookup) instead of the refusal, and
/// is not recorded as a denial. `quota_exceeded` is not counted: it carries
/// its own `Retry-After`, which download managers honour.
// SECURITY: a guesser pays for each guess, and a client hammering a URL that
// is refused (a suspended customer's, say) cannot flood the event log, its
// reports and the webhooks with one `download.denied` per request.
fn count_refusal(svc: &Services, client: IpAddr, e: DownloadError) -> DownloadError {
    if e.kind() != ErrorKind::Denied {
        return e;
    }
    match svc.limits.refused_credential(client) {
        Ok(()) => e,
        Err(wait) => DownloadError::RateLimited(wait),
    }
}

async fn record_denial(svc: &Services, subject: Subject, grant: Option<String>, client: IpAddr, e: &DownloadError) {
    if let Some((reason, status)) = e.denial() {
        let detail = Detail::DownloadDenied {
            reason: reason.to_owned(),
            status,
            grant,
            client_ip: Some(client.to_string()),
            surface: "data_plane".to_owned(),
            count: 1,
        };
        svc.record_denial(subject, detail).await;
    }
}

/// An origin request for an `edge` product's file: the CDN's secret (and,
/// for an accepted profile, its token) let it in; the release must still be
/// published. Nothing is counted (the URL was, when it was minted). `None`:
/// the path's product is not delivered through a CDN.
async fn from_edge(
    svc: &Services,
    req: &RedeemRequest<'_>,
    headers: &http::HeaderMap,
    key: &ObjectKey,
    known: &mut Known,
) -> Result<Option<Redemption>, DownloadError> {
    let parts: Vec<&str> = key.segments().collect();
    let [product, version, filename] = parts.as_slice() else {
        return Err(DownloadError::BadPath);
    };
    let Some(p) = svc.catalog.product(product).await.map_err(AccessError::from)? else {
        return Ok(None);
    };
    let Some(profile) = super::edge::profile_for(svc, &p.id, p.delivery, p.cdn_profile.as_deref()) else {
        return Ok(None);
    };
    let now = svc.clock.now_unix();
    let proof = crate::cdn::OriginProof { headers, client_certificate: req.client_certificate };
    super::edge::check_origin(profile, &proof)?;
    if profile.accept {
        let origin = super::edge::OriginRequest { path: req.path, query: req.query, headers, client: req.client };
        super::edge::check_token(svc, profile, &origin, now)?;
    }
    known.subject.product = Some(p.id.clone());
    known.subject.version = Some((*version).to_owned());
    known.subject.filename = Some((*filename).to_owned());
    let version = semver::Version::parse(version).map_err(|_| DownloadError::NotFound)?;
    let release =
        svc.catalog.release(&p.id, &version).await.map_err(AccessError::from)?.ok_or(DownloadError::NotFound)?;
    match release.status {
        crate::catalog::ReleaseStatus::Published => {}
        crate::catalog::ReleaseStatus::Yanked => return Err(AccessError::from(Denial::ReleaseYanked).into()),
        crate::catalog::ReleaseStatus::Draft => return Err(AccessError::from(Denial::ReleaseNotPublished).into()),
    }
    let artifact = svc
        .catalog
        .artifact(&p.id, &version, filename)
        .await
        .map_err(AccessError::from)?
        .ok_or(DownloadError::NotFound)?;
    known.subject.platform = Some(artifact.platform.clone());
    let key = ObjectKey::parse(&artifact.storage_key).map_err(|_| DownloadError::ArtifactChanged)?;
    let meta = svc.metrics.time_storage(svc.storage.backend(), "head", svc.storage.head(&key)).await?;
    if artifact.size != meta.size || artifact.etag.as_ref().is_some_and(|e| *e != meta.etag) {
        return Err(DownloadError::ArtifactChanged);
    }
    Ok(Some(Redemption {
        key,
        meta,
        checked: None,
        delivery: Delivery::Proxy,
        subject: known.subject.clone(),
        grant: None,
        client: req.client,
        now,
    }))
}

/// Split `/d/{product}/{version}/{filename}` into a validated object key.
pub fn object_key_for_path(path: &str) -> Result<ObjectKey, DownloadError> {
    let rest = path.strip_prefix("/d/").ok_or(DownloadError::BadPath)?;
    let mut segments = Vec::with_capacity(3);
    for raw in rest.split('/') {
        segments.push(decode_segment(raw).map_err(|_| DownloadError::BadPath)?);
    }
    if segments.len() != 3 {
        return Err(DownloadError::BadPath);
    }
    ObjectKey::from_segments(&segments).map_err(|_| DownloadError::BadPath)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_paths_map_to_keys() {
        assert_eq!(object_key_for_path("/d/app/1.0/app.tar.gz").unwrap().as_str(), "app/1.0/app.tar.gz");
        assert_eq!(object_key_for_path("/d/app/1.0/My%20App.dmg").unwrap().as_str(), "app/1.0/My App.dmg");
        for bad in [
            "/d/app/1.0",
            "/d/app/1.0/x/y",
            "/d/app/../x",
            "/d/app/1.0/..%2F..%2Fetc%2Fpasswd",
            "/d/app/%2e%2e/x",
            "/d/app/1.0/%00",
            "/d/app/1.0/%zz",
            "/x/app/1.0/a",
        ] {
            assert!(object_key_for_path(bad).is_err(), "{bad}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Whatever the path, the answer is a key inside the blob root
            /// or `invalid_path`; never a panic, never `..` or a dot-file.
            #[test]
            fn any_path_maps_to_a_safe_key_or_is_refused(rest in ".{0,120}", encoded in "(%[0-9A-Fa-f]{2}|[a-z./]){0,40}") {
                for path in [format!("/d/{rest}"), format!("/d/{encoded}"), rest.clone()] {
                    if let Ok(key) = object_key_for_path(&path) {
                        let segments: Vec<&str> = key.segments().collect();
                        prop_assert_eq!(segments.len(), 3);
                        for s in segments {
                            prop_assert!(!s.is_empty() && !s.starts_with('.') && !s.contains('/') && !s.contains('\\'));
                        }
                    }
                }
            }
        }
    }
}
