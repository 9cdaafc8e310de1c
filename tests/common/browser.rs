//! Debian's Chromium, headless, driven over WebDriver (Debian's
//! chromedriver, started per test on a free port): a small client for the
//! commands the portal's browser tests use, and axe-core (npm, pinned by
//! tests/browser) run in the page.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::request_with_body;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    addr: std::net::SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What an element is, to WebDriver.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Chromium with downloads going to `downloads`.
    pub async fn start(downloads: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser { driver, addr, session: String::new(), _profile: profile };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--hide-scrollbars".into(),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let created = b.call("POST", "/session", Some(capabilities)).await;
        b.session = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
        b
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("content-type", "application/json")];
        let r = request_with_body(self.addr, method, path, &headers, body.into()).await;
        let v: Value = serde_json::from_slice(r.bytes()).unwrap_or(Value::Null);
        assert!(r.status < 300, "WebDriver {method} {path}: {} {v}", r.status);
        v["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.call("GET", &self.at("/url"), None).await.as_str().unwrap().to_owned()
    }

    /// Wait (up to 10 s) for the page at a URL whose path ends with
    /// `suffix` to be loaded: a click returns before the navigation it
    /// starts has finished.
    pub async fn wait_for_url(&self, suffix: &str) {
        for _ in 0..400 {
            let url = self.url().await;
            let path = url.split('?').next().unwrap_or_default();
            let ready = self
                .call(
                    "POST",
                    &self.at("/execute/sync"),
                    Some(json!({ "script": "return document.readyState", "args": [] })),
                )
                .await;
            if path.ends_with(suffix) && ready == "complete" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never reached …{suffix}; at {}", self.url().await);
    }

    /// Wait (up to 10 s) for `text` in the page.
    pub async fn wait_for_text(&self, text: &str) {
        for _ in 0..400 {
            if self.source().await.contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{text:?} never appeared: {}", self.source().await);
    }

    pub async fn source(&self) -> String {
        self.call("GET", &self.at("/source"), None).await.as_str().unwrap().to_owned()
    }

    pub async fn find(&self, css: &str) -> Element {
        let v = self.call("POST", &self.at("/element"), Some(json!({ "using": "css selector", "value": css }))).await;
        Element(v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_owned())
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &self.at(&format!("/element/{}/click", e.0)), Some(json!({}))).await;
    }

    /// Empty a text field.
    pub async fn clear(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &self.at(&format!("/element/{}/clear", e.0)), Some(json!({}))).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call("POST", &self.at(&format!("/element/{}/value", e.0)), Some(json!({ "text": text }))).await;
    }

    /// Forget the cookies of the page's host (every port: cookies do not
    /// tell ports apart).
    pub async fn clear_cookies(&self) {
        self.call("DELETE", &self.at("/cookie"), None).await;
    }

    pub async fn window(&self, width: u32, height: u32) {
        self.call("POST", &self.at("/window/rect"), Some(json!({ "width": width, "height": height }))).await;
    }

    /// A PNG of the page as it is shown, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.call("GET", &self.at("/screenshot"), None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// axe-core's serious and critical violations on the page (WCAG 2.x A
    /// and AA rules), as "rule: target" lines.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let axe = std::fs::read_to_string(axe_path()).unwrap();
        self.call("POST", &self.at("/execute/sync"), Some(json!({ "script": axe, "args": [] }))).await;
        let run = "const done = arguments[arguments.length - 1];\
                   axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } })\
                     .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')\
                       .flatMap(v => v.nodes.map(n => v.id + ': ' + n.target.join(' ')))))\
                     .catch(e => done(['axe failed: ' + e]));";
        let v = self.call("POST", &self.at("/execute/async"), Some(json!({ "script": run, "args": [] }))).await;
        v.as_array()
            .unwrap_or_else(|| panic!("axe: {v}"))
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn axe_path() -> PathBuf {
    let path = std::env::var("TOLLGATE_AXE").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-tools/node_modules/axe-core/axe.min.js"))
    });
    assert!(path.exists(), "axe-core is needed for this test; scripts/test.sh installs it ({})", path.display());
    path
}

/// Wait for a finished download named `name` in `dir`.
pub async fn downloaded(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    for _ in 0..400 {
        if path.exists() {
            return std::fs::read(&path).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} was not downloaded into {}: {:?}", dir.display(), std::fs::read_dir(dir).map(|d| d.count()));
}
