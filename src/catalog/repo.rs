//! Typed, validated access to the catalog in the state store: keys, references
//! between records, cursor pages and the release lifecycle.
//!
//! Key layout (see docs/state-store.md): product `{product}`, release
//! `{product}/{version}`, artifact `{product}/{version}/{filename}`, customer
//! `{customer}`, entitlement `{customer}/{entitlement}`, API key
//! `{customer}/{key id}`, grant `{customer}/{grant id}`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use semver::Version;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::model::{Customer, Entitlement, Product, Release, ReleaseStatus, Timestamp};
use super::store::{
    CasOutcome, Expect, Kind, MAX_PAGE, RecordStore, StoreError, Written, decode_json, get_json, put_json,
};
use crate::errors::{Classified, ErrorKind};

/// Page size when the caller gives none.
pub const DEFAULT_PAGE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A field of the request is not acceptable.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A record the request names or needs does not exist.
    #[error("{kind} {id:?} does not exist")]
    Missing { kind: &'static str, id: String },
    /// The request is valid but contradicts the record's state.
    #[error("{0}")]
    Conflict(String),
    /// The record is not at the revision the request was made against
    /// (`If-Match`), or exists when it must not (`If-None-Match: *`).
    #[error("the record is not at the expected revision")]
    PreconditionFailed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classified for CatalogError {
    fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::Invalid { .. } => ErrorKind::Invalid,
            CatalogError::Missing { .. } => ErrorKind::NotFound,
            CatalogError::Conflict(_) | CatalogError::PreconditionFailed => ErrorKind::Conflict,
            CatalogError::Store(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CatalogError::Invalid { .. } => "invalid_field",
            CatalogError::Missing { .. } => "not_found",
            CatalogError::Conflict(_) => "conflict",
            CatalogError::PreconditionFailed => "precondition_failed",
            CatalogError::Store(e) => e.code(),
        }
    }
}

/// One page of a listing; `next` is an opaque cursor for the following page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A lifecycle step of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseAction {
    /// Draft → published, stamping `published_at` with now, or with
    /// `backdated_to` (for releases that shipped before Tollgate existed; it is
    /// what maintenance windows are compared with).
    Publish { backdated_to: Option<Timestamp> },
    /// Published → yanked. Soft: the release and its objects stay.
    Yank,
    /// Yanked → published, keeping the original `published_at`.
    Restore,
}

#[derive(Debug, Clone)]
pub struct CatalogRepo {
    store: Arc<dyn RecordStore>,
}

/// Ids are 1-128 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`: they
/// appear in download paths, object keys and signed tokens.
pub fn check_id(field: &'static str, id: &str) -> Result<(), CatalogError> {
    if crate::signing::is_valid_id(id) && !id.starts_with('.') {
        Ok(())
    } else {
        Err(CatalogError::Invalid {
            field,
            reason: format!("{id:?} must be 1-128 characters of A-Z a-z 0-9 . _ - (not starting with '.')"),
        })
    }
}

/// Cursors are written as unpadded base64url and read leniently: trailing
/// bits need not be zero.
const CURSOR: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

/// Longest version a release may have, in characters: it is a segment of
/// download paths and storage keys.
pub const MAX_VERSION: usize = 128;

/// Versions are semantic versions of at most [`MAX_VERSION`] characters.
pub fn check_version(version: &Version) -> Result<(), CatalogError> {
    let len = version.to_string().len();
    if len > MAX_VERSION {
        return Err(CatalogError::Invalid {
            field: "version",
            reason: format!("{len} characters long; at most {MAX_VERSION}"),
        });
    }
    Ok(())
}

fn release_key(product: &str, version: &Version) -> String {
    format!("{product}/{version}")
}

/// How often a read-modify-write runs again when another writer changed the
/// record between its read and its write.
const UPDATE_ATTEMPTS: usize = 16;

/// A record as stored, with its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<T> {
    pub record: T,
    pub revision: u64,
}

/// A record after [`CatalogRepo::update`]: as stored now, and whether this
/// update wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated<T> {
    pub record: T,
    pub written: Written,
    pub revision: u64,
}

impl CatalogRepo {
    /// Read-modify-write one record as a compare-and-set on its revision.
    /// `change` sees the record as stored (`None`: there is none) and returns
    /// the record to store, or `None` to leave it as it is. When another
    /// writer changed the record in between, `change` runs again on the newer
    /// one, so no update is ever lost and no decision is taken on a stale
    /// read. `Ok(None)`: there was no record and none was written.
    /// A record with its revision (for an `ETag`).
    async fn stored<T: DeserializeOwned>(&self, kind: Kind, key: &str) -> Result<Option<Stored<T>>, CatalogError> {
        match self.store.get_versioned(kind, key).await? {
            None => Ok(None),
            Some(v) => Ok(Some(Stored { record: decode_json(kind, key, &v.value)?, revision: v.revision })),
        }
    }

    pub(crate) async fn update<T, F>(
        &self,
        kind: Kind,
        key: &str,
        change: F,
    ) -> Result<Option<Updated<T>>, CatalogError>
    where
        T: Serialize + DeserializeOwned + Sync,
        F: FnMut(Option<&T>) -> Result<Option<T>, CatalogError>,
    {
        self.update_if(kind, key, None, change).await
    }

    /// [`CatalogRepo::update`] made against a known state of the record
    /// (`precondition`: an `If-Match` revision, or absent for
    /// `If-None-Match: *`): when the record is not in that state, or leaves
    /// it before the write, nothing is written and the answer is
    /// `PreconditionFailed` (the caller decides again, not this function).
    pub(crate) async fn update_if<T, F>(
        &self,
        kind: Kind,
        key: &str,
        precondition: Option<Expect>,
        mut change: F,
    ) -> Result<Option<Updated<T>>, CatalogError>
    where
        T: Serialize + DeserializeOwned + Sync,
        F: FnMut(Option<&T>) -> Result<Option<T>, CatalogError>,
    {
        for _ in 0..UPDATE_ATTEMPTS {
            let (current, expect) = match self.store.get_versioned(kind, key).await? {
                None => (None, Expect::Absent),
                Some(v) => (Some((decode_json::<T>(kind, key, &v.value)?, v.revision)), Expect::Revision(v.revision)),
            };
            if precondition.is_some_and(|p| p != expect) {
                return Err(CatalogError::PreconditionFailed);
            }
            let Some(next) = change(current.as_ref().map(|(record, _)| record))? else {
                return Ok(current.map(|(record, revision)| Updated { record, written: Written::Unchanged, revision }));
            };
            let bytes = serde_json::to_vec(&next).map_err(|e| StoreError::Internal(e.to_string()))?;
            match self.store.put_if(kind, key, &bytes, expect).await? {
                CasOutcome::Written { written, revision } => {
                    return Ok(Some(Updated { record: next, written, revision }));
                }
                CasOutcome::Conflict if precondition.is_some() => return Err(CatalogError::PreconditionFailed),
                CasOutcome::Conflict => continue,
            }
        }
        Err(CatalogError::Conflict(format!("{kind} {key:?} kept changing during this update; try again")))
    }

    pub fn new(store: Arc<dyn RecordStore>) -> Self {
        Self { store }
    }

    pub fn records(&self) -> &Arc<dyn RecordStore> {
        &self.store
    }

    async fn page<T: DeserializeOwned>(
        &self,
        kind: Kind,
        prefix: &str,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<T>, CatalogError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..MAX_PAGE).contains(&limit) {
            return Err(CatalogError::Invalid { field: "limit", reason: format!("must be 1 to {}", MAX_PAGE - 1) });
        }
        // A cursor is the last key of the previous page, base64url: any such
        // text is a position in the listing (one made up is merely a place
        // to start from; the prefix still bounds what is listed).
        let after = match cursor {
            None => None,
            Some(c) => Some(CURSOR.decode(c).map(|b| String::from_utf8_lossy(&b).into_owned()).map_err(|_| {
                CatalogError::Invalid { field: "cursor", reason: "not a cursor from a previous page".into() }
            })?),
        };
        // One more than asked tells whether another page follows.
        let mut rows = self.store.list(kind, prefix, after.as_deref(), limit + 1).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(|(k, _)| URL_SAFE_NO_PAD.encode(k)) } else { None };
        let items = rows
            .into_iter()
            .map(|(key, value)| {
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt { kind, key, detail: e.to_string() })
            })
            .collect::<Result<Vec<T>, _>>()?;
        Ok(Page { items, next })
    }

    async fn require<T: DeserializeOwned>(&self, kind: Kind, what: &'static str, key: &str) -> Result<T, CatalogError> {
        get_json(self.store.as_ref(), kind, key)
            .await?
            .ok_or_else(|| CatalogError::Missing { kind: what, id: key.to_owned() })
    }

    // Products.

    pub async fn put_product(&self, p: &Product) -> Result<Written, CatalogError> {
        Ok(self.put_product_if(p, None).await?.written)
    }

    /// Create or replace a product, if the record is as `precondition` says.
    pub async fn put_product_if(
        &self,
        p: &Product,
        precondition: Option<Expect>,
    ) -> Result<Updated<Product>, CatalogError> {
        check_id("id", &p.id)?;
        if p.name.trim().is_empty() {
            return Err(CatalogError::Invalid { field: "name", reason: "must not be empty".into() });
        }
        let updated = self.update_if(Kind::Product, &p.id, precondition, |_| Ok(Some(p.clone()))).await?;
        updated.ok_or_else(|| StoreError::Internal("a product write stored nothing".into()).into())
    }

    pub async fn product(&self, id: &str) -> Result<Option<Product>, CatalogError> {
        Ok(get_json(self.store.as_ref(), Kind::Product, id).await?)
    }

    pub async fn product_stored(&self, id: &str) -> Result<Option<Stored<Product>>, CatalogError> {
        self.stored(Kind::Product, id).await
    }

    pub async fn products(&self, cursor: Option<&str>, limit: Option<usize>) -> Result<Page<Product>, CatalogError> {
        self.page(Kind::Product, "", cursor, limit).await
    }

    /// Every product, by id.
    pub async fn all_products(&self) -> Result<Vec<Product>, CatalogError> {
        self.all(Kind::Product, "").await
    }

    /// Delete a product that has no releases left.
    pub async fn delete_product(&self, id: &str) -> Result<bool, CatalogError> {
        if !self.store.list(Kind::Release, &format!("{id}/"), None, 1).await?.is_empty() {
            return Err(CatalogError::Conflict(format!("product {id:?} still has releases; delete them first")));
        }
        Ok(self.store.delete(Kind::Product, id).await?)
    }

    // Releases.

    /// Create or replace a release of an existing product. A release written as
    /// `published` without a publication time is stamped with `now`.
    /// Returns the record as stored.
    pub async fn put_release(&self, r: &Release, now: Timestamp) -> Result<(Written, Release), CatalogError> {
        let u = self.put_release_if(&r.product, &r.version, None, now, |_| r.clone()).await?;
        Ok((u.written, u.record))
    }

    /// Create or change a release as a read-modify-write: `build` gets the
    /// release as stored (if any) and returns it as it is to be (fields a
    /// request leaves out keep their stored values), if the record is as
    /// `precondition` says.
    pub async fn put_release_if(
        &self,
        product: &str,
        version: &Version,
        precondition: Option<Expect>,
        now: Timestamp,
        mut build: impl FnMut(Option<&Release>) -> Release,
    ) -> Result<Updated<Release>, CatalogError> {
        check_id("product", product)?;
        check_version(version)?;
        self.require::<Product>(Kind::Product, "product", product).await?;
        let key = release_key(product, version);
        let updated = self
            .update_if::<Release, _>(Kind::Release, &key, precondition, |current| {
                let mut r = build(current);
                if r.status != ReleaseStatus::Draft && r.published_at.is_none() {
                    r.published_at = Some(now);
                }
                Ok(Some(r))
            })
            .await?;
        updated.ok_or_else(|| StoreError::Internal("a release write stored nothing".into()).into())
    }

    pub async fn release_stored(
        &self,
        product: &str,
        version: &Version,
    ) -> Result<Option<Stored<Release>>, CatalogError> {
        self.stored(Kind::Release, &release_key(product, version)).await
    }

    pub async fn release(&self, product: &str, version: &Version) -> Result<Option<Release>, CatalogError> {
        Ok(get_json(self.store.as_ref(), Kind::Release, &release_key(product, version)).await?)
    }

    /// A product's releases, in key order (not version order: sort if needed).
    pub async fn releases(
        &self,
        product: &str,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<Release>, CatalogError> {
        self.page(Kind::Release, &format!("{product}/"), cursor, limit).await
    }

    /// Every release of a product (all pages).
    pub async fn all_releases(&self, product: &str) -> Result<Vec<Release>, CatalogError> {
        self.all(Kind::Release, &format!("{product}/")).await
    }

    /// Delete a release that has no artifacts left.
    pub async fn delete_release(&self, product: &str, version: &Version) -> Result<bool, CatalogError> {
        let artifacts = format!("{}/", release_key(product, version));
        for kind in [Kind::Artifact, Kind::Upload] {
            if !self.store.list(kind, &artifacts, None, 1).await?.is_empty() {
                return Err(CatalogError::Conflict(format!(
                    "release {product}/{version} still has artifacts or pending uploads; delete them first"
                )));
            }
        }
        Ok(self.store.delete(Kind::Release, &release_key(product, version)).await?)
    }

    /// Apply a lifecycle step. Repeating a step that already happened is a
    /// no-op (retries from CI are safe); a step that makes no sense from the
    /// current state is a conflict.
    pub async fn apply(
        &self,
        product: &str,
        version: &Version,
        action: ReleaseAction,
        now: Timestamp,
    ) -> Result<Release, CatalogError> {
        let key = release_key(product, version);
        let missing = || CatalogError::Missing { kind: "release", id: key.clone() };
        let updated = self
            .update::<Release, _>(Kind::Release, &key, |current| {
                let mut r = current.ok_or_else(missing)?.clone();
                lifecycle_step(&mut r, action, now, &key)
            })
            .await?;
        updated.map(|u| u.record).ok_or_else(missing)
    }

    // Customers.

    /// Create or change a customer as a read-modify-write: `change` gets the
    /// customer as stored (if any) and returns it as it is to be. A change
    /// racing another (a rename and a suspension, say) is made on top of it,
    /// never on a stale read.
    pub async fn update_customer(
        &self,
        id: &str,
        precondition: Option<Expect>,
        mut change: impl FnMut(Option<&Customer>) -> Customer,
    ) -> Result<Updated<Customer>, CatalogError> {
        check_id("id", id)?;
        let updated = self
            .update_if::<Customer, _>(Kind::Customer, id, precondition, |current| Ok(Some(change(current))))
            .await?;
        updated.ok_or_else(|| StoreError::Internal("a customer write stored nothing".into()).into())
    }

    pub async fn customer_stored(&self, id: &str) -> Result<Option<Stored<Customer>>, CatalogError> {
        self.stored(Kind::Customer, id).await
    }

    pub async fn put_customer(&self, c: &Customer) -> Result<Written, CatalogError> {
        check_id("id", &c.id)?;
        Ok(put_json(self.store.as_ref(), Kind::Customer, &c.id, c).await?)
    }

    pub async fn customer(&self, id: &str) -> Result<Option<Customer>, CatalogError> {
        Ok(get_json(self.store.as_ref(), Kind::Customer, id).await?)
    }

    pub async fn customers(&self, cursor: Option<&str>, limit: Option<usize>) -> Result<Page<Customer>, CatalogError> {
        self.page(Kind::Customer, "", cursor, limit).await
    }

    /// Every customer (all pages).
    pub async fn all_customers(&self) -> Result<Vec<Customer>, CatalogError> {
        self.all(Kind::Customer, "").await
    }

    // Entitlements.

    /// Every entitlement of every customer (all pages).
    pub async fn all_entitlements(&self) -> Result<Vec<Entitlement>, CatalogError> {
        self.all(Kind::Entitlement, "").await
    }

    /// Create or replace an entitlement; its customer and product must exist.
    pub async fn put_entitlement(&self, e: &Entitlement) -> Result<Written, CatalogError> {
        Ok(self.put_entitlement_if(e, None).await?.written)
    }

    /// Create or replace an entitlement, if the record is as `precondition`
    /// says; its customer and product must exist.
    pub async fn put_entitlement_if(
        &self,
        e: &Entitlement,
        precondition: Option<Expect>,
    ) -> Result<Updated<Entitlement>, CatalogError> {
        check_id("id", &e.id)?;
        if e.id.len() > super::grants::MAX_ENTITLEMENT_ID {
            return Err(CatalogError::Invalid {
                field: "id",
                reason: format!("entitlement ids are at most {} characters", super::grants::MAX_ENTITLEMENT_ID),
            });
        }
        check_id("customer", &e.customer)?;
        self.require::<Customer>(Kind::Customer, "customer", &e.customer).await?;
        self.require::<Product>(Kind::Product, "product", &e.product).await?;
        if e.expires_at.is_some_and(|end| end <= e.starts_at) {
            return Err(CatalogError::Invalid { field: "expires_at", reason: "must be after starts_at".into() });
        }
        if e.channels.is_empty() {
            return Err(CatalogError::Invalid { field: "channels", reason: "must name at least one channel".into() });
        }
        let key = format!("{}/{}", e.customer, e.id);
        let updated = self.update_if(Kind::Entitlement, &key, precondition, |_| Ok(Some(e.clone()))).await?;
        updated.ok_or_else(|| StoreError::Internal("an entitlement write stored nothing".into()).into())
    }

    pub async fn entitlement_stored(
        &self,
        customer: &str,
        id: &str,
    ) -> Result<Option<Stored<Entitlement>>, CatalogError> {
        self.stored(Kind::Entitlement, &format!("{customer}/{id}")).await
    }

    pub async fn entitlement(&self, customer: &str, id: &str) -> Result<Option<Entitlement>, CatalogError> {
        Ok(get_json(self.store.as_ref(), Kind::Entitlement, &format!("{customer}/{id}")).await?)
    }

    /// Every entitlement of a customer (all pages).
    pub async fn entitlements_of(&self, customer: &str) -> Result<Vec<Entitlement>, CatalogError> {
        self.all(Kind::Entitlement, &format!("{customer}/")).await
    }

    /// Every record of `kind` under `prefix`, read page by page.
    pub(crate) async fn all<T: DeserializeOwned>(&self, kind: Kind, prefix: &str) -> Result<Vec<T>, CatalogError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page: Page<T> = self.page(kind, prefix, cursor.as_deref(), Some(MAX_PAGE - 1)).await?;
            all.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    pub async fn delete_entitlement(&self, customer: &str, id: &str) -> Result<bool, CatalogError> {
        Ok(self.store.delete(Kind::Entitlement, &format!("{customer}/{id}")).await?)
    }
}

/// One lifecycle step on `r`: the release to store, `None` when the step
/// already happened, or why it makes no sense from `r`'s state.
fn lifecycle_step(
    r: &mut Release,
    action: ReleaseAction,
    now: Timestamp,
    key: &str,
) -> Result<Option<Release>, CatalogError> {
    match (action, r.status) {
        (ReleaseAction::Publish { backdated_to }, ReleaseStatus::Draft) => {
            r.status = ReleaseStatus::Published;
            r.published_at = Some(backdated_to.unwrap_or(now));
        }
        (ReleaseAction::Publish { .. }, ReleaseStatus::Published)
        | (ReleaseAction::Yank, ReleaseStatus::Yanked)
        | (ReleaseAction::Restore, ReleaseStatus::Published) => return Ok(None),
        (ReleaseAction::Yank, ReleaseStatus::Published) => r.status = ReleaseStatus::Yanked,
        (ReleaseAction::Restore, ReleaseStatus::Yanked) => r.status = ReleaseStatus::Published,
        (ReleaseAction::Publish { .. }, ReleaseStatus::Yanked) => {
            return Err(CatalogError::Conflict(format!("release {key} is yanked; restore it instead")));
        }
        (ReleaseAction::Yank | ReleaseAction::Restore, ReleaseStatus::Draft) => {
            return Err(CatalogError::Conflict(format!("release {key} is a draft; publish it first")));
        }
    }
    Ok(Some(r.clone()))
}
