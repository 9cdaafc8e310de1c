//! Artifacts: the files of a release. An artifact record names an object that
//! already exists in blob storage, with the size and SHA-256 the gateway
//! measured itself (never taken from the caller).
//!
//! Key: `{product}/{version}/{filename}`.

use semver::Version;

use super::model::{Artifact, PendingUpload};
use super::repo::{CatalogError, CatalogRepo, check_id};
use super::store::{Kind, Written, get_json, put_json};

/// Longest file name accepted, in bytes (common file systems' limit).
pub const MAX_FILENAME: usize = 255;

/// File names appear in download paths and `Content-Disposition`: one path
/// segment, no separators, no control characters, not `.`-leading.
pub fn check_filename(name: &str) -> Result<(), CatalogError> {
    let reason = if name.is_empty() || name.len() > MAX_FILENAME {
        Some(format!("must be 1 to {MAX_FILENAME} bytes"))
    } else if name.contains(['/', '\\']) {
        Some("must not contain path separators".to_owned())
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else if name.starts_with('.') {
        Some("must not start with '.'".to_owned())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CatalogError::Invalid { field: "filename", reason }),
        None => Ok(()),
    }
}

/// A SHA-256 as stored: 64 lower-case hex digits.
pub fn check_sha256(sha256: &str) -> Result<(), CatalogError> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(CatalogError::Invalid { field: "sha256", reason: "must be 64 lower-case hex digits".into() })
    }
}

/// The longest update signature accepted (a minisign signature file is
/// about 400 bytes; an EdDSA signature 88).
pub const MAX_SIGNATURE: usize = 4096;

/// An update signature: printable text (base64 and a minisign file's
/// comment lines), at most [`MAX_SIGNATURE`] bytes.
pub fn check_signature(s: &str) -> Result<(), CatalogError> {
    let printable = s.chars().all(|c| c == '\n' || c == '\r' || c == '\t' || (' '..='~').contains(&c));
    if s.trim().is_empty() || s.len() > MAX_SIGNATURE || !printable {
        return Err(CatalogError::Invalid {
            field: "signature",
            reason: format!("must be 1-{MAX_SIGNATURE} bytes of printable ASCII text"),
        });
    }
    Ok(())
}

pub(crate) fn artifact_key(product: &str, version: &Version, filename: &str) -> String {
    format!("{product}/{version}/{filename}")
}

impl CatalogRepo {
    /// Create or replace an artifact of an existing release. The caller has
    /// measured `size` and `sha256` from storage.
    pub async fn put_artifact(&self, a: &Artifact) -> Result<Written, CatalogError> {
        check_filename(&a.filename)?;
        check_id("platform", &a.platform)?;
        check_sha256(&a.sha256)?;
        if self.release(&a.product, &a.version).await?.is_none() {
            return Err(CatalogError::Missing { kind: "release", id: format!("{}/{}", a.product, a.version) });
        }
        let key = artifact_key(&a.product, &a.version, &a.filename);
        Ok(put_json(self.records().as_ref(), Kind::Artifact, &key, a).await?)
    }

    /// Set (or, with `None`, clear) an artifact's update signature, as a
    /// compare-and-set on its record: a file replaced meanwhile keeps the
    /// record it was replaced with. `None` when there is no such artifact.
    pub async fn set_artifact_signature(
        &self,
        product: &str,
        version: &Version,
        filename: &str,
        signature: Option<String>,
    ) -> Result<Option<Artifact>, CatalogError> {
        if let Some(s) = &signature {
            check_signature(s)?;
        }
        let key = artifact_key(product, version, filename);
        let updated = self
            .update_if::<Artifact, _>(Kind::Artifact, &key, None, |current| {
                Ok(current.map(|a| Artifact { signature: signature.clone(), ..a.clone() }))
            })
            .await?;
        Ok(updated.map(|u| u.record))
    }

    pub async fn artifact(
        &self,
        product: &str,
        version: &Version,
        filename: &str,
    ) -> Result<Option<Artifact>, CatalogError> {
        Ok(get_json(self.records().as_ref(), Kind::Artifact, &artifact_key(product, version, filename)).await?)
    }

    /// The artifacts of one release, by file name.
    pub async fn artifacts(&self, product: &str, version: &Version) -> Result<Vec<Artifact>, CatalogError> {
        self.all(Kind::Artifact, &format!("{product}/{version}/")).await
    }

    /// Every artifact of every release of a product.
    pub async fn product_artifacts(&self, product: &str) -> Result<Vec<Artifact>, CatalogError> {
        self.all(Kind::Artifact, &format!("{product}/")).await
    }

    /// Remove an artifact record (the object in storage stays: it may have
    /// been registered, not uploaded, here). Whether it may be removed is
    /// `uploads::delete`'s to decide.
    pub async fn delete_artifact(
        &self,
        product: &str,
        version: &Version,
        filename: &str,
    ) -> Result<bool, CatalogError> {
        Ok(self.records().delete(Kind::Artifact, &artifact_key(product, version, filename)).await?)
    }

    /// Record a planned direct upload (replacing an earlier plan for the file).
    pub async fn put_upload(&self, u: &PendingUpload) -> Result<Written, CatalogError> {
        let key = artifact_key(&u.product, &u.version, &u.filename);
        Ok(put_json(self.records().as_ref(), Kind::Upload, &key, u).await?)
    }

    pub async fn upload(
        &self,
        product: &str,
        version: &Version,
        filename: &str,
    ) -> Result<Option<PendingUpload>, CatalogError> {
        Ok(get_json(self.records().as_ref(), Kind::Upload, &artifact_key(product, version, filename)).await?)
    }

    /// The pending uploads of one release, by file name.
    pub async fn uploads(&self, product: &str, version: &Version) -> Result<Vec<PendingUpload>, CatalogError> {
        self.all(Kind::Upload, &format!("{product}/{version}/")).await
    }

    /// Every pending upload, for the sweep of expired ones.
    pub async fn all_uploads(&self) -> Result<Vec<PendingUpload>, CatalogError> {
        self.all(Kind::Upload, "").await
    }

    pub async fn delete_upload(&self, product: &str, version: &Version, filename: &str) -> Result<bool, CatalogError> {
        Ok(self.records().delete(Kind::Upload, &artifact_key(product, version, filename)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_one_plain_segment() {
        for ok in ["app.tar.gz", "My App 1.0.dmg", "ü.zip", "a"] {
            assert!(check_filename(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_FILENAME + 1);
        for bad in ["", "a/b", "a\\b", ".hidden", "..", "a\u{0}b", "a\nb", long.as_str()] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
    }
}
