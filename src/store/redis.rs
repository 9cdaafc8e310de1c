//! The shared store: Redis 7 — a single server (or a primary behind one
//! address), or a Redis Cluster (`store.redis.cluster = true`).
//!
//! Layout, for a `store.redis.key_prefix` of `tg`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{tg:<kind>}:r:<key>` | string | the record's JSON |
//! | `{tg:<kind>}:idx` | sorted set, all scores 0 | every key of the kind, for ordered, prefix and cursor listing (`ZRANGEBYLEX`) |
//!
//! The hash tag `{tg:<kind>}` keeps a kind's records and index in one slot, so
//! the `MULTI` that writes both, and the `MGET` that reads a page, are valid on
//! Redis Cluster too. Only `get_many` spans kinds, hence slots: on a cluster it
//! sends its `GET`s concurrently instead of as one pipeline.

use std::time::Duration;

use anyhow::Context as _;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{Kind, MAX_PAGE, Store, StoreError, Written, check_key};
use crate::config::{Config, secret};
use crate::quota::QuotaStore;

#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: String,
}

/// A connection to one Redis (reconnecting by itself) or to a cluster
/// (following slot moves and failovers by itself).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl std::fmt::Debug for RedisStore {
    // The connection holds the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// A Redis error as the store reports it: a command Redis refused as wrong
/// (`ERR …`, a type mismatch, a cross-slot call) is a bug, `Internal`;
/// anything else — connection lost or refused, timeouts, `LOADING`, cluster
/// reconfiguration — is `Unavailable`, worth retrying.
pub(crate) fn store_error(e: redis::RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    match e.kind() {
        ErrorKind::Parse
        | ErrorKind::UnexpectedReturnType
        | ErrorKind::InvalidClientConfig
        | ErrorKind::Server(ServerErrorKind::ResponseError | ServerErrorKind::CrossSlot) => {
            StoreError::Internal(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

impl RedisStore {
    /// Connect with the URL from `store.redis`. The connection manager
    /// reconnects by itself after Redis restarts.
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let r = config.store.redis.as_ref().context("store.redis is not configured")?;
        let url = secret::resolve(
            "store.redis.url",
            r.url.as_ref(),
            r.url_file.as_deref(),
            config.allow_world_readable_secrets,
        )?;
        if r.cluster {
            return Self::connect_cluster(url.expose(), &r.key_prefix, r.connect_timeout, r.response_timeout).await;
        }
        let client = redis::Client::open(url.expose()).context("store.redis.url: not a Redis URL")?;
        Self::connect(client, &r.key_prefix, r.connect_timeout, r.response_timeout).await
    }

    /// Connect to a Redis Cluster through one seed node.
    pub async fn connect_cluster(
        seed: &str,
        prefix: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = redis::cluster::ClusterClient::builder([seed])
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            .retries(2)
            .build()
            .context("store.redis.url: not a Redis URL")?;
        let conn = client
            .get_async_connection()
            .await
            .context("cannot connect to the Redis Cluster (store.redis.url, store.redis.cluster)")?;
        Ok(Self { conn: Conn::Cluster(conn), prefix: prefix.to_owned() })
    }

    pub async fn connect(
        client: redis::Client,
        prefix: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client, manager_config)
            .await
            .context("cannot connect to Redis (store.redis.url)")?;
        Ok(Self { conn: Conn::Single(conn), prefix: prefix.to_owned() })
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A handle on the shared connection (cheap to clone).
    pub(crate) fn connection(&self) -> Conn {
        self.conn.clone()
    }

    fn record_key(&self, kind: Kind, key: &str) -> String {
        format!("{{{}:{}}}:r:{}", self.prefix, kind.as_str(), key)
    }

    fn index_key(&self, kind: Kind) -> String {
        format!("{{{}:{}}}:idx", self.prefix, kind.as_str())
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn quotas(&self) -> &dyn QuotaStore {
        self
    }

    fn events(&self) -> &dyn crate::events::EventLog {
        self
    }

    async fn put(&self, kind: Kind, key: &str, value: &[u8]) -> Result<Written, StoreError> {
        check_key(key)?;
        let mut conn = self.conn.clone();
        // SET … GET returns the previous value, in the same MULTI as the index
        // update, so a record is never visible without its index entry.
        let (old,): (Option<Vec<u8>>,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.record_key(kind, key))
            .arg(value)
            .arg("GET")
            .cmd("ZADD")
            .arg(self.index_key(kind))
            .arg(0)
            .arg(key)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(match old {
            None => Written::Created,
            Some(v) if v == value => Written::Unchanged,
            Some(_) => Written::Updated,
        })
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        conn.get(self.record_key(kind, key)).await.map_err(store_error)
    }

    async fn get_many(&self, items: &[(Kind, &str)]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = items.iter().map(|(kind, key)| self.record_key(*kind, key)).collect();
        match &self.conn {
            // A pipeline, not MGET: the records live under different hash tags.
            // MULTI makes the answers one consistent snapshot, like SQLite's
            // read transaction, still in one round trip.
            Conn::Single(_) => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for key in &keys {
                    pipe.get(key);
                }
                let mut conn = self.conn.clone();
                pipe.query_async(&mut conn).await.map_err(store_error)
            }
            // A cluster refuses pipelines that span slots: concurrent GETs, one
            // round trip of latency to each node involved.
            Conn::Cluster(_) => {
                let gets = keys.iter().map(|key| {
                    let mut conn = self.conn.clone();
                    async move { conn.get::<_, Option<Vec<u8>>>(key).await }
                });
                futures_util::future::try_join_all(gets).await.map_err(store_error)
            }
        }
    }

    async fn delete(&self, kind: Kind, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let (deleted,): (i64,) = redis::pipe()
            .atomic()
            .del(self.record_key(kind, key))
            .zrem(self.index_key(kind), key)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(deleted > 0)
    }

    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let limit = limit.min(MAX_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let min = match after {
            Some(a) if a >= prefix => format!("({a}").into_bytes(),
            _ => format!("[{prefix}").into_bytes(),
        };
        // 0xFF sorts after every byte of UTF-8 text: the end of the prefix range.
        let mut max = format!("[{prefix}").into_bytes();
        max.push(0xFF);
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.index_key(kind))
            .arg(min)
            .arg(max)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let record_keys: Vec<String> = keys.iter().map(|k| self.record_key(kind, k)).collect();
        let values: Vec<Option<Vec<u8>>> =
            redis::cmd("MGET").arg(&record_keys).query_async(&mut conn).await.map_err(store_error)?;
        // A key whose record vanished between the two reads was deleted meanwhile.
        Ok(keys.into_iter().zip(values).filter_map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(store_error)?;
        Ok(())
    }
}
