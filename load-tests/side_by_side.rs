//! Tollgate and the reference it replaces, side by side in one run, on this
//! machine: nginx `secure_link` (one worker, sendfile) for the data plane, a
//! direct presigned `GET` from the same S3 server for S3, and `redis-benchmark`
//! `EVAL` against the same Redis for initiations.
//!
//! The servers (the gateway, nginx) run on CPU 1 and the load generators
//! (`wrk -t1`, this process's clients, `redis-benchmark`) on CPU 0, so the
//! two never share a core (the runner runs under `taskset -c 0`; the
//! servers are pinned away from it by `support::pinned`). Redis is not
//! pinned and serves both sides alike; the in-process S3 server shares
//! CPU 0 with the load generator, for both sides. Each pair is run `rounds` times, alternating
//! which side goes first; the best figure of each side is kept. One line per
//! scenario: our figure, the reference's, the ratio and the goal of
//! issue 15.
//!
//! `load-tests/side-by-side.sh` installs what it needs (nginx, wrk,
//! redis-tools) and runs `cargo bench --bench side_by_side`; `cargo test` runs
//! every scenario once with tiny files and counts so that it cannot rot.
//! Loopback only; every run is bounded in time.

#![expect(clippy::print_stdout, reason = "a load test reports its figures on stdout")]

#[path = "support.rs"]
mod support;

#[path = "../tests/common/s3.rs"]
mod s3;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::Digest as _;
use serde_json::{Value, json};
use support::{Gateway, call, connect, fail, first_gets, pinned, set_up_catalog, sign, start_gateway_on, start_redis};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The servers' CPU; the load generators run on [`CLIENT_CPU`].
const SERVER_CPU: usize = 1;
const CLIENT_CPU: usize = 0;
/// nginx's `secure_link_md5` secret.
const NGINX_SECRET: &str = "tollgate-side-by-side";
/// Hard ceiling on anything one step waits for.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

struct Plan {
    full: bool,
    /// Seconds per `wrk` run.
    secs: u64,
    rounds: usize,
    small: usize,
    large: usize,
    slow_clients: usize,
    slow_secs: u64,
    grants: usize,
    upload: usize,
}

/// What one `wrk` run measured.
#[derive(Debug, Clone, Copy)]
struct Wrk {
    requests: u64,
    bytes: u64,
    secs: f64,
}

impl Wrk {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    fn mib_per_second(&self) -> f64 {
        self.bytes as f64 / self.secs / (1024.0 * 1024.0)
    }
}

/// `wrk -t1` from [`CLIENT_CPU`] against `url`; a non-2xx answer fails the run.
fn wrk(dir: &Path, url: &str, connections: usize, secs: u64) -> Wrk {
    let script = dir.join("summary.lua");
    std::fs::write(
        &script,
        "done = function(s, latency, requests)\n  local e = s.errors\n  io.write(string.format(\"wrk-summary %d %d %d %d %d\\n\", s.requests, s.bytes, s.duration, e.status, e.connect + e.read + e.write + e.timeout))\nend\n",
    )
    .unwrap_or_else(|e| fail(e.to_string()));
    let out = pinned("wrk", Some(CLIENT_CPU))
        .args(["-t1", "-c", &connections.to_string(), "-d", &format!("{secs}s"), "--timeout", "60s", "-s"])
        .arg(&script)
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| fail(format!("wrk is needed (load-tests/side-by-side.sh installs it): {e}")));
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        text.lines().find_map(|l| l.strip_prefix("wrk-summary ")).unwrap_or_else(|| fail(format!("wrk: {text}")));
    let n: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let [requests, bytes, micros, status_errors, _socket_errors] = n[..] else { fail(format!("wrk: {line}")) };
    if status_errors > 0 {
        fail(format!("{url}: {status_errors} answers were not 2xx"));
    }
    if requests == 0 && bytes == 0 {
        fail(format!("{url}: nothing was served"));
    }
    Wrk { requests, bytes, secs: micros as f64 / 1e6 }
}

/// nginx with one worker on [`SERVER_CPU`], serving `www` under `secure_link`.
struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, which the master passes on to its worker (SIGKILL would
        // leave the worker running).
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        if self.child.wait().is_err() {
            let _ = self.child.kill();
        }
    }
}

impl Nginx {
    fn start(dir: &Path, www: &Path) -> Self {
        let port = free_port();
        let conf = dir.join("nginx.conf");
        let tmp = dir.join("nginx-tmp");
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| fail(e.to_string()));
        let root_user = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let text = format!(
            r#"{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location /d/ {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri {NGINX_SECRET}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
        }}
    }}
}}
"#,
            user = if root_user { "user root;" } else { "" },
            dir = dir.display(),
            tmp = tmp.display(),
            www = www.display(),
        );
        std::fs::write(&conf, text).unwrap_or_else(|e| fail(e.to_string()));
        let child = pinned("nginx", Some(SERVER_CPU))
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(format!("nginx is needed (load-tests/side-by-side.sh installs it): {e}")));
        support::stop_on_failure(child.id());
        wait_for_port(port, "nginx");
        Nginx { child, port }
    }

    /// A `secure_link` URL for `/d/{key}`, valid an hour.
    fn url(&self, key: &str) -> String {
        let uri = format!("/d/{key}");
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 3600)
            .unwrap_or_default();
        let digest = md5::Md5::digest(format!("{expires}{uri} {NGINX_SECRET}").as_bytes());
        let md5 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        format!("http://127.0.0.1:{}{uri}?md5={md5}&expires={expires}", self.port)
    }

    /// The resident memory of nginx's worker processes.
    fn worker_rss_kib(&self) -> u64 {
        let pid = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        // Under `taskset` the child is taskset's exec: nginx itself.
        children.split_whitespace().filter_map(|p| p.parse().ok()).filter_map(|p: u32| status_kib(p, "VmRSS:")).sum()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| fail(format!("no free port: {e}")))
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + STEP_DEADLINE;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    fail(format!("{what} did not start"))
}

/// A field of `/proc/{pid}/status`, in kiB (or a count).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// One printed line: our figure, the reference's, and the goal on the ratio.
struct Line {
    scenario: String,
    unit: &'static str,
    ours: f64,
    reference: Option<(String, f64)>,
    goal: String,
}

fn print_header() {
    println!(
        "{:<44} {:>12} {:>12}  {:<30} {:>7}  goal",
        "scenario", "Tollgate", "reference", "(reference is)", "ratio"
    );
}

fn print_line(l: &Line) {
    let (name, value, ratio) = match &l.reference {
        Some((name, v)) if *v > 0.0 => (name.as_str(), format!("{v:.0}"), format!("{:.2}", l.ours / v)),
        Some(_) => ("(not run)", "—".to_owned(), "—".to_owned()),
        None => ("—", "—".to_owned(), "—".to_owned()),
    };
    println!(
        "{:<44} {:>12} {:>12}  {:<30} {:>7}  {}",
        l.scenario,
        format!("{:.0} {}", l.ours, l.unit),
        value,
        name,
        ratio,
        l.goal
    );
}

/// Run `ours` and `theirs` `rounds` times in alternation; the best of each.
fn pair(rounds: usize, mut ours: impl FnMut() -> f64, mut theirs: impl FnMut() -> f64) -> (f64, f64) {
    let (mut a, mut b) = (0f64, 0f64);
    for round in 0..rounds {
        if round % 2 == 0 {
            a = a.max(ours());
            b = b.max(theirs());
        } else {
            b = b.max(theirs());
            a = a.max(ours());
        }
    }
    (a, b)
}

/// The same bytes under the gateway's blob root and nginx's root.
fn write_object(dir: &Path, key: &str, size: usize) {
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for root in [dir.join("data/blobs"), dir.join("www/d")] {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap_or(&root)).unwrap_or_else(|e| fail(e.to_string()));
        let mut bytes = Vec::with_capacity(size);
        while bytes.len() < size {
            bytes.extend_from_slice(&chunk[..(size - bytes.len()).min(chunk.len())]);
        }
        std::fs::write(&path, &bytes).unwrap_or_else(|e| fail(e.to_string()));
    }
}

/// Environment of a gateway under load: request-rate limits are off
/// ([`start_gateway_on`]); one address may hold every connection.
const LOAD_ENV: [(&str, &str); 1] = [("TOLLGATE_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "0")];

/// The data-plane pairs; returns nginx's small-file figure, the reference
/// for the grant URL's.
fn data_plane(plan: &Plan, dir: &Path, pairs: bool, lines: &mut Vec<Line>) -> f64 {
    let small = "load/1.0/small.bin";
    let large = "load/1.0/large.bin";
    write_object(dir, small, plan.small);
    write_object(dir, large, plan.large);
    let nginx = Nginx::start(dir, &dir.join("www"));
    let (gateway, public, _admin) = start_gateway_on(dir, &LOAD_ENV, Some(SERVER_CPU));
    let base = format!("http://{public}");
    let ours_small = format!("{base}{}", sign(dir, small, &base));
    let ours_large = format!("{base}{}", sign(dir, large, &base));
    let (theirs_small, theirs_large) = (nginx.url(small), nginx.url(large));
    if !pairs {
        slow_downloads(plan, &gateway, &ours_large, &nginx, &theirs_large, lines);
        return 0.0;
    }
    let kib = plan.small / 1024;
    let (a, nginx_small) = pair(
        plan.rounds,
        || wrk(dir, &ours_small, 64, plan.secs).per_second(),
        || wrk(dir, &theirs_small, 64, plan.secs).per_second(),
    );
    lines.push(Line {
        scenario: format!("{kib} KiB, operator URL, 64 conns"),
        unit: "req/s",
        ours: a,
        reference: Some(("nginx secure_link".into(), nginx_small)),
        goal: "≥ 1.0".into(),
    });
    for clients in [1, 8] {
        let (a, b) = pair(
            plan.rounds,
            || wrk(dir, &ours_large, clients, plan.secs).mib_per_second(),
            || wrk(dir, &theirs_large, clients, plan.secs).mib_per_second(),
        );
        lines.push(Line {
            scenario: format!("{} MiB, {clients} client(s)", plan.large >> 20),
            unit: "MiB/s",
            ours: a,
            reference: Some(("nginx sendfile".into(), b)),
            goal: "≥ 1.0".into(),
        });
    }
    slow_downloads(plan, &gateway, &ours_large, &nginx, &theirs_large, lines);
    nginx_small
}

/// `clients` connections reading `url` at 16 KiB/s each for `secs`; the peak
/// of `rss()` while they do.
fn slow_clients(url: &str, clients: usize, secs: u64, rss: &dyn Fn() -> (u64, u64)) -> (u64, u64) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| fail(format!("odd URL {url}")));
    let (addr, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (addr, target) = (addr.to_owned(), target.to_owned());
    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| fail(e.to_string()));
    let (stop2, connected2) = (stop.clone(), connected.clone());
    let load = std::thread::spawn(move || {
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (addr, target, stop, connected) = (addr.clone(), target.clone(), stop2.clone(), connected2.clone());
                tasks.push(tokio::spawn(async move {
                    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
                    // A small receive window: the client really is slow.
                    socket.set_recv_buffer_size(8 * 1024).map_err(|e| format!("buffer: {e}"))?;
                    let addr = addr.parse().map_err(|e| format!("address: {e}"))?;
                    let mut tcp = socket.connect(addr).await.map_err(|e| format!("connect: {e}"))?;
                    let head = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
                    tcp.write_all(head.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
                    connected.fetch_add(1, Ordering::Relaxed);
                    let mut buf = vec![0u8; 4096];
                    let mut got = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        match tcp.read(&mut buf).await {
                            Ok(0) => return Err(format!("closed after {got} bytes")),
                            Ok(n) => got += n,
                            Err(e) => return Err(format!("read after {got} bytes: {e}")),
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    if got == 0 { Err("nothing received".to_owned()) } else { Ok(got) }
                }));
            }
            let mut served = 0;
            let mut why = std::collections::BTreeMap::<String, usize>::new();
            for t in tasks {
                match t.await {
                    Ok(Ok(_)) => served += 1,
                    Ok(Err(e)) => {
                        *why.entry(
                            e.split(" after ").next().unwrap_or("").to_owned() + &e[e.rfind(':').unwrap_or(e.len())..],
                        )
                        .or_default() += 1
                    }
                    Err(e) => *why.entry(e.to_string()).or_default() += 1,
                }
            }
            (served, why)
        })
    });
    let (mut peak_rss, mut peak_threads) = (0, 0);
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let (r, t) = rss();
        peak_rss = peak_rss.max(r);
        peak_threads = peak_threads.max(t);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let (served, why) = load.join().unwrap_or_else(|_| fail("the slow clients panicked".into()));
    if served < clients {
        fail(format!("only {served} of {clients} slow clients of {url} kept receiving bytes; the others: {why:?}"));
    }
    (peak_rss, peak_threads)
}

fn slow_downloads(plan: &Plan, gateway: &Gateway, ours: &str, nginx: &Nginx, theirs: &str, lines: &mut Vec<Line>) {
    let pid = gateway.0.id();
    let gateway_rss = || (status_kib(pid, "VmRSS:").unwrap_or(0), status_kib(pid, "Threads:").unwrap_or(0));
    let nginx_rss = || (nginx.worker_rss_kib(), 1);
    let n = plan.slow_clients;
    let idle = gateway_rss().0;
    let (peak, threads) = slow_clients(ours, n, plan.slow_secs, &gateway_rss);
    // The clients have gone; their connections close and memory returns.
    std::thread::sleep(Duration::from_secs(3));
    let after = gateway_rss().0;
    let nginx_idle = nginx.worker_rss_kib();
    let (nginx_peak, _) = slow_clients(theirs, n, plan.slow_secs, &nginx_rss);
    let mib = |kib: u64| kib as f64 / 1024.0;
    lines.push(Line {
        scenario: format!("{n} slow downloads: RSS above idle"),
        unit: "MiB",
        ours: mib(peak.saturating_sub(idle)),
        reference: Some(("nginx worker, above idle".into(), mib(nginx_peak.saturating_sub(nginx_idle)).max(0.5))),
        goal: format!("ours ≤ 64 MiB (idle {:.0} MiB)", mib(idle)),
    });
    lines.push(Line {
        scenario: format!("{n} slow downloads: threads at peak"),
        unit: "threads",
        ours: threads as f64,
        reference: None,
        goal: "bounded by configuration".into(),
    });
    lines.push(Line {
        scenario: format!("{n} slow downloads: RSS 3 s after, above idle"),
        unit: "MiB",
        ours: mib(after.saturating_sub(idle)),
        reference: None,
        goal: "≤ 10 MiB".into(),
    });
}

/// Mint `n` grants of `app/1.0.0/app.tar.gz` from 16 connections; the rate
/// and the grant URLs (paths).
async fn mint(public: &str, key: &str, n: usize) -> (f64, Vec<String>) {
    const CLIENTS: usize = 16;
    let auth = format!("Bearer {key}");
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (public, auth) = (public.to_owned(), auth.clone());
            let count = n / CLIENTS + usize::from(i < n % CLIENTS);
            tokio::spawn(async move {
                let ask = json!({ "product": "app", "version": "1.0.0", "platform": "linux-x86_64" });
                let mut s = connect(&public).await;
                let mut urls = Vec::with_capacity(count);
                for _ in 0..count {
                    let (status, text) =
                        call(&mut s, "POST", "/v1/downloads", Some(("authorization", &auth)), Some(&ask)).await;
                    if status != 201 {
                        fail(format!("POST /v1/downloads: {status} {}", String::from_utf8_lossy(&text)));
                    }
                    let issued: Value = serde_json::from_slice(&text).unwrap_or_default();
                    let url = issued["url"].as_str().unwrap_or_else(|| fail("no url".into()));
                    urls.push(url[url.find("/d/").unwrap_or_else(|| fail("odd url".into()))..].to_owned());
                }
                urls
            })
        })
        .collect();
    let mut urls = Vec::with_capacity(n);
    for t in tasks {
        urls.extend(t.await.unwrap_or_else(|e| fail(e.to_string())));
    }
    (n as f64 / t0.elapsed().as_secs_f64(), urls)
}

/// `redis-benchmark` of one-`INCR` `EVAL`s, 16 connections, from [`CLIENT_CPU`].
fn redis_eval_rate(port: u16, n: usize) -> f64 {
    let out = pinned("redis-benchmark", Some(CLIENT_CPU))
        .args(["-p", &port.to_string(), "-c", "16", "-n", &n.to_string(), "-q"])
        .args(["EVAL", "return redis.call('incr', KEYS[1])", "1", "bench:counter"])
        .output()
        .unwrap_or_else(|e| fail(format!("redis-benchmark is needed (load-tests/side-by-side.sh installs it): {e}")));
    let text = String::from_utf8_lossy(&out.stdout);
    // `EVAL ...: 53462.03 requests per second, p50=...` (possibly after \r updates).
    text.split(['\r', '\n'])
        .filter_map(|l| l.split(": ").nth(1)?.split_whitespace().next()?.parse::<f64>().ok())
        .next_back()
        .unwrap_or_else(|| fail(format!("redis-benchmark: {text}")))
}

fn control_plane(plan: &Plan, dir: &Path, nginx_small: f64, runtime: &tokio::runtime::Runtime, lines: &mut Vec<Line>) {
    for backend in ["sqlite", "redis"] {
        let work = tempfile::tempdir_in(dir).unwrap_or_else(|e| fail(e.to_string()));
        let redis = (backend == "redis").then(|| start_redis(work.path()));
        let url = redis.as_ref().map(|r| format!("redis://127.0.0.1:{}/", r.1)).unwrap_or_default();
        let mut env: Vec<(&str, &str)> = LOAD_ENV.to_vec();
        if redis.is_some() {
            env.extend([("TOLLGATE_STORE__BACKEND", "redis"), ("TOLLGATE_STORE__REDIS__URL", url.as_str())]);
        }
        let (_gateway, public, admin) = start_gateway_on(work.path(), &env, Some(SERVER_CPU));
        let key = runtime.block_on(set_up_catalog(work.path(), &admin, plan.small));
        // The grant URL's re-check under load: one started grant, fetched again and again.
        let (_, urls) = runtime.block_on(mint(&public, &key, 1));
        let grant_url = format!("http://{public}{}", urls[0]);
        let rate = wrk(work.path(), &grant_url, 64, plan.secs).per_second();
        lines.push(Line {
            scenario: format!("{} KiB, grant URL (re-check, {backend}), 64 conns", plan.small / 1024),
            unit: "req/s",
            ours: rate,
            reference: Some(("nginx secure_link (above)".into(), nginx_small)),
            goal: if backend == "sqlite" { "≥ 0.8".into() } else { "≥ 0.6".into() },
        });
        let (minted, urls) = runtime.block_on(mint(&public, &key, plan.grants));
        lines.push(Line {
            scenario: format!("POST /v1/downloads ({backend}), 16 conns"),
            unit: "/s",
            ours: minted,
            reference: None,
            goal: if backend == "sqlite" { "≥ 5,000/s".into() } else { "≥ 10,000/s".into() },
        });
        let initiations = urls.len() as f64 / runtime.block_on(first_gets(&public, &urls));
        let reference =
            redis.as_ref().map(|r| ("redis-benchmark EVAL".to_owned(), redis_eval_rate(r.1, plan.grants * 10)));
        lines.push(Line {
            scenario: format!("initiations ({backend}), 16 conns"),
            unit: "/s",
            ours: initiations,
            reference,
            goal: if backend == "sqlite" { "≥ 5,000/s".into() } else { "≥ 0.3".into() },
        });
    }
}

fn through_s3(plan: &Plan, dir: &Path, runtime: &tokio::runtime::Runtime, lines: &mut Vec<Line>) {
    let server = runtime.block_on(s3::S3Server::start());
    let key = "load/1.0/large.bin";
    // Stored through the S3 API, as an upload would be: the server keeps the
    // object's ETag then. A file copied in beside it has none, and s3s-fs
    // answers every HEAD and GET of such a file by reading all of it for an
    // MD5 first (the gateway's HEAD would cost as much as a download).
    let client = s3_client(&server.endpoint);
    runtime.block_on(async {
        let body = aws_sdk_s3::primitives::ByteStream::from_path(dir.join("data/blobs").join(key))
            .await
            .unwrap_or_else(|e| fail(e.to_string()));
        client
            .put_object()
            .bucket(s3::BUCKET)
            .key(key)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| fail(format!("put: {e}")));
    });
    let work = tempfile::tempdir_in(dir).unwrap_or_else(|e| fail(e.to_string()));
    let mut env: Vec<(&str, &str)> = LOAD_ENV.to_vec();
    env.extend([
        ("TOLLGATE_STORAGE__BACKEND", "s3"),
        ("TOLLGATE_STORAGE__S3__BUCKET", s3::BUCKET),
        ("TOLLGATE_STORAGE__S3__ENDPOINT", server.endpoint.as_str()),
        ("TOLLGATE_STORAGE__S3__FORCE_PATH_STYLE", "true"),
        ("TOLLGATE_STORAGE__S3__ACCESS_KEY_ID", s3::S3_ACCESS_KEY),
        ("TOLLGATE_STORAGE__S3__SECRET_ACCESS_KEY", s3::S3_SECRET_KEY),
    ]);
    let (_gateway, public, _admin) = start_gateway_on(work.path(), &env, Some(SERVER_CPU));
    let base = format!("http://{public}");
    let ours = format!("{base}{}", sign(work.path(), key, &base));
    let direct = runtime.block_on(presigned_get(&client, key));
    let (a, b) = pair(
        plan.rounds,
        || wrk(dir, &ours, 1, plan.secs).mib_per_second(),
        || wrk(dir, &direct, 1, plan.secs).mib_per_second(),
    );
    lines.push(Line {
        scenario: format!("{} MiB through S3, 1 client", plan.large >> 20),
        unit: "MiB/s",
        ours: a,
        reference: Some(("direct presigned GET".into(), b)),
        goal: "≥ 0.95".into(),
    });
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let credentials = aws_sdk_s3::config::Credentials::new(s3::S3_ACCESS_KEY, s3::S3_SECRET_KEY, None, None, "bench");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(credentials)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn presigned_get(client: &aws_sdk_s3::Client, key: &str) -> String {
    let presigning = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600))
        .unwrap_or_else(|e| fail(e.to_string()));
    client
        .get_object()
        .bucket(s3::BUCKET)
        .key(key)
        .presigned(presigning)
        .await
        .map(|p| p.uri().to_owned())
        .unwrap_or_else(|e| fail(format!("presign: {e}")))
}

/// An upload through the gateway to the local store (`PUT` of an artifact
/// on the admin API, streamed by curl) beside `cp` of the same file to the
/// same disk followed by `sync` of the copy: the gateway also hashes the
/// bytes and syncs the file before it answers.
fn upload(plan: &Plan, dir: &Path, runtime: &tokio::runtime::Runtime, lines: &mut Vec<Line>) {
    let work = tempfile::tempdir_in(dir).unwrap_or_else(|e| fail(e.to_string()));
    let source = work.path().join("upload.bin");
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i: usize| (i.wrapping_mul(40_503) >> 7) as u8).collect();
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&source).unwrap_or_else(|e| fail(e.to_string()));
        for _ in 0..plan.upload >> 20 {
            f.write_all(&chunk).unwrap_or_else(|e| fail(e.to_string()));
        }
    }
    let (_gateway, _public, admin) = start_gateway_on(work.path(), &LOAD_ENV, Some(SERVER_CPU));
    let token =
        std::fs::read_to_string(work.path().join("data/secrets/admin-token")).unwrap_or_else(|e| fail(e.to_string()));
    let auth = format!("authorization: Bearer {}", token.trim());
    runtime.block_on(async {
        let mut s = connect(&admin).await;
        let bearer = format!("Bearer {}", token.trim());
        for (path, body) in [
            ("/admin/v1/products/app", json!({ "name": "App" })),
            ("/admin/v1/products/app/releases/1.0.0", json!({ "channel": "stable" })),
        ] {
            let (status, text) = call(&mut s, "PUT", path, Some(("authorization", &bearer)), Some(&body)).await;
            if status >= 300 {
                fail(format!("PUT {path}: {status} {}", String::from_utf8_lossy(&text)));
            }
        }
    });
    let mut n = 0;
    let ours = || {
        n += 1;
        let url =
            format!("http://{admin}/admin/v1/products/app/releases/1.0.0/artifacts/app-{n}.bin?platform=linux-x86_64");
        let t0 = Instant::now();
        let out = pinned("curl", Some(CLIENT_CPU))
            .args(["-sS", "-f", "-o", "/dev/null", "-H", &auth, "-H", "Expect:", "-T"])
            .arg(&source)
            .arg(&url)
            .output()
            .unwrap_or_else(|e| fail(format!("curl is needed: {e}")));
        if !out.status.success() {
            fail(format!("upload: {}", String::from_utf8_lossy(&out.stderr)));
        }
        (plan.upload >> 20) as f64 / t0.elapsed().as_secs_f64()
    };
    let target = work.path().join("data/blobs/copy.bin");
    let theirs = || {
        let t0 = Instant::now();
        let copied = Command::new("cp").arg(&source).arg(&target).status();
        let synced = Command::new("sync").arg(&target).status();
        if !copied.is_ok_and(|s| s.success()) || !synced.is_ok_and(|s| s.success()) {
            fail("cp or sync failed".into());
        }
        let secs = t0.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&target);
        (plan.upload >> 20) as f64 / secs
    };
    let (a, b) = pair(plan.rounds, ours, theirs);
    lines.push(Line {
        scenario: format!("{} MiB upload to local disk", plan.upload >> 20),
        unit: "MiB/s",
        ours: a,
        reference: Some(("cp + sync of the copy".into(), b)),
        goal: "≥ 0.8".into(),
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `--smoke` asks for the tiny run there too.
    let full = std::env::args().any(|a| a == "--bench") && !std::env::args().any(|a| a == "--smoke");
    let plan = if full {
        Plan {
            full,
            secs: 8,
            rounds: 2,
            small: 4096,
            large: 200 << 20,
            slow_clients: 1000,
            slow_secs: 15,
            grants: 20_000,
            upload: 1 << 30,
        }
    } else {
        Plan {
            full,
            secs: 1,
            rounds: 1,
            small: 4096,
            large: 2 << 20,
            slow_clients: 20,
            slow_secs: 2,
            grants: 20,
            upload: 2 << 20,
        }
    };
    let dir: PathBuf = tempfile::tempdir().map(|d| d.keep()).unwrap_or_else(|e| fail(format!("tempdir: {e}")));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(e.to_string()));
    let build = if cfg!(debug_assertions) { "debug" } else { "optimised" };
    let mode = if plan.full { "full" } else { "smoke (figures mean nothing)" };
    println!("side by side: {build} build, {mode}; servers on CPU {SERVER_CPU}, load on CPU {CLIENT_CPU}, loopback");
    // `SIDE_BY_SIDE_ONLY=data|slow|s3|control|upload` runs one group (the others need
    // the data plane's files, which are written anyway).
    let only = std::env::var("SIDE_BY_SIDE_ONLY").unwrap_or_default();
    let wanted = |group: &str| only.is_empty() || only == group;
    let mut lines = Vec::new();
    let nginx_small = if wanted("data") || only == "slow" {
        data_plane(&plan, &dir, only != "slow", &mut lines)
    } else {
        write_object(&dir, "load/1.0/large.bin", plan.large);
        0.0
    };
    if wanted("s3") {
        through_s3(&plan, &dir, &runtime, &mut lines);
    }
    if wanted("control") {
        control_plane(&plan, &dir, nginx_small, &runtime, &mut lines);
    }
    if wanted("upload") {
        upload(&plan, &dir, &runtime, &mut lines);
    }
    print_header();
    for l in &lines {
        print_line(l);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
