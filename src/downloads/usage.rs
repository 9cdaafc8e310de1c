//! A customer's quota usage, as the customer API and (later) the portal
//! show it.

use crate::catalog::{CatalogError, Customer};
use crate::quota::{self, Usage};
use crate::services::Services;

/// Usage against every limit in force for a customer.
#[derive(Debug, Clone)]
pub struct CustomerUsage {
    /// The customer's limits (or the configured default's), then those its
    /// entitlements set for their own downloads.
    pub usage: Vec<Usage>,
    /// Downloads of the customer streaming right now (live leases).
    pub active: u64,
    /// When it was read, Unix seconds.
    pub now: u64,
}

/// Read `customer`'s usage; per-artifact limits for `artifact`
/// (`product/version/filename`) when given. One store round trip after the
/// entitlements are read.
pub async fn usage(svc: &Services, customer: &Customer, artifact: Option<&str>) -> Result<CustomerUsage, CatalogError> {
    let now = svc.clock.now_unix();
    let defaults = &svc.downloads.quota.defaults;
    let mut limits = quota::limits_for(defaults, customer, None);
    for e in svc.catalog.entitlements_of(&customer.id).await? {
        if !e.quota.is_empty() {
            let own = quota::limits_for(defaults, customer, Some(&e));
            limits.extend(own.into_iter().filter(|a| a.scope != quota::QuotaScope::Customer));
        }
    }
    let (usage, active) = quota::usage(svc.quotas.as_ref(), &customer.id, &limits, artifact, now).await?;
    Ok(CustomerUsage { usage, active, now })
}
