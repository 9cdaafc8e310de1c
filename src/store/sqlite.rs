//! The embedded store: one SQLite file (WAL mode) under the data directory.
//!
//! Schema (version 1, in `PRAGMA user_version`):
//!
//! ```sql
//! CREATE TABLE records (
//!     kind       TEXT    NOT NULL,   -- Kind::as_str
//!     key        TEXT    NOT NULL,   -- hierarchical key, compared bytewise
//!     value      BLOB    NOT NULL,   -- JSON document
//!     updated_at INTEGER NOT NULL,   -- Unix seconds of the last change
//!     PRIMARY KEY (kind, key)
//! ) WITHOUT ROWID;
//! ```
//!
//! Version 2 adds the quota tables (`quota_counters`, `quota_started`,
//! `quota_leases`; see [`crate::quota`]); version 3 the event log and report
//! counters (see [`crate::events`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{Kind, MAX_PAGE, Store, StoreError, Written, check_key};
use crate::clock::{Clock, SystemClock};
use crate::quota::QuotaStore;

const SCHEMA_VERSION: i64 = 3;

/// One connection behind a mutex: SQLite serialises writers anyway, and the
/// embedded default serves one gateway process. Work runs on the blocking pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

/// A count or time as SQLite's INTEGER (saturating).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An INTEGER read back; a negative one (never written) reads as 0.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// A SQLite error as the store reports it: still locked by another writer
/// after the busy timeout is `Unavailable` (worth retrying); anything else is
/// `Internal`.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and bring its schema up
    /// to date.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "{} has schema version {version}, newer than this tollgate understands ({SCHEMA_VERSION})",
                path.display()
            );
        }
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS records (
                     kind TEXT NOT NULL,
                     key TEXT NOT NULL,
                     value BLOB NOT NULL,
                     updated_at INTEGER NOT NULL,
                     PRIMARY KEY (kind, key)
                 ) WITHOUT ROWID;
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        if version < 2 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS quota_counters (
                     customer TEXT NOT NULL,
                     bucket TEXT NOT NULL,
                     field TEXT NOT NULL,
                     value INTEGER NOT NULL,
                     expires_at INTEGER,
                     PRIMARY KEY (customer, bucket, field)
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS quota_started (
                     customer TEXT NOT NULL,
                     grant_id TEXT NOT NULL,
                     started_at INTEGER NOT NULL,
                     expires_at INTEGER NOT NULL,
                     PRIMARY KEY (customer, grant_id)
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS quota_leases (
                     customer TEXT NOT NULL,
                     lease_set TEXT NOT NULL,
                     grant_id TEXT NOT NULL,
                     expires_at INTEGER NOT NULL,
                     PRIMARY KEY (customer, lease_set, grant_id)
                 ) WITHOUT ROWID;
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        if version < 3 {
            conn.execute_batch(crate::events::sqlite::SCHEMA_V3)?;
        }
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard =
                conn.lock().map_err(|_| StoreError::Internal("the SQLite connection is poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(internal)?
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn quotas(&self) -> &dyn QuotaStore {
        self
    }

    fn events(&self) -> &dyn crate::events::EventLog {
        self
    }

    async fn put(&self, kind: Kind, key: &str, value: &[u8]) -> Result<Written, StoreError> {
        check_key(key)?;
        let (key, value) = (key.to_owned(), value.to_vec());
        let now = to_i64(SystemClock.now_unix());
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            let old: Option<Vec<u8>> = tx
                .query_row("SELECT value FROM records WHERE kind = ?1 AND key = ?2", params![kind.as_str(), key], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sqlite_error)?;
            let written = match old {
                Some(ref v) if *v == value => return Ok(Written::Unchanged),
                Some(_) => Written::Updated,
                None => Written::Created,
            };
            tx.execute(
                "INSERT INTO records (kind, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![kind.as_str(), key, value, now],
            )
            .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(written)
        })
        .await
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.with_conn(move |conn| {
            conn.query_row("SELECT value FROM records WHERE kind = ?1 AND key = ?2", params![kind.as_str(), key], |r| {
                r.get(0)
            })
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
                .execute("DELETE FROM records WHERE kind = ?1 AND key = ?2", params![kind.as_str(), key])
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
        self.with_conn(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(sqlite_error)).await
    }
}
