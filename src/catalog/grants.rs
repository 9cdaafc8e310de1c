//! Grants: one per download URL handed out. The grant id embeds the id of the
//! entitlement that allowed it (`<24 hex>.<entitlement>`), so the data plane
//! can fetch the grant, the customer, the entitlement, the product, the
//! release and the artifact in one store round trip ([`CatalogRepo::grant_context`]).
//!
//! Key: `{customer}/{grant id}`.

use semver::Version;

use super::artifacts::artifact_key;
use super::model::{Artifact, Customer, Entitlement, Grant, Product, Release};
use super::repo::{CatalogError, CatalogRepo};
use super::store::{Kind, MAX_PAGE, StoreError, decode_json, put_json};

/// Hex digits of randomness at the start of a grant id (96 bits).
const RANDOM_HEX: usize = 24;
/// Longest entitlement id, so that a grant id stays within the 128 characters
/// a signed token's `gid` may have.
pub const MAX_ENTITLEMENT_ID: usize = 128 - RANDOM_HEX - 1;

/// A fresh grant id for an entitlement.
pub fn new_grant_id(entitlement: &str) -> Result<String, CatalogError> {
    // Entitlements are refused longer ids on write; one stored before that
    // rule gets a clear answer instead of a URL that cannot be signed.
    if entitlement.len() > MAX_ENTITLEMENT_ID {
        return Err(CatalogError::Invalid {
            field: "entitlement",
            reason: format!("id longer than {MAX_ENTITLEMENT_ID} characters; re-create it with a shorter id"),
        });
    }
    let mut bytes = [0u8; RANDOM_HEX / 2];
    getrandom::fill(&mut bytes)
        .map_err(|e| CatalogError::Store(StoreError::Internal(format!("no randomness: {e}"))))?;
    Ok(format!("{}.{entitlement}", hex::encode(bytes)))
}

/// The entitlement id inside a grant id, if it has the shape of one.
pub fn entitlement_of(grant_id: &str) -> Option<&str> {
    let (random, entitlement) = grant_id.split_at_checked(RANDOM_HEX)?;
    let entitlement = entitlement.strip_prefix('.')?;
    let hex = random.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && !entitlement.is_empty()).then_some(entitlement)
}

/// What the data plane needs to re-check a grant, read together.
#[derive(Debug, Clone)]
pub struct GrantContext {
    pub grant: Option<Grant>,
    pub customer: Option<Customer>,
    pub entitlement: Option<Entitlement>,
    /// For its delivery mode.
    pub product: Option<Product>,
    pub release: Option<Release>,
    pub artifact: Option<Artifact>,
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: Kind,
    key: &str,
    bytes: Option<Vec<u8>>,
) -> Result<Option<T>, StoreError> {
    bytes.map(|b| decode_json(kind, key, &b)).transpose()
}

impl CatalogRepo {
    pub async fn put_grant(&self, g: &Grant) -> Result<(), CatalogError> {
        put_json(self.records().as_ref(), Kind::Grant, &format!("{}/{}", g.customer, g.id), g).await?;
        Ok(())
    }

    /// Record a grant's start, as a compare-and-set on its record: the start
    /// time when it has none, and `from` (the starting client's network)
    /// when it has none — so a racing request never moves either. A grant
    /// whose record is gone stays gone.
    pub async fn mark_grant_started(
        &self,
        g: &Grant,
        at: super::Timestamp,
        from: Option<ipnet::IpNet>,
    ) -> Result<(), CatalogError> {
        let key = format!("{}/{}", g.customer, g.id);
        self.update::<Grant, _>(Kind::Grant, &key, |current| {
            let Some(current) = current else { return Ok(None) };
            let started_at = current.started_at.or(Some(at));
            let started_from = current.started_from.or(from);
            if started_at == current.started_at && started_from == current.started_from {
                return Ok(None);
            }
            Ok(Some(Grant { started_at, started_from, ..current.clone() }))
        })
        .await?;
        Ok(())
    }

    /// Delete the grants no URL can use any more: past their expiry by more
    /// than `usable_after_expiry` (the resume window, plus the clock skew a
    /// start may have had past the expiry). Walks every grant a page at a
    /// time; returns how many were deleted.
    pub async fn purge_grants(&self, now: u64, usable_after_expiry: u64) -> Result<usize, CatalogError> {
        let store = self.records().as_ref();
        let mut after: Option<String> = None;
        let mut purged = 0;
        loop {
            let page = store.list(Kind::Grant, "", after.as_deref(), MAX_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in &page {
                let expires = match serde_json::from_slice::<Grant>(value) {
                    Ok(g) => g.expires_at.0,
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "skipping a corrupt grant record");
                        continue;
                    }
                };
                if expires.saturating_add(usable_after_expiry) < now && store.delete(Kind::Grant, key).await? {
                    purged += 1;
                }
            }
        }
        Ok(purged)
    }

    /// The grant `grant_id` of `customer` and everything it depends on, as one
    /// read. `None` when the grant id is not one this gateway mints.
    pub async fn grant_context(
        &self,
        customer: &str,
        grant_id: &str,
        product: &str,
        version: &Version,
        filename: &str,
    ) -> Result<Option<GrantContext>, CatalogError> {
        let Some(entitlement) = entitlement_of(grant_id) else {
            return Ok(None);
        };
        let keys = [
            (Kind::Grant, format!("{customer}/{grant_id}")),
            (Kind::Customer, customer.to_owned()),
            (Kind::Entitlement, format!("{customer}/{entitlement}")),
            (Kind::Product, product.to_owned()),
            (Kind::Release, format!("{product}/{version}")),
            (Kind::Artifact, artifact_key(product, version, filename)),
        ];
        let asked: Vec<(Kind, &str)> = keys.iter().map(|(k, key)| (*k, key.as_str())).collect();
        let got = self.records().get_many(&asked).await?;
        let [g, c, e, p, r, a]: [Option<Vec<u8>>; 6] = got.try_into().map_err(|_| {
            CatalogError::Store(StoreError::Internal("the store answered a different number of records".into()))
        })?;
        Ok(Some(GrantContext {
            grant: decode(Kind::Grant, &keys[0].1, g)?,
            customer: decode(Kind::Customer, &keys[1].1, c)?,
            entitlement: decode(Kind::Entitlement, &keys[2].1, e)?,
            product: decode(Kind::Product, &keys[3].1, p)?,
            release: decode(Kind::Release, &keys[4].1, r)?,
            artifact: decode(Kind::Artifact, &keys[5].1, a)?,
        }))
    }
}

/// How often grants past use are deleted.
pub const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Delete grants no URL can use any more, every [`PURGE_EVERY`], until the
/// task is dropped.
pub async fn purge_worker(
    catalog: CatalogRepo,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    usable_after_expiry: u64,
) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        match catalog.purge_grants(clock.now_unix(), usable_after_expiry).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired grants deleted"),
            Err(e) => tracing::warn!(error = %e, "could not purge expired grants"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ids_carry_their_entitlement() {
        let id = new_grant_id("ent-2026.a_b").unwrap();
        assert_eq!(entitlement_of(&id), Some("ent-2026.a_b"));
        assert!(crate::signing::is_valid_id(&new_grant_id(&"e".repeat(MAX_ENTITLEMENT_ID)).unwrap()));
        assert!(new_grant_id(&"e".repeat(MAX_ENTITLEMENT_ID + 1)).is_err());
        for bad in ["", "abc", "0123456789abcdef01234567", "0123456789abcdef01234567.", "0123456789ABCDEF01234567.e"] {
            assert_eq!(entitlement_of(bad), None, "{bad}");
        }
    }
}
