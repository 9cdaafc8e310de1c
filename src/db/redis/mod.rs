//! The shared engine: Redis 7 — a single server (or a primary behind one
//! address), or a Redis Cluster (`store.redis.cluster = true`).
//!
//! It holds the records ([`records`]), the quota counters and leases
//! ([`quota`]) and the event log ([`events`]). Records' layout, for a
//! `store.redis.key_prefix` of `tg`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{tg:<kind>}:r:<key>` | string | the record's JSON |
//! | `{tg:<kind>}:v:<key>` | string (integer) | the record's revision, for compare-and-set (absent: 0) |
//! | `{tg:<kind>}:idx` | sorted set, all scores 0 | every key of the kind, for ordered, prefix and cursor listing (`ZRANGEBYLEX`) |
//!
//! The hash tag `{tg:<kind>}` keeps a kind's records, revisions and index in
//! one slot, so the script that writes all three, and the `MGET` that reads a
//! page, are valid on Redis Cluster too. Only `get_many` spans kinds, hence slots: on a cluster it
//! sends its `GET`s concurrently instead of as one pipeline.

mod events;
mod quota;
mod records;

use std::time::Duration;

use anyhow::Context as _;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::catalog::store::StoreError;
use crate::config::{Config, secret};

#[derive(Clone)]
pub struct RedisDb {
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

impl std::fmt::Debug for RedisDb {
    // The connection holds the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDb").field("prefix", &self.prefix).finish_non_exhaustive()
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

impl RedisDb {
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
}
