//! Data-plane load test: the `tollgate` binary serving the embedded
//! default on 127.0.0.1, many keep-alive HTTP/1.1 clients downloading signed
//! URLs. Prints requests/s, MiB/s, latency percentiles and the gateway's peak
//! RSS. Bounded in request count and time; talks to loopback only.
//!
//! `cargo bench --bench data_plane` runs the full load; `cargo test` runs it
//! once in a tiny smoke configuration so that it cannot rot.

#![expect(clippy::print_stdout, reason = "a load test reports its figures on stdout")]

#[path = "support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use support::{fail, peak_rss_kib, percentile, sign, start_gateway};
/// Hard ceiling on the time one scenario may take.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(30);

struct Scenario {
    name: &'static str,
    size: usize,
    connections: usize,
    requests: usize,
}

/// Peak resident set size of a process, from /proc (Linux only).
async fn run_scenario(addr: &str, target: &str, s: &Scenario) -> (Duration, Vec<Duration>) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + SCENARIO_DEADLINE;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..s.connections {
        let (addr, target, next, size) = (addr.to_owned(), target.to_owned(), next.clone(), s.size);
        let total = s.requests;
        workers.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(&addr).await.unwrap_or_else(|e| fail(format!("connect: {e}")));
            let _ = tcp.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap_or_else(|e| fail(format!("handshake: {e}")));
            tokio::spawn(conn);
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total && Instant::now() < deadline {
                let req = hyper::Request::builder()
                    .uri(target.as_str())
                    .header("host", "127.0.0.1")
                    .body(Empty::<Bytes>::new())
                    .unwrap_or_else(|e| fail(format!("request: {e}")));
                let t0 = Instant::now();
                let resp = sender.send_request(req).await.unwrap_or_else(|e| fail(format!("send: {e}")));
                if resp.status() != 200 {
                    fail(format!("status {}", resp.status()));
                }
                let body = resp.into_body().collect().await.unwrap_or_else(|e| fail(format!("body: {e}")));
                if body.to_bytes().len() != size {
                    fail("short body".into());
                }
                latencies.push(t0.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    (started.elapsed(), all)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scenarios = if full {
        vec![
            Scenario { name: "64 KiB", size: 64 * 1024, connections: 32, requests: 20_000 },
            Scenario { name: "1 MiB", size: 1024 * 1024, connections: 32, requests: 4_000 },
            Scenario { name: "64 MiB", size: 64 * 1024 * 1024, connections: 8, requests: 48 },
        ]
    } else {
        vec![Scenario { name: "64 KiB (smoke)", size: 64 * 1024, connections: 2, requests: 10 }]
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("tempdir: {e}")));
    for s in &scenarios {
        let path = dir.path().join(format!("data/blobs/load/1.0/f{}.bin", s.size));
        std::fs::create_dir_all(path.parent().unwrap_or(dir.path())).unwrap_or_else(|e| fail(e.to_string()));
        std::fs::write(&path, vec![0x5a; s.size]).unwrap_or_else(|e| fail(e.to_string()));
    }
    let (gateway, addr, _admin) = start_gateway(dir.path(), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(e.to_string()));
    let build = if cfg!(debug_assertions) { "debug" } else { "optimised" };
    println!("data plane load test: {build} build, local storage, HTTP/1.1 keep-alive on 127.0.0.1");
    println!(
        "{:<16} {:>6} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8}",
        "object", "conns", "requests", "req/s", "MiB/s", "p50 ms", "p90 ms", "p99 ms"
    );
    for s in &scenarios {
        let target = sign(dir.path(), &format!("load/1.0/f{}.bin", s.size), &format!("http://{addr}"));
        let (elapsed, mut lat) = runtime.block_on(run_scenario(&addr, &target, s));
        lat.sort();
        let secs = elapsed.as_secs_f64();
        let n = lat.len();
        println!(
            "{:<16} {:>6} {:>9} {:>9.0} {:>10.1} {:>8.2} {:>8.2} {:>8.2}",
            s.name,
            s.connections,
            n,
            n as f64 / secs,
            (n * s.size) as f64 / secs / (1024.0 * 1024.0),
            percentile(&lat, 0.5),
            percentile(&lat, 0.9),
            percentile(&lat, 0.99)
        );
        if n == 0 {
            fail("no request completed".into());
        }
    }
    match peak_rss_kib(gateway.0.id()) {
        Some(kib) => println!("gateway peak RSS: {:.1} MiB", kib as f64 / 1024.0),
        None => println!("gateway peak RSS: unavailable (no /proc)"),
    }
}
