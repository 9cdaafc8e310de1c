//! Assembling a gateway from configuration: key ring, storage, shared state and
//! the two listeners.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::admin_tokens::AdminTokens;
use crate::catalog::{CatalogRepo, grants};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, FailMode, secret};
use crate::entitlement::access::UrlPolicy;
use crate::events::{self, Recorder, Retention, webhooks};
use crate::http;
use crate::metrics::{DownloadGauge, Metrics};
use crate::quota::{self, Leases};
use crate::ratelimit::RateLimits;
use crate::server::{self, ServeOptions};
use crate::services::{DownloadPolicy, Services, UploadPolicy};
use crate::signing::{self, KeyMaterial, KeyRing};
use crate::{cuts, db, storage, uploads};

/// hyper's HTTP/1 buffer limit on the admin listener (its default).
const ADMIN_BUFFER: usize = 8192 + 4096 * 100;

/// Where the signing keys came from, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Configured in `signing.keys`.
    Configured,
    /// The embedded default's key file, and whether it was created just now.
    Generated { path: PathBuf, created: bool },
}

/// Load the key ring, creating the embedded default's key on first use (what
/// `serve` does).
pub fn load_key_ring(config: &Config) -> anyhow::Result<(KeyRing, KeySource)> {
    key_ring(config, true)
}

/// Load the key ring as it is: a missing key of the embedded default is an
/// error saying where it was looked for (what `sign` and `verify` do: a key
/// made up on the spot would sign URLs no gateway accepts).
pub fn existing_key_ring(config: &Config) -> anyhow::Result<(KeyRing, KeySource)> {
    key_ring(config, false)
}

/// With no keys configured (the embedded default), the key lives in
/// `<data_dir>/secrets/signing-key-<id>`, created with mode 0600 when
/// `create` allows.
fn key_ring(config: &Config, create: bool) -> anyhow::Result<(KeyRing, KeySource)> {
    let allow = config.allow_world_readable_secrets;
    let active = config.active_key_id().context("signing.active_key: no key can sign")?;
    if config.signing.keys.is_empty() {
        let path = config.default_key_path(&active);
        if !create && !path.exists() {
            anyhow::bail!(
                "no signing key: {} does not exist and signing.keys is empty; run this with the gateway's \
                 configuration (its data_dir, or --config), or configure signing.keys (`tollgate keygen` makes a key); \
                 `tollgate serve` creates the embedded default's key on first start",
                path.display()
            );
        }
        let (text, created) = secret::ensure_generated("signing key", &path, allow, || {
            signing::generate_key().map_err(|e| std::io::Error::other(e.to_string()))
        })?;
        let material = vec![KeyMaterial {
            id: active.clone(),
            secret: signing::decode_key(&active, text.expose())?,
            verify_only: false,
        }];
        return Ok((KeyRing::new(&active, material)?, KeySource::Generated { path, created }));
    }
    let mut material = Vec::with_capacity(config.signing.keys.len());
    for (i, k) in config.signing.keys.iter().enumerate() {
        let name = format!("signing.keys[{i}].secret");
        let text = secret::resolve(&name, k.secret.as_ref(), k.secret_file.as_deref(), allow)?;
        let bytes = signing::decode_key(&k.id, text.expose()).with_context(|| name.clone())?;
        material.push(KeyMaterial { id: k.id.clone(), secret: bytes, verify_only: k.verify_only });
    }
    Ok((KeyRing::new(&active, material)?, KeySource::Configured))
}

/// Load the admin tokens. With none configured (the embedded default), the
/// token lives in `<data_dir>/secrets/admin-token`, created on first use.
pub fn load_admin_tokens(config: &Config) -> anyhow::Result<(AdminTokens, KeySource)> {
    let allow = config.allow_world_readable_secrets;
    if config.admin.tokens.is_empty() {
        let path = config.default_admin_token_path();
        let (token, created) = secret::ensure_generated("admin token", &path, allow, || {
            AdminTokens::generate().map_err(std::io::Error::other)
        })?;
        return Ok((AdminTokens::new(vec![("default".to_owned(), token)]), KeySource::Generated { path, created }));
    }
    let mut tokens = Vec::with_capacity(config.admin.tokens.len());
    for (i, t) in config.admin.tokens.iter().enumerate() {
        let name = format!("admin.tokens[{i}].secret");
        let secret = secret::resolve(&name, t.secret.as_ref(), t.secret_file.as_deref(), allow)?;
        tokens.push((t.id.clone(), t.role, secret));
    }
    Ok((AdminTokens::with_roles(tokens), KeySource::Configured))
}

/// Build the shared services from configuration.
pub async fn build_services(config: &Config, keys: KeyRing, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Services>> {
    let storage = storage::from_config(config).await?;
    let metrics = Arc::new(Metrics::default());
    let db = db::open(config).await?.timed(metrics.clone());
    let (admin_tokens, source) = load_admin_tokens(config)?;
    if let KeySource::Generated { path, created } = &source {
        tracing::info!(path = %path.display(), created = *created, "admin token file (Authorization: Bearer <contents>)");
    }
    let d = &config.downloads;
    let leases = Arc::new(Leases::new(db.quotas.clone(), clock.clone(), d.lease_ttl.as_secs(), events::process_name()));
    let e = &config.events;
    let events = Recorder::start(
        db.events.clone(),
        events::recorder::Settings { queue: e.queue, spill_path: config.spill_path(), retention: retention(config) },
        metrics.clone(),
    );
    let cdn = crate::cdn::Profiles::load(&config.cdn, config.allow_world_readable_secrets)?;
    Ok(Arc::new(Services {
        cdn: Arc::new(cdn),
        keys,
        storage,
        catalog: CatalogRepo::new(db.records),
        quotas: db.quotas,
        event_log: db.events,
        admin_tokens,
        clock,
        trusted_proxies: config.server.trusted_proxies.clone(),
        active_downloads: DownloadGauge::default(),
        streams: Arc::default(),
        limits: Arc::new(RateLimits::from_config(&config.limits, &config.portal)),
        portal: config.portal.clone(),
        mail: crate::mail::Mailer::from_config(&config.portal.smtp)?,
        branding: std::sync::RwLock::new(config.portal.branding()),
        sso: crate::oidc::Providers::from_config(&config.portal.sso, config.allow_world_readable_secrets)?,
        downloads: DownloadPolicy {
            urls: UrlPolicy {
                public_url: config.server.public_url.clone(),
                ttl_secs: config.signing.default_ttl.as_secs(),
            },
            quota: quota::Settings {
                defaults: d.quota,
                resume_window: d.resume_window.as_secs(),
                lease_ttl: leases.ttl(),
                fail_open: d.on_store_unavailable == FailMode::Open,
                deliveries_per_grant: d.deliveries_per_grant,
            },
            clock_skew: config.signing.clock_skew.as_secs(),
            idle_timeout: config.storage.idle_timeout,
            bind_started: d.bind_started_grants,
            redirect_ttl: d.redirect_ttl,
        },
        uploads: UploadPolicy {
            url_ttl: config
                .storage
                .s3
                .as_ref()
                .map_or(std::time::Duration::from_secs(6 * 3600), |s3| s3.upload_url_ttl),
            idle_timeout: config.storage.idle_timeout,
            abandon_idle_for: config
                .storage
                .s3
                .as_ref()
                .map_or(std::time::Duration::from_secs(30 * 60), |s3| s3.abandon_uploads_idle_for),
        },
        readiness_timeout: config.server.readiness_timeout,
        denials: Arc::new(events::denials::Digest::new(config.events.denial_window)),
        leases,
        metrics,
        events,
    }))
}

/// How long events and report counters are kept, from `[events]`.
fn retention(config: &Config) -> Retention {
    let e = &config.events;
    Retention {
        max_age: e.retention,
        max_events: e.max_events,
        report_days: e.report_retention.as_secs().div_ceil(86_400),
    }
}

/// How webhooks are delivered; `None` when `webhooks.enabled` is off.
fn webhook_settings(config: &Config) -> Option<webhooks::Settings> {
    config.webhooks.enabled.then(|| webhooks::Settings {
        max_attempts: config.webhooks.max_attempts,
        first_retry: config.webhooks.first_retry,
        timeout: config.webhooks.timeout,
        poll: std::time::Duration::from_millis(500),
        // Per process, so two never share one (they would both deliver
        // what it holds), even on a shared data directory.
        consumer: events::process_name(),
    })
}

/// A gateway with its listeners bound, ready to run.
#[derive(Debug)]
pub struct Gateway {
    state: Arc<Services>,
    retention: Retention,
    webhooks: Option<webhooks::Settings>,
    public: TcpListener,
    admin: TcpListener,
    public_opts: ServeOptions,
    admin_opts: ServeOptions,
}

impl Gateway {
    /// Load keys and storage from `config` and bind both listeners.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let (keys, source) = load_key_ring(config)?;
        match &source {
            KeySource::Generated { path, created: true } => {
                tracing::info!(key_id = keys.active_id(), path = %path.display(), "created a new signing key (mode 0600)")
            }
            KeySource::Generated { path, created: false } => {
                tracing::info!(key_id = keys.active_id(), path = %path.display(), "using signing key")
            }
            KeySource::Configured => {
                tracing::info!(active = keys.active_id(), keys = ?keys.key_ids(), "using configured signing keys")
            }
        }
        let state = build_services(config, keys, Arc::new(SystemClock)).await?;
        Self::bind_with_state(config, state).await
    }

    /// Bind both listeners around existing state (tests bring their own clock).
    pub async fn bind_with_state(config: &Config, state: Arc<Services>) -> anyhow::Result<Self> {
        let public_opts = ServeOptions::from_config(&config.server, config.allow_world_readable_secrets)?;
        // The admin listener takes uploads and serves no slow downloads:
        // hyper's own buffer limit (about 400 KiB) lets it read a body in
        // large reads.
        let admin_opts = ServeOptions { tls: None, write_buffer: ADMIN_BUFFER, ..public_opts.clone() };
        let public = listen(config.server.listen)
            .with_context(|| format!("server.listen: cannot listen on {}", config.server.listen))?;
        let admin = listen(config.admin.listen)
            .with_context(|| format!("admin.listen: cannot listen on {}", config.admin.listen))?;
        Ok(Self {
            state,
            retention: retention(config),
            webhooks: webhook_settings(config),
            public,
            admin,
            public_opts,
            admin_opts,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn state(&self) -> Arc<Services> {
        self.state.clone()
    }

    /// Serve until `shutdown` resolves, then drain both listeners.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let scheme = if self.public_opts.tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %self.public_addr(), scheme, storage = self.state.storage.backend(), "public listener ready");
        tracing::info!(addr = %self.admin_addr(), "admin listener ready");
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let svc = &self.state;
        let usable_after_expiry = svc.downloads.quota.resume_window + svc.downloads.clock_skew;
        let workers = [
            // Rate-limit keys that went quiet are dropped once a minute.
            Some(tokio::spawn(svc.limits.clone().evict_worker())),
            // Leases of the downloads streaming here are renewed while they run.
            Some(tokio::spawn(svc.leases.clone().renew_worker())),
            // Grants no URL can use any more are deleted every few minutes.
            Some(tokio::spawn(grants::purge_worker(svc.catalog.clone(), svc.clock.clone(), usable_after_expiry))),
            Some(tokio::spawn(uploads::direct::sweep_worker(svc.clone()))),
            // The portal's expired sign-in links, SSO flows and sessions.
            Some(tokio::spawn(crate::portal::sweep_worker(svc.clone()))),
            // Branding set through the admin API, as another replica wrote it.
            Some(tokio::spawn(crate::portal::branding_worker(svc.clone()))),
            Some(tokio::spawn(events::trim_worker(svc.event_log.clone(), svc.clock.clone(), self.retention))),
            // Repeated denials' summaries, when their windows close.
            (!svc.denials.window().is_zero()).then(|| tokio::spawn(svc.clone().denial_worker())),
            // Operators' orders to cut running downloads, from every replica.
            Some(tokio::spawn(cuts::follow(svc.catalog.records().clone(), svc.streams.clone(), svc.clock.clone()))),
            // Webhook deliveries, a worker per endpoint.
            self.webhooks.clone().and_then(|settings| {
                match webhooks::Deliverer::new(
                    svc.catalog.records().clone(),
                    svc.event_log.clone(),
                    settings,
                    svc.clock.clone(),
                ) {
                    Ok(d) => Some(tokio::spawn(d.run())),
                    Err(e) => {
                        tracing::error!(error = %e, "webhooks cannot be delivered");
                        None
                    }
                }
            }),
        ];
        tokio::join!(
            server::serve(self.public, http::public_router(self.state.clone()), self.public_opts, stopped(rx.clone())),
            server::serve(self.admin, http::admin_router(self.state.clone()), self.admin_opts, stopped(rx)),
        );
        for worker in workers.into_iter().flatten() {
            worker.abort();
        }
        // Downloads that just ended have recorded their completions.
        self.state.events.stop().await;
        tracing::info!("stopped");
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// Connections a listener lets wait to be accepted (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default). Tokio's `bind` asks for 1024: a
/// burst of a thousand clients arriving while the serving threads are busy
/// writing (each new download first fills its socket's send buffer)
/// overflowed it, and the kernel then reset connections it had answered
/// with SYN cookies. nginx asks for 511 but accepts from an idle event loop.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`], address reuse as tokio's
/// `bind` sets it.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
