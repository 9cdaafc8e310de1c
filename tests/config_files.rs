//! The example configurations under config/ always parse, and the embedded
//! default written out is exactly `Config::default()`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;

use tollgate::config::{self, Config, StorageBackend};

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name)).unwrap()
}

#[test]
fn embedded_default_file_matches_the_code() {
    let parsed = config::load_from_str(&read("tollgate.toml")).unwrap();
    assert_eq!(parsed, Config::default());
}

#[test]
fn production_example_parses_and_validates() {
    let c = config::load_from_str(&read("production.toml")).unwrap();
    assert_eq!(c.storage.backend, StorageBackend::S3);
    assert!(c.server.tls.is_some());
    assert_eq!(c.active_key_id().as_deref(), Some("2026-11"));
    assert_eq!(c.signing.keys.len(), 2);
}

#[test]
fn commented_examples_in_the_default_file_are_valid_too() {
    // Uncomment every `# key = value` / `# [table]` line: the optional sections
    // shown as examples must parse as well.
    let uncommented: String = read("tollgate.toml")
        .lines()
        .map(|l| {
            let t = l.trim_start();
            match t.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest.to_owned()
                }
                _ => l.to_owned(),
            }
        })
        // `x = []` would clash with the uncommented `[[…x]]` examples.
        .filter(|l| !l.ends_with(" = []"))
        .collect::<Vec<_>>()
        .join("\n");
    let c = config::load_from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n---\n{uncommented}"));
    assert!(c.server.tls.is_some());
    assert!(c.storage.s3.is_some());
    assert_eq!(c.signing.keys.len(), 2);
}

/// The Dockerfile builds the dependencies against placeholder sources; Cargo
/// refuses a manifest whose bench targets' files are missing, so every
/// `[[bench]]` path needs one there.
#[test]
fn the_dockerfile_has_a_placeholder_for_every_bench_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let mut names = Vec::new();
    for block in manifest.split("[[bench]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim().strip_prefix('=')?.trim().trim_matches('"').to_owned().into())
        };
        let name: String = field("name").unwrap();
        let path = field("path").unwrap_or_else(|| format!("benches/{name}.rs"));
        let (dir, file) = path.rsplit_once('/').unwrap();
        let stem = file.strip_suffix(".rs").unwrap();
        let covered = dockerfile.contains(&format!("> {path}"))
            || dockerfile.lines().any(|l| {
                l.contains("for b in") && l.contains(&format!(" {stem}")) && l.contains(&format!("{dir}/$b.rs"))
            });
        assert!(covered, "the Dockerfile has no placeholder for {path}");
        names.push(name);
    }
    assert!(names.len() >= 6, "{names:?}");
    assert!(dockerfile.contains("COPY .cargo ./.cargo"), "jemalloc's settings must reach the build");
}
