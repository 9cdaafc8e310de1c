//! Test harness: a real gateway on port 0, a real S3-compatible server (s3s-fs)
//! over HTTP on port 0, and a small HTTP client. Each test module uses part of it.
#![allow(dead_code, reason = "each test binary uses a different part of the harness")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::net::TcpStream;

use serde_json::{Value, json};
use tollgate::config::{Config, S3Config, Secret, StorageBackend};
use tollgate::db::Db;
use tollgate::signing::{Claims, KeyRing, UrlScope, encode_path};
use tollgate::storage::{BlobStore, ObjectKey};

pub mod browser;
pub mod edge;
pub mod jar;
pub mod oidc;
mod s3;
pub mod smtp;
pub mod stall;
pub use s3::{BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

/// Instantiate each listed `async fn(backend)` as a test per backend:
/// `backend_suite!(local = super::Backend::Local, s3 = super::Backend::S3; a, b)`
/// makes `local::a`, `local::b`, `s3::a` and `s3::b` (any number of backends).
#[allow(unused_macros, reason = "only the backend suites use it")]
macro_rules! backend_suite {
    ($($m:ident = $v:expr),+ ; $($name:ident),* $(,)?) => {
        backend_suite!(@each [$($name),*] $($m = $v),+);
    };
    (@each $names:tt $($m:ident = $v:expr),+) => {
        $(backend_suite!(@one $m = $v; $names);)+
    };
    (@one $m:ident = $v:expr; [$($name:ident),*]) => {
        mod $m {
            $(#[tokio::test] async fn $name() { super::$name($v).await })*
        }
    };
}

/// Which blob backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
}

impl S3Server {
    pub fn config(&self) -> S3Config {
        S3Config {
            bucket: BUCKET.into(),
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint.clone()),
            prefix: String::new(),
            force_path_style: true,
            access_key_id: Some(S3_ACCESS_KEY.into()),
            secret_access_key: Some(Secret::new(S3_SECRET_KEY)),
            secret_access_key_file: None,
            part_size: tollgate::config::MIN_PART_SIZE,
            parts_in_flight: 2,
            upload_url_ttl: Duration::from_secs(3600),
            abandon_uploads_idle_for: Duration::from_secs(30 * 60),
        }
    }
}

/// A blob backend with a way to place objects in it directly.
pub struct Blobs {
    pub backend: Backend,
    pub dir: TempDir,
    pub s3: Option<S3Server>,
}

impl Blobs {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s3 = match backend {
            Backend::Local => None,
            Backend::S3 => Some(S3Server::start().await),
        };
        Self { backend, dir, s3 }
    }

    /// A config using this backend, with data under a temp dir, both listeners
    /// on free loopback ports and a fixed signing key.
    pub fn config(&self) -> Config {
        let mut c = Config { data_dir: self.dir.path().join("data"), ..Config::default() };
        c.server.listen = "127.0.0.1:0".parse().unwrap();
        c.admin.listen = "127.0.0.1:0".parse().unwrap();
        c.server.shutdown_grace = Duration::from_secs(5);
        c.storage.local.root = Some(self.local_root());
        if let Some(s3) = &self.s3 {
            c.storage.backend = StorageBackend::S3;
            c.storage.s3 = Some(s3.config());
            c.storage.first_byte_timeout = Duration::from_secs(5);
            c.storage.idle_timeout = Duration::from_secs(5);
        }
        c
    }

    pub fn local_root(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }

    /// The file behind a key: the local root, or s3s-fs's own directory.
    pub fn file_path(&self, key: &str) -> PathBuf {
        match &self.s3 {
            None => self.local_root().join(key),
            Some(s3) => s3.root.path().join(BUCKET).join(key),
        }
    }

    /// Put an object: a plain file for the local backend, a PUT over HTTP for S3.
    pub async fn put(&self, key: &str, body: &[u8]) {
        match self.backend {
            Backend::Local => {
                let path = self.file_path(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, body).unwrap();
            }
            Backend::S3 => {
                let s3 = tollgate::storage::s3::S3Store::from_config(&self.config()).await.unwrap();
                s3.put_small(&ObjectKey::parse(key).unwrap(), body.to_vec()).await.unwrap();
            }
        }
    }

    pub async fn store(&self) -> Arc<dyn BlobStore> {
        tollgate::storage::from_config(&self.config()).await.unwrap()
    }
}

/// A real `redis-server` on a free loopback port, killed on drop. Nothing is
/// persisted; each test gets its own server.
pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

/// A free loopback port, at most `max` (Redis refuses cluster ports whose bus
/// port, port + 10000, would not fit).
fn free_port(max: u16) -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port <= max {
            return port;
        }
    }
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A node for a Redis Cluster: a port Redis accepts, and a free bus port.
    pub async fn start_cluster_node() -> Self {
        let mut extra = Vec::new();
        for a in ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"] {
            extra.push(a.to_owned());
        }
        extra.push("--cluster-port".to_owned());
        extra.push(free_port(u16::MAX).to_string());
        Self::spawn(extra, 55_535).await
    }

    /// With extra `redis-server` arguments.
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::spawn(extra.iter().map(|a| (*a).to_owned()).collect(), u16::MAX).await
    }

    /// Start on a free port; a port taken between choosing and binding it (by
    /// a parallel test) means another try on another port.
    async fn spawn(extra: Vec<String>, max_port: u16) -> Self {
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(max_port),
                dir: tempfile::tempdir().unwrap(),
                extra: extra.clone(),
                child: None,
            };
            if server.try_start().await {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Start (again) on the same port, and wait until it answers.
    pub async fn restart(&mut self) {
        assert!(self.try_start().await, "redis-server did not start again on port {}", self.port);
    }

    /// Start on `self.port` and wait until it answers; `false` if it exited
    /// (port taken) or never answered.
    async fn try_start(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("`redis-server` is needed for this test; scripts/test.sh installs it");
        self.child = Some(child);
        for _ in 0..400 {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.port)).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 7];
                if tcp.write_all(b"PING\r\n").await.is_ok()
                    && tcp.read_exact(&mut buf).await.is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        false
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A three-primary Redis Cluster on free loopback ports (no replicas), slots
/// assigned with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let args =
                ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"];
            nodes.push(RedisServer::start_with(&args).await);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("`redis-cli` (Debian's redis-tools, installed with redis-server) is needed for this test");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        // Every node must agree the cluster is up before clients use it.
        for node in &nodes {
            let client = ::redis::Client::open(node.url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let mut ok = false;
            for _ in 0..200 {
                let info: String = ::redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await.unwrap();
                if info.contains("cluster_state:ok") {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(ok, "the cluster did not come up on port {}", node.port);
        }
        Self { nodes }
    }

    /// The seed node's URL.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }
}

/// Which state-store backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Redis,
    RedisCluster,
}

/// A state store plus whatever keeps it alive (temp dir, Redis servers).
pub struct StoreFixture {
    /// The engine's three handles: records, quotas, events.
    pub db: Db,
    pub dir: TempDir,
    pub redis: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
}

pub async fn store_fixture(kind: StoreKind) -> StoreFixture {
    let dir = tempfile::tempdir().unwrap();
    match kind {
        StoreKind::Sqlite => {
            let store = tollgate::db::sqlite::SqliteDb::open(&dir.path().join("t.db")).unwrap();
            StoreFixture { db: Db::of(store), dir, redis: None, cluster: None }
        }
        StoreKind::Redis => {
            let server = RedisServer::start().await;
            let client = ::redis::Client::open(server.url()).unwrap();
            let store =
                tollgate::db::redis::RedisDb::connect(client, "tgtest", Duration::from_secs(2), Duration::from_secs(5))
                    .await
                    .unwrap();
            StoreFixture { db: Db::of(store), dir, redis: Some(server), cluster: None }
        }
        StoreKind::RedisCluster => {
            let cluster = RedisCluster::start().await;
            let store = tollgate::db::redis::RedisDb::connect_cluster(
                &cluster.url(),
                "tgtest",
                Duration::from_secs(2),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            StoreFixture { db: Db::of(store), dir, redis: None, cluster: Some(cluster) }
        }
    }
}

/// A running gateway.
pub struct Gateway {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub state: Arc<tollgate::services::Services>,
    pub keys: KeyRing,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    pub async fn start(config: &Config) -> Self {
        Self::running(tollgate::app::Gateway::bind(config).await.unwrap())
    }

    /// With the clock the test moves.
    pub async fn start_clocked(config: &Config, clock: tollgate::clock::ManualClock) -> Self {
        let (keys, _) = tollgate::app::load_key_ring(config).unwrap();
        let state = tollgate::app::build_services(config, keys, Arc::new(clock)).await.unwrap();
        Self::running(tollgate::app::Gateway::bind_with_state(config, state).await.unwrap())
    }

    fn running(gw: tollgate::app::Gateway) -> Self {
        let (public, admin, state) = (gw.public_addr(), gw.admin_addr(), gw.state());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(gw.run(async move {
            let _ = rx.await;
        }));
        let keys = state.keys.clone();
        Self { public, admin, state, keys, stop: Some(tx), task: Some(task) }
    }

    /// Start with the state store on a real Redis instead of SQLite.
    pub async fn start_on_redis(config: &Config, redis: &RedisServer) -> Self {
        Self::start_on_redis_url(config, &redis.url(), false).await
    }

    /// Start with the state store on a real Redis Cluster.
    pub async fn start_on_redis_cluster(config: &Config, cluster: &RedisCluster) -> Self {
        Self::start_on_redis_url(config, &cluster.url(), true).await
    }

    async fn start_on_redis_url(config: &Config, url: &str, cluster: bool) -> Self {
        let mut config = config.clone();
        config.store.backend = tollgate::config::StoreBackend::Redis;
        config.store.redis = Some(tollgate::config::RedisConfig {
            cluster,
            url: Some(Secret::new(url.to_owned())),
            url_file: None,
            key_prefix: "tgtest".into(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
        });
        Self::start(&config).await
    }

    /// Ask for a graceful shutdown; returns the task that finishes when it has.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap()
    }

    /// A signed path+query for `key` ("product/version/file"), valid for 15 min.
    pub fn signed(&self, key: &str) -> String {
        self.signed_with(key, |_| {})
    }

    pub fn signed_with(&self, key: &str, tweak: impl FnOnce(&mut Claims)) -> String {
        let path = encode_path(&format!("/d/{key}")).into_owned();
        let now = tollgate::clock::unix_seconds(std::time::SystemTime::now());
        let mut claims = Claims {
            scope: UrlScope::Path(path.clone()),
            expires: now + 900,
            not_before: None,
            // Like `tollgate sign`: no grant, so no catalog re-check.
            customer: None,
            grant: None,
            client_net: None,
        };
        tweak(&mut claims);
        let query = self.keys.sign(&claims).unwrap();
        format!("{path}?{query}")
    }

    /// Wait (bounded) until no download is streaming.
    pub async fn wait_for_no_downloads(&self) -> bool {
        for _ in 0..200 {
            if self.state.active_downloads.get() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A gateway on the given store, and a client for its admin API.
pub struct Admin {
    pub gw: Gateway,
    pub token: String,
    pub blobs: Blobs,
    _redis: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

impl Admin {
    pub async fn start(kind: StoreKind) -> Self {
        Self::start_on(kind, Backend::Local).await
    }

    /// With the state store `kind` and blob storage `backend`.
    pub async fn start_on(kind: StoreKind, backend: Backend) -> Self {
        Self::start_tweaked(kind, backend, |_| {}).await
    }

    /// The same, with the configuration adjusted first.
    pub async fn start_tweaked(kind: StoreKind, backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let blobs = Blobs::new(backend).await;
        let mut config = blobs.config();
        tweak(&mut config);
        let (gw, redis, cluster) = match kind {
            StoreKind::Sqlite => (Gateway::start(&config).await, None, None),
            StoreKind::Redis => {
                let server = RedisServer::start().await;
                (Gateway::start_on_redis(&config, &server).await, Some(server), None)
            }
            StoreKind::RedisCluster => {
                let cluster = RedisCluster::start().await;
                (Gateway::start_on_redis_cluster(&config, &cluster).await, None, Some(cluster))
            }
        };
        Self::around(gw, blobs, &config, redis, cluster)
    }

    /// On SQLite, with the clock the test moves.
    pub async fn start_clocked(clock: tollgate::clock::ManualClock, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_clocked_on(clock, Backend::Local, tweak).await
    }

    /// On SQLite and blob storage `backend`, with the clock the test moves.
    pub async fn start_clocked_on(
        clock: tollgate::clock::ManualClock,
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let blobs = Blobs::new(backend).await;
        let mut config = blobs.config();
        tweak(&mut config);
        let gw = Gateway::start_clocked(&config, clock).await;
        Self::around(gw, blobs, &config, None, None)
    }

    /// On a Redis the test keeps (to kill and restart it), local blobs.
    pub async fn on_redis(server: &RedisServer, tweak: impl FnOnce(&mut Config)) -> Self {
        let blobs = Blobs::new(Backend::Local).await;
        let mut config = blobs.config();
        tweak(&mut config);
        let gw = Gateway::start_on_redis(&config, server).await;
        Self::around(gw, blobs, &config, None, None)
    }

    fn around(
        gw: Gateway,
        blobs: Blobs,
        config: &Config,
        redis: Option<RedisServer>,
        cluster: Option<RedisCluster>,
    ) -> Self {
        // The embedded default created the admin token on first start.
        let token = std::fs::read_to_string(config.default_admin_token_path()).unwrap().trim().to_owned();
        assert!(token.starts_with("tga_"));
        Self { gw, token, blobs, _redis: redis, _cluster: cluster }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        request_with_body(self.gw.admin, method, path, &[("authorization", &auth)], bytes).await
    }

    /// An admin API call with a body that is not JSON.
    pub async fn call_raw(&self, method: &str, path: &str, body: Vec<u8>) -> Reply {
        let auth = format!("Bearer {}", self.token);
        request_with_body(self.gw.admin, method, path, &[("authorization", &auth)], Bytes::from(body)).await
    }

    /// A customer API call with an API key.
    pub async fn customer(&self, key: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {key}");
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        request_with_body(self.gw.public, method, path, &[("authorization", &auth)], bytes).await
    }

    pub fn json(r: &Reply) -> Value {
        serde_json::from_slice(r.bytes()).unwrap()
    }
}

/// A response with its body read to the end (or the error that cut it).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Result<Bytes, String>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn bytes(&self) -> &Bytes {
        self.body.as_ref().expect("body was cut")
    }

    /// The problem body's `code`.
    pub fn code(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        let v: Value = serde_json::from_slice(self.bytes()).unwrap();
        assert_eq!(v["status"].as_u64(), Some(u64::from(self.status)));
        v["code"].as_str().unwrap().to_owned()
    }
}

/// Send one HTTP/1.1 request on a new connection and read the whole response.
pub async fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
    request_with_body(addr, method, target, headers, Bytes::new()).await
}

/// The same, with a request body.
pub async fn request_with_body(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let response = send_with_body(addr, method, target, headers, body).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).map_err(|e| e.to_string());
    Reply { status: parts.status.as_u16(), headers: parts.headers, body }
}

pub async fn get(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target, &[]).await
}

/// Send a request and return the response with its body unread.
pub async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> hyper::Response<Incoming> {
    send_with_body(addr, method, target, headers, Bytes::new()).await
}

async fn send_with_body(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> hyper::Response<Incoming> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(target).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sender.send_request(req.body(http_body_util::Full::new(body)).unwrap()).await.unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha512_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha512::digest(data))
}

/// Deterministic pseudo-random bytes (no two 64 KiB chunks alike).
pub fn test_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The body of the fenced block whose info string is `info` in a Markdown file.
pub fn fenced_block(markdown: &str, info: &str) -> String {
    let start = markdown.find(&format!("```{info}\n")).unwrap_or_else(|| panic!("no ```{info} block"));
    let body = &markdown[start + info.len() + 4..];
    body[..body.find("\n```").unwrap()].to_owned()
}

/// A grant of `acme` for `app` 1.0.0 `app.tar.gz` under `entitlement`, issued
/// at `issued` with the default 15-minute URL; `n` makes its id.
pub fn test_grant(n: usize, entitlement: &str, issued: u64) -> tollgate::catalog::Grant {
    tollgate::catalog::Grant {
        id: format!("{n:024x}.{entitlement}"),
        customer: "acme".into(),
        entitlement: entitlement.into(),
        product: "app".into(),
        version: semver::Version::new(1, 0, 0),
        filename: "app.tar.gz".into(),
        issued_at: tollgate::catalog::Timestamp(issued),
        expires_at: tollgate::catalog::Timestamp(issued + 900),
        started_at: None,
        requested_from: None,
        started_from: None,
        via: None,
        by: None,
    }
}

/// A second handle on the same store (another SQLite connection, another
/// Redis connection), for tests of what two processes see.
pub async fn second_handle(f: &StoreFixture) -> Db {
    let (connect, response) = (Duration::from_secs(2), Duration::from_secs(5));
    if let Some(server) = &f.redis {
        let client = ::redis::Client::open(server.url()).unwrap();
        Db::of(tollgate::db::redis::RedisDb::connect(client, "tgtest", connect, response).await.unwrap())
    } else if let Some(cluster) = &f.cluster {
        Db::of(
            tollgate::db::redis::RedisDb::connect_cluster(&cluster.url(), "tgtest", connect, response).await.unwrap(),
        )
    } else {
        Db::of(tollgate::db::sqlite::SqliteDb::open(&f.dir.path().join("t.db")).unwrap())
    }
}

// The catalog, set up over the admin API.

/// Register a product `app`, a published release `version` on `channel` with one
/// file per `(filename, platform)`, the files' bytes put into storage first.
pub async fn release(a: &Admin, version: &str, channel: &str, files: &[(&str, &str)], published: &str) {
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    let r =
        a.call("PUT", &format!("/admin/v1/products/app/releases/{version}"), Some(json!({ "channel": channel }))).await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    for (i, (file, platform)) in files.iter().enumerate() {
        a.blobs.put(&format!("app/{version}/{file}"), &test_bytes(10_000 + i)).await;
        let r = a.call("PUT", &artifact_path(version, file, platform), None).await;
        assert!(r.status == 201 || r.status == 200, "{r:?}");
    }
    let publish = json!({ "backdated_to": published });
    let r = a.call("POST", &format!("/admin/v1/products/app/releases/{version}/publish"), Some(publish)).await;
    assert_eq!(r.status, 200, "{r:?}");
}

pub fn artifact_path(version: &str, file: &str, platform: &str) -> String {
    format!("/admin/v1/products/app/releases/{version}/artifacts/{file}?source=existing&platform={platform}")
}

/// A customer with one entitlement (`overrides` merged into a perpetual one for
/// `app`) and an API key; returns the key.
pub async fn customer(a: &Admin, id: &str, overrides: Value) -> String {
    a.call("PUT", &format!("/admin/v1/customers/{id}"), Some(json!({ "name": id }))).await;
    let mut ent = json!({ "product": "app", "license": "perpetual", "starts_at": "2020-01-01T00:00:00Z" });
    for (k, v) in overrides.as_object().unwrap() {
        ent[k] = v.clone();
    }
    let r = a.call("PUT", &format!("/admin/v1/customers/{id}/entitlements/main"), Some(ent)).await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    let r = a.call("POST", &format!("/admin/v1/customers/{id}/api-keys"), None).await;
    Admin::json(&r)["key"].as_str().unwrap().to_owned()
}

pub async fn ask(a: &Admin, key: &str, body: Value) -> Reply {
    a.customer(key, "POST", "/v1/downloads", Some(body)).await
}

/// The download URL (path and query) for `file` of `app` 1.0.0, asked for
/// with `key`; the request must succeed.
pub async fn url(a: &Admin, key: &str, file: &str) -> String {
    let r = ask(a, key, json!({ "product": "app", "version": "1.0.0", "filename": file })).await;
    assert_eq!(r.status, 201, "{r:?}");
    target(Admin::json(&r)["url"].as_str().unwrap()).to_owned()
}

/// Set customer `acme`'s quota (the rest of its record as `customer` made it).
pub async fn set_quota(a: &Admin, quota: Value) {
    let r = a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "Acme", "quota": quota }))).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// `GET /v1/usage` with `key`.
pub async fn usage(a: &Admin, key: &str) -> Value {
    let r = a.customer(key, "GET", "/v1/usage", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    Admin::json(&r)
}

/// Downloads used against the first limit.
pub async fn used(a: &Admin, key: &str) -> u64 {
    usage(a, key).await["limits"][0]["used"].as_u64().unwrap()
}

/// `download.initiated` events recorded so far, at least `want` of them
/// (the recorder batches; poll).
pub async fn initiations(a: &Admin, want: usize) -> Vec<Value> {
    for _ in 0..100 {
        let r = a.call("GET", "/admin/v1/events?type=download.initiated&limit=100", None).await;
        let items = Admin::json(&r)["items"].as_array().unwrap().clone();
        if items.len() >= want {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {want} download.initiated events");
}

/// Request-rate limits off, for tests about something else.
pub fn no_rate_limits(c: &mut Config) {
    c.limits.api_key_per_second = 0;
    c.limits.address_per_second = 0;
    c.limits.bad_credentials_per_minute = 0;
}

/// Redis with its data on disk, so that a restart keeps the catalog and log.
pub async fn durable_redis() -> RedisServer {
    RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await
}

/// The path and query of a URL the gateway handed out.
pub fn target(url: &str) -> &str {
    &url[url.find("/d/").unwrap()..]
}

// The `tollgate` binary, as a process.

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// aria2c downloading `url` in 8 parallel segments of 1 MiB into
/// `dir/name`.
pub fn aria2c(dir: &Path, name: &str, url: &str) -> Output {
    Command::new("aria2c")
        .args(["-x", "8", "-s", "8", "-k", "1M", "--file-allocation=none", "--console-log-level=warn"])
        .args(["--summary-interval=0", "--allow-overwrite=true", "-d", dir.to_str().unwrap(), "-o", name])
        .arg(url)
        .output()
        .expect("`aria2c` is needed for this test; scripts/test.sh installs it")
}

pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error"])
        .args(args)
        .output()
        .expect("`curl` is needed for this test; scripts/test.sh installs it")
}

/// A `tollgate serve` process, killed if a test fails before stopping it.
pub struct Server(pub Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `tollgate serve` in `dir` on free ports; returns the process, the public
/// address and the log lines printed before it was ready.
pub fn serve(dir: &Path, extra_env: &[(&str, &str)]) -> (Server, String, Vec<String>) {
    let env: Vec<(&str, &str)> =
        [("TOLLGATE_SERVER__LISTEN", "127.0.0.1:0")].into_iter().chain(extra_env.iter().copied()).collect();
    let (server, _admin, lines) = serve_with_admin(dir, &env);
    let public = lines.iter().find_map(|l| listener_addr(l, "public listener ready")).unwrap();
    (server, public, lines)
}

pub fn listener_addr(line: &str, marker: &str) -> Option<String> {
    if !line.contains(marker) {
        return None;
    }
    let at = line.find("addr=")? + 5;
    line[at..].split_whitespace().next().map(str::to_owned)
}

/// `tollgate serve` in `dir` (listen address from `extra_env`, admin on a free
/// port); returns the process, the admin address and the log lines printed
/// until both listeners were ready.
pub fn serve_with_admin(dir: &Path, extra_env: &[(&str, &str)]) -> (Server, String, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--admin-listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("TOLLGATE_CONFIG")
        .env("RUST_LOG", "info")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let admin = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "serve exited early: {lines:?}");
        let admin = listener_addr(&line, "admin listener ready");
        lines.push(line);
        if let Some(addr) = admin {
            break addr;
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    (Server(Some(child)), admin, lines)
}

/// SIGTERM, then expect a clean exit.
pub fn stop(mut server: Server) {
    let mut child = server.0.take().unwrap();
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "serve did not exit cleanly on SIGTERM: {exit:?}");
}
