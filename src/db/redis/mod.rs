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

use std::sync::Arc;
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
/// (following slot moves and failovers by itself). Both connect lazily: the
/// gateway starts, and serves what needs no store, while Redis is down.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use (and retried on the next use while
/// it cannot be made).
pub(crate) struct LazyCluster {
    client: redis::cluster::ClusterClient,
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

impl LazyCluster {
    async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        self.conn.get_or_try_init(|| self.client.get_async_connection()).await.cloned()
    }
}

/// Whether a failed command is worth sending once more: the connection it
/// went out on had died (Redis restarted, a proxy or firewall dropped it),
/// and the connection manager has started making a new one. Every write the
/// store sends is safe to repeat: initiations count a grant once however
/// often they run, record writes are compare-and-set on a revision, event
/// appends carry their sequence numbers, leases are keyed by grant.
fn worth_one_retry(e: &redis::RedisError) -> bool {
    e.is_connection_dropped()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => Box::pin(async move {
                match c.req_packed_command(cmd).await {
                    Err(e) if worth_one_retry(&e) => {
                        tracing::debug!(error = %e, "Redis connection was dead; sending once more on a new one");
                        c.req_packed_command(cmd).await
                    }
                    other => other,
                }
            }),
            Conn::Cluster(lazy) => Box::pin(async move { lazy.get().await?.req_packed_command(cmd).await }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => Box::pin(async move {
                match c.req_packed_commands(pipeline, offset, count).await {
                    Err(e) if worth_one_retry(&e) => {
                        tracing::debug!(error = %e, "Redis connection was dead; sending once more on a new one");
                        c.req_packed_commands(pipeline, offset, count).await
                    }
                    other => other,
                }
            }),
            Conn::Cluster(lazy) => {
                Box::pin(async move { lazy.get().await?.req_packed_commands(pipeline, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

impl std::fmt::Debug for RedisDb {
    // The connection holds the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDb").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// What is wrong with a Redis server's settings for holding the only copy of
/// the gateway's state, from its `INFO persistence` and `INFO memory`.
fn settings_warnings(info: &str) -> Vec<String> {
    let field = |name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(':'))).map(str::trim)
    };
    let mut warnings = Vec::new();
    if let Some(policy) = field("maxmemory_policy")
        && policy != "noeviction"
    {
        warnings.push(format!(
            "Redis's maxmemory-policy is {policy}: when memory runs out it will evict keys, quota counters and \
             grants; set maxmemory-policy noeviction"
        ));
    }
    // Snapshots alone lose the writes since the last one; AOF is what the
    // docs ask for.
    if field("aof_enabled") == Some("0") {
        warnings.push(
            "Redis's appendonly is off: a restart loses what changed since the last snapshot (API keys, grants, \
             quota counts, events); set appendonly yes"
                .to_owned(),
        );
    }
    warnings
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
        let db = Self {
            conn: Conn::Cluster(Arc::new(LazyCluster { client, conn: tokio::sync::OnceCell::new() })),
            prefix: prefix.to_owned(),
        };
        db.first_contact(connect_timeout).await;
        Ok(db)
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
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .context("store.redis.url: cannot make a Redis connection manager")?;
        let db = Self { conn: Conn::Single(conn), prefix: prefix.to_owned() };
        db.first_contact(connect_timeout).await;
        Ok(db)
    }

    /// Reach Redis once before serving: check its settings when it answers;
    /// when it does not, say so and keep trying in the background (requests
    /// that need the store are refused `503` meanwhile, and `/readyz` says
    /// not ready), so that the gateway starts whatever the order services
    /// come up in.
    async fn first_contact(&self, connect_timeout: Duration) {
        let wait = connect_timeout.saturating_mul(2);
        match tokio::time::timeout(wait, self.ping_once()).await {
            Ok(Ok(())) => self.check_settings().await,
            Ok(Err(e)) => self.reconnect_in_background(e.to_string()),
            Err(_) => self.reconnect_in_background(format!("no answer within {wait:?}")),
        }
    }

    fn reconnect_in_background(&self, error: String) {
        tracing::warn!(
            %error,
            "Redis (store.redis.url) is not reachable; starting anyway: requests that need the state store \
             are refused with 503 and /readyz reports not ready until it answers"
        );
        let db = self.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(250);
            loop {
                tokio::time::sleep(pause).await;
                if db.ping_once().await.is_ok() {
                    tracing::info!("Redis (store.redis.url) answers: the state store is reachable");
                    db.check_settings().await;
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
    }

    async fn ping_once(&self) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query_async::<()>(&mut self.connection()).await
    }

    /// Warn when Redis would lose what it holds: it is the only copy of API
    /// keys, grants, quota counters and the event log, so it needs
    /// persistence and must never evict. Read with `INFO` (allowed where
    /// `CONFIG` is not, as on managed services); a server that refuses says
    /// nothing, and nothing is warned.
    async fn check_settings(&self) {
        let info: Result<String, _> =
            redis::cmd("INFO").arg("persistence").arg("memory").query_async(&mut self.connection()).await;
        let Ok(info) = info else {
            tracing::debug!("cannot read Redis's INFO; its persistence and eviction settings are not checked");
            return;
        };
        for warning in settings_warnings(&info) {
            tracing::warn!("{warning} (docs/state-store.md, Redis settings)");
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A handle on the shared connection (cheap to clone).
    pub(crate) fn connection(&self) -> Conn {
        self.conn.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::settings_warnings;

    #[test]
    fn settings_that_lose_state_are_named() {
        let safe = "# Persistence\r\naof_enabled:1\r\n# Memory\r\nmaxmemory_policy:noeviction\r\n";
        assert!(settings_warnings(safe).is_empty());
        let risky = "# Persistence\r\naof_enabled:0\r\n# Memory\r\nmaxmemory_policy:allkeys-lru\r\n";
        let w = settings_warnings(risky);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("allkeys-lru") && w[1].contains("appendonly"), "{w:?}");
        // A server that hides a field (a managed service's INFO) is not blamed for it.
        assert!(settings_warnings("# Memory\r\nused_memory:1\r\n").is_empty());
    }
}
