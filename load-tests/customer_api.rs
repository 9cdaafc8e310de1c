//! Customer API latency: the release binary on loopback, with the state store
//! on the embedded SQLite and on a local `redis-server`. One keep-alive client
//! sends requests one after another and reports p50/p90/p99 for:
//!
//! - `POST /v1/downloads`: key check, entitlement decision, grant write, signing;
//! - `HEAD` on the URL it returned: the data plane's grant re-check (one store
//!   round trip) plus storage metadata;
//! - `HEAD` on an operator-signed URL for the same file: the same without the
//!   re-check, so the difference is the re-check's cost;
//! - initiations per second: the first `GET` of fresh grants from 16 clients
//!   at once (re-check, the quota script or transaction with every limit set,
//!   the lease), and the same `GET`s again, already started.
//!
//! `cargo bench --bench customer_api` runs 2000 of each; `cargo test` runs 10
//! so that it cannot rot. Loopback only; bounded in count and time.

#![expect(clippy::print_stdout, reason = "a load test reports its figures on stdout")]

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use serde_json::{Value, json};
use support::{CLIENTS, call, connect, fail, first_gets, percentile, set_up_catalog, sign, start_gateway, start_redis};

/// Hard ceiling on one measured series.
const SERIES_DEADLINE: Duration = Duration::from_secs(60);

/// `n` sequential requests, each checked for `expect`; sorted latencies.
async fn series(
    sender: &mut SendRequest<Full<Bytes>>,
    n: usize,
    expect: u16,
    method: &str,
    target: &str,
    header: Option<(&str, &str)>,
    body: Option<&Value>,
) -> Vec<Duration> {
    let deadline = Instant::now() + SERIES_DEADLINE;
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n && Instant::now() < deadline {
        let t0 = Instant::now();
        let (status, text) = call(sender, method, target, header, body).await;
        lat.push(t0.elapsed());
        if status != expect {
            fail(format!("{method} {target}: {status} {}", String::from_utf8_lossy(&text)));
        }
    }
    lat.sort();
    lat
}

fn report(backend: &str, what: &str, lat: &[Duration]) {
    println!(
        "{backend:<8} {what:<34} {:>6} {:>8.3} {:>8.3} {:>8.3}",
        lat.len(),
        percentile(lat, 0.5),
        percentile(lat, 0.9),
        percentile(lat, 0.99)
    );
}

fn run(backend: &str, n: usize, runtime: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("tempdir: {e}")));
    let redis = (backend == "redis").then(|| start_redis(dir.path()));
    let url = redis.as_ref().map(|r| format!("redis://127.0.0.1:{}/", r.1)).unwrap_or_default();
    let env: Vec<(&str, &str)> = match &redis {
        Some(_) => vec![("TOLLGATE_STORE__BACKEND", "redis"), ("TOLLGATE_STORE__REDIS__URL", &url)],
        None => vec![],
    };
    let (_gateway, public, admin) = start_gateway(dir.path(), &env);
    runtime.block_on(async {
        let key = set_up_catalog(dir.path(), &admin, 1024 * 1024).await;
        let auth = format!("Bearer {key}");
        let mut s = connect(&public).await;
        let ask = json!({ "product": "app", "version": "1.0.0", "platform": "linux-x86_64" });
        let auth = Some(("authorization", auth.as_str()));
        let lat = series(&mut s, n, 201, "POST", "/v1/downloads", auth, Some(&ask)).await;
        report(backend, "POST /v1/downloads", &lat);

        let (_, text) = call(&mut s, "POST", "/v1/downloads", auth, Some(&ask)).await;
        let issued: Value = serde_json::from_slice(&text).unwrap_or_default();
        let grant_url = issued["url"].as_str().unwrap_or_else(|| fail("no url".into()));
        let target = &grant_url[grant_url.find("/d/").unwrap_or_else(|| fail("odd url".into()))..];
        let lat = series(&mut s, n, 200, "HEAD", target, None, None).await;
        report(backend, "HEAD grant URL (with re-check)", &lat);
        let operator = sign(dir.path(), "app/1.0.0/app.tar.gz", &format!("http://{public}"));
        let lat = series(&mut s, n, 200, "HEAD", &operator, None, None).await;
        report(backend, "HEAD operator URL (no re-check)", &lat);

        // Initiations: the first GET of fresh grants (one byte each, so the
        // figure is the quota step, not the transfer), then the same GETs
        // again (already started: no quota script).
        let mut grants = Vec::with_capacity(n);
        for _ in 0..n {
            let (_, text) = call(&mut s, "POST", "/v1/downloads", auth, Some(&ask)).await;
            let issued: Value = serde_json::from_slice(&text).unwrap_or_default();
            let url = issued["url"].as_str().unwrap_or_else(|| fail("no url".into()));
            grants.push(url[url.find("/d/").unwrap_or_else(|| fail("odd url".into()))..].to_owned());
        }
        let first = first_gets(&public, &grants).await;
        let again = first_gets(&public, &grants).await;
        for (what, secs) in [("first GET (initiation)", first), ("GET again (already started)", again)] {
            println!("{backend:<8} {what:<34} {n:>6} {CLIENTS} clients: {:>8.0} per s", n as f64 / secs);
        }
    });
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 2000 } else { 10 };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(e.to_string()));
    let build = if cfg!(debug_assertions) { "debug" } else { "optimised" };
    println!("customer API latency: {build} build, one keep-alive HTTP/1.1 client on 127.0.0.1, sequential");
    println!("{:<8} {:<34} {:>6} {:>8} {:>8} {:>8}", "store", "request", "n", "p50 ms", "p90 ms", "p99 ms");
    for backend in ["sqlite", "redis"] {
        run(backend, n, &runtime);
    }
}
