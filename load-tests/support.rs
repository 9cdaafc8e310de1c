//! What the load tests share: starting the release binary on loopback, and
//! reporting figures.

#![allow(dead_code, reason = "each load test uses a different part of this")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// A `tollgate serve` process, killed when dropped.
pub struct Gateway(pub Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Server processes to stop if the load test fails (an exit runs no `Drop`).
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Have [`fail`] stop process `pid` (with SIGTERM).
pub fn stop_on_failure(pid: u32) {
    if let Ok(mut c) = CHILDREN.lock() {
        c.push(pid);
    }
}

pub fn fail(msg: String) -> ! {
    eprintln!("load test: {msg}");
    let pids = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
    for pid in pids {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    std::process::exit(1)
}

/// `tollgate serve` in `dir` on free loopback ports, request-rate limits off,
/// with `env` added; returns the process and the public and admin addresses.
pub fn start_gateway(dir: &Path, env: &[(&str, &str)]) -> (Gateway, String, String) {
    start_gateway_on(dir, env, None)
}

/// `program` run on CPU `cpu` only (through `taskset`), or on every CPU
/// for `None`, when the machine has more than one. The runner itself runs
/// under `taskset -c 0`, whose mask its children inherit: an unpinned
/// server would share the load generator's core.
pub fn pinned(program: &str, cpu: Option<usize>) -> Command {
    let online = online_cpus();
    if online < 2 {
        return Command::new(program);
    }
    let mut c = Command::new("taskset");
    let cpus = match cpu {
        Some(cpu) => cpu.to_string(),
        None => format!("0-{}", online - 1),
    };
    c.args(["-c", &cpus, program]);
    c
}

/// The machine's CPUs, whatever this process's affinity mask
/// (`available_parallelism` counts only the CPUs this process may use).
pub fn online_cpus() -> usize {
    let counted = std::fs::read_to_string("/sys/devices/system/cpu/online").ok().and_then(|list| {
        list.trim().split(',').try_fold(0usize, |n, range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            Some(n + b.parse::<usize>().ok()?.checked_sub(a.parse::<usize>().ok()?)? + 1)
        })
    });
    counted.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// [`start_gateway`], pinned to `cpu`.
pub fn start_gateway_on(dir: &Path, env: &[(&str, &str)], cpu: Option<usize>) -> (Gateway, String, String) {
    let mut child = pinned(BIN, cpu)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("TOLLGATE_CONFIG")
        .env("RUST_LOG", "warn,tollgate::app=info")
        // All load comes from one address and a few keys: measure the gateway,
        // not its request-rate limits.
        .env("TOLLGATE_LIMITS__API_KEY_PER_SECOND", "0")
        .env("TOLLGATE_LIMITS__ADDRESS_PER_SECOND", "0")
        .env("TOLLGATE_LIMITS__BAD_CREDENTIALS_PER_MINUTE", "0")
        // One grant URL is fetched thousands of times, as nginx's one URL
        // is: no bound on what a grant delivers.
        .env("TOLLGATE_DOWNLOADS__DELIVERIES_PER_GRANT", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(format!("cannot start {BIN}: {e}")));
    stop_on_failure(child.id());
    let stderr = child.stderr.take().unwrap_or_else(|| fail("no stderr".into()));
    let mut reader = BufReader::new(stderr);
    let addr_in = |line: &str, marker: &str| {
        line.find("addr=")
            .filter(|_| line.contains(marker))
            .map(|at| line[at + 5..].split_whitespace().next().unwrap_or_default().to_owned())
    };
    let (mut public, mut admin) = (None, None);
    while public.is_none() || admin.is_none() {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            fail("the gateway exited before it was ready".into());
        }
        public = public.or_else(|| addr_in(&line, "public listener ready"));
        admin = admin.or_else(|| addr_in(&line, "admin listener ready"));
    }
    // Keep draining the log so the gateway never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    (Gateway(child), public.unwrap_or_default(), admin.unwrap_or_default())
}

/// An operator URL (`tollgate sign`, valid an hour) for `key`, as a path and
/// query on the gateway at `base`.
pub fn sign(dir: &Path, key: &str, base: &str) -> String {
    let out = Command::new(BIN)
        .args(["sign", key, "--ttl", "1h", "--base-url", base])
        .current_dir(dir)
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .unwrap_or_else(|e| fail(format!("sign: {e}")));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    url.strip_prefix(base).map(str::to_owned).unwrap_or_else(|| fail(format!("unexpected URL {url}")))
}

/// The peak resident set size of a process, from /proc.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `p` quantile of sorted latencies, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A keep-alive HTTP/1.1 connection to `addr`.
pub async fn connect(addr: &str) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap_or_else(|e| fail(format!("connect {addr}: {e}")));
    let _ = tcp.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap_or_else(|e| fail(format!("{e}")));
    tokio::spawn(conn);
    sender
}

/// One request, with at most one extra header (`authorization`, `range`).
pub async fn call(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    target: &str,
    header: Option<(&str, &str)>,
    body: Option<&Value>,
) -> (u16, Bytes) {
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let mut req = hyper::Request::builder().method(method).uri(target).header("host", "127.0.0.1");
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let req = req.body(Full::new(body)).unwrap_or_else(|e| fail(format!("request: {e}")));
    // The previous exchange may still be finishing on the connection.
    sender.ready().await.unwrap_or_else(|e| fail(format!("connection lost: {e}")));
    let resp = sender.send_request(req).await.unwrap_or_else(|e| fail(format!("send {target}: {e}")));
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    (status, bytes)
}

/// A `redis-server` on a free loopback port, without persistence.
pub struct Redis(pub Child, pub u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_redis(dir: &Path) -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| fail(format!("no free port: {e}")))
        .port();
    let redis = pinned("redis-server", None)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .inspect(|child| stop_on_failure(child.id()))
        .map(|child| Redis(child, port))
        .unwrap_or_else(|e| fail(format!("redis-server is needed (scripts/test.sh installs it): {e}")));
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return redis;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(redis);
    fail("redis-server did not start".into())
}

/// Product `app`, published release 1.0.0 with one file `app.tar.gz` of
/// `size` bytes, customer `acme` (every limit set, none ever reached),
/// entitlement and an API key; returns the key.
pub async fn set_up_catalog(dir: &Path, admin: &str, size: usize) -> String {
    let blob = dir.join("data/blobs/app/1.0.0/app.tar.gz");
    std::fs::create_dir_all(blob.parent().unwrap_or(dir)).unwrap_or_else(|e| fail(e.to_string()));
    std::fs::write(&blob, vec![0x5a; size]).unwrap_or_else(|e| fail(e.to_string()));
    let token = std::fs::read_to_string(dir.join("data/secrets/admin-token")).unwrap_or_else(|e| fail(e.to_string()));
    let auth = format!("Bearer {}", token.trim());
    let mut s = connect(admin).await;
    let steps: [(&str, &str, Option<Value>); 6] = [
        ("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))),
        ("PUT", "/admin/v1/products/app/releases/1.0.0", Some(json!({ "channel": "stable" }))),
        (
            "PUT",
            "/admin/v1/products/app/releases/1.0.0/artifacts/app.tar.gz?source=existing&platform=linux-x86_64",
            None,
        ),
        ("POST", "/admin/v1/products/app/releases/1.0.0/publish", None),
        // Limits high enough never to refuse, but all checked on every initiation.
        (
            "PUT",
            "/admin/v1/customers/acme",
            Some(json!({ "name": "Acme", "quota": {
                "downloads_per_day": 1_000_000_000u64, "downloads_per_month": 1_000_000_000u64,
                "bytes_per_day": 1u64 << 60, "downloads_per_artifact": 1_000_000_000u64, "concurrent_downloads": 100_000
            } })),
        ),
        (
            "PUT",
            "/admin/v1/customers/acme/entitlements/e1",
            Some(json!({ "product": "app", "license": "perpetual", "starts_at": "2020-01-01T00:00:00Z" })),
        ),
    ];
    for (method, path, body) in &steps {
        let (status, text) = call(&mut s, method, path, Some(("authorization", &auth)), body.as_ref()).await;
        if status >= 300 {
            fail(format!("{method} {path}: {status} {}", String::from_utf8_lossy(&text)));
        }
    }
    let (_, text) =
        call(&mut s, "POST", "/admin/v1/customers/acme/api-keys", Some(("authorization", &auth)), None).await;
    let created: Value = serde_json::from_slice(&text).unwrap_or_default();
    created["key"].as_str().unwrap_or_else(|| fail("no API key".into())).to_owned()
}

/// Concurrent clients of [`first_gets`].
pub const CLIENTS: usize = 16;

/// `GET` `bytes=0-0` of every target (each answered `206`), spread over
/// [`CLIENTS`] keep-alive connections at once; the seconds it took. For
/// fresh grant URLs, each is the grant's initiation.
pub async fn first_gets(public: &str, targets: &[String]) -> f64 {
    let t0 = std::time::Instant::now();
    let tasks: Vec<_> = targets
        .chunks(targets.len().div_ceil(CLIENTS).max(1))
        .map(|chunk| {
            let (public, chunk) = (public.to_owned(), chunk.to_vec());
            tokio::spawn(async move {
                let mut s = connect(&public).await;
                for t in &chunk {
                    let (status, text) = call(&mut s, "GET", t, Some(("range", "bytes=0-0")), None).await;
                    if status != 206 {
                        fail(format!("GET {t}: {status} {}", String::from_utf8_lossy(&text)));
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| fail(e.to_string()));
    }
    t0.elapsed().as_secs_f64()
}
