//! `tollgate publish`, the real binary against a real gateway: through the
//! gateway onto the local directory, straight to a real S3-compatible server
//! (s3s-fs over HTTP) with the presigned plan, progress on standard error, the
//! release created and published, the SHA-256 round-tripping to a customer's
//! download, and exit codes a CI script can switch on.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Admin, BIN, Backend, StoreKind, ask, customer, request, sha256_hex, target, test_bytes};
use serde_json::{Value, json};

async fn start(backend: Backend) -> Admin {
    let a = Admin::start_tweaked(StoreKind::Sqlite, backend, |c| {
        if let Some(s3) = c.storage.s3.as_mut() {
            s3.part_size = tollgate::config::MIN_PART_SIZE;
        }
    })
    .await;
    let r = a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    assert_eq!(r.status, 201);
    a
}

/// Run `tollgate publish <args>` against `a` (off the runtime's threads, so
/// the in-process gateway keeps serving).
async fn publish(a: &Admin, url: Option<String>, args: &[&str]) -> Output {
    let url = url.unwrap_or_else(|| format!("http://{}", a.gw.admin));
    let token = a.token.clone();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .arg("publish")
            .args(&args)
            .env("TOLLGATE_ADMIN_URL", url)
            .env("TOLLGATE_ADMIN_TOKEN", token)
            .env_remove("TOLLGATE_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_owned()
}

/// No progress line repeats the one before it (the counts, not the rates).
fn assert_no_line_twice(err: &str) {
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("hashing") || l.starts_with("uploading")).collect();
    for pair in lines.windows(2) {
        let progress = |l: &str| l.split("  ").take(3).collect::<Vec<_>>().join("  ");
        assert_ne!(progress(pair[0]), progress(pair[1]), "a progress line repeated: {err}");
    }
}

/// A customer's download of `file` from release `version`: its SHA-256.
async fn downloaded(a: &Admin, key: &str, version: &str, file: &str) -> String {
    let r = ask(a, key, json!({ "product": "app", "version": version, "filename": file })).await;
    assert_eq!(r.status, 201, "{r:?}");
    let got = request(a.gw.public, "GET", target(Admin::json(&r)["url"].as_str().unwrap()), &[]).await;
    assert_eq!(got.status, 200);
    sha256_hex(got.bytes())
}

#[tokio::test]
async fn publish_streams_through_the_gateway_onto_the_local_directory() {
    let a = start(Backend::Local).await;
    let dir = tempfile::tempdir().unwrap();
    let data = test_bytes(3 * 1024 * 1024 + 5);
    let file = write(dir.path(), "app-1.4.2.tar.gz", &data);
    let notes = write(dir.path(), "NOTES.md", b"Fixes the frobnicator.\n");
    let o = publish(
        &a,
        None,
        &[
            "--product",
            "app",
            "--version",
            "1.4.2",
            "--platform",
            "linux-x86_64",
            "--critical",
            "--notes",
            &notes,
            &file,
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let artifact: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(artifact["sha256"], sha256_hex(&data));
    assert_eq!(artifact["platform"], "linux-x86_64");
    // Not a terminal: plain progress lines, ending at 100%.
    let err = stderr(&o);
    assert!(err.lines().any(|l| l.starts_with("hashing") && l.contains("100%")), "{err}");
    assert!(err.lines().any(|l| l.starts_with("uploading") && l.contains("100%")), "{err}");
    assert!(!err.contains('\r'), "no terminal redraws in a log: {err:?}");
    assert_no_line_twice(&err);
    // A file smaller than one read: its first line is already its last, and
    // is printed once (issue 20, item 12: it was printed twice).
    let tiny = write(dir.path(), "tiny.txt", b"tiny");
    let o = publish(&a, None, &["--product", "app", "--version", "1.4.3", &tiny]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().filter(|l| l.starts_with("hashing")).count(), 1, "{err}");
    assert_no_line_twice(&err);

    let r = a.call("GET", "/admin/v1/products/app/releases/1.4.2", None).await;
    let release = Admin::json(&r);
    assert_eq!((release["status"].as_str(), release["critical"].as_bool()), (Some("published"), Some(true)));
    assert_eq!(release["notes"], "Fixes the frobnicator.\n");
    let key = customer(&a, "acme", json!({})).await;
    assert_eq!(downloaded(&a, &key, "1.4.2", "app-1.4.2.tar.gz").await, sha256_hex(&data));

    // Issue 17: the update signature goes with the file, the staging with
    // the release; a later publish of another file keeps them.
    let sig = write(dir.path(), "app.sig", b"untrusted comment: minisign\nRWQexample==\n");
    let file = write(dir.path(), "app.AppImage", b"appimage");
    let args = ["--product", "app", "--version", "1.5.0", "--platform", "linux-x86_64", "--signature", &sig];
    let o =
        publish(&a, None, &[&args[..], &["--rollout", "25", "--minimum-system-version", "12.0", &file]].concat()).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let artifact: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(artifact["signature"], "untrusted comment: minisign\nRWQexample==");
    let o = publish(&a, None, &["--product", "app", "--version", "1.5.0", "--critical", &tiny]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let release = Admin::json(&a.call("GET", "/admin/v1/products/app/releases/1.5.0", None).await);
    assert_eq!((release["rollout"].as_u64(), release["minimum_system_version"].as_str()), (Some(25), Some("12.0")));
    let o = publish(&a, None, &["--product", "app", "--version", "1.5.1", "--rollout", "0", &tiny]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[tokio::test]
async fn publish_goes_straight_to_s3_with_the_presigned_plan() {
    let a = start(Backend::S3).await;
    let dir = tempfile::tempdir().unwrap();
    // Three 5 MiB parts.
    let data = test_bytes(12 * 1024 * 1024 + 3);
    let file = write(dir.path(), "app.bin", &data);
    let o = publish(&a, None, &["--product", "app", "--version", "2.0.0", "--via", "direct", "--draft", &file]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("verifying"), "{}", stderr(&o));
    let r = a.call("GET", "/admin/v1/products/app/releases/2.0.0/artifacts/app.bin", None).await;
    let artifact = Admin::json(&r);
    assert_eq!(
        (artifact["status"].as_str(), artifact["sha256"].as_str()),
        (Some("ready"), Some(sha256_hex(&data).as_str()))
    );
    // --draft: uploaded, not published.
    let r = a.call("GET", "/admin/v1/products/app/releases/2.0.0", None).await;
    assert_eq!(Admin::json(&r)["status"], "draft");
    // No multipart parts stay behind in s3s-fs's directory.
    let s3 = a.blobs.s3.as_ref().unwrap();
    let parts: Vec<_> = std::fs::read_dir(s3.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect();
    assert_eq!(parts, Vec::<String>::new());

    // A second platform, the default way (auto = direct on S3), publishes.
    let other = test_bytes(70_000);
    let file = write(dir.path(), "app.exe", &other);
    let o = publish(&a, None, &["--product", "app", "--version", "2.0.0", "--platform", "windows", &file]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let key = customer(&a, "acme", json!({})).await;
    assert_eq!(downloaded(&a, &key, "2.0.0", "app.bin").await, sha256_hex(&data));
    assert_eq!(downloaded(&a, &key, "2.0.0", "app.exe").await, sha256_hex(&other));
}

#[tokio::test]
async fn publish_exit_codes_tell_refusals_from_failures() {
    let a = start(Backend::Local).await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = write(dir.path(), "app.bin", &test_bytes(1000));
    let code = |o: &Output| o.status.code();
    // 2: usage — a file that is not there.
    let o = publish(&a, None, &["--product", "app", "--version", "1.0.0", "/nonexistent/app.bin"]).await;
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    // 3: the gateway cannot be reached (nothing listens on a closed port).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let o = publish(&a, Some(format!("http://{closed}")), &["--product", "app", "--version", "1.0.0", &v1]).await;
    assert_eq!(code(&o), Some(3), "{}", stderr(&o));
    // 1: refused — the product does not exist; direct uploads on a local directory.
    let o = publish(&a, None, &["--product", "nope", "--version", "1.0.0", &v1]).await;
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    let o = publish(&a, None, &["--product", "app", "--version", "1.0.0", "--via", "direct", &v1]).await;
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("direct_upload_unsupported"), "{}", stderr(&o));

    let o = publish(&a, None, &["--product", "app", "--version", "1.0.0", &v1]).await;
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    // 1: another channel than the release's; replacing a published file without --force.
    let o = publish(&a, None, &["--product", "app", "--version", "1.0.0", "--channel", "beta", &v1]).await;
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    let v2 = write(dir.path(), "app.bin", &test_bytes(2000));
    let o = publish(&a, None, &["--product", "app", "--version", "1.0.0", &v2]).await;
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    let o = publish(&a, None, &["--product", "app", "--version", "1.0.0", "--force", &v2]).await;
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let r = a.call("GET", "/admin/v1/products/app/releases/1.0.0/artifacts/app.bin", None).await;
    assert_eq!(Admin::json(&r)["size"].as_u64(), Some(2000));
}
