//! Leases: how `concurrent_downloads` knows which grants are streaming.
//!
//! The initiation puts the grant into the customer's lease sets with an
//! expiry. While this process streams any request of that grant, it renews
//! the lease every third of its lifetime ([`Leases::renew_all`], run by the
//! gateway); when its last stream of the grant ends, it drops the lease. A
//! process that dies, or loses the store, simply stops renewing: the lease
//! expires and the slot frees itself — nothing leaks.
//!
//! A lease is this process's hold on a grant: the lease sets hold one member
//! per grant and process ([`super::lease_member`]) and count distinct
//! grants, so a short request of a grant on one gateway, ending, releases
//! its own hold and never the one of a stream of the same grant running on
//! another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Acquired, LeaseStep, QuotaStore};
use crate::clock::Clock;

type GrantKey = (String, String);

/// The grants this process is streaming, with how many streams each.
#[derive(Debug)]
pub struct Leases {
    store: Arc<dyn QuotaStore>,
    clock: Arc<dyn Clock>,
    ttl: u64,
    /// This process, in its lease members ([`super::lease_member`]).
    holder: String,
    held: Mutex<HashMap<GrantKey, Held>>,
}

#[derive(Debug)]
struct Held {
    streams: usize,
    sets: Vec<String>,
    /// The store holds the lease for this process (taken or initiated).
    confirmed: bool,
}

impl Leases {
    /// `holder` names this process (unique among the gateways sharing the
    /// store, without spaces).
    pub fn new(store: Arc<dyn QuotaStore>, clock: Arc<dyn Clock>, ttl: u64, holder: String) -> Self {
        Self { store, clock, ttl: ttl.max(3), holder, held: Mutex::new(HashMap::new()) }
    }

    /// This process's lease member for `grant`.
    pub fn member(&self, grant: &str) -> String {
        super::lease_member(grant, &self.holder)
    }

    /// How often [`Leases::renew_all`] must run.
    pub fn renew_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ttl / 3)
    }

    /// The lease lifetime, in seconds.
    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// Hold `grant`'s leases while the returned guard lives. The initiation
    /// wrote the lease to the store (`initiated`). A grant resumed later may
    /// have had its lease released or lapsed, and the customer may be
    /// streaming others meanwhile: until this process holds the lease, each
    /// new stream takes it in the store, within the lease sets' limits
    /// (`leases`). A full set refuses the stream; a store that cannot be
    /// reached does not (the stream is served, its lease renewed later).
    // SECURITY: without the check on resumes, grants started with a one-byte
    // range and resumed together would stream past `concurrent_downloads`.
    pub async fn hold(
        self: &Arc<Self>,
        customer: &str,
        grant: &str,
        leases: &[LeaseStep],
        initiated: bool,
    ) -> Result<LeaseGuard, LeaseRefused> {
        let key = (customer.to_owned(), grant.to_owned());
        let confirmed = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let sets = leases.iter().map(|l| l.set.clone()).collect();
            let h = held.entry(key.clone()).or_insert(Held { streams: 0, sets, confirmed: false });
            h.streams += 1;
            h.confirmed |= initiated;
            h.confirmed
        };
        let guard = LeaseGuard { leases: self.clone(), key: Some(key.clone()) };
        if confirmed {
            return Ok(guard);
        }
        let now = self.clock.now_unix();
        let member = self.member(grant);
        match self.store.acquire_leases(customer, &member, leases, now, now.saturating_add(self.ttl)).await {
            Ok(Acquired::Held) => {
                self.confirm(&key);
                Ok(guard)
            }
            Ok(Acquired::Refused { index, used, oldest_lease_expires }) => {
                Err(LeaseRefused { index, used, oldest_lease_expires, _guard: guard })
            }
            Err(e) => {
                // Served without the check; the next renewal writes the lease.
                tracing::warn!(%customer, %grant, error = %e, "could not take a download lease; serving without it");
                self.confirm(&key);
                Ok(guard)
            }
        }
    }

    /// Mark `key`'s lease as the store's, for the renewals.
    fn confirm(&self, key: &GrantKey) {
        if let Some(h) = self.held.lock().unwrap_or_else(PoisonError::into_inner).get_mut(key) {
            h.confirmed = true;
        }
    }

    /// Renew every [`Leases::renew_every`], until the task is dropped.
    pub async fn renew_worker(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.renew_every());
        loop {
            tick.tick().await;
            self.renew_all().await;
        }
    }

    /// Extend every lease this process holds. Failures are logged and left to
    /// the next round: a stream is never cut for want of a lease.
    pub async fn renew_all(&self) {
        let now = self.clock.now_unix();
        // Only leases the store granted: renewing one still being asked for
        // would write it past the limit its request is checked against.
        let held: Vec<(GrantKey, Vec<String>)> = {
            let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.iter().filter(|(_, h)| h.confirmed).map(|(k, h)| (k.clone(), h.sets.clone())).collect()
        };
        let quotas = &self.store;
        for (key, sets) in held {
            let (customer, grant) = (&key.0, &key.1);
            let member = self.member(grant);
            if let Err(e) = quotas.renew_leases(customer, &member, &sets, now, self.ttl).await {
                tracing::warn!(%customer, %grant, error = %e, "could not renew a download lease");
                continue;
            }
            // Its last stream may have ended (and released) meanwhile; the
            // renewal must not bring the lease back.
            let still_held = self.held.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&key);
            if !still_held && let Err(e) = quotas.release_leases(customer, &member, &sets).await {
                tracing::warn!(%customer, %grant, error = %e, "could not release a download lease; it will expire");
            }
        }
    }

    fn release(self: &Arc<Self>, key: GrantKey) {
        let sets = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(h) = held.get_mut(&key) else { return };
            h.streams -= 1;
            if h.streams > 0 {
                return;
            }
            held.remove(&key).map(|h| h.sets).unwrap_or_default()
        };
        let store = self.store.clone();
        let member = self.member(&key.1);
        // Dropped outside a runtime (process exit): the lease expires instead.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let (customer, grant) = key;
                if let Err(e) = store.release_leases(&customer, &member, &sets).await {
                    tracing::warn!(%customer, %grant, error = %e, "could not release a download lease; it will expire");
                }
            });
        }
    }
}

/// A resumed stream the lease sets have no room for: set `index` of the
/// leases asked for holds `used`, the oldest expiring then.
#[derive(Debug)]
pub struct LeaseRefused {
    pub index: usize,
    pub used: u64,
    pub oldest_lease_expires: Option<u64>,
    /// Released with the refusal: the stream never counted.
    _guard: LeaseGuard,
}

/// One stream's hold on its grant's lease.
#[derive(Debug)]
pub struct LeaseGuard {
    leases: Arc<Leases>,
    key: Option<GrantKey>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.leases.release(key);
        }
    }
}
