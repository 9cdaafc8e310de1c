//! Listeners: accept loop, connection limit, TLS, HTTP/1.1 + HTTP/2, per-phase
//! timeouts and graceful shutdown.

mod io;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

pub use io::WriteIdleTimeout;

use crate::config::ServerConfig;

/// The TCP peer of a connection; [`serve`] inserts it into every request.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// How one listener serves its connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub write_idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub http2: bool,
}

impl ServeOptions {
    /// Options for the public listener, loading TLS material if configured.
    pub fn from_config(server: &ServerConfig) -> anyhow::Result<Self> {
        let tls = match &server.tls {
            Some(t) => Some(tls::server_config(t, server.http2)?),
            None => None,
        };
        Ok(Self {
            tls,
            max_connections: server.max_connections,
            header_read_timeout: server.header_read_timeout,
            write_idle_timeout: server.write_idle_timeout,
            shutdown_grace: server.shutdown_grace,
            http2: server.http2,
        })
    }
}

/// Serve `router` on `listener` until `shutdown` resolves; then stop accepting,
/// let in-flight requests finish for up to `shutdown_grace`, and cut the rest.
pub async fn serve(listener: TcpListener, router: Router, opts: ServeOptions, shutdown: impl Future<Output = ()>) {
    let local = listener.local_addr().ok();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(opts.write_idle_timeout);
    if !opts.http2 {
        builder = builder.http1_only();
    }
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let (cut_tx, cut_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // A free slot first: at the limit, new clients wait in the kernel's
        // accept queue instead of being accepted and starved.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            router: router.clone(),
            builder: builder.clone(),
            peer: PeerAddr(peer),
            watcher: graceful.watcher(),
            cut: cut_rx.clone(),
            opts: opts.clone(),
        };
        tokio::spawn(async move {
            let _permit = permit;
            conn.run(tcp).await;
        });
    }

    drop(listener);
    tracing::info!(addr = ?local, open = graceful.count(), "stopped accepting; draining connections");
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(addr = ?local, grace = ?opts.shutdown_grace, "grace period over; cutting remaining connections");
        let _ = cut_tx.send(true);
    } else {
        tracing::info!(addr = ?local, "all connections drained");
    }
}

struct Connection {
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    peer: PeerAddr,
    watcher: hyper_util::server::graceful::Watcher,
    cut: watch::Receiver<bool>,
    opts: ServeOptions,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream) {
        match self.opts.tls.clone() {
            None => self.serve_io(tcp).await,
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                match tokio::time::timeout(self.opts.header_read_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => self.serve_io(tls).await,
                    Ok(Err(e)) => tracing::debug!(peer = %self.peer.0, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(peer = %self.peer.0, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve_io<T>(self, io: T)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { router, builder, peer, watcher, mut cut, opts } = self;
        let io = TokioIo::new(WriteIdleTimeout::new(io, opts.write_idle_timeout));
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer);
            router.clone().oneshot(request)
        });
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::select! {
            result = watcher.watch(conn) => {
                if let Err(e) = result {
                    tracing::debug!(peer = %peer.0, error = %e, "connection ended with an error");
                }
            }
            _ = cut.wait_for(|cut| *cut) => {
                tracing::debug!(peer = %peer.0, "connection cut at the end of the shutdown grace period");
            }
        }
    }
}
