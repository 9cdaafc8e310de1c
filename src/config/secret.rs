//! Secrets in configuration: given inline (`x`) or from a file (`x_file`), held in
//! a newtype whose `Debug` never shows the value.

use std::fmt;
use std::path::Path;

use subtle::ConstantTimeEq;

/// A secret value. `Debug` is redacted and equality is constant-time.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call sites are the places a secret is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{key}: give either `{key}` or `{key}_file`, not both")]
    Both { key: String },
    #[error("{key}: missing; give `{key}` or `{key}_file`")]
    Missing { key: String },
    /// `key` names the file setting (`signing.keys[0].secret_file`,
    /// `server.tls.key_file`, `--token-file`), here and below.
    #[error("{key}: cannot read {path}: {source}")]
    Read { key: String, path: String, source: std::io::Error },
    #[error(
        "{key}: {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}` \
         or set allow_world_readable_secrets = true"
    )]
    WorldReadable { key: String, path: String, mode: u32 },
    #[error("{key}: {path} is empty")]
    Empty { key: String, path: String },
}

/// Resolve a secret given as `key` (inline) or `key_file` (path). `key` is the
/// dotted config key, used in error messages.
pub fn resolve(
    key: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
    allow_world_readable: bool,
) -> Result<Secret, SecretError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(SecretError::Both { key: key.into() }),
        (Some(s), None) => Ok(s.clone()),
        (None, Some(path)) => read_secret_file(&format!("{key}_file"), path, allow_world_readable),
        (None, None) => Err(SecretError::Missing { key: key.into() }),
    }
}

/// Read a secret file: trailing whitespace dropped, permissions checked.
pub fn read_secret_file(key: &str, path: &Path, allow_world_readable: bool) -> Result<Secret, SecretError> {
    let shown = path.display().to_string();
    let read_err = |source| SecretError::Read { key: key.into(), path: shown.clone(), source };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    // SECURITY: a secret that every local user can read is not a secret; refuse it
    // unless the operator says otherwise (e.g. a container with one user).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 && !allow_world_readable {
            return Err(SecretError::WorldReadable { key: key.into(), path: shown, mode });
        }
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let value = text.trim_end();
    if value.is_empty() {
        return Err(SecretError::Empty { key: key.into(), path: shown });
    }
    Ok(Secret::new(value))
}

/// Read the secret at `path`, first creating it with `generate()` (mode 0600)
/// if it does not exist. Returns the secret and whether it was created now.
pub fn ensure_generated(
    key: &str,
    path: &Path,
    allow_world_readable: bool,
    generate: impl FnOnce() -> std::io::Result<String>,
) -> Result<(Secret, bool), SecretError> {
    let created = !path.exists();
    if created {
        let read_err = |source| SecretError::Read { key: key.into(), path: path.display().to_string(), source };
        create_secret_file(path, &generate().map_err(read_err)?).map_err(read_err)?;
    }
    Ok((read_secret_file(key, path, allow_world_readable)?, created))
}

/// Write a new secret file with mode 0600 (its directory 0700), refusing to
/// overwrite an existing one.
pub fn create_secret_file(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_eq_compares_values() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s, Secret::new("hunter2"));
        assert_ne!(s, Secret::new("hunter3"));
    }

    #[test]
    fn inline_file_both_and_neither() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        create_secret_file(&path, "from-file").unwrap();
        let inline = Secret::new("inline");
        assert_eq!(resolve("k", Some(&inline), None, false).unwrap(), inline);
        assert_eq!(resolve("k", None, Some(&path), false).unwrap(), Secret::new("from-file"));
        assert!(matches!(resolve("k", Some(&inline), Some(&path), false), Err(SecretError::Both { .. })));
        assert!(matches!(resolve("k", None, None, false), Err(SecretError::Missing { .. })));
        // create_secret_file never overwrites.
        assert!(create_secret_file(&path, "again").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_files_are_refused_unless_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "v\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve("signing.keys[0].secret", None, Some(&path), false).unwrap_err();
        assert!(err.to_string().contains("signing.keys[0].secret_file"), "{err}");
        assert!(matches!(err, SecretError::WorldReadable { mode: 0o644, .. }));
        assert_eq!(resolve("k", None, Some(&path), true).unwrap(), Secret::new("v"));
    }
}
