//! schemathesis (PyPI) against the served `/openapi.json`: every admin
//! operation on the admin listener and every customer operation on the
//! public one, with generated valid and invalid requests, stateful
//! sequences and every check but one. Files are stored in a real
//! S3-compatible server over HTTP, so direct (presigned) uploads are tried
//! too (a local directory answers them `501 direct_upload_unsupported`,
//! which schemathesis would count as a server error). `scripts/test.sh` installs it into a
//! virtualenv and names it in `TOLLGATE_SCHEMATHESIS`.
//!
//! Every check runs on every operation, with one exception kept in
//! `tests/schemathesis.toml`: `positive_data_acceptance` ("a request valid
//! by the schema was refused") is off for the few operations whose rules
//! the document cannot state (one of two optional fields, a store-specific
//! cursor, a report's longest span, bytes that must match a declaration,
//! UTC timestamps and integer-only counts); the file says why for each.
//! Elsewhere the document carries the handlers' rules (id, version and file
//! name patterns, page sizes, enums), so a request it allows is accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::process::Command;

use common::{Admin, Backend, StoreKind, customer, no_rate_limits, release};
use serde_json::json;

fn schemathesis() -> String {
    std::env::var("TOLLGATE_SCHEMATHESIS").unwrap_or_else(|_| {
        let local = concat!(env!("CARGO_MANIFEST_DIR"), "/target/schemathesis-venv/bin/st");
        assert!(
            std::path::Path::new(local).exists(),
            "schemathesis is needed for this test; scripts/test.sh installs it ({local})"
        );
        local.to_owned()
    })
}

/// Run schemathesis on the operations tagged `tag`, sent to `base` with
/// `authorization`; its output, and whether it passed.
async fn run(schema: String, base: String, tag: &str, authorization: String) -> (bool, String) {
    let st = schemathesis();
    let tag = tag.to_owned();
    tokio::task::spawn_blocking(move || {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
        let out = Command::new(st)
            .args(["--config-file", config, "run", &schema, "--url", &base, "--include-tag", &tag])
            .args(["--header", &format!("Authorization: {authorization}")])
            .args(["--max-examples", "10", "--max-time", "40", "--workers", "1", "--seed", "1"])
            .args(["--no-color", "--suppress-health-check", "all"])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .expect("run schemathesis");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::S3, no_rate_limits).await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "any")], "2026-01-01T00:00:00Z").await;
    let key = customer(&a, "acme", json!({})).await;
    let schema = format!("http://{}/openapi.json", a.gw.admin);
    let (admin_ok, admin_out) =
        run(schema.clone(), format!("http://{}", a.gw.admin), "admin", format!("Bearer {}", a.token)).await;
    let (customer_ok, customer_out) =
        run(schema, format!("http://{}", a.gw.public), "customer", format!("Bearer {key}")).await;
    assert!(admin_ok, "schemathesis on the admin API:\n{admin_out}");
    assert!(customer_ok, "schemathesis on the customer API:\n{customer_out}");
    // It really ran the operations (a run that selects nothing passes too).
    for out in [&admin_out, &customer_out] {
        assert!(out.contains("Tested:"), "{out}");
    }
    assert!(admin_out.contains("Selected: 52/"), "every admin operation: {admin_out}");
}
