//! The `tollgate` binary end to end, as the README uses it: `serve` on the
//! embedded default, `sign` a URL, download it with curl (whole, ranged and
//! resumed), and `verify`/`keygen`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{BIN, curl, serve, serve_with_admin, sha256_hex, stop, test_bytes};

fn tollgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(dir).env_remove("TOLLGATE_CONFIG").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn readme_flow_serve_sign_and_download_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let data = test_bytes(3 * 1024 * 1024 + 7);
    let blob = dir.path().join("data/blobs/app/1.4.2/app-1.4.2.tar.gz");
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, &data).unwrap();

    let (server, addr, log) = serve(dir.path(), &[("TOLLGATE_SIGNING__CLOCK_SKEW", "0s")]);
    // First start: the signing key was created, 0600, and its location printed.
    let key_file = dir.path().join("data/secrets/signing-key-k1");
    assert!(log.iter().any(|l| l.contains("created a new signing key") && l.contains("signing-key-k1")), "{log:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let base = format!("http://{addr}");
    let sign = tollgate(dir.path(), &["sign", "app/1.4.2/app-1.4.2.tar.gz", "--customer", "acme", "--base-url", &base]);
    assert!(sign.status.success(), "{sign:?}");
    let url = stdout(&sign);
    assert!(url.starts_with(&format!("{base}/d/app/1.4.2/app-1.4.2.tar.gz?exp=")), "{url}");

    // Whole file.
    let out = dir.path().join("download");
    let o = curl(&["-f", "-o", out.to_str().unwrap(), &url]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), sha256_hex(&data));

    // curl -r: a byte range.
    let o = curl(&["-f", "-r", "1000-1999", &url]);
    assert_eq!(o.stdout, data[1000..2000]);

    // curl -C -: resume a partial file.
    std::fs::write(&out, &data[..1_234_567]).unwrap();
    let o = curl(&["-f", "-C", "-", "-o", out.to_str().unwrap(), &url]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), sha256_hex(&data));

    // One changed character in the token: 403 invalid_signature.
    let (head, sig) = url.rsplit_once("sig=").unwrap();
    let mut sig = sig.to_owned().into_bytes();
    sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{head}sig={}", String::from_utf8(sig).unwrap());
    let o = curl(&["-w", "\n%{http_code}", &tampered]);
    let text = stdout(&o);
    assert!(text.ends_with("403") && text.contains("\"code\":\"invalid_signature\""), "{text}");

    // An expired URL: 403 expired.
    let short =
        stdout(&tollgate(dir.path(), &["sign", "app/1.4.2/app-1.4.2.tar.gz", "--ttl", "1s", "--base-url", &base]));
    std::thread::sleep(Duration::from_millis(2100));
    let text = stdout(&curl(&["-w", "\n%{http_code}", &short]));
    assert!(text.ends_with("403") && text.contains("\"code\":\"expired\""), "{text}");

    // verify explains both verdicts.
    let ok = tollgate(dir.path(), &["verify", &url]);
    assert!(ok.status.success());
    assert!(stdout(&ok).contains("result:      VALID"), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("customer:    acme"));
    let bad = tollgate(dir.path(), &["verify", &tampered]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("INVALID (invalid_signature)"), "{}", stdout(&bad));

    // URLs no gateway could serve are refused, not minted (issue 20, item 10).
    for args in [
        &["sign", "app/1.4.2"][..],
        &["sign", "app/1.4.2/x/app.tar.gz"],
        &["sign", "app/1.4.2/app-1.4.2.tar.gz", "--ttl", "0s"],
        &["sign", "app/1.4.2/sub/", "--prefix"],
        &["sign", "app/1.4.2/app-1.4.2.tar.gz", "--cidr", "::ffff:10.0.0.0/104"],
    ] {
        let o = tollgate(dir.path(), args);
        assert!(!o.status.success() && o.stdout.is_empty(), "{args:?}: {o:?}");
    }
    // verify of the largest `exp` the spec allows: explained, not a panic.
    let far = url.replace("exp=", "exp=9999999999999999999&old=");
    let o = tollgate(dir.path(), &["verify", &far]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("after the year 9999"), "{}", stdout(&o));

    stop(server);
}

/// Where no key ring is, `sign` and `verify` say so and create none (issue
/// 20, item 9); a `TOLLGATE_*` variable that is not a setting is warned
/// about, not fatal (item 8).
#[test]
fn sign_and_verify_never_make_up_a_key() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["sign", "app/1.0/app.zip"][..], &["verify", "/d/app/1.0/app.zip?exp=1&kid=k1&sig=AAAA"]] {
        let o = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env_remove("TOLLGATE_CONFIG")
            .env("TOLLGATE_BUILD_ID", "42")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && o.stdout.is_empty(), "{args:?}: {o:?}");
        assert!(err.contains("no signing key") && err.contains("signing-key-k1"), "{err}");
        assert!(err.contains("TOLLGATE_BUILD_ID is not a configuration setting"), "{err}");
        assert!(!dir.path().join("data/secrets").exists(), "a key was created");
    }
}

/// The README's quickstart block, run by bash as written against `tollgate
/// serve` in `dir` (with `extra_env`), its output returned. Only the gateway's
/// address is substituted.
fn run_quickstart(dir: &Path, extra_env: &[(&str, &str)]) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let public = format!("127.0.0.1:{port}");
    let url = format!("http://{public}");
    let mut env = vec![("TOLLGATE_SERVER__LISTEN", public.as_str()), ("TOLLGATE_SERVER__PUBLIC_URL", url.as_str())];
    env.extend_from_slice(extra_env);
    let (server, admin, _log) = serve_with_admin(dir, &env);

    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = common::fenced_block(&readme, "sh quickstart");
    let script = block.replace("GW=http://127.0.0.1:8080", &format!("GW={url}"));
    assert_ne!(script, block, "the quickstart sets GW");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env("TOLLGATE_ADMIN_URL", format!("http://{admin}"))
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .envs(extra_env.iter().copied())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "quickstart failed: {}\n{out}", String::from_utf8_lossy(&o.stderr));
    stop(server);
    out
}

fn check_quickstart_output(dir: &Path, out: &str) {
    let build = b"pretend this is a build\n";
    assert_eq!(std::fs::read(dir.join("app-linux.tar.gz")).unwrap(), build, "the build is left as it was");
    assert_eq!(std::fs::read(dir.join("downloads/app-linux.tar.gz")).unwrap(), build, "the download is the build");
    let digest = sha256_hex(build);
    assert!(out.contains(&format!("{digest}  app-linux.tar.gz")), "{out}");
    assert!(out.contains(&format!("{digest}  downloads/app-linux.tar.gz")), "{out}");
    assert!(out.contains("\"version\":\"1.4.2\""), "the listing shows the release: {out}");
    // The refusals, in the order the quickstart provokes them.
    let codes: Vec<&str> = out
        .match_indices("\"code\":\"")
        .map(|(i, m)| {
            let rest = &out[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(
        codes,
        ["not_entitled", "entitlement_expired", "outside_maintenance", "release_yanked", "release_yanked"],
        "{out}"
    );
}

#[test]
fn readme_quickstart_runs_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_quickstart(dir.path(), &[]);
    check_quickstart_output(dir.path(), &out);
    assert!(dir.path().join("data/tollgate.db").exists(), "the catalog is in the embedded SQLite store");
}

#[test]
fn readme_quickstart_runs_on_redis() {
    let redis = tokio::runtime::Runtime::new().unwrap().block_on(common::RedisServer::start());
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let out = run_quickstart(dir.path(), &[("TOLLGATE_STORE__BACKEND", "redis"), ("TOLLGATE_STORE__REDIS__URL", &url)]);
    check_quickstart_output(dir.path(), &out);
    assert!(!dir.path().join("data/tollgate.db").exists(), "nothing went to SQLite");
}

#[test]
fn keygen_writes_a_private_file_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let printed = tollgate(dir.path(), &["keygen"]);
    assert!(printed.status.success());
    assert_eq!(tollgate::signing::decode_key("k", &stdout(&printed)).unwrap().len(), 32);
    let o = tollgate(dir.path(), &["keygen", "--id", "k2", "--out", "keys/k2"]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("id = \"k2\""));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("keys/k2")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!tollgate(dir.path(), &["keygen", "--id", "k2", "--out", "keys/k2"]).status.success());
}

#[test]
fn bad_configuration_exits_2_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[server]\nmax_conections = 5\n").unwrap();
    let o = tollgate(dir.path(), &["serve", "--config", "bad.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("max_conections"), "{o:?}");
    let o = tollgate(dir.path(), &["sign", "a/b/c", "--set", "signing.default_ttl=soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("signing.default_ttl"), "{o:?}");
}

/// Issue 20, item 11: every mistake of the operator's (a malformed `--set`,
/// a secret other users can read, a key that is not base64, a TLS private
/// key other users can read) exits 2 and names what to fix; an OS error is
/// printed once.
#[test]
fn operator_mistakes_exit_2_and_os_errors_print_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let o = tollgate(dir.path(), &["sign", "a/1.0.0/c", "--set", "signing.default_ttl"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("expected KEY=VALUE"), "{o:?}");

    // A signing key file other users can read, then one that is not base64.
    let key = dir.path().join("k1");
    std::fs::write(&key, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let toml =
        format!("[signing]\nactive_key = \"k1\"\n[[signing.keys]]\nid = \"k1\"\nsecret_file = \"{}\"\n", key.display());
    std::fs::write(dir.path().join("keys.toml"), toml).unwrap();
    let o = tollgate(dir.path(), &["sign", "a/1.0.0/c", "--config", "keys.toml"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("signing.keys[0].secret"), "{o:?}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key, "not base64 at all!").unwrap();
    let o = tollgate(dir.path(), &["sign", "a/1.0.0/c", "--config", "keys.toml"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");

    // A missing configuration file: the OS's reason once, not twice.
    let o = tollgate(dir.path(), &["sign", "a/1.0.0/c", "--config", "missing.toml"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(stderr(&o).matches("os error 2").count(), 1, "{o:?}");

    // A TLS private key other users can read is refused like any secret.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    let tls_key = dir.path().join("key.pem");
    std::fs::write(&tls_key, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&tls_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n";
    std::fs::write(dir.path().join("tls.toml"), toml).unwrap();
    // Spawned, not waited on blindly: a gateway that accepted the key would
    // serve on and the test would hang instead of failing.
    let mut child = Command::new(BIN)
        .args(["serve", "--config", "tls.toml", "--admin-listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("TOLLGATE_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started with a TLS private key other users can read");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("server.tls.key_file"), "{o:?}");
}

/// Issue 20, item 12: `--url` and `--token-file` are taken after the
/// subcommand too (they were refused there as unexpected arguments).
#[test]
fn admin_options_go_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tga_x").unwrap();
    std::fs::set_permissions(&token, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600))
        .unwrap();
    let token = token.to_str().unwrap();
    // Nothing listens on port 1: the request fails (3), the arguments parsed.
    for args in [
        vec!["admin", "--url", "http://127.0.0.1:1", "--token-file", token, "customer", "list"],
        vec!["admin", "customer", "list", "--url", "http://127.0.0.1:1", "--token-file", token],
    ] {
        let o = tollgate(dir.path(), &args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("127.0.0.1:1"), "{args:?}: {o:?}");
    }
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["sign", "--help"],
        vec!["verify", "--help"],
        vec!["keygen", "--help"],
        vec!["admin", "--help"],
        vec!["admin", "entitle", "--help"],
        vec!["admin", "webhook", "put", "--help"],
        vec!["admin", "release", "cut-downloads", "--help"],
        vec!["publish", "--help"],
    ] {
        let o = tollgate(dir.path(), &cmd);
        assert!(o.status.success(), "{cmd:?}");
        assert!(stdout(&o).contains("Usage: tollgate"), "{cmd:?}");
    }
}

/// Issue 16: `sign --profile` makes a URL in a CDN's format (here Akamai's
/// header token and Cloud CDN's URL prefix), and `verify` explains such
/// URLs field by field — found by the token's shape, or named with
/// `--profile` — and refuses a tampered one (exit 1).
#[test]
fn sign_and_verify_speak_the_cdn_formats() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = "[[cdn.profiles]]\nid = \"gcdn\"\nkind = \"cloud_cdn\"\nbase_url = \"https://cdn.example.com\"\n\
        [[cdn.profiles.keys]]\nid = \"key-1\"\nkey = \"nZtRohdNF9m3cKM24IcK4w==\"\n\
        [[cdn.profiles]]\nid = \"ak\"\nkind = \"akamai\"\nbase_url = \"https://dl.example.com\"\ntoken_in = \"header\"\n\
        [[cdn.profiles.keys]]\nid = \"edgeauth\"\nkey_file = \"akamai.key\"\n";
    std::fs::write(dir.path().join("cdn.toml"), config).unwrap();
    let key = dir.path().join("akamai.key");
    std::fs::write(&key, "7a5c2be9f42a1f32cd889d1cf775f05d0cd162bd2871d00fe705ab28c9bba5a5\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let o = tollgate(dir.path(), &["sign", "--config", "cdn.toml", "--profile", "gcdn", "app/1.0/My App.dmg"]);
    assert!(o.status.success(), "{o:?}");
    let url = stdout(&o);
    assert!(url.starts_with("https://cdn.example.com/d/app/1.0/My%20App.dmg?Expires="), "{url}");
    assert!(url.contains("&KeyName=key-1&Signature="), "{url}");
    let o = tollgate(dir.path(), &["verify", "--config", "cdn.toml", &url]);
    assert!(o.status.success(), "{o:?}");
    let report = stdout(&o);
    assert!(report.contains("profile:     gcdn (cloud_cdn") && report.contains("result:      VALID"), "{report}");
    assert!(report.contains("KeyName:     key-1"), "{report}");
    let tampered = url.replace("My%20App", "My%20Apps");
    let o = tollgate(dir.path(), &["verify", "--config", "cdn.toml", &tampered]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("INVALID (invalid_signature)"), "{o:?}");

    // A URL-prefix token covers the release's other files.
    let o = tollgate(dir.path(), &["sign", "--config", "cdn.toml", "--profile", "gcdn", "--prefix", "app/1.0/"]);
    assert!(o.status.success(), "{o:?}");
    let prefix_url = stdout(&o);
    assert!(prefix_url.contains("?URLPrefix="), "{prefix_url}");
    let other = prefix_url.replacen("/d/app/1.0/", "/d/app/1.0/other.zip", 1);
    let o = tollgate(dir.path(), &["verify", "--config", "cdn.toml", &other]);
    assert!(o.status.success(), "{o:?}");

    // Akamai with the token in a header: the header line is printed, and
    // verify takes it with --token-header.
    let o =
        tollgate(dir.path(), &["sign", "--config", "cdn.toml", "--profile", "ak", "--grant", "g-1", "app/1.0/x.zip"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let mut lines = out.lines();
    let url = lines.next().unwrap().to_owned();
    let token = lines.next().unwrap().strip_prefix("__token__: ").unwrap().to_owned();
    assert!(token.contains("~id=g-1~hmac="), "{token}");
    let o =
        tollgate(dir.path(), &["verify", "--config", "cdn.toml", "--profile", "ak", "--token-header", &token, &url]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("id:          g-1"), "{o:?}");
    let o = tollgate(dir.path(), &["verify", "--config", "cdn.toml", "--profile", "ak", &url]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("INVALID (malformed_token)"), "{o:?}");

    // What a format cannot do is refused up front.
    let o = tollgate(dir.path(), &["sign", "--config", "cdn.toml", "--profile", "nope", "app/1.0/x.zip"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no CDN profile \"nope\""), "{o:?}");
    let o =
        tollgate(dir.path(), &["sign", "--config", "cdn.toml", "--profile", "ak", "--customer", "c", "app/1.0/x.zip"]);
    assert_eq!(o.status.code(), Some(2), "--customer is the native format's: {o:?}");
}
