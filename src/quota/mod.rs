//! Download quotas: what a customer may start, counted once per grant.
//!
//! The first `GET` of a grant is its *initiation*. It checks every limit that
//! applies and records the download in one atomic step of the state store
//! ([`QuotaStore::initiate`]: a Lua script on Redis, a transaction on SQLite);
//! every later request on the same grant (resumes, parallel range segments,
//! retries) finds the grant already started and counts nothing.
//!
//! The rules live here, in Rust; the store only executes a generic
//! [`Initiation`]: "unless this grant is already started, check these counters
//! against these limits, then add to all of them, add the grant to these lease
//! sets and mark it started". Both backends run the same plan.
//!
//! Limits, per field of [`Quota`]:
//! - `downloads_per_day`, `downloads_per_month`: initiations per calendar day
//!   or month, **UTC**; the counter resets at midnight UTC / on the 1st.
//! - `bytes_per_day`, `bytes_per_month`: the artifact's full size is reserved
//!   at initiation (resumes do not add to it).
//! - `downloads_per_artifact`: initiations of one artifact, ever.
//! - `concurrent_downloads`: grants being streamed at once. A stream holds a
//!   *lease* that expires unless renewed ([`Leases`]), so a crashed gateway or
//!   a vanished client frees its slot by itself.
//!
//! Each limit comes from the entitlement the grant was issued under when it
//! sets one, else from the customer, else from `[downloads.quota]` in the
//! configuration. A limit taken from an entitlement is counted over that
//! entitlement's downloads; one from the customer or the default over all of
//! the customer's downloads. Every initiation adds to both scopes, so a limit
//! set later starts from the true count.

#![allow(
    unused_qualifications,
    reason = "utoipa's generated schema code names types defined in this module by a qualified path"
)]

pub mod leases;

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

pub use leases::{LeaseGuard, Leases};

pub use crate::quota_limits::{Limit, LimitKind, Quota};

use crate::catalog::store::StoreError;
use crate::catalog::{Artifact, Customer, Entitlement, Grant};

/// Over whose downloads a limit is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaScope {
    Customer,
    Entitlement(String),
}

/// A limit in force for a download, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub kind: LimitKind,
    pub limit: u64,
    pub scope: QuotaScope,
}

/// The limits in force for downloads under `entitlement` (or, without one,
/// the customer's own).
pub fn limits_for(defaults: &Quota, customer: &Customer, entitlement: Option<&Entitlement>) -> Vec<Applied> {
    LimitKind::ALL
        .iter()
        .filter_map(|&kind| {
            let (limit, scope) = match entitlement.and_then(|e| e.quota.get(kind).map(|l| (l, e))) {
                Some((l, e)) => (l, QuotaScope::Entitlement(e.id.clone())),
                None => {
                    (customer.quota.get(kind).or(defaults.get(kind)).unwrap_or(Limit::Unlimited), QuotaScope::Customer)
                }
            };
            limit.value().map(|limit| Applied { kind, limit, scope })
        })
        .collect()
}

/// The calendar periods (UTC) an instant falls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    /// `2026-11-24`
    pub day: String,
    pub day_ends: u64,
    /// `2026-11`
    pub month: String,
    pub month_ends: u64,
    /// Seconds in this month.
    pub month_len: u64,
}

impl Periods {
    pub fn at(now: u64) -> Periods {
        let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(now)).to_string();
        // `YYYY-MM-DDThh:mm:ssZ`: the calendar fields are fixed-width.
        let (year, month) = (text[..4].parse::<u32>().unwrap_or(1970), text[5..7].parse::<u32>().unwrap_or(1));
        let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
        let first_of = |y: u32, m: u32| {
            humantime::parse_rfc3339(&format!("{y:04}-{m:02}-01T00:00:00Z")).map_or(0, crate::clock::unix_seconds)
        };
        let month_ends = first_of(ny, nm).max(now + 1);
        let month_len = month_ends.saturating_sub(first_of(year, month)).max(1);
        Periods {
            day: text[..10].to_owned(),
            day_ends: (now / 86_400 + 1) * 86_400,
            month: text[..7].to_owned(),
            month_ends,
            month_len,
        }
    }
}

/// Counters live a day past their period, for inspection.
const KEEP_AFTER_PERIOD: u64 = 86_400;

/// One counter of a customer: a field in a bucket (`d:<day>`, `m:<month>`,
/// `a` for per-artifact lifetime counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub bucket: String,
    pub field: String,
    /// Seconds the bucket is kept from now; `None` forever.
    pub ttl: Option<u64>,
}

/// A counter an initiation adds `add` to, refused if that would pass `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub counter: Counter,
    pub add: u64,
    pub limit: Option<u64>,
}

/// A set of leases (grants streaming now), refused when full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStep {
    pub set: String,
    pub limit: Option<u64>,
}

/// Everything one initiation checks and records, for the store to run
/// atomically.
#[derive(Debug, Clone)]
pub struct Initiation {
    pub customer: String,
    pub grant: String,
    pub now: u64,
    /// How long the "started" mark is kept (until the grant can no longer be
    /// used, started or not).
    pub started_ttl: u64,
    pub steps: Vec<Step>,
    pub leases: Vec<LeaseStep>,
    /// The leases' expiry (Unix seconds).
    pub lease_expires: u64,
    /// What the initiation puts into the lease sets: the grant id, or a
    /// [`lease_member`] naming the process that streams it too.
    pub lease_member: String,
    /// The bytes the grant has delivered (kept as long as its started mark).
    pub delivered: Counter,
    /// The byte counters of the steps: what a grant delivers beyond its
    /// file's size is charged to them as it is sent.
    pub byte_counters: Vec<Counter>,
    /// What each refusal means: `meaning[i]` belongs to `steps[i]` (or, past
    /// the steps, to `leases[i - steps.len()]`); `None` for count-only steps.
    pub meaning: Vec<Option<Applied>>,
}

/// What the store answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This request is the initiation; it was counted.
    Started,
    /// The grant was started before, at this instant; nothing counted.
    AlreadyStarted { at: u64 },
    /// Refused by step `index` (steps first, then lease sets): `used` of the
    /// limit is taken; a lease set also says when its oldest lease expires.
    Refused { index: usize, used: u64, oldest_lease_expires: Option<u64> },
}

/// What [`QuotaStore::acquire_leases`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// Every set holds the grant's lease now.
    Held,
    /// Lease set `index` is full: `used` leases, the oldest expiring then.
    Refused { index: usize, used: u64, oldest_lease_expires: Option<u64> },
}

/// An initiation refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("over the {} quota ({used} of {})", .limit.kind, .limit.limit)]
pub struct Exceeded {
    pub limit: Applied,
    pub used: u64,
    /// Seconds until trying again can succeed; `None` when waiting cannot
    /// help (a lifetime limit, or a file larger than a whole period allows).
    pub retry_after: Option<u64>,
    /// When the period's counter resets (period limits).
    pub resets_at: Option<u64>,
}

/// Settings of the download lifecycle, from `[downloads]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub defaults: Quota,
    /// How long after its start a grant stays resumable.
    pub resume_window: u64,
    pub lease_ttl: u64,
    /// Serve grant URLs on the token alone when the store is down.
    pub fail_open: bool,
    /// The most a grant delivers, in multiples of its file's size; 0: no
    /// bound.
    pub deliveries_per_grant: u64,
}

fn entitlement_field(prefix: &str, entitlement: &str) -> String {
    format!("{prefix}:{entitlement}")
}

/// The two scopes every download counts in: the customer's, and its
/// entitlement's.
fn scopes(entitlement: &str) -> [QuotaScope; 2] {
    [QuotaScope::Customer, QuotaScope::Entitlement(entitlement.to_owned())]
}

/// The lease set of a scope.
pub fn lease_set(scope: &QuotaScope) -> String {
    match scope {
        QuotaScope::Customer => "l".to_owned(),
        QuotaScope::Entitlement(e) => entitlement_field("l", e),
    }
}

/// The counter behind `kind` in `scope` (none for concurrency, which is
/// leases).
pub fn counter(kind: LimitKind, scope: &QuotaScope, periods: &Periods, now: u64, artifact: &str) -> Option<Counter> {
    let day = || (format!("d:{}", periods.day), Some(periods.day_ends - now + KEEP_AFTER_PERIOD));
    let month = || (format!("m:{}", periods.month), Some(periods.month_ends - now + KEEP_AFTER_PERIOD));
    let ((bucket, ttl), base) = match kind {
        LimitKind::DownloadsPerDay => (day(), "n".to_owned()),
        LimitKind::BytesPerDay => (day(), "b".to_owned()),
        LimitKind::DownloadsPerMonth => (month(), "n".to_owned()),
        LimitKind::BytesPerMonth => (month(), "b".to_owned()),
        LimitKind::DownloadsPerArtifact => (("a".to_owned(), None), artifact.to_owned()),
        LimitKind::ConcurrentDownloads => return None,
    };
    let field = match scope {
        QuotaScope::Customer => base,
        // `:` is not allowed in ids, so scoped fields never collide.
        QuotaScope::Entitlement(e) => format!("e:{e}:{base}"),
    };
    Some(Counter { bucket, field, ttl })
}

/// When a period limit will let a download through again.
fn resets_at(kind: LimitKind, periods: &Periods) -> Option<u64> {
    match kind {
        LimitKind::DownloadsPerDay | LimitKind::BytesPerDay => Some(periods.day_ends),
        LimitKind::DownloadsPerMonth | LimitKind::BytesPerMonth => Some(periods.month_ends),
        LimitKind::DownloadsPerArtifact | LimitKind::ConcurrentDownloads => None,
    }
}

/// The initiation of `grant` for `artifact` under `limits`.
pub fn plan(grant: &Grant, artifact: &Artifact, limits: &[Applied], settings: &Settings, now: u64) -> Initiation {
    let periods = Periods::at(now);
    let artifact_key = artifact.key();
    let scopes = scopes(&grant.entitlement);
    let mut steps = Vec::new();
    let mut meaning = Vec::new();
    let mut byte_counters = Vec::new();
    let limit_of = |kind, scope: &QuotaScope| limits.iter().find(|a| a.kind == kind && a.scope == *scope).cloned();
    for kind in LimitKind::ALL {
        let add = match kind {
            LimitKind::BytesPerDay | LimitKind::BytesPerMonth => artifact.size,
            _ => 1,
        };
        for scope in &scopes {
            if let Some(counter) = counter(kind, scope, &periods, now, &artifact_key) {
                if matches!(kind, LimitKind::BytesPerDay | LimitKind::BytesPerMonth) {
                    byte_counters.push(counter.clone());
                }
                let applied = limit_of(kind, scope);
                steps.push(Step { counter, add, limit: applied.as_ref().map(|a| a.limit) });
                meaning.push(applied);
            }
        }
    }
    let mut leases = Vec::new();
    for scope in &scopes {
        let applied = limit_of(LimitKind::ConcurrentDownloads, scope);
        leases.push(LeaseStep { set: lease_set(scope), limit: applied.as_ref().map(|a| a.limit) });
        meaning.push(applied);
    }
    // Marked started for as long as the grant can be used at all.
    let usable_until = grant.expires_at.0.max(now).saturating_add(settings.resume_window);
    let started_ttl = (usable_until - now).max(1);
    Initiation {
        customer: grant.customer.clone(),
        grant: grant.id.clone(),
        now,
        started_ttl,
        steps,
        leases,
        lease_expires: now + settings.lease_ttl,
        lease_member: grant.id.clone(),
        delivered: Counter { bucket: format!("g:{}", grant.id), field: "b".into(), ttl: Some(started_ttl) },
        byte_counters,
        meaning,
    }
}

/// A lease set's member for `grant` held by `holder` (a process): a grant
/// streamed by two gateways is in the set twice, once per holder, so that
/// one gateway releasing its hold leaves the other's. The sets' limits count
/// distinct grants: the grant id is what comes before the first space (grant
/// ids have none).
pub fn lease_member(grant: &str, holder: &str) -> String {
    format!("{grant} {holder}")
}

/// The grant of a lease member (a bare grant id is its own).
pub fn lease_grant(member: &str) -> &str {
    member.split_once(' ').map_or(member, |(grant, _)| grant)
}

impl Initiation {
    /// Turn a refusal from the store into the limit it names.
    pub fn exceeded(&self, index: usize, used: u64, oldest_lease_expires: Option<u64>) -> Option<Exceeded> {
        let limit = self.meaning.get(index)?.clone()?;
        let resets = resets_at(limit.kind, &Periods::at(self.now));
        let retry_at = match limit.kind {
            // A limit of 0 never frees up.
            LimitKind::ConcurrentDownloads if limit.limit == 0 => None,
            LimitKind::ConcurrentDownloads => Some(oldest_lease_expires.unwrap_or(self.lease_expires)),
            _ => {
                let add = self.steps.get(index).map_or(1, |s| s.add);
                // More than a whole period allows never fits, however long one waits.
                resets.filter(|_| add <= limit.limit)
            }
        };
        let retry_after = retry_at.map(|t| t.saturating_sub(self.now).max(1));
        Some(Exceeded { limit, used, retry_after, resets_at: resets })
    }
}

/// Usage against one limit, for `GET /v1/usage` and the `RateLimit` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub limit: Applied,
    pub used: u64,
    /// When the counter resets (period limits), Unix seconds.
    pub resets_at: Option<u64>,
}

/// What `limits` have used, and how many downloads the customer is streaming
/// now. Per-artifact limits are read for `artifact` when given, else left
/// out. One store round trip.
pub async fn usage(
    store: &dyn QuotaStore,
    customer: &str,
    limits: &[Applied],
    artifact: Option<&str>,
    now: u64,
) -> Result<(Vec<Usage>, u64), StoreError> {
    let periods = Periods::at(now);
    let mut counters = Vec::new();
    // The customer's own lease set first: the active download count.
    let mut sets = vec![lease_set(&QuotaScope::Customer)];
    let mut wanted = Vec::new();
    for a in limits {
        if a.kind == LimitKind::ConcurrentDownloads {
            wanted.push((a, Err(sets.len())));
            sets.push(lease_set(&a.scope));
        } else if a.kind == LimitKind::DownloadsPerArtifact && artifact.is_none() {
            continue;
        } else if let Some(c) = counter(a.kind, &a.scope, &periods, now, artifact.unwrap_or_default()) {
            wanted.push((a, Ok(counters.len())));
            counters.push(c);
        }
    }
    let (values, held) = store.read(customer, now, &counters, &sets).await?;
    let used = |i: Result<usize, usize>| match i {
        Ok(i) => values.get(i).copied().unwrap_or(0),
        Err(j) => held.get(j).copied().unwrap_or(0),
    };
    let usage = wanted
        .into_iter()
        .map(|(a, i)| Usage { limit: a.clone(), used: used(i), resets_at: resets_at(a.kind, &periods) })
        .collect();
    Ok((usage, held.first().copied().unwrap_or(0)))
}

/// The first limit that an initiation of a `size`-byte file would pass,
/// judging by `usage`. Concurrency is left to the initiation itself: a URL
/// may be asked for while other downloads run.
pub fn first_exceeded(usage: &[Usage], size: u64, now: u64) -> Option<Exceeded> {
    usage.iter().find_map(|u| {
        let add = match u.limit.kind {
            LimitKind::ConcurrentDownloads => return None,
            LimitKind::BytesPerDay | LimitKind::BytesPerMonth => size,
            _ => 1,
        };
        (u.used.saturating_add(add) > u.limit.limit).then(|| Exceeded {
            limit: u.limit.clone(),
            used: u.used,
            retry_after: u.resets_at.filter(|_| add <= u.limit.limit).map(|t| t.saturating_sub(now).max(1)),
            resets_at: u.resets_at,
        })
    })
}

/// The quota side of the state store.
#[async_trait::async_trait]
pub trait QuotaStore: Send + Sync + fmt::Debug {
    /// Run `initiation` atomically: if its grant is already started answer
    /// so; else check every step and lease set, and only if all pass, add to
    /// every counter, add the grant to every lease set and mark it started.
    async fn initiate(&self, initiation: &Initiation) -> Result<Outcome, StoreError>;

    /// Current values of `counters` and the number of grants with a live
    /// lease in each of `lease_sets`.
    async fn read(
        &self,
        customer: &str,
        now: u64,
        counters: &[Counter],
        lease_sets: &[String],
    ) -> Result<(Vec<u64>, Vec<u64>), StoreError>;

    /// Take leases for a stream of a grant started before (a resume), as
    /// `member` (a [`lease_member`]): a set that holds the member's grant
    /// already (under any holder) adds the member; one that does not takes
    /// it only if its distinct grants are below its limit. Atomic: nothing
    /// is written unless every set takes it. Leases expire at `expires`.
    async fn acquire_leases(
        &self,
        customer: &str,
        member: &str,
        leases: &[LeaseStep],
        now: u64,
        expires: u64,
    ) -> Result<Acquired, StoreError>;

    /// Extend `member`'s leases in `sets` to `now + ttl` (re-adding them if
    /// they lapsed).
    async fn renew_leases(
        &self,
        customer: &str,
        member: &str,
        sets: &[String],
        now: u64,
        ttl: u64,
    ) -> Result<(), StoreError>;

    /// Drop `member`'s leases in `sets` (other holders' of the same grant
    /// stay).
    async fn release_leases(&self, customer: &str, member: &str, sets: &[String]) -> Result<(), StoreError>;

    /// Record that a stream of a grant sent `sent` bytes, atomically: add
    /// them to the grant's `delivered` counter, and add to every counter of
    /// `charge` what the grant has now delivered beyond `size` (its file's
    /// size, charged at the initiation) that it had not before. Returns the
    /// grant's delivered total.
    async fn record_delivery(
        &self,
        customer: &str,
        delivered: &Counter,
        sent: u64,
        size: u64,
        charge: &[Counter],
        now: u64,
    ) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests;
