//! Records on SQLite: one `records` table, `(kind, key) → value`, ordered
//! by key for prefix and cursor listing.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Cached as _, SqliteDb, sqlite_error, to_i64, to_u64};
use crate::catalog::store::{
    CasOutcome, Expect, Kind, MAX_PAGE, RecordStore, StoreError, Versioned, Written, check_key,
};
use crate::clock::{Clock, SystemClock};

#[async_trait::async_trait]
impl RecordStore for SqliteDb {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn put(&self, kind: Kind, key: &str, value: &[u8]) -> Result<Written, StoreError> {
        check_key(key)?;
        let (key, value) = (key.to_owned(), value.to_vec());
        let now = to_i64(SystemClock.now_unix());
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            let old: Option<Vec<u8>> = tx
                .cached_row(
                    "SELECT value FROM records WHERE kind = ?1 AND key = ?2",
                    params![kind.as_str(), key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sqlite_error)?;
            let written = match old {
                Some(ref v) if *v == value => return Ok(Written::Unchanged),
                Some(_) => Written::Updated,
                None => Written::Created,
            };
            tx.cached_exec(
                "INSERT INTO records (kind, key, value, updated_at, revision) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (kind, key) DO UPDATE
                 SET value = excluded.value, updated_at = excluded.updated_at, revision = revision + 1",
                params![kind.as_str(), key, value, now],
            )
            .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(written)
        })
        .await
    }

    async fn get_versioned(&self, kind: Kind, key: &str) -> Result<Option<Versioned>, StoreError> {
        let key = key.to_owned();
        self.with_conn(move |conn| {
            conn.cached_row(
                "SELECT value, revision FROM records WHERE kind = ?1 AND key = ?2",
                params![kind.as_str(), key],
                |r| Ok(Versioned { value: r.get(0)?, revision: to_u64(r.get(1)?) }),
            )
            .optional()
            .map_err(sqlite_error)
        })
        .await
    }

    async fn put_if(&self, kind: Kind, key: &str, value: &[u8], expect: Expect) -> Result<CasOutcome, StoreError> {
        check_key(key)?;
        let (key, value) = (key.to_owned(), value.to_vec());
        let now = to_i64(SystemClock.now_unix());
        self.with_conn(move |conn| {
            // IMMEDIATE: the write lock is taken before the read, so the
            // revision read is the one the write replaces.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite_error)?;
            let old: Option<(Vec<u8>, i64)> = tx
                .cached_row(
                    "SELECT value, revision FROM records WHERE kind = ?1 AND key = ?2",
                    params![kind.as_str(), key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sqlite_error)?;
            let revision = match (&old, expect) {
                (None, Expect::Absent) => 1,
                (Some((_, rev)), Expect::Revision(want)) if to_u64(*rev) == want => {
                    if old.as_ref().is_some_and(|(v, _)| *v == value) {
                        return Ok(CasOutcome::Written { written: Written::Unchanged, revision: want });
                    }
                    want + 1
                }
                _ => return Ok(CasOutcome::Conflict),
            };
            tx.cached_exec(
                "INSERT INTO records (kind, key, value, updated_at, revision) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind, key) DO UPDATE
                 SET value = excluded.value, updated_at = excluded.updated_at, revision = excluded.revision",
                params![kind.as_str(), key, value, now, to_i64(revision)],
            )
            .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            let written = if old.is_some() { Written::Updated } else { Written::Created };
            Ok(CasOutcome::Written { written, revision })
        })
        .await
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.with_conn(move |conn| {
            conn.cached_row(
                "SELECT value FROM records WHERE kind = ?1 AND key = ?2",
                params![kind.as_str(), key],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite_error)
        })
        .await
    }

    async fn get_many(&self, items: &[(Kind, &str)]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let items: Vec<(Kind, String)> = items.iter().map(|(k, key)| (*k, (*key).to_owned())).collect();
        self.with_conn(move |conn| {
            // One read transaction: the answers are a consistent snapshot.
            let tx = conn.transaction().map_err(sqlite_error)?;
            let mut out = Vec::with_capacity(items.len());
            {
                let mut stmt = tx
                    .prepare_cached("SELECT value FROM records WHERE kind = ?1 AND key = ?2")
                    .map_err(sqlite_error)?;
                for (kind, key) in &items {
                    out.push(
                        stmt.query_row(params![kind.as_str(), key], |r| r.get(0)).optional().map_err(sqlite_error)?,
                    );
                }
            }
            tx.commit().map_err(sqlite_error)?;
            Ok(out)
        })
        .await
    }

    async fn delete(&self, kind: Kind, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.with_conn(move |conn| {
            let n = conn
                .cached_exec("DELETE FROM records WHERE kind = ?1 AND key = ?2", params![kind.as_str(), key])
                .map_err(sqlite_error)?;
            Ok(n > 0)
        })
        .await
    }

    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let limit = i64::try_from(limit.min(MAX_PAGE)).unwrap_or(0);
        // Start at the prefix or just after the cursor, whichever is later.
        let (from, inclusive) = match after {
            Some(a) if a >= prefix => (a.to_owned(), false),
            _ => (prefix.to_owned(), true),
        };
        let prefix = prefix.to_owned();
        self.with_conn(move |conn| {
            let op = if inclusive { ">=" } else { ">" };
            let sql = format!(
                "SELECT key, value FROM records
                 WHERE kind = ?1 AND key {op} ?2 AND substr(key, 1, length(?3)) = ?3
                 ORDER BY key LIMIT ?4"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(sqlite_error)?;
            let rows = stmt
                .query_map(params![kind.as_str(), from, prefix, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sqlite_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_error)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| conn.cached_row("SELECT 1", [], |_| Ok(())).map_err(sqlite_error)).await
    }
}
