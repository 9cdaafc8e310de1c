//! The embedded engine: one SQLite file (WAL mode) under the data directory,
//! holding the records ([`records`]), the quota tables ([`quota`]) and the
//! event log ([`events`]). Every migration is here, in [`SqliteDb::open`].
//!
//! Schema (version 1, in `PRAGMA user_version`):
//!
//! ```sql
//! CREATE TABLE records (
//!     kind       TEXT    NOT NULL,   -- Kind::as_str
//!     key        TEXT    NOT NULL,   -- hierarchical key, compared bytewise
//!     value      BLOB    NOT NULL,   -- JSON document
//!     updated_at INTEGER NOT NULL,   -- Unix seconds of the last change
//!     revision   INTEGER NOT NULL,   -- 1 when created, +1 per change (version 4)
//!     PRIMARY KEY (kind, key)
//! ) WITHOUT ROWID;
//! ```
//!
//! Version 2 adds the quota tables (`quota_counters`, `quota_started`,
//! `quota_leases`; see [`quota`]); version 3 the event log and report
//! counters (see [`events`]).

mod events;
mod quota;
mod records;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::catalog::store::StoreError;

const SCHEMA_VERSION: i64 = 4;

/// Version 3: the event log, its report counters and consumer groups.
const SCHEMA_V3: &str = "BEGIN;
    CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        at INTEGER NOT NULL,
        type TEXT NOT NULL,
        customer TEXT,
        product TEXT,
        body BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS events_at ON events (at);
    CREATE INDEX IF NOT EXISTS events_customer ON events (customer, seq);
    CREATE INDEX IF NOT EXISTS events_product ON events (product, seq);
    CREATE TABLE IF NOT EXISTS event_writers (
        writer TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS report_counts (
        day TEXT NOT NULL,
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        metric TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (day, dimension, value, metric)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS report_customers (
        day TEXT NOT NULL,
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        customer TEXT NOT NULL,
        PRIMARY KEY (day, dimension, value, customer)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS adoption (
        release TEXT NOT NULL,
        customer TEXT NOT NULL,
        first_initiated INTEGER,
        first_completed INTEGER,
        PRIMARY KEY (release, customer)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS event_groups (
        name TEXT PRIMARY KEY,
        cursor INTEGER NOT NULL
    ) WITHOUT ROWID;
    PRAGMA user_version = 3;
    COMMIT;";

/// One connection behind a mutex: SQLite serialises writers anyway, and the
/// embedded default serves one gateway process. Work runs on the blocking pool.
#[derive(Debug, Clone)]
pub struct SqliteDb {
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

impl SqliteDb {
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
            conn.execute_batch(SCHEMA_V3)?;
        }
        if version < 4 {
            // Every record's revision, for compare-and-set; records written
            // before start at 1.
            conn.execute_batch(
                "BEGIN;
                 ALTER TABLE records ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
                 PRAGMA user_version = 4;
                 COMMIT;",
            )?;
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
