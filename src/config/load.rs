//! Layering: defaults < TOML file < `TOLLGATE_…` environment < command-line flags.
//!
//! Every layer is merged into one TOML tree before the typed structs are built,
//! so an unknown key is an error whichever layer it came from.

use std::path::Path;

use serde::Deserialize;
use toml::{Table, Value};

use super::Config;

/// Environment variables that configure Tollgate start with this. Nesting uses a
/// double underscore: `TOLLGATE_SERVER__LISTEN`, `TOLLGATE_STORAGE__S3__BUCKET`.
pub const ENV_PREFIX: &str = "TOLLGATE_";

/// `TOLLGATE_` variables that are not configuration keys: the config file's
/// path, and the admin CLI's address and token.
const ENV_NOT_KEYS: &[&str] =
    &["TOLLGATE_CONFIG", "TOLLGATE_ADMIN_URL", "TOLLGATE_ADMIN_TOKEN", "TOLLGATE_ADMIN_TOKEN_FILE"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Load the configuration: `file` if given (else the embedded default), then the
/// environment `env` (pairs of name and value), then `overrides` (dotted key and
/// value, from flags). The result is validated.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<Config, ConfigError> {
    let (text, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
            (text, path.display().to_string())
        }
        None => (String::new(), "embedded default".to_owned()),
    };
    load_layers(&text, &origin, env, overrides)
}

/// Parse one TOML document as the only layer; for tests and tools.
pub fn load_from_str(text: &str) -> Result<Config, ConfigError> {
    load_layers(text, "config", std::iter::empty(), &[])
}

fn load_layers(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<Config, ConfigError> {
    let mut tree: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse { origin: origin.to_owned(), message: e.to_string() })?;
    let sections = sections();
    let mut env: Vec<(String, String)> =
        env.into_iter().filter(|(k, _)| env_key(k).is_some_and(|dotted| maps_to_config(&dotted, &sections))).collect();
    env.sort();
    // Which layer set each key, to blame the right one for a bad value.
    let mut set_by: Vec<(String, String)> = Vec::new();
    for (name, value) in &env {
        let dotted = env_key(name).unwrap_or_default();
        set(&mut tree, &dotted, value).map_err(|message| ConfigError::Parse { origin: name.clone(), message })?;
        set_by.push((dotted, name.clone()));
    }
    for (key, value) in overrides {
        set(&mut tree, key, value).map_err(|message| ConfigError::Parse { origin: format!("--set {key}"), message })?;
        set_by.push((key.clone(), format!("--set {key}")));
    }
    let config: Config = serde_path_to_error::deserialize(Value::Table(tree)).map_err(|e| {
        let path = e.path().to_string();
        // The last layer that set this key or a table around it.
        let blamed = set_by
            .iter()
            .rev()
            .find(|(key, _)| {
                path == *key || path.starts_with(&format!("{key}.")) || key.starts_with(&format!("{path}."))
            })
            .map_or(origin, |(_, by)| by.as_str());
        ConfigError::Parse {
            origin: blamed.to_owned(),
            message: if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) },
        }
    })?;
    config.validate()?;
    Ok(config)
}

/// The dotted configuration key a `TOLLGATE_*` variable names
/// (`TOLLGATE_SERVER__LISTEN` → `server.listen`); `None` for variables that
/// are not configuration (`TOLLGATE_CONFIG`, the CLI's own).
fn env_key(name: &str) -> Option<String> {
    if ENV_NOT_KEYS.contains(&name) {
        return None;
    }
    Some(name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase().replace("__", "."))
}

/// The configuration's top-level keys (`server`, `data_dir`, …).
fn sections() -> Vec<String> {
    match Value::try_from(Config::default()) {
        Ok(Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A variable maps to configuration when its first segment is a top-level
/// key. Others (`TOLLGATE_BUILD_ID` in a CI job) are not ours: they are
/// ignored, and [`unmapped_env`] lists them for a warning. A mistyped key
/// inside a known table (`TOLLGATE_SERVER__LISTN`) is still an error.
fn maps_to_config(dotted: &str, sections: &[String]) -> bool {
    let first = dotted.split('.').next().unwrap_or_default();
    sections.iter().any(|s| s == first)
}

/// The `TOLLGATE_*` variables of `env` that configuration ignores, for the
/// CLI to warn about.
pub fn unmapped_env(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let sections = sections();
    let mut names: Vec<String> = env
        .into_iter()
        .filter_map(|(k, _)| {
            let dotted = env_key(&k)?;
            (!maps_to_config(&dotted, &sections)).then_some(k)
        })
        .collect();
    names.sort();
    names
}

/// Set a dotted key in the tree. The value is read as a TOML value when it is one
/// (`8080`, `true`, `["a"]`, `{ id = "k1" }`), else as a plain string.
fn set(tree: &mut Table, dotted: &str, raw: &str) -> Result<(), String> {
    let parts: Vec<&str> = dotted.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("{dotted:?} is not a configuration key"));
    }
    let value = parse_value(raw);
    let (last, parents) = parts.split_last().ok_or_else(|| "empty key".to_owned())?;
    let mut table = tree;
    for part in parents {
        let entry = table.entry((*part).to_owned()).or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            _ => return Err(format!("{dotted}: {part} is not a table")),
        };
    }
    table.insert((*last).to_owned(), value);
    Ok(())
}

fn parse_value(raw: &str) -> Value {
    #[derive(Deserialize)]
    struct Wrapper {
        v: Value,
    }
    toml::from_str::<Wrapper>(&format!("v = {raw}")).map(|w| w.v).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageBackend;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn empty_document_is_the_default() {
        assert_eq!(load_from_str("").unwrap(), Config::default());
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let file = "[server]\nlisten = \"127.0.0.1:1000\"\nmax_connections = 5\n";
        let e = env(&[
            ("TOLLGATE_SERVER__LISTEN", "127.0.0.1:2000"),
            ("TOLLGATE_SERVER__HTTP2", "false"),
            ("TOLLGATE_CONFIG", "/ignored.toml"),
            ("HOME", "/root"),
        ]);
        let c = load_layers(file, "f", e.clone(), &[]).unwrap();
        assert_eq!(c.server.listen.port(), 2000);
        assert!(!c.server.http2);
        assert_eq!(c.server.max_connections, 5);
        let flags = vec![("server.listen".to_owned(), "127.0.0.1:3000".to_owned())];
        let c = load_layers(file, "f", e, &flags).unwrap();
        assert_eq!(c.server.listen.port(), 3000);
    }

    #[test]
    fn unknown_keys_are_errors_in_every_layer() {
        let err = load_from_str("[server]\nlisten_on = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("server") && err.contains("listen_on"), "{err}");
        let err = load_layers("", "f", env(&[("TOLLGATE_SERVER__LISTN", "x")]), &[]).unwrap_err().to_string();
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn variables_that_are_not_settings_are_ignored_and_listed() {
        // A CI job's TOLLGATE_BUILD_ID, or a typo in the table's name: not
        // configuration, so no command fails on it; the CLI warns.
        let vars =
            env(&[("TOLLGATE_BUILD_ID", "42"), ("TOLLGATE_SERVR__LISTEN", "x"), ("TOLLGATE_ADMIN_TOKEN_FILE", "/t")]);
        let c = load_layers("", "f", vars.clone(), &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(unmapped_env(vars), ["TOLLGATE_BUILD_ID", "TOLLGATE_SERVR__LISTEN"]);
        assert!(unmapped_env(env(&[("TOLLGATE_SERVER__LISTEN", "x"), ("TOLLGATE_CONFIG", "f")])).is_empty());
    }

    #[test]
    fn a_bad_value_is_blamed_on_the_layer_that_set_it() {
        let file = "[server]\nlisten = \"127.0.0.1:1\"\n";
        let err = load_layers(file, "tollgate.toml", env(&[("TOLLGATE_SERVER__MAX_CONNECTIONS", "many")]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("TOLLGATE_SERVER__MAX_CONNECTIONS:"), "{err}");
        let sets = [("downloads.resume_window".to_owned(), "soon".to_owned())];
        let err = load_layers(file, "tollgate.toml", env(&[]), &sets).unwrap_err().to_string();
        assert!(err.starts_with("--set downloads.resume_window:"), "{err}");
        let err =
            load_layers("[server]\nmax_connections = \"x\"\n", "tollgate.toml", env(&[]), &[]).unwrap_err().to_string();
        assert!(err.starts_with("tollgate.toml:"), "{err}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = load_from_str("[server]\nmax_connections = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("server.max_connections"), "{err}");
        let err = load_from_str("[signing]\nclock_skew = \"soon\"\n").unwrap_err().to_string();
        assert!(err.contains("signing.clock_skew") && err.contains("not a duration"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            ("[server]\npublic_url = \"ftp://x\"", "server.public_url"),
            ("[server]\nmax_connections = 0", "server.max_connections"),
            ("[server]\nwrite_idle_timeout = \"0s\"", "server.write_idle_timeout"),
            ("[storage]\nbackend = \"s3\"", "storage.s3"),
            ("[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"\"", "storage.s3.bucket"),
            (
                "[storage.s3]\nbucket = \"b\"\naccess_key_id = \"a\"\n[storage]\nbackend = \"s3\"",
                "storage.s3.access_key_id",
            ),
            ("[[signing.keys]]\nid = \"a b\"\nsecret = \"x\"", "signing.keys[0].id"),
            ("[[signing.keys]]\nid = \"a\"", "signing.keys[0].secret"),
            (
                "[[signing.keys]]\nid = \"a\"\nsecret = \"x\"\n[[signing.keys]]\nid = \"b\"\nsecret = \"y\"",
                "signing.active_key",
            ),
            ("[log]\nlevel = \"[[\"", "log.level"),
            ("[log]\nlevel = \"verbose\"", "log.level"),
            ("[log]\nlevel = \"tollgate=debug,loud\"", "log.level"),
            ("[admin]\nlisten = \"0.0.0.0:8080\"", "admin.listen"),
        ];
        for (doc, key) in cases {
            let err = load_from_str(doc).unwrap_err().to_string();
            assert!(err.starts_with(key), "{doc:?} gave {err:?}, expected it to name {key}");
        }
    }

    #[test]
    fn log_filters_with_levels_are_accepted() {
        for level in
            ["info", "WARN", "tollgate=debug,info", "warn,tollgate::app=info", "off", "tollgate[request]=debug"]
        {
            let doc = format!("[log]\nlevel = {level:?}\n");
            assert!(load_from_str(&doc).is_ok(), "{level}");
        }
    }

    #[test]
    fn env_values_may_be_toml_structures() {
        let e = env(&[
            ("TOLLGATE_STORAGE__BACKEND", "s3"),
            ("TOLLGATE_STORAGE__S3", "{ bucket = \"rel\", force_path_style = true }"),
            ("TOLLGATE_SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
        ]);
        let c = load_layers("", "f", e, &[]).unwrap();
        assert_eq!(c.storage.backend, StorageBackend::S3);
        let s3 = c.storage.s3.unwrap();
        assert_eq!((s3.bucket.as_str(), s3.force_path_style, s3.region.as_str()), ("rel", true, "us-east-1"));
        assert_eq!(c.server.trusted_proxies.len(), 1);
    }

    #[test]
    fn active_key_resolution() {
        let one = load_from_str("[[signing.keys]]\nid = \"a\"\nsecret = \"x\"\n[[signing.keys]]\nid = \"old\"\nsecret = \"y\"\nverify_only = true").unwrap();
        assert_eq!(one.active_key_id().as_deref(), Some("a"));
        assert_eq!(Config::default().active_key_id().as_deref(), Some("k1"));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Any text is a configuration or a named error; never a panic.
            #[test]
            fn any_text_loads_or_is_refused(text in "(\\[[a-z._]{1,20}\\]\n|[a-z_.]{1,24} = (\"[ -~]{0,20}\"|[0-9-]{1,12}|true|\\[\\]|\\{\\})\n|.{0,30}\n){0,12}") {
                let _ = load_from_str(&text);
            }

            /// Keys of the real schema with values of any type are refused or
            /// taken; never a panic.
            #[test]
            fn known_keys_with_any_values(
                key in "(server\\.(listen|max_connections|idle_timeout|max_connections_per_address)|downloads\\.(resume_window|quota\\.downloads_per_day)|signing\\.default_ttl|limits\\.address_burst)",
                value in "(\"[ -~]{0,16}\"|-?[0-9]{1,20}|[0-9]{1,3}\\.[0-9]{1,3}|true|\\[1, \"a\"\\]|\\{ x = 1 \\})",
            ) {
                let (table, field) = key.rsplit_once('.').unwrap();
                let _ = load_from_str(&format!("[{table}]\n{field} = {value}\n"));
            }
        }
    }
}
