//! Upload throughput and the gateway's memory: the release binary on loopback
//! with the embedded defaults (local directory), one client streaming a file
//! of `SIZE` through `PUT …/artifacts/{file}` (chunked, with its SHA-256
//! announced), then the gateway's peak RSS (VmHWM). The figure shows that
//! memory stays flat whatever the file size: the body is never held whole.
//!
//! `cargo bench --bench uploads` sends 1 GiB; `cargo test` sends 16 MiB so that
//! it cannot rot. Loopback only; bounded in size and time.

#![expect(clippy::print_stdout, reason = "a load test reports its figures on stdout")]

#[path = "support.rs"]
mod support;

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use support::{call, connect, fail, peak_rss_kib, start_gateway};

const CHUNK: usize = 1024 * 1024;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let size: usize = if full { 1024 * CHUNK } else { 16 * CHUNK };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(e.to_string()));
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("tempdir: {e}")));
    let (gateway, _public, admin) = start_gateway(dir.path(), &[]);
    let before = peak_rss_kib(gateway.0.id());
    let secs = runtime.block_on(async {
        let token = std::fs::read_to_string(dir.path().join("data/secrets/admin-token"))
            .unwrap_or_else(|e| fail(e.to_string()));
        let auth = format!("Bearer {}", token.trim());
        let mut s = connect(&admin).await;
        for (path, body) in [
            ("/admin/v1/products/app", json!({ "name": "App" })),
            ("/admin/v1/products/app/releases/1.0.0", json!({ "channel": "stable" })),
        ] {
            let (status, text) = call(&mut s, "PUT", path, Some(("authorization", &auth)), Some(&body)).await;
            if status >= 300 {
                fail(format!("PUT {path}: {status} {}", String::from_utf8_lossy(&text)));
            }
        }
        // One pseudo-random chunk repeated: cheap to produce, same digest each run.
        let chunk = Bytes::from((0..CHUNK).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
        let mut hasher = Sha256::new();
        for _ in 0..size / CHUNK {
            hasher.update(&chunk);
        }
        let digest = hex::encode(hasher.finalize());
        let frames =
            futures_util::stream::iter((0..size / CHUNK).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))));
        let tcp = tokio::net::TcpStream::connect(&admin).await.unwrap_or_else(|e| fail(e.to_string()));
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap_or_else(|e| fail(e.to_string()));
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method("PUT")
            .uri("/admin/v1/products/app/releases/1.0.0/artifacts/big.bin?platform=linux")
            .header("host", "127.0.0.1")
            .header("authorization", &auth)
            .header("x-checksum-sha256", &digest)
            .body(StreamBody::new(frames))
            .unwrap_or_else(|e| fail(e.to_string()));
        let t0 = Instant::now();
        let resp = sender.send_request(req).await.unwrap_or_else(|e| fail(format!("upload: {e}")));
        let status = resp.status().as_u16();
        let text = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let secs = t0.elapsed().as_secs_f64();
        if status != 201 {
            fail(format!("upload: {status} {}", String::from_utf8_lossy(&text)));
        }
        secs
    });
    let build = if cfg!(debug_assertions) { "debug" } else { "optimised" };
    let mib = size as f64 / (1024.0 * 1024.0);
    println!("uploads: {build} build, one client on 127.0.0.1, local directory, SHA-256 announced and checked");
    println!("uploaded {mib:.0} MiB in {secs:.2} s: {:.0} MiB/s", mib / secs);
    match (before, peak_rss_kib(gateway.0.id())) {
        (Some(b), Some(a)) => {
            println!("gateway peak RSS: {:.1} MiB before, {:.1} MiB after", b as f64 / 1024.0, a as f64 / 1024.0)
        }
        _ => println!("gateway peak RSS: unavailable (no /proc)"),
    }
}
