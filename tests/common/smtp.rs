//! A real SMTP server for the tests: aiosmtpd (PyPI; scripts/test.sh puts
//! it in target/schemathesis-venv) with its Maildir handler, on a free port
//! on 127.0.0.1. Mail the gateway sends lands in a temporary Maildir the
//! test reads.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct SmtpServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aiosmtpd() -> PathBuf {
    let path = std::env::var("TOLLGATE_AIOSMTPD").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/schemathesis-venv/bin/aiosmtpd"))
    });
    assert!(path.exists(), "aiosmtpd is needed for this test; scripts/test.sh installs it ({})", path.display());
    path
}

/// One received message: its headers and its decoded text body.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = dir.path().join("mail");
        let child = Command::new(aiosmtpd())
            .args(["-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Held from here: dropped (killed and waited for) on any way out.
        let server = SmtpServer { port, child, dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("aiosmtpd did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.dir.path().join("mail").join(sub)) else { continue };
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort_by_key(|p| arrival(p));
            for path in paths {
                out.push(parse(&std::fs::read_to_string(path).unwrap()));
            }
        }
        out
    }

    /// Wait for the `n`th message (1-based) to `to`.
    pub async fn wait_for(&self, to: &str, n: usize) -> Received {
        for _ in 0..200 {
            let mine: Vec<Received> = self.messages().into_iter().filter(|m| m.to.contains(to)).collect();
            if mine.len() >= n {
                return mine[n - 1].clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no message {n} to {to}: {:?}", self.messages());
    }
}

/// When a message arrived, from its Maildir name (Python's:
/// `{seconds}.M{microseconds}P{pid}Q{count}.{host}`; the microseconds are
/// not zero-padded, so the names do not sort by time).
fn arrival(path: &std::path::Path) -> (u64, u64, String) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let number = |s: &str| s.bytes().take_while(u8::is_ascii_digit).fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    let seconds = number(&name);
    let micros = name.split_once(".M").map_or(0, |(_, rest)| number(rest));
    (seconds, micros, name)
}

fn parse(raw: &str) -> Received {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let body = if header("Content-Transfer-Encoding").eq_ignore_ascii_case("quoted-printable") {
        quoted_printable(body)
    } else {
        body.to_owned()
    };
    Received { to: header("To"), subject: header("Subject"), body }
}

/// RFC 2045 quoted-printable: soft line breaks and `=XX` escapes.
fn quoted_printable(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(Ok(b)) = joined.get(i + 1..i + 3).map(|hex| u8::from_str_radix(hex, 16))
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
