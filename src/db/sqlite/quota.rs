//! Quotas on SQLite: one `IMMEDIATE` transaction per initiation (the write
//! lock is taken first, so two initiations never interleave their checks).
//!
//! Tables (schema version 2, see [`super::SqliteDb::open`]): `quota_counters`
//! `(customer, bucket, field) → value, expires_at`, `quota_started`
//! `(customer, grant_id) → started_at, expires_at`, `quota_leases`
//! `(customer, lease_set, grant_id) → expires_at`, where `grant_id` holds a
//! lease member (`<grant> <holder>`: a row per grant and gateway; limits
//! count distinct grants). Rows past `expires_at` are
//! treated as absent and deleted by the next initiation of that customer.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Cached as _, SqliteDb, sqlite_error, to_i64, to_u64};
use crate::catalog::store::StoreError;
use crate::quota::{Acquired, Counter, Initiation, LeaseStep, Outcome, QuotaStore, lease_grant};

/// `expires_at` of a row kept `ttl` seconds from `now`; `None` forever.
fn expiry(now: u64, ttl: Option<u64>) -> Option<i64> {
    ttl.map(|t| to_i64(now.saturating_add(t)))
}

/// A lease set's distinct grants (`grant_id` holds a lease member,
/// `<grant> <holder>`), its oldest expiry, and whether grant `?3` is one.
const LEASE_CENSUS: &str = "SELECT COUNT(DISTINCT substr(grant_id, 1, instr(grant_id || ' ', ' ') - 1)),
            MIN(expires_at),
            COALESCE(SUM(substr(grant_id, 1, instr(grant_id || ' ', ' ') - 1) = ?3), 0)
     FROM quota_leases WHERE customer = ?1 AND lease_set = ?2";

const LIVE_COUNTER: &str = "SELECT value FROM quota_counters
     WHERE customer = ?1 AND bucket = ?2 AND field = ?3 AND (expires_at IS NULL OR expires_at > ?4)";

#[async_trait::async_trait]
impl QuotaStore for SqliteDb {
    async fn initiate(&self, i: &Initiation) -> Result<Outcome, StoreError> {
        let i = i.clone();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite_error)?;
            let (customer, now) = (i.customer.as_str(), to_i64(i.now));
            for table in ["quota_counters", "quota_started", "quota_leases"] {
                tx.cached_exec(&format!("DELETE FROM {table} WHERE customer = ?1 AND expires_at <= ?2"), params![customer, now])
                    .map_err(sqlite_error)?;
            }
            let started: Option<i64> = tx
                .cached_row(
                    "SELECT started_at FROM quota_started WHERE customer = ?1 AND grant_id = ?2",
                    params![customer, i.grant],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sqlite_error)?;
            if let Some(at) = started {
                return Ok(Outcome::AlreadyStarted { at: to_u64(at) });
            }
            for (index, s) in i.steps.iter().enumerate() {
                let Some(limit) = s.limit else { continue };
                let used: i64 = tx
                    .cached_row(LIVE_COUNTER, params![customer, s.counter.bucket, s.counter.field, now], |r| r.get(0))
                    .optional()
                    .map_err(sqlite_error)?
                    .unwrap_or(0);
                if to_u64(used).saturating_add(s.add) > limit {
                    return Ok(Outcome::Refused { index, used: to_u64(used), oldest_lease_expires: None });
                }
            }
            for (j, l) in i.leases.iter().enumerate() {
                let Some(limit) = l.limit else { continue };
                let (held, oldest, mine): (i64, Option<i64>, i64) = tx
                    .cached_row(LEASE_CENSUS, params![customer, l.set, i.grant], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(sqlite_error)?;
                if mine == 0 && to_u64(held) >= limit {
                    return Ok(Outcome::Refused {
                        index: i.steps.len() + j,
                        used: to_u64(held),
                        oldest_lease_expires: oldest.map(to_u64),
                    });
                }
            }
            for s in &i.steps {
                tx.cached_exec(
                    "INSERT INTO quota_counters (customer, bucket, field, value, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (customer, bucket, field) DO UPDATE
                     SET value = value + excluded.value, expires_at = excluded.expires_at",
                    params![customer, s.counter.bucket, s.counter.field, to_i64(s.add), expiry(i.now, s.counter.ttl)],
                )
                .map_err(sqlite_error)?;
            }
            for l in &i.leases {
                tx.cached_exec(
                    "INSERT OR REPLACE INTO quota_leases (customer, lease_set, grant_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![customer, l.set, i.lease_member, to_i64(i.lease_expires)],
                )
                .map_err(sqlite_error)?;
            }
            tx.cached_exec(
                "INSERT INTO quota_started (customer, grant_id, started_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![customer, i.grant, now, to_i64(i.now.saturating_add(i.started_ttl))],
            )
            .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(Outcome::Started)
        })
        .await
    }

    async fn read(
        &self,
        customer: &str,
        now: u64,
        counters: &[Counter],
        lease_sets: &[String],
    ) -> Result<(Vec<u64>, Vec<u64>), StoreError> {
        let (customer, counters, sets) = (customer.to_owned(), counters.to_vec(), lease_sets.to_vec());
        let now = to_i64(now);
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            let mut values = Vec::with_capacity(counters.len());
            for c in &counters {
                let v: Option<i64> = tx
                    .cached_row(LIVE_COUNTER, params![customer, c.bucket, c.field, now], |r| r.get(0))
                    .optional()
                    .map_err(sqlite_error)?;
                values.push(to_u64(v.unwrap_or(0)));
            }
            let mut held = Vec::with_capacity(sets.len());
            for set in &sets {
                let n: i64 = tx
                    .cached_row(
                        "SELECT COUNT(DISTINCT substr(grant_id, 1, instr(grant_id || ' ', ' ') - 1)) FROM quota_leases
                         WHERE customer = ?1 AND lease_set = ?2 AND expires_at > ?3",
                        params![customer, set, now],
                        |r| r.get(0),
                    )
                    .map_err(sqlite_error)?;
                held.push(to_u64(n));
            }
            tx.commit().map_err(sqlite_error)?;
            Ok((values, held))
        })
        .await
    }

    async fn acquire_leases(
        &self,
        customer: &str,
        member: &str,
        leases: &[LeaseStep],
        now: u64,
        expires: u64,
    ) -> Result<Acquired, StoreError> {
        let (customer, member, leases) = (customer.to_owned(), member.to_owned(), leases.to_vec());
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite_error)?;
            let now = to_i64(now);
            tx.cached_exec("DELETE FROM quota_leases WHERE customer = ?1 AND expires_at <= ?2", params![customer, now])
                .map_err(sqlite_error)?;
            for (index, l) in leases.iter().enumerate() {
                let Some(limit) = l.limit else { continue };
                let (held, oldest, mine): (i64, Option<i64>, i64) = tx
                    .cached_row(LEASE_CENSUS, params![customer, l.set, lease_grant(&member)], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .map_err(sqlite_error)?;
                if mine == 0 && to_u64(held) >= limit {
                    let oldest_lease_expires = oldest.map(to_u64);
                    return Ok(Acquired::Refused { index, used: to_u64(held), oldest_lease_expires });
                }
            }
            for l in &leases {
                tx.cached_exec(
                    "INSERT OR REPLACE INTO quota_leases (customer, lease_set, grant_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![customer, l.set, member, to_i64(expires)],
                )
                .map_err(sqlite_error)?;
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(Acquired::Held)
        })
        .await
    }

    async fn renew_leases(
        &self,
        customer: &str,
        member: &str,
        sets: &[String],
        now: u64,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let (customer, member, sets) = (customer.to_owned(), member.to_owned(), sets.to_vec());
        let expires = now.saturating_add(ttl);
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            for set in &sets {
                tx.cached_exec(
                    "INSERT OR REPLACE INTO quota_leases (customer, lease_set, grant_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![customer, set, member, to_i64(expires)],
                )
                .map_err(sqlite_error)?;
            }
            tx.commit().map_err(sqlite_error)
        })
        .await
    }

    async fn record_delivery(
        &self,
        customer: &str,
        delivered: &Counter,
        sent: u64,
        size: u64,
        charge: &[Counter],
        now: u64,
    ) -> Result<u64, StoreError> {
        let (customer, delivered, charge) = (customer.to_owned(), delivered.clone(), charge.to_vec());
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite_error)?;
            tx.cached_exec(
                "DELETE FROM quota_counters WHERE customer = ?1 AND expires_at <= ?2",
                params![customer, to_i64(now)],
            )
            .map_err(sqlite_error)?;
            let before: i64 = tx
                .cached_row(LIVE_COUNTER, params![customer, delivered.bucket, delivered.field, to_i64(now)], |r| r.get(0))
                .optional()
                .map_err(sqlite_error)?
                .unwrap_or(0);
            let before = to_u64(before);
            let total = before.saturating_add(sent);
            tx.cached_exec(
                "INSERT OR REPLACE INTO quota_counters (customer, bucket, field, value, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![customer, delivered.bucket, delivered.field, to_i64(total), expiry(now, delivered.ttl)],
            )
            .map_err(sqlite_error)?;
            let extra = total.saturating_sub(size) - before.saturating_sub(size);
            if extra > 0 {
                for c in &charge {
                    tx.cached_exec(
                        "INSERT INTO quota_counters (customer, bucket, field, value, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (customer, bucket, field) DO UPDATE
                         SET value = value + excluded.value, expires_at = excluded.expires_at",
                        params![customer, c.bucket, c.field, to_i64(extra), expiry(now, c.ttl)],
                    )
                    .map_err(sqlite_error)?;
                }
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(total)
        })
        .await
    }

    async fn release_leases(&self, customer: &str, member: &str, sets: &[String]) -> Result<(), StoreError> {
        let (customer, member, sets) = (customer.to_owned(), member.to_owned(), sets.to_vec());
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            for set in &sets {
                tx.cached_exec(
                    "DELETE FROM quota_leases WHERE customer = ?1 AND lease_set = ?2 AND grant_id = ?3",
                    params![customer, set, member],
                )
                .map_err(sqlite_error)?;
            }
            tx.commit().map_err(sqlite_error)
        })
        .await
    }
}
