//! Typed configuration. Layers, lowest first: built-in defaults, the TOML file,
//! `TOLLGATE_…` environment variables, command-line flags (see [`load`]).
//! Unknown keys are errors; [`Config::validate`] runs at load and names the key
//! at fault.

pub mod cdn;
mod duration;
mod load;
pub mod portal;
pub mod secret;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::quota_limits::Quota;
use serde::{Deserialize, Serialize};

pub use cdn::{CdnConfig, CdnHash, CdnKind, CdnProfileConfig, CloudfrontPolicy, TokenPlacement};
pub use load::{ConfigError, ENV_PREFIX, load, load_from_str, unmapped_env};
pub use portal::{PortalConfig, SmtpConfig};
pub use secret::Secret;

pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_PUBLIC_URL: &str = "http://localhost:8080";
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
pub const DEFAULT_WRITE_BUFFER: usize = 16 * 1024;
/// hyper's floor for its buffer limit.
pub const MIN_WRITE_BUFFER: usize = 8 * 1024;
pub const DEFAULT_BLOCKING_THREADS: usize = 64;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_WRITE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_KEY_ID: &str = "k1";
pub const DEFAULT_STORAGE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_STORAGE_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_STORAGE_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_STORAGE_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_STORAGE_UPLOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_S3_REGION: &str = "us-east-1";
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "tg";
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_API_KEY_PER_SECOND: u32 = 20;
pub const DEFAULT_API_KEY_BURST: u32 = 100;
pub const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_DELIVERIES_PER_GRANT: u64 = 5;
pub const DEFAULT_REDIRECT_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_ADDRESS_PER_SECOND: u32 = 100;
pub const DEFAULT_ADDRESS_BURST: u32 = 400;
pub const DEFAULT_BAD_CREDENTIALS_PER_MINUTE: u32 = 60;
pub const DEFAULT_BAD_CREDENTIALS_BURST: u32 = 60;
pub const DEFAULT_EVENT_QUEUE: usize = 10_000;
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(90 * 86_400);
pub const DEFAULT_EVENT_MAX: u64 = 10_000_000;
pub const DEFAULT_REPORT_RETENTION: Duration = Duration::from_secs(400 * 86_400);
pub const DEFAULT_WEBHOOK_ATTEMPTS: u32 = 8;
pub const DEFAULT_WEBHOOK_FIRST_RETRY: Duration = Duration::from_secs(5);
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole configuration. `Config::default()` is the embedded default that
/// `tollgate serve` runs with when no file is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded default keeps its state: blobs, generated secrets.
    pub data_dir: PathBuf,
    /// Accept secret files that other users can read (single-user containers).
    pub allow_world_readable_secrets: bool,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub signing: SigningConfig,
    pub storage: StorageConfig,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    pub downloads: DownloadsConfig,
    pub events: EventsConfig,
    pub webhooks: WebhooksConfig,
    /// CDNs for `edge` delivery.
    pub cdn: CdnConfig,
    /// The customer portal.
    pub portal: PortalConfig,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            allow_world_readable_secrets: false,
            server: ServerConfig::default(),
            admin: AdminConfig::default(),
            signing: SigningConfig::default(),
            storage: StorageConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            downloads: DownloadsConfig::default(),
            events: EventsConfig::default(),
            webhooks: WebhooksConfig::default(),
            cdn: CdnConfig::default(),
            portal: PortalConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// Request-rate limits, per gateway process (in memory, GCRA). A rate of 0
/// turns that limit off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Customer API requests per second per API key, sustained…
    pub api_key_per_second: u32,
    /// …and in a burst.
    pub api_key_burst: u32,
    /// Data-plane requests per second per client address (IPv6 per /64).
    pub address_per_second: u32,
    pub address_burst: u32,
    /// Refused credentials (download tokens, API keys) per minute per client
    /// address; past it, such refusals become `429` until the rate recovers.
    pub bad_credentials_per_minute: u32,
    pub bad_credentials_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            api_key_per_second: DEFAULT_API_KEY_PER_SECOND,
            api_key_burst: DEFAULT_API_KEY_BURST,
            address_per_second: DEFAULT_ADDRESS_PER_SECOND,
            address_burst: DEFAULT_ADDRESS_BURST,
            bad_credentials_per_minute: DEFAULT_BAD_CREDENTIALS_PER_MINUTE,
            bad_credentials_burst: DEFAULT_BAD_CREDENTIALS_BURST,
        }
    }
}

/// What a grant allows once started, and the default download quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownloadsConfig {
    /// A grant's URL must be first used before it expires; once started, the
    /// grant can be resumed for this long after its start.
    #[serde(with = "duration")]
    pub resume_window: Duration,
    /// A streaming download holds a lease this long, renewed while it runs;
    /// `concurrent_downloads` counts live leases.
    #[serde(with = "duration")]
    pub lease_ttl: Duration,
    /// `closed`: with the store unreachable, new downloads are refused (`503
    /// store_unavailable`). `open`: grant URLs are served on their signature
    /// alone, unchecked and uncounted.
    pub on_store_unavailable: FailMode,
    /// The most one grant (one download URL) delivers, in multiples of its
    /// file's size: whole downloads, resumes and ranges added up. Past it
    /// the URL is refused (`403 grant_exhausted`) and the customer asks for
    /// a new one, which its quotas count. `0`: no bound.
    pub deliveries_per_grant: u64,
    /// Bind a started grant to the network of the client that started it:
    /// later requests from outside it are refused (`403
    /// grant_bound_elsewhere`). Unset: not bound.
    pub bind_started_grants: Option<GrantBinding>,
    /// In `redirect` delivery: how long the presigned storage URL a grant's
    /// `GET` is answered with stays valid (1s to 1h). It only has to outlive
    /// the redirect; a resume gets a fresh one.
    #[serde(with = "duration")]
    pub redirect_ttl: Duration,
    /// Every customer's quota unless the customer or entitlement sets its own;
    /// an absent limit is unlimited.
    #[serde(deserialize_with = "crate::table::table")]
    pub quota: Quota,
}

impl Default for DownloadsConfig {
    fn default() -> Self {
        Self {
            resume_window: DEFAULT_RESUME_WINDOW,
            lease_ttl: DEFAULT_LEASE_TTL,
            on_store_unavailable: FailMode::Closed,
            deliveries_per_grant: DEFAULT_DELIVERIES_PER_GRANT,
            bind_started_grants: None,
            redirect_ttl: DEFAULT_REDIRECT_TTL,
            quota: Quota::default(),
        }
    }
}

/// The network a started grant is bound to: the starting client's address
/// with this many leading bits (a /24 keeps a home or office NAT's clients
/// together; a /56 an IPv6 customer's site).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantBinding {
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for GrantBinding {
    fn default() -> Self {
        Self { ipv4_prefix: 24, ipv6_prefix: 56 }
    }
}

/// The download event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events the in-process queue holds before recording waits for room.
    pub queue: usize,
    /// Where events go while the store cannot take them; default
    /// `<data_dir>/events/spill.jsonl`. One gateway per file.
    pub spill_path: Option<PathBuf>,
    /// Events older than this are trimmed from the log.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// At most about this many events are kept.
    pub max_events: u64,
    /// Daily report counters are kept this long.
    #[serde(with = "duration")]
    pub report_retention: Duration,
    /// A denial repeated (same reason, client address, URL) within this long
    /// after it was recorded is counted, not recorded: one event with its
    /// `count` stands for the repeats when the window closes. `0s`: every
    /// denial is an event.
    #[serde(with = "duration")]
    pub denial_window: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            queue: DEFAULT_EVENT_QUEUE,
            spill_path: None,
            retention: DEFAULT_EVENT_RETENTION,
            max_events: DEFAULT_EVENT_MAX,
            report_retention: DEFAULT_REPORT_RETENTION,
            denial_window: Duration::from_secs(60),
        }
    }
}

/// Delivery of events to webhook endpoints (configured in the admin API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Deliver at all; off, endpoints are kept but nothing is sent.
    pub enabled: bool,
    /// Attempts per event before it goes to the endpoint's dead letters.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time, at most 10 minutes.
    #[serde(with = "duration")]
    pub first_retry: Duration,
    /// A delivery with no complete answer in this long has failed.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: DEFAULT_WEBHOOK_ATTEMPTS,
            first_retry: DEFAULT_WEBHOOK_FIRST_RETRY,
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Closed,
    Open,
}

/// The public listener: customer API and data plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Scheme, host and port customers reach the gateway at; signed URLs start
    /// with it.
    pub public_url: String,
    /// Connections served at once; further clients wait in the accept queue.
    pub max_connections: usize,
    /// Connections one client address may hold at once (0: no cap); trusted
    /// proxies are exempt. Beyond it, new connections are closed at once.
    pub max_connections_per_address: usize,
    /// Time a new connection has to deliver its first complete request head,
    /// and any client to send a request head.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1.1 keep-alive, HTTP/2 without streams).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// A response write that makes no progress for this long cuts the
    /// connection. Progress resets it, so slow but live downloads never hit it.
    #[serde(with = "duration")]
    pub write_idle_timeout: Duration,
    /// On SIGTERM / Ctrl-C: stop accepting, let responses in flight finish for
    /// at most this long, then cut what remains.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// The longest `/readyz` takes: a dependency that has not answered by
    /// then counts as down (set the load balancer's check timeout above it).
    #[serde(with = "duration")]
    pub readiness_timeout: Duration,
    /// Offer HTTP/2 (ALPN `h2` on TLS, prior knowledge on cleartext).
    pub http2: bool,
    /// Bytes of a response one HTTP/1 connection buffers before the next
    /// chunk is read from storage (besides the kernel's socket buffer), and
    /// the largest request head. The memory a slow download holds.
    pub write_buffer: usize,
    /// Threads for blocking work (SQLite, file reads that wait for the
    /// disk): the most the gateway starts, however many clients there are.
    pub blocking_threads: usize,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, CDN edges).
    pub trusted_proxies: Vec<IpNet>,
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: parse_addr(DEFAULT_LISTEN),
            public_url: DEFAULT_PUBLIC_URL.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_idle_timeout: DEFAULT_WRITE_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            readiness_timeout: DEFAULT_READINESS_TIMEOUT,
            http2: true,
            write_buffer: DEFAULT_WRITE_BUFFER,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM certificates of the CAs whose client certificates the listener
    /// accepts (asked for, not required: customers connect without one). A
    /// CDN profile's `origin.client_certificate` requires one.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// The admin listener: health and readiness now; the admin API later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer tokens accepted on `/admin/v1`. Empty: use (and on first start
    /// create, mode 0600) `<data_dir>/secrets/admin-token`.
    pub tokens: Vec<AdminTokenConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: parse_addr(DEFAULT_ADMIN_LISTEN), tokens: Vec::new() }
    }
}

/// What an admin token (and a console session signed in with it) may do.
/// Everyone reads everything; changes are by area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminRole {
    /// Everything.
    #[default]
    Owner,
    /// Products, releases, their files (uploads, publish, yank, cut).
    ReleaseManager,
    /// Customers, their entitlements, API keys, feed tokens and portal users.
    Support,
    /// Reads only.
    ReadOnly,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Owner => "owner",
            AdminRole::ReleaseManager => "release-manager",
            AdminRole::Support => "support",
            AdminRole::ReadOnly => "read-only",
        }
    }

    /// Whether a request with `method` to admin API `path` is this role's.
    pub fn may(self, method: &http::Method, path: &str) -> bool {
        if method == http::Method::GET || method == http::Method::HEAD {
            return true;
        }
        match self {
            AdminRole::Owner => true,
            AdminRole::ReadOnly => false,
            AdminRole::ReleaseManager => path.starts_with("/admin/v1/products"),
            AdminRole::Support => path.starts_with("/admin/v1/customers"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenConfig {
    /// Names the token in logs (never the token itself).
    pub id: String,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    /// `owner` (the default: everything), `release-manager` (products and
    /// releases), `support` (customers) or `read-only`; in the admin API and
    /// the console alike.
    #[serde(default)]
    pub role: AdminRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// Id of the key that signs new URLs. Defaults to the only non-verify-only
    /// key, or `k1` for the generated key of the embedded default.
    pub active_key: Option<String>,
    /// The key ring. Empty means: use (and on first start, create)
    /// `<data_dir>/secrets/signing-key-k1`.
    pub keys: Vec<KeyConfig>,
    /// Clock difference tolerated on `exp` and `nbf`.
    #[serde(with = "duration")]
    pub clock_skew: Duration,
    /// Lifetime of URLs minted without an explicit TTL.
    #[serde(with = "duration")]
    pub default_ttl: Duration,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self { active_key: None, keys: Vec::new(), clock_skew: DEFAULT_CLOCK_SKEW, default_ttl: DEFAULT_TTL }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub id: String,
    /// base64url key text (at least 32 bytes once decoded).
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    /// Kept to verify URLs signed before a rotation; never signs.
    #[serde(default)]
    pub verify_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Local,
    S3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// Connecting to the storage service (S3).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// From sending a request to storage to its first response byte.
    #[serde(with = "duration")]
    pub first_byte_timeout: Duration,
    /// Longest wait for the next chunk of an object being streamed.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// The whole of one storage request, retries included: a `HEAD`, the
    /// response head of a `GET`, a listing, a delete (S3).
    #[serde(with = "duration")]
    pub operation_timeout: Duration,
    /// The whole of one upload request, retries included, each attempt
    /// alike: a part or a small object sent through the gateway, and
    /// `CompleteMultipartUpload`, which S3 may take minutes to answer for a
    /// large object (S3).
    #[serde(with = "duration")]
    pub upload_timeout: Duration,
    pub local: LocalStorageConfig,
    pub s3: Option<S3Config>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Local,
            connect_timeout: DEFAULT_STORAGE_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_STORAGE_FIRST_BYTE_TIMEOUT,
            idle_timeout: DEFAULT_STORAGE_IDLE_TIMEOUT,
            operation_timeout: DEFAULT_STORAGE_OPERATION_TIMEOUT,
            upload_timeout: DEFAULT_STORAGE_UPLOAD_TIMEOUT,
            local: LocalStorageConfig::default(),
            s3: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalStorageConfig {
    /// Blob root; defaults to `<data_dir>/blobs`.
    pub root: Option<PathBuf>,
    /// Where file system calls run (see [`LocalIo`]).
    pub io: LocalIo,
}

/// Where the local store's file system calls run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalIo {
    /// Look-ups (open, `fstat`) and reads of cached bytes on the serving
    /// thread, as nginx does; a read that would wait for the disk on the
    /// blocking pool. For local disks.
    #[default]
    Inline,
    /// Every call on the blocking pool: for network file systems, whose
    /// look-ups can stall for seconds.
    Threads,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// For S3-compatible services (MinIO, Garage, Ceph, R2); unset for AWS.
    pub endpoint: Option<String>,
    /// Prepended to every object key, e.g. `releases/`.
    #[serde(default)]
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most self-hosted
    /// services need.
    #[serde(default)]
    pub force_path_style: bool,
    /// Static credentials; when absent the standard AWS chain is used
    /// (environment, profile, web identity, ECS/EC2 metadata).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub secret_access_key_file: Option<PathBuf>,
    /// Uploads larger than this go up in parts of this size (bytes; at least
    /// 5 MiB, S3's minimum). An upload may have at most 10 000 parts.
    #[serde(default = "default_part_size")]
    pub part_size: u64,
    /// Parts of one upload sent at once; memory per upload is about
    /// `part_size × (parts_in_flight + 1)`.
    #[serde(default = "default_parts_in_flight")]
    pub parts_in_flight: usize,
    /// How long the presigned requests of a direct upload plan stay valid
    /// (at most 7 days, SigV4's limit). A plan not completed by then is
    /// abandoned and its parts removed.
    #[serde(default = "default_upload_url_ttl", with = "duration")]
    pub upload_url_ttl: Duration,
    /// A direct upload plan that has received nothing for this long (no part
    /// newer, by storage's own times, and made longer ago) is abandoned by
    /// the sweep, long before its URLs expire: what a crashed CI job leaves.
    /// Must exceed the time a client takes to send one part.
    #[serde(default = "default_abandon_uploads_idle_for", with = "duration")]
    pub abandon_uploads_idle_for: Duration,
}

fn default_upload_url_ttl() -> Duration {
    Duration::from_secs(6 * 3600)
}

fn default_abandon_uploads_idle_for() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_region() -> String {
    DEFAULT_S3_REGION.into()
}

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

fn default_part_size() -> u64 {
    16 * 1024 * 1024
}

fn default_parts_in_flight() -> usize {
    4
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    Sqlite,
    Redis,
}

/// The state store: catalog, customers, entitlements, keys, grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub sqlite: SqliteConfig,
    pub redis: Option<RedisConfig>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { backend: StoreBackend::Sqlite, sqlite: SqliteConfig::default(), redis: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// Database file; defaults to `<data_dir>/tollgate.db`.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]` or `rediss://` for TLS. A secret,
    /// since it may carry the password: give `url` or `url_file`.
    pub url: Option<Secret>,
    pub url_file: Option<PathBuf>,
    /// Prefix of every key Tollgate writes, so several deployments can share
    /// one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_redis_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// A command with no answer for this long counts as Redis being down.
    #[serde(default = "default_redis_response_timeout", with = "duration")]
    pub response_timeout: Duration,
    /// Speak the Redis Cluster protocol; `url` is then one seed node, from which
    /// the client learns the others.
    #[serde(default)]
    pub cluster: bool,
}

fn default_key_prefix() -> String {
    DEFAULT_REDIS_KEY_PREFIX.into()
}

fn default_redis_connect_timeout() -> Duration {
    DEFAULT_REDIS_CONNECT_TIMEOUT
}

fn default_redis_response_timeout() -> Duration {
    DEFAULT_REDIS_RESPONSE_TIMEOUT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `tollgate=debug,info`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl Config {
    /// Check what serde cannot: cross-field rules and value ranges. Every message
    /// starts with the dotted key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, msg: String| Err(ConfigError::Invalid(format!("{key}: {msg}")));
        let s = &self.server;
        if !(s.public_url.starts_with("http://") || s.public_url.starts_with("https://")) {
            return fail("server.public_url", format!("{:?} must start with http:// or https://", s.public_url));
        }
        if s.public_url.contains('?') || s.public_url.contains('#') {
            return fail("server.public_url", "must not contain a query or fragment".into());
        }
        if s.max_connections == 0 {
            return fail("server.max_connections", "must be at least 1".into());
        }
        if s.write_buffer < MIN_WRITE_BUFFER {
            return fail("server.write_buffer", format!("must be at least {MIN_WRITE_BUFFER} bytes"));
        }
        if s.blocking_threads == 0 {
            return fail("server.blocking_threads", "must be at least 1".into());
        }
        let l = &self.limits;
        for (key, rate, burst) in [
            ("limits.api_key_burst", l.api_key_per_second, l.api_key_burst),
            ("limits.address_burst", l.address_per_second, l.address_burst),
            ("limits.bad_credentials_burst", l.bad_credentials_per_minute, l.bad_credentials_burst),
        ] {
            if rate > 0 && burst == 0 {
                return fail(key, "must be at least 1 when its rate is set".into());
            }
        }
        for (key, d) in [
            ("server.header_read_timeout", s.header_read_timeout),
            ("server.idle_timeout", s.idle_timeout),
            ("server.write_idle_timeout", s.write_idle_timeout),
            ("storage.connect_timeout", self.storage.connect_timeout),
            ("storage.first_byte_timeout", self.storage.first_byte_timeout),
            ("storage.idle_timeout", self.storage.idle_timeout),
            ("storage.operation_timeout", self.storage.operation_timeout),
            ("storage.upload_timeout", self.storage.upload_timeout),
            ("server.readiness_timeout", s.readiness_timeout),
            ("signing.default_ttl", self.signing.default_ttl),
            ("downloads.resume_window", self.downloads.resume_window),
        ] {
            if d.is_zero() {
                return fail(key, "must be greater than zero".into());
            }
        }
        let e = &self.events;
        if e.queue == 0 {
            return fail("events.queue", "must be at least 1".into());
        }
        if e.max_events == 0 {
            return fail("events.max_events", "must be at least 1".into());
        }
        if e.retention < Duration::from_secs(3600) {
            return fail("events.retention", "must be at least 1h".into());
        }
        if e.report_retention < Duration::from_secs(86_400) {
            return fail("events.report_retention", "must be at least 1d".into());
        }
        let w = &self.webhooks;
        if w.max_attempts == 0 || w.max_attempts > 30 {
            return fail("webhooks.max_attempts", "must be 1 to 30".into());
        }
        if w.timeout.is_zero() || w.first_retry.is_zero() {
            return fail("webhooks.timeout", "timeout and first_retry must be greater than zero".into());
        }
        if let Some(b) = &self.downloads.bind_started_grants
            && (b.ipv4_prefix > 32 || b.ipv6_prefix > 128)
        {
            return fail("downloads.bind_started_grants", "ipv4_prefix is at most 32, ipv6_prefix at most 128".into());
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.downloads.redirect_ttl) {
            return fail("downloads.redirect_ttl", "must be 1s to 1h".into());
        }
        if self.downloads.lease_ttl < Duration::from_secs(3) {
            return fail("downloads.lease_ttl", "must be at least 3s (leases are renewed every third of it)".into());
        }
        if let Some(s3) = &self.storage.s3 {
            if s3.part_size < MIN_PART_SIZE || s3.part_size > 5 << 30 {
                return fail("storage.s3.part_size", format!("must be {MIN_PART_SIZE} (5 MiB) to 5 GiB"));
            }
            if s3.parts_in_flight == 0 {
                return fail("storage.s3.parts_in_flight", "must be at least 1".into());
            }
            if s3.upload_url_ttl < Duration::from_secs(60) || s3.upload_url_ttl > Duration::from_secs(7 * 86_400) {
                return fail("storage.s3.upload_url_ttl", "must be between 1m and 7d".into());
            }
            if s3.abandon_uploads_idle_for < Duration::from_secs(60) {
                return fail("storage.s3.abandon_uploads_idle_for", "must be at least 1m".into());
            }
        }
        if s.listen == self.admin.listen && s.listen.port() != 0 {
            return fail("admin.listen", format!("{} is also server.listen", s.listen));
        }
        self.validate_signing()?;
        self.cdn.validate().map_err(ConfigError::Invalid)?;
        self.portal.validate().map_err(ConfigError::Invalid)?;
        let client_cas = s.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        if let Some(p) = self.cdn.profiles.iter().find(|p| p.origin.as_ref().is_some_and(|o| o.client_certificate))
            && !client_cas
        {
            return fail(
                &format!("cdn.profiles.{}.origin.client_certificate", p.id),
                "needs server.tls.client_ca_file (the CA that issued the CDN's client certificate)".into(),
            );
        }
        for (i, t) in self.admin.tokens.iter().enumerate() {
            if !crate::signing::is_valid_id(&t.id) {
                return fail(&format!("admin.tokens[{i}].id"), "must be 1-128 characters of A-Z a-z 0-9 . _ -".into());
            }
            if self.admin.tokens[..i].iter().any(|o| o.id == t.id) {
                return fail(&format!("admin.tokens[{i}].id"), "duplicate token id".into());
            }
            if t.secret.is_some() == t.secret_file.is_some() {
                return fail(&format!("admin.tokens[{i}].secret"), "give exactly one of secret or secret_file".into());
            }
        }
        if self.storage.backend == StorageBackend::S3 {
            let Some(s3) = &self.storage.s3 else {
                return fail("storage.s3", "required when storage.backend = \"s3\"".into());
            };
            if s3.bucket.is_empty() {
                return fail("storage.s3.bucket", "must not be empty".into());
            }
            if let Some(ep) = &s3.endpoint
                && !(ep.starts_with("http://") || ep.starts_with("https://"))
            {
                return fail("storage.s3.endpoint", format!("{ep:?} must start with http:// or https://"));
            }
            let has_secret = s3.secret_access_key.is_some() || s3.secret_access_key_file.is_some();
            if s3.access_key_id.is_some() != has_secret {
                return fail(
                    "storage.s3.access_key_id",
                    "give both access_key_id and secret_access_key(_file), or neither for the AWS chain".into(),
                );
            }
        }
        if self.store.backend == StoreBackend::Redis {
            let Some(r) = &self.store.redis else {
                return fail("store.redis", "required when store.backend = \"redis\"".into());
            };
            if r.url.is_some() == r.url_file.is_some() {
                return fail("store.redis.url", "give exactly one of url or url_file".into());
            }
            if r.key_prefix.is_empty() || r.key_prefix.contains(['{', '}', ':']) {
                return fail("store.redis.key_prefix", "must be non-empty, without '{', '}' or ':'".into());
            }
            if r.connect_timeout.is_zero() || r.response_timeout.is_zero() {
                return fail("store.redis.connect_timeout", "timeouts must be greater than zero".into());
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return fail("log.level", format!("{:?} is not a valid filter", self.log.level));
        }
        // A bare word is read as a target name with every level on, which
        // turns everything else off: `level = "verbose"` would silence the log.
        const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
        for directive in self.log.level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            if !directive.contains(['=', '[']) && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
                return fail(
                    "log.level",
                    format!(
                        "{directive:?} is not a level (trace, debug, info, warn, error, off); \
                         for one module write module=level"
                    ),
                );
            }
        }
        Ok(())
    }

    fn validate_signing(&self) -> Result<(), ConfigError> {
        let fail = |key: String, msg: &str| Err(ConfigError::Invalid(format!("{key}: {msg}")));
        let keys = &self.signing.keys;
        for (i, k) in keys.iter().enumerate() {
            if !crate::signing::is_valid_id(&k.id) {
                return fail(format!("signing.keys[{i}].id"), "must be 1-128 characters of A-Z a-z 0-9 . _ -");
            }
            if keys[..i].iter().any(|other| other.id == k.id) {
                return fail(format!("signing.keys[{i}].id"), "duplicate key id");
            }
            if k.secret.is_some() == k.secret_file.is_some() {
                return fail(format!("signing.keys[{i}].secret"), "give exactly one of secret or secret_file");
            }
        }
        if !keys.is_empty() && self.active_key_id().is_none() {
            return fail(
                "signing.active_key".into(),
                "must name a key of signing.keys that is not verify_only (required when several could sign)",
            );
        }
        Ok(())
    }

    /// The id of the signing key, resolved from `signing.active_key` or the ring.
    pub fn active_key_id(&self) -> Option<String> {
        let keys = &self.signing.keys;
        if keys.is_empty() {
            return Some(self.signing.active_key.clone().unwrap_or_else(|| DEFAULT_KEY_ID.into()));
        }
        match &self.signing.active_key {
            Some(id) => keys.iter().any(|k| &k.id == id && !k.verify_only).then(|| id.clone()),
            None => {
                let mut signers = keys.iter().filter(|k| !k.verify_only);
                match (signers.next(), signers.next()) {
                    (Some(only), None) => Some(only.id.clone()),
                    _ => None,
                }
            }
        }
    }

    /// Blob root of the local backend.
    pub fn blob_root(&self) -> PathBuf {
        self.storage.local.root.clone().unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// The SQLite database file of the embedded store.
    /// The event spill file.
    pub fn spill_path(&self) -> PathBuf {
        self.events.spill_path.clone().unwrap_or_else(|| self.data_dir.join("events").join("spill.jsonl"))
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.store.sqlite.path.clone().unwrap_or_else(|| self.data_dir.join("tollgate.db"))
    }

    /// Where the embedded default keeps its generated secrets.
    pub fn secrets_dir(&self) -> PathBuf {
        self.data_dir.join("secrets")
    }

    /// Path of the generated admin token of the embedded default.
    pub fn default_admin_token_path(&self) -> PathBuf {
        self.secrets_dir().join("admin-token")
    }

    /// Path of the generated signing key of the embedded default.
    pub fn default_key_path(&self, id: &str) -> PathBuf {
        self.secrets_dir().join(format!("signing-key-{id}"))
    }
}
