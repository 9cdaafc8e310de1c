//! The server around the routes: TLS, HTTP/2, timeouts, connection limits and
//! graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Blobs, Gateway, sha256_hex, test_bytes};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "app/1.0/big.bin";

/// Bounded wait for a future that should finish.
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.unwrap_or_else(|_| panic!("{what} did not happen"))
}

fn get_request(target: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::builder().uri(target).header("host", "localhost").body(Empty::new()).unwrap()
}

#[tokio::test]
async fn tls_offers_h2_and_http1_over_alpn() {
    let blobs = Blobs::new(Backend::Local).await;
    let data = test_bytes(300_000);
    blobs.put(KEY, &data).await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = blobs.dir.path().join("cert.pem");
    let key_file = blobs.dir.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    // A private key is a secret: other users must not be able to read it.
    std::fs::set_permissions(&key_file, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600))
        .unwrap();
    let mut config = blobs.config();
    config.server.tls = Some(tollgate::config::TlsConfig { cert_file, key_file, client_ca_file: None });
    let gw = Gateway::start(&config).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    for (alpn, want) in [(vec![b"h2".to_vec(), b"http/1.1".to_vec()], "h2"), (vec![b"http/1.1".to_vec()], "http/1.1")] {
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        client.alpn_protocols = alpn;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(gw.public).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(server_name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(want.as_bytes()));
        let response = if want == "h2" {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            let req = hyper::Request::builder()
                .uri(format!("https://localhost{}", gw.signed(KEY)))
                .body(Empty::<Bytes>::new())
                .unwrap();
            sender.send_request(req).await.unwrap()
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            sender.send_request(get_request(&gw.signed(KEY))).await.unwrap()
        };
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sha256_hex(&body), sha256_hex(&data), "over {want}");
    }
    // Plain HTTP on the TLS port is refused (the handshake fails).
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        let tcp = TcpStream::connect(gw.public).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(get_request("/healthz")).await
    })
    .await
    .unwrap();
    assert!(r.is_err());
}

#[tokio::test]
async fn cleartext_http2_with_prior_knowledge() {
    let blobs = Blobs::new(Backend::Local).await;
    blobs.put(KEY, b"h2c").await;
    let gw = Gateway::start(&blobs.config()).await;
    let tcp = TcpStream::connect(gw.public).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(format!("http://localhost{}", gw.signed(KEY)))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(&response.into_body().collect().await.unwrap().to_bytes()[..], b"h2c");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains_downloads_in_flight() {
    let blobs = Blobs::new(Backend::Local).await;
    let data = test_bytes(16 * 1024 * 1024);
    blobs.put(KEY, &data).await;
    let mut gw = Gateway::start(&blobs.config()).await;
    let response = common::send(gw.public, "GET", &gw.signed(KEY), &[]).await;
    let mut body = response.into_body();
    let mut received = body.frame().await.unwrap().unwrap().into_data().unwrap().to_vec();

    let stopped = gw.shutdown();
    // New connections are refused once the listener is closed.
    within("listener close", async {
        while TcpStream::connect(gw.public).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The download in flight still completes, byte for byte.
    while let Some(frame) = body.frame().await {
        received.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(sha256_hex(&received), sha256_hex(&data));
    within("drained shutdown", stopped).await.unwrap();
}

#[tokio::test]
async fn shutdown_grace_cuts_downloads_that_outlast_it() {
    let blobs = Blobs::new(Backend::Local).await;
    blobs.put(KEY, &test_bytes(64 * 1024 * 1024)).await;
    let mut config = blobs.config();
    config.server.shutdown_grace = Duration::from_millis(500);
    let mut gw = Gateway::start(&config).await;
    let response = common::send(gw.public, "GET", &gw.signed(KEY), &[]).await;
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    // The client stops reading; shutdown must still finish, by cutting it.
    within("shutdown after grace", gw.shutdown()).await.unwrap();
    let rest = body.collect().await;
    assert!(rest.is_err(), "the cut download must not end cleanly");
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_header_timeout() {
    let blobs = Blobs::new(Backend::Local).await;
    let mut config = blobs.config();
    config.server.header_read_timeout = Duration::from_millis(500);
    let gw = Gateway::start(&config).await;
    let mut tcp = TcpStream::connect(gw.public).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    within("the server closing the connection", tcp.read_to_end(&mut buf)).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_after_the_write_idle_timeout() {
    let blobs = Blobs::new(Backend::Local).await;
    blobs.put(KEY, &test_bytes(64 * 1024 * 1024)).await;
    let mut config = blobs.config();
    config.server.write_idle_timeout = Duration::from_millis(500);
    let gw = Gateway::start(&config).await;
    let response = common::send(gw.public, "GET", &gw.signed(KEY), &[]).await;
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    // Not reading: the server's writes stall, and it must give up on us.
    assert!(gw.wait_for_no_downloads().await, "a stalled download was never released");
    assert!(body.collect().await.is_err());
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let blobs = Blobs::new(Backend::Local).await;
    let mut config = blobs.config();
    config.server.max_connections = 1;
    let gw = Gateway::start(&config).await;

    let tcp = TcpStream::connect(gw.public).await.unwrap();
    let (mut first, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    let first_conn = tokio::spawn(conn);
    assert_eq!(first.send_request(get_request("/healthz")).await.unwrap().status(), 200);

    let addr = gw.public;
    let second = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(get_request("/healthz")).await.unwrap().status()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "a second connection was served while the only slot was taken");
    drop(first);
    within("the first connection closing", first_conn).await.unwrap().unwrap();
    assert_eq!(within("the second request", second).await.unwrap(), 200);
}

#[tokio::test]
async fn admin_listener_serves_health_and_readiness() {
    let blobs = Blobs::new(Backend::Local).await;
    let gw = Gateway::start(&blobs.config()).await;
    assert_eq!(common::get(gw.admin, "/healthz").await.status, 200);
    let r = common::get(gw.admin, "/readyz").await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(r.bytes()).unwrap();
    assert_eq!(v["storage"], "local");
    // The data plane is not on the admin listener.
    assert_eq!(common::get(gw.admin, &gw.signed(KEY)).await.status, 404);
}

/// `GET /healthz` on a fresh connection, within `limit`.
async fn healthz_within(addr: std::net::SocketAddr, limit: Duration) -> Option<u16> {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.ok()?;
        tokio::spawn(conn);
        Some(sender.send_request(get_request("/healthz")).await.ok()?.status().as_u16())
    };
    tokio::time::timeout(limit, attempt).await.ok().flatten()
}

/// Sockets that connect and send nothing (or only part of the HTTP/2
/// preface) must not keep their connection slots: with every slot of both
/// listeners taken by them, a real client gets through once the
/// first-request timeout has passed.
#[tokio::test]
async fn silent_connections_cannot_hold_every_slot() {
    let blobs = Blobs::new(Backend::Local).await;
    let mut config = blobs.config();
    config.server.max_connections = 3;
    config.server.header_read_timeout = Duration::from_millis(500);
    let gw = Gateway::start(&config).await;
    let mut silent = Vec::new();
    for addr in [gw.public, gw.admin] {
        for i in 0..3 {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            if i == 0 {
                // Half of the HTTP/2 preface, then nothing.
                tcp.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
            }
            silent.push(tcp);
        }
    }
    for addr in [gw.public, gw.admin] {
        assert_eq!(healthz_within(addr, Duration::from_secs(10)).await, Some(200), "{addr} stayed blocked");
    }
    for mut tcp in silent {
        let mut buf = Vec::new();
        within("a silent socket being closed", tcp.read_to_end(&mut buf)).await.ok();
    }
}

/// An HTTP/2 connection that keeps no stream open is closed after
/// `idle_timeout`, though its client answers every ping.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let blobs = Blobs::new(Backend::Local).await;
    let mut config = blobs.config();
    config.server.idle_timeout = Duration::from_millis(700);
    let gw = Gateway::start(&config).await;
    let tcp = TcpStream::connect(gw.public).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::builder().uri("http://localhost/healthz").body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let started = std::time::Instant::now();
    within("the server closing the idle connection", conn).await.unwrap().ok();
    assert!(started.elapsed() >= Duration::from_millis(500), "closed too early: {:?}", started.elapsed());
}

/// A download in flight is not idle: a response body that takes longer than
/// `idle_timeout` to stream is not cut.
#[tokio::test]
async fn a_slow_download_is_not_idle() {
    let blobs = Blobs::new(Backend::Local).await;
    let bytes = test_bytes(8 * 1024 * 1024);
    blobs.put(KEY, &bytes).await;
    let mut config = blobs.config();
    config.server.idle_timeout = Duration::from_millis(300);
    let gw = Gateway::start(&config).await;
    let response = common::send(gw.public, "GET", &gw.signed(KEY), &[]).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut got = Vec::new();
    while let Some(frame) = body.frame().await {
        got.extend_from_slice(&frame.unwrap().into_data().unwrap_or_default());
        if got.len() < 1024 * 1024 {
            // Read slowly at first: the whole body takes well past idle_timeout.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(sha256_hex(&got), sha256_hex(&bytes));
}

/// One address cannot take more than `max_connections_per_address` of the
/// slots; other clients are still served, and a closed connection gives its
/// place back.
#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let blobs = Blobs::new(Backend::Local).await;
    let mut config = blobs.config();
    config.server.max_connections = 10;
    config.server.max_connections_per_address = 2;
    let gw = Gateway::start(&config).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(gw.public).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        let conn = tokio::spawn(conn);
        assert_eq!(sender.send_request(get_request("/healthz")).await.unwrap().status(), 200);
        held.push((sender, conn));
    }
    // The third from the same address is closed without an answer.
    let mut third = TcpStream::connect(gw.public).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    within("the third connection being closed", third.read_to_end(&mut buf)).await.ok();
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    // Giving one back lets the next one in.
    let (sender, conn) = held.pop().unwrap();
    drop(sender);
    within("the client's connection closing", conn).await.unwrap().unwrap();
    let mut ok = None;
    for _ in 0..50 {
        ok = healthz_within(gw.public, Duration::from_secs(2)).await;
        if ok.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ok, Some(200));
}

/// Issue 14, item 5: requests hyper refuses before any handler runs get a
/// problem body with a stable `code` like every other refusal (they had an
/// empty body), on both listeners; the connection is closed after.
#[tokio::test]
async fn unparseable_requests_get_problem_bodies() {
    let blobs = Blobs::new(Backend::Local).await;
    let gw = Gateway::start(&blobs.config()).await;
    let many_headers: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-A: {}\r\n", "a".repeat(500_000));
    let long_target = format!("/d/a/b/c?{}", "x".repeat(70_000));
    // A 70 KB target: past the public listener's 16 KiB head buffer (431),
    // within the admin listener's larger one but past hyper's URI limit (414).
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (format!("GET {long_target} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(), 0, "long target"),
        (format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(), 431, "headers_too_large"),
        (format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{huge_header}\r\n").into_bytes(), 431, "headers_too_large"),
        (b"GET /he lthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-B: a\x01b\r\n\r\n".to_vec(), 400, "bad_request"),
    ];
    for listener in [gw.public, gw.admin] {
        for (request, status, code) in &cases {
            let (status, code) = match (*status, listener == gw.public) {
                (0, true) => (431, "headers_too_large"),
                (0, false) => (414, "uri_too_long"),
                _ => (*status, *code),
            };
            let mut tcp = TcpStream::connect(listener).await.unwrap();
            // The server may answer and close before reading all of a huge head.
            let _ = tcp.write_all(request).await;
            let mut answer = Vec::new();
            let _ = within("the refusal", tcp.read_to_end(&mut answer)).await;
            let text = String::from_utf8_lossy(&answer);
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {text:?}"));
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{head}");
            let problem: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
            assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(u64::from(status)), Some(code)));
        }
    }
    // A request after them on a fresh connection is served as ever.
    assert_eq!(common::get(gw.public, "/healthz").await.status, 200);
}
