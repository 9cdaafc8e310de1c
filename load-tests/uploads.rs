//! Upload throughput and the gateway's memory, measured the way vendors
//! upload: `tollgate publish` (the release binary) of one file against a
//! `tollgate serve` process on loopback, in three set-ups:
//!
//! - `local`: the embedded default; the file streams through the gateway into
//!   the local directory;
//! - `s3 via gateway`: the file streams through the gateway, which sends it
//!   to S3 as a multipart upload (`part_size × (parts_in_flight + 1)` of
//!   memory at most);
//! - `s3 direct`: the file goes straight to S3 with the gateway's presigned
//!   plan; the gateway then reads it through to verify size and SHA-256.
//!
//! S3 is s3s-fs, in this process, over HTTP on loopback: the figures measure
//! the gateway and the client against a local S3, not a cloud link. Each
//! set-up gets a fresh gateway, whose peak RSS (VmHWM) is read before and
//! after. The time is `publish`'s whole run: hashing the file, uploading,
//! verification and publishing.
//!
//! `cargo bench --bench uploads` sends 1 GiB; `cargo test` sends 16 MiB so that
//! it cannot rot. Loopback only; bounded in size and time.

#![expect(clippy::print_stdout, reason = "a load test reports its figures on stdout")]

#[path = "support.rs"]
mod support;

#[path = "../tests/common/s3.rs"]
mod s3;

use std::io::Write as _;
use std::process::Command;
use std::time::Instant;

use serde_json::json;
use support::{BIN, call, connect, fail, peak_rss_kib, start_gateway};

const CHUNK: usize = 1024 * 1024;

struct Setup {
    name: &'static str,
    s3: bool,
    via: &'static str,
}

const SETUPS: [Setup; 3] = [
    Setup { name: "local", s3: false, via: "gateway" },
    Setup { name: "s3 via gateway", s3: true, via: "gateway" },
    Setup { name: "s3 direct", s3: true, via: "direct" },
];

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let size: usize = if full { 1024 * CHUNK } else { 16 * CHUNK };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(e.to_string()));
    let work = tempfile::tempdir().unwrap_or_else(|e| fail(format!("tempdir: {e}")));
    // One pseudo-random chunk repeated: cheap to produce.
    let file = work.path().join("app.bin");
    {
        let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = std::fs::File::create(&file).unwrap_or_else(|e| fail(e.to_string()));
        for _ in 0..size / CHUNK {
            f.write_all(&chunk).unwrap_or_else(|e| fail(e.to_string()));
        }
    }
    let server = runtime.block_on(s3::S3Server::start());
    let s3_env = [
        ("TOLLGATE_STORAGE__BACKEND", "s3".to_owned()),
        ("TOLLGATE_STORAGE__S3__BUCKET", s3::BUCKET.to_owned()),
        ("TOLLGATE_STORAGE__S3__ENDPOINT", server.endpoint.clone()),
        ("TOLLGATE_STORAGE__S3__FORCE_PATH_STYLE", "true".to_owned()),
        ("TOLLGATE_STORAGE__S3__ACCESS_KEY_ID", s3::S3_ACCESS_KEY.to_owned()),
        ("TOLLGATE_STORAGE__S3__SECRET_ACCESS_KEY", s3::S3_SECRET_KEY.to_owned()),
    ];
    let build = if cfg!(debug_assertions) { "debug" } else { "optimised" };
    let mib = size as f64 / (1024.0 * 1024.0);
    println!("uploads: {build} build, `tollgate publish` of {mib:.0} MiB on 127.0.0.1 (S3 = s3s-fs, loopback)");
    for (i, setup) in SETUPS.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("tempdir: {e}")));
        let env: Vec<(&str, &str)> =
            if setup.s3 { s3_env.iter().map(|(k, v)| (*k, v.as_str())).collect() } else { Vec::new() };
        let (gateway, _public, admin) = start_gateway(dir.path(), &env);
        let token = std::fs::read_to_string(dir.path().join("data/secrets/admin-token"))
            .unwrap_or_else(|e| fail(e.to_string()));
        runtime.block_on(async {
            let mut s = connect(&admin).await;
            let auth = format!("Bearer {}", token.trim());
            let (status, text) = call(
                &mut s,
                "PUT",
                "/admin/v1/products/app",
                Some(("authorization", &auth)),
                Some(&json!({ "name": "App" })),
            )
            .await;
            if status >= 300 {
                fail(format!("PUT product: {status} {}", String::from_utf8_lossy(&text)));
            }
        });
        let before = peak_rss_kib(gateway.0.id());
        let version = format!("1.0.{i}");
        let t0 = Instant::now();
        let out = Command::new(BIN)
            .args(["publish", "--product", "app", "--version", &version, "--via", setup.via])
            .arg(&file)
            .env("TOLLGATE_ADMIN_URL", format!("http://{admin}"))
            .env("TOLLGATE_ADMIN_TOKEN", token.trim())
            .env_remove("TOLLGATE_CONFIG")
            .output()
            .unwrap_or_else(|e| fail(format!("cannot run publish: {e}")));
        let secs = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            fail(format!("{}: publish failed: {}", setup.name, String::from_utf8_lossy(&out.stderr)));
        }
        let rss = match (before, peak_rss_kib(gateway.0.id())) {
            (Some(b), Some(a)) => format!("gateway peak RSS {:.1} → {:.1} MiB", b as f64 / 1024.0, a as f64 / 1024.0),
            _ => "gateway peak RSS unavailable (no /proc)".to_owned(),
        };
        println!("{:<15} {secs:>6.2} s  {:>5.0} MiB/s  {rss}", setup.name, mib / secs);
    }
}
