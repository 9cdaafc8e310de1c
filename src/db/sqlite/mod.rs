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

use rusqlite::Connection;

use crate::catalog::store::StoreError;

const SCHEMA_VERSION: i64 = 5;

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

/// One connection, owned by one thread that runs the calls in the order
/// they come: SQLite serialises writers anyway, and the embedded default
/// serves one gateway process. Before, each call was a blocking-pool task
/// taking a mutex; under load dozens of pool threads queued on that mutex
/// and the core went to handing it from thread to thread (a one-row read
/// waited 8 ms on average behind 64 concurrent downloads). The thread drains
/// its queue without a hand-off per call, and is woken only when it idles.
///
/// Tried and measured (2026-12-04, `docs/performance.md`): running short
/// calls on the caller's runtime thread when the connection was free. It
/// halved grant URLs on SQLite (5,000 → 2,400 requests/s) and cut
/// initiations by a quarter: the runtime thread then did every call's work
/// in turn, where the queue let it serve HTTP while the connection's thread
/// ran a burst of calls.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    calls: std::sync::mpsc::Sender<Call>,
    path: PathBuf,
}

/// A call to run on the connection's thread; it answers through its own
/// channel.
type Call = Box<dyn FnOnce(&mut Connection) + Send>;

/// How often the connection's thread copies the write-ahead log into the
/// database ([`serve_calls`]).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The connection's thread: runs calls until every [`SqliteDb`] handle is
/// gone, and checkpoints the write-ahead log once a second. SQLite's own
/// checkpoints (every 1,000 pages, in whichever commit crosses the line,
/// with an `fsync`) are off: a checkpoint a second copies each hot page
/// once, not once per 1,000 pages written, and runs between calls rather
/// than inside one caller's commit.
fn serve_calls(mut conn: Connection, calls: std::sync::mpsc::Receiver<Call>) {
    let mut checkpointed = std::time::Instant::now();
    loop {
        match calls.recv_timeout(CHECKPOINT_EVERY) {
            Ok(call) => guarded(&mut conn, call),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if checkpointed.elapsed() >= CHECKPOINT_EVERY {
            checkpointed = std::time::Instant::now();
            // PASSIVE: copies what no reader still needs; never waits.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "SQLite checkpoint failed; the write-ahead log grows until one succeeds");
            }
        }
    }
}

/// Run `f` on `conn`. A call that panics loses its answer (its caller sees
/// an internal error) and its open transaction, not the connection.
fn guarded(conn: &mut Connection, f: Call) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))).is_err() {
        tracing::error!("a SQLite call panicked; its transaction, if any, is rolled back");
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

/// A count or time as SQLite's INTEGER (saturating).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An INTEGER read back; a negative one (never written) reads as 0.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Statements prepared once per connection and kept (rusqlite's statement
/// cache): parsing the SQL again cost as much as running it on every
/// record read and quota step.
pub(crate) trait Cached {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
    fn cached_exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn cached_exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
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
        // Checkpoints are the connection's thread's ([`serve_calls`]).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
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
        if version < 5 {
            // Each quota step first deletes the customer's rows past their
            // expiry: without these indexes that scanned every started grant
            // of the customer (12,000 grants: 326 initiations/s).
            conn.execute_batch(
                "BEGIN;
                 CREATE INDEX IF NOT EXISTS quota_counters_expiry ON quota_counters (customer, expires_at);
                 CREATE INDEX IF NOT EXISTS quota_started_expiry ON quota_started (customer, expires_at);
                 CREATE INDEX IF NOT EXISTS quota_leases_expiry ON quota_leases (customer, expires_at);
                 PRAGMA user_version = 5;
                 COMMIT;",
            )?;
        }
        conn.set_prepared_statement_cache_capacity(64);
        let (calls, queue) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("sqlite".into()).spawn(move || serve_calls(conn, queue))?;
        Ok(Self { calls, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the connection's thread, after the calls queued before it.
    pub(crate) async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let call: Call = Box::new(move |conn| {
            let _ = answer.send(f(conn));
        });
        self.calls.send(call).map_err(|_| StoreError::Internal("the SQLite thread has stopped".into()))?;
        answered.await.map_err(|_| StoreError::Internal("a SQLite call failed without an answer".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn tables(db: &SqliteDb, name: &'static str) -> Result<i64, StoreError> {
        db.with_conn(move |c| {
            c.query_row("SELECT count(*) FROM sqlite_master WHERE name = ?1", [name], |r| r.get(0))
                .map_err(sqlite_error)
        })
        .await
    }

    #[tokio::test]
    async fn a_panicking_call_loses_its_answer_and_its_transaction_not_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(&dir.path().join("t.db")).unwrap();
        let failed = db
            .with_conn(|c| -> Result<(), StoreError> {
                c.execute_batch("BEGIN; CREATE TABLE half_written (x INTEGER);").map_err(sqlite_error)?;
                panic!("a bug in the middle of a transaction")
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Internal(_))), "{failed:?}");
        // The thread serves the next call, and nothing of the half-done
        // transaction is there.
        assert_eq!(tables(&db, "half_written").await.unwrap(), 0);
        assert_eq!(tables(&db, "records").await.unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_are_each_answered_with_their_own_result() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(&dir.path().join("t.db")).unwrap();
        db.with_conn(|c| c.execute_batch("CREATE TABLE n (v INTEGER)").map_err(sqlite_error)).await.unwrap();
        let calls = (0..200i64).map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.with_conn(move |c| {
                    c.execute("INSERT INTO n VALUES (?1)", [i]).map_err(sqlite_error)?;
                    c.query_row("SELECT ?1 * 2", [i], |r| r.get::<_, i64>(0)).map_err(sqlite_error)
                })
                .await
                .map(|doubled| (i, doubled))
            })
        });
        for call in futures_util::future::join_all(calls).await {
            let (i, doubled) = call.unwrap().unwrap();
            assert_eq!(doubled, i * 2);
        }
        let rows: i64 = db
            .with_conn(|c| c.query_row("SELECT count(*) FROM n", [], |r| r.get(0)).map_err(sqlite_error))
            .await
            .unwrap();
        assert_eq!(rows, 200);
    }

    /// The expiry sweep that starts every quota step reads an index, not
    /// every row of the customer (it scanned them all: 326 initiations/s
    /// with 12,000 started grants).
    #[tokio::test]
    async fn the_quota_expiry_sweeps_use_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(&dir.path().join("t.db")).unwrap();
        for table in ["quota_counters", "quota_started", "quota_leases"] {
            let plan: Vec<String> = db
                .with_conn(move |c| {
                    let sql =
                        format!("EXPLAIN QUERY PLAN DELETE FROM {table} WHERE customer = ?1 AND expires_at <= ?2");
                    let mut stmt = c.prepare(&sql).map_err(sqlite_error)?;
                    let rows = stmt.query_map(rusqlite::params!["acme", 5], |r| r.get::<_, String>(3));
                    rows.map_err(sqlite_error)?.collect::<Result<_, _>>().map_err(sqlite_error)
                })
                .await
                .unwrap();
            let index = format!("{table}_expiry");
            assert!(plan.iter().any(|step| step.contains(&index)), "{table}: {plan:?}");
        }
    }

    /// A database of the previous schema gains the indexes when opened.
    #[tokio::test]
    async fn opening_a_version_4_database_adds_the_expiry_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteDb::open(&path).unwrap());
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "DROP INDEX quota_counters_expiry; DROP INDEX quota_started_expiry; DROP INDEX quota_leases_expiry;
                 PRAGMA user_version = 4;",
            )
            .unwrap();
        }
        let db = SqliteDb::open(&path).unwrap();
        let (indexes, version): (i64, i64) = db
            .with_conn(|c| {
                let n = c
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'quota_%_expiry'",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(sqlite_error)?;
                let v = c.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite_error)?;
                Ok((n, v))
            })
            .await
            .unwrap();
        assert_eq!((indexes, version), (3, SCHEMA_VERSION));
    }

    /// Commits only append to the write-ahead log (SQLite's own checkpoints
    /// are off); the connection's thread copies it into the database within
    /// about a second, busy or idle.
    #[tokio::test]
    async fn the_write_ahead_log_is_checkpointed_by_the_connections_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = SqliteDb::open(&path).unwrap();
        db.with_conn(|c| {
            c.execute_batch("CREATE TABLE blobs (b BLOB)").map_err(sqlite_error)?;
            for _ in 0..200 {
                c.execute("INSERT INTO blobs VALUES (zeroblob(4096))", []).map_err(sqlite_error)?;
            }
            Ok(())
        })
        .await
        .unwrap();
        // The pages went to the log (200 pages stay under SQLite's own
        // 1,000-page checkpoint, so only the thread can have copied them);
        // whether the thread's checkpoint already ran is a race, not asked.
        let size = || std::fs::metadata(&path).unwrap().len();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() < 200 * 4096 {
            assert!(std::time::Instant::now() < deadline, "never checkpointed: {} bytes", size());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
