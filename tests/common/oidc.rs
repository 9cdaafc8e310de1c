//! A real OpenID provider for the tests: npm `oidc-provider` under node
//! (tests/oidc/provider.mjs; scripts/test.sh installs the package, pinned,
//! in target/browser-tools), on a free port on 127.0.0.1. Its development
//! sign-in pages take any login name as the account; the account's
//! `email` is that name (`unverified.` in front: the same address, not
//! verified).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const CLIENT_ID: &str = "tollgate-portal";
pub const CLIENT_SECRET: &str = "a client secret for tests only";

pub struct OidcProvider {
    pub issuer: String,
    child: Child,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn library() -> PathBuf {
    let path = std::env::var("TOLLGATE_OIDC_PROVIDER").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-tools/node_modules/oidc-provider"))
    });
    let lib = path.join("lib/index.js");
    assert!(lib.exists(), "npm oidc-provider is needed for this test; scripts/test.sh installs it ({})", lib.display());
    lib
}

impl OidcProvider {
    /// A provider with one client, `CLIENT_ID`, that may come back to
    /// `redirect_uri` only.
    pub fn start(redirect_uri: &str) -> OidcProvider {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("node")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/provider.mjs"))
            .env("OIDC_PROVIDER_LIB", library())
            .env("PORT", port.to_string())
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", redirect_uri)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let issuer =
            line.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("the provider said {line:?}")).to_owned();
        OidcProvider { issuer, child }
    }
}
