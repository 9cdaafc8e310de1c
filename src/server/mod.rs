//! Listeners: accept loop, connection limit, TLS, HTTP/1.1 + HTTP/2, per-phase
//! timeouts and graceful shutdown.

mod canned;
mod guard;
mod io;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tower::ServiceExt;

pub use canned::ProblemBodies;
pub use io::WriteIdleTimeout;

use guard::{Activity, PerAddress};

use crate::config::ServerConfig;

/// The TCP peer of a connection; [`serve`] inserts it into every request.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The client certificate a TLS connection presented, verified against
/// `server.tls.client_ca_file`; [`serve`] inserts it into every request of
/// such a connection.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// SHA-256 of the leaf certificate's DER, lower-case hex.
    pub sha256: Arc<str>,
}

/// How one listener serves its connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub max_connections: usize,
    /// Connections one client address may hold (0: no cap).
    pub max_connections_per_address: usize,
    /// Peers exempt from the per-address cap (trusted load balancers).
    pub uncapped: Vec<ipnet::IpNet>,
    /// Time a new connection has to deliver its first complete request head
    /// (and any client to send a request head).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    pub write_idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub http2: bool,
    /// hyper's HTTP/1 buffer limit: response bytes queued per connection,
    /// and the largest request head.
    pub write_buffer: usize,
}

impl ServeOptions {
    /// Options for the public listener, loading TLS material if configured
    /// (a private key other users can read is refused unless
    /// `allow_world_readable`).
    pub fn from_config(server: &ServerConfig, allow_world_readable: bool) -> anyhow::Result<Self> {
        let tls = match &server.tls {
            Some(t) => Some(tls::server_config(t, server.http2, allow_world_readable)?),
            None => None,
        };
        Ok(Self {
            tls,
            max_connections: server.max_connections,
            max_connections_per_address: server.max_connections_per_address,
            uncapped: server.trusted_proxies.clone(),
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            write_idle_timeout: server.write_idle_timeout,
            shutdown_grace: server.shutdown_grace,
            http2: server.http2,
            write_buffer: server.write_buffer,
        })
    }
}

/// Serve `router` on `listener` until `shutdown` resolves; then stop accepting,
/// let in-flight requests finish for up to `shutdown_grace`, and cut the rest.
pub async fn serve(listener: TcpListener, router: Router, opts: ServeOptions, shutdown: impl Future<Output = ()>) {
    let local = listener.local_addr().ok();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true)
        // hyper's default (about 400 KiB) would let each slow download queue
        // that much; past this, the body is polled again only as the socket
        // drains.
        .max_buf_size(opts.write_buffer);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(opts.write_idle_timeout);
    if !opts.http2 {
        builder = builder.http1_only();
    }
    let builder = Arc::new(builder);
    // Each connection task holds a sender; the receiver sees the channel
    // close when the last one ends.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (cut_tx, cut_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let per_address = PerAddress::new(opts.max_connections_per_address, opts.uncapped.clone());
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
        let Some(address_slot) = per_address.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection closed: its address holds its share of the connections already");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        limit_unsent(&tcp);
        let conn = Connection {
            router: router.clone(),
            builder: builder.clone(),
            peer: PeerAddr(peer),
            stop: stop_rx.clone(),
            cut: cut_rx.clone(),
            opts: opts.clone(),
        };
        let alive = alive.clone();
        tokio::spawn(async move {
            let _places = (permit, address_slot, alive);
            conn.run(tcp).await;
        });
    }

    drop(listener);
    // Every connection finishes its current response and closes.
    let _ = stop_tx.send(true);
    let open = alive.strong_count() - 1;
    drop(alive);
    tracing::info!(addr = ?local, open, "stopped accepting; draining connections");
    if tokio::time::timeout(opts.shutdown_grace, all_closed.recv()).await.is_err() {
        tracing::warn!(addr = ?local, grace = ?opts.shutdown_grace, "grace period over; cutting remaining connections");
        let _ = cut_tx.send(true);
    } else {
        tracing::info!(addr = ?local, "all connections drained");
    }
}

/// Bytes a connection's socket may hold not yet sent (`TCP_NOTSENT_LOWAT`);
/// past it, writes wait. Without it the kernel grows a download's send
/// buffer to megabytes whatever the client's pace: a thousand slow clients
/// on loopback had the gateway copying gigabytes into socket buffers,
/// starving new connections past their header timeout and pushing the
/// kernel into TCP memory pressure. Bytes in flight still grow with the
/// congestion window, so fast clients are not held back.
const NOTSENT_LOWAT: u32 = 128 * 1024;

#[cfg(any(target_os = "linux", target_os = "android"))]
fn limit_unsent(tcp: &tokio::net::TcpStream) {
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(NOTSENT_LOWAT) {
        tracing::debug!(error = %e, "cannot set TCP_NOTSENT_LOWAT");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn limit_unsent(_tcp: &tokio::net::TcpStream) {}

struct Connection {
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    peer: PeerAddr,
    /// Becomes true at shutdown: finish the current response, then close.
    stop: watch::Receiver<bool>,
    /// Becomes true when the shutdown grace is over: close now.
    cut: watch::Receiver<bool>,
    opts: ServeOptions,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream) {
        match self.opts.tls.clone() {
            None => self.serve_io(tcp, None).await,
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                match tokio::time::timeout(self.opts.header_read_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        // rustls verified it in the handshake (an unknown
                        // issuer fails the handshake).
                        let certificate = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|leaf| {
                            use sha2::Digest as _;
                            ClientCertificate { sha256: hex::encode(sha2::Sha256::digest(leaf)).into() }
                        });
                        self.serve_io(tls, certificate).await
                    }
                    Ok(Err(e)) => tracing::debug!(peer = %self.peer.0, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(peer = %self.peer.0, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve_io<T>(self, io: T, certificate: Option<ClientCertificate>)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { router, builder, peer, mut stop, mut cut, opts } = self;
        // hyper's own refusals (unparseable heads) leave as problems too.
        let io = TokioIo::new(WriteIdleTimeout::new(ProblemBodies::new(io), opts.write_idle_timeout));
        let activity = Activity::new();
        let tracker = activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer);
            if let Some(c) = &certificate {
                request.extensions_mut().insert(c.clone());
            }
            // In flight from here until the response body is done.
            let in_flight = tracker.begin();
            let response = router.clone().oneshot(request);
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    axum::body::Body::new(body.map_frame(move |frame| {
                        let _held = &in_flight;
                        frame
                    }))
                }))
            }
        });
        let conn = builder.serve_connection_with_upgrades(io, service);
        let mut conn = std::pin::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %peer.0, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|stop| *stop), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                // SECURITY: a connection that sends nothing, dribbles the
                // HTTP/2 preface, or keeps an HTTP/2 connection without
                // streams alive with pings would otherwise hold its slot
                // forever. Closed gracefully: the tail of a response hyper
                // still holds is written out first (a client that stops
                // reading is cut by the write-idle timeout).
                () = activity.expired(opts.header_read_timeout, opts.idle_timeout), if !closing => {
                    tracing::debug!(peer = %peer.0, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = cut.wait_for(|cut| *cut) => {
                    tracing::debug!(peer = %peer.0, "connection cut at the end of the shutdown grace period");
                    return;
                }
            }
        }
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_hold_little_unsent_data() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let sock = socket2::SockRef::from(&accepted);
        let before = sock.tcp_notsent_lowat().unwrap();
        assert_ne!(before, NOTSENT_LOWAT, "the kernel's default already equals ours; the test would prove nothing");
        limit_unsent(&accepted);
        assert_eq!(sock.tcp_notsent_lowat().unwrap(), NOTSENT_LOWAT);
    }
}
