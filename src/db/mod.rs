//! The state store's engines. Each engine implements, side by side, the
//! three traits its consumers own: the catalog's record store
//! ([`crate::catalog::store::RecordStore`]), the quota store
//! ([`crate::quota::QuotaStore`]) and the event log
//! ([`crate::events::EventLog`]).
//!
//! - [`sqlite`]: the embedded default, one file under the data directory;
//!   every migration is in `sqlite/mod.rs`.
//! - [`redis`]: Redis 7, single or Cluster, shared by gateway replicas.
//!
//! [`open`] opens the configured engine once and hands out the three handles.

pub mod redis;
pub mod sqlite;
pub mod timed;

use std::sync::Arc;

use crate::catalog::store::RecordStore;
use crate::config::{Config, StoreBackend};
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::quota::QuotaStore;

/// One engine's three faces.
#[derive(Debug, Clone)]
pub struct Db {
    pub records: Arc<dyn RecordStore>,
    pub quotas: Arc<dyn QuotaStore>,
    pub events: Arc<dyn EventLog>,
}

impl Db {
    /// The three handles of one engine.
    pub fn of<E: RecordStore + QuotaStore + EventLog + 'static>(engine: E) -> Db {
        let engine = Arc::new(engine);
        Db { records: engine.clone(), quotas: engine.clone(), events: engine }
    }

    /// Record operations timed into `metrics` (quota and event operations are
    /// timed by their callers, who know what matters to them).
    pub fn timed(self, metrics: Arc<Metrics>) -> Db {
        Db { records: Arc::new(timed::Timed::new(self.records, metrics)), ..self }
    }
}

/// Open the configured engine (creating the SQLite file and bringing its
/// schema up to date, or connecting to Redis).
pub async fn open(config: &Config) -> anyhow::Result<Db> {
    Ok(match config.store.backend {
        StoreBackend::Sqlite => Db::of(sqlite::SqliteDb::open(&config.sqlite_path())?),
        StoreBackend::Redis => Db::of(redis::RedisDb::from_config(config).await?),
    })
}
