//! Direct uploads: the vendor sends the bytes straight to S3 with presigned
//! requests (one `PUT`, or one per part of a multipart upload), then asks
//! the gateway to complete. Until then the artifact is `pending` and cannot
//! be downloaded; `complete` reads the object through and checks size and
//! SHA-256 before recording it. Plans that expire are abandoned by the
//! sweep ([`sweep`], run by the upload worker).

use std::time::Duration;

use semver::Version;

use super::{FileFacts, UploadError, artifact_uploaded, file_facts};
use crate::catalog::artifacts::{artifact_key, check_filename, check_sha256};
use crate::catalog::{Artifact, ArtifactStatus, CatalogError, PendingUpload, Timestamp};
use crate::services::Services;
use crate::storage::{self, ObjectKey, StorageError, UploadPlan, UploadedPart};

/// How often the sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Direct uploads get this long past their URLs' expiry before the sweep
/// abandons them, so a `complete` in progress is not cut from under it.
pub const SWEEP_GRACE_SECS: u64 = 3600;

/// What a vendor declares to upload a file straight to storage.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub product: String,
    pub version: Version,
    pub filename: String,
    /// Default `any`.
    pub platform: Option<String>,
    /// Default: guessed from the file name.
    pub content_type: Option<String>,
    /// The file's exact size in bytes.
    pub size: u64,
    /// The file's SHA-256, hex.
    pub sha256: String,
}

/// A planned upload and the presigned requests that carry it.
#[derive(Debug)]
pub struct Planned {
    pub pending: PendingUpload,
    pub plan: UploadPlan,
}

/// Plan a direct upload of a new file (an existing one is replaced with the
/// streaming upload, or deleted first). Planning a file again abandons the
/// previous plan.
pub async fn plan(svc: &Services, req: PlanRequest) -> Result<Planned, UploadError> {
    let PlanRequest { product, version, filename, platform, content_type, size, sha256 } = req;
    check_filename(&filename)?;
    let FileFacts { platform, content_type } = file_facts(&filename, platform, content_type)?;
    let sha256 = sha256.to_ascii_lowercase();
    check_sha256(&sha256)?;
    if svc.catalog.release(&product, &version).await?.is_none() {
        return Err(UploadError::NotFound("release"));
    }
    if svc.catalog.artifact(&product, &version, &filename).await?.is_some() {
        return Err(CatalogError::Conflict(format!(
            "{filename} is already a file of {product} {version}; replace it with a streaming PUT, or delete it first",
        ))
        .into());
    }
    if let Some(earlier) = svc.catalog.upload(&product, &version, &filename).await? {
        abandon(svc, &earlier).await?;
    }
    let storage_key = artifact_key(&product, &version, &filename);
    let key = ObjectKey::parse(&storage_key)
        .map_err(|e| CatalogError::Invalid { field: "filename", reason: e.to_string() })?;
    let ttl = svc.uploads.url_ttl;
    let plan = svc
        .storage
        .plan_upload(&key, size, &sha256, &content_type, ttl)
        .await
        .map_err(|e| match e {
            // A declared size is a field of the request, checked like the
            // others (422); 413 stays for bytes actually sent past a limit.
            StorageError::TooLarge(max) => UploadError::Catalog(CatalogError::Invalid {
                field: "size",
                reason: format!("{size} bytes is more than the storage takes ({max})"),
            }),
            e => e.into(),
        })?
        .ok_or(UploadError::DirectUploadUnsupported)?;
    let now = svc.clock.now_unix();
    let pending = PendingUpload {
        product,
        version,
        filename,
        platform,
        content_type,
        size,
        sha256,
        storage_key,
        upload_id: plan.upload_id.clone(),
        created_at: Timestamp(now),
        expires_at: Timestamp(now + ttl.as_secs()),
        completing_since: None,
    };
    if let Err(e) = svc.catalog.put_upload(&pending).await {
        if let Some(id) = &plan.upload_id {
            let _ = svc.storage.abort_upload(&key, id).await;
        }
        return Err(e.into());
    }
    Ok(Planned { pending, plan })
}

/// What `complete` did.
#[derive(Debug)]
pub enum Completed {
    /// Verified and recorded now.
    Recorded(Artifact),
    /// Completed before (a retry whose first answer was lost).
    Already(Artifact),
}

/// Finish a direct upload: assemble the parts, then read the object through
/// and check its size and SHA-256 against the declared ones. Only then is the
/// artifact recorded (and downloadable). A mismatch removes the object and
/// the plan.
pub async fn complete(
    svc: &Services,
    product: &str,
    version: &Version,
    filename: &str,
    parts: &[UploadedPart],
) -> Result<Completed, UploadError> {
    let Some(u) = svc.catalog.upload(product, version, filename).await? else {
        return match svc.catalog.artifact(product, version, filename).await? {
            Some(a) => Ok(Completed::Already(a)),
            None => Err(UploadError::NotFound("pending upload")),
        };
    };
    let now = svc.clock.now_unix();
    if now >= u.expires_at.0 {
        abandon(svc, &u).await?;
        return Err(UploadError::Expired(filename.to_owned()));
    }
    // Marked, so the sweep leaves it alone while its bytes are read through
    // (which may outlast the plan's expiry for a huge file).
    let u = PendingUpload { completing_since: Some(Timestamp(now)), ..u };
    svc.catalog.put_upload(&u).await?;
    let key = upload_key(&u)?;
    if let Some(id) = &u.upload_id {
        match svc.storage.complete_upload(&key, id, parts).await {
            // Already assembled by an earlier `complete` that failed later on.
            Ok(()) | Err(StorageError::NotFound) => {}
            Err(e @ (StorageError::Unavailable(_) | StorageError::Timeout(_))) => return Err(e.into()),
            Err(e) => {
                tracing::info!(key = %key, error = %e, "a direct upload could not be assembled");
                return Err(UploadError::Incomplete(
                    "storage could not assemble the parts: upload every part of the plan (with the ETags \
                     storage answered), then complete again"
                        .into(),
                ));
            }
        }
    }
    let storage::Stored { meta, sha256, sha512 } =
        match storage::measure(svc.storage.as_ref(), &key, svc.uploads.idle_timeout).await {
            Ok(m) => m,
            Err(StorageError::NotFound) => {
                return Err(UploadError::Incomplete(
                    "storage holds no object yet: send the plan's request(s), then complete".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
    // Still this plan? A DELETE, or a new plan for the file, may have
    // abandoned it while the object was read; then the bytes at the key are
    // not ours to keep, remove or record.
    let current = svc.catalog.upload(product, version, filename).await?;
    if current.is_none_or(|c| c.upload_id != u.upload_id || c.created_at != u.created_at) {
        return Err(CatalogError::Conflict(format!(
            "the upload of {filename} was abandoned or planned again while it was being verified"
        ))
        .into());
    }
    let refused = if meta.size != u.size {
        Err(UploadError::SizeMismatch { declared: u.size, actual: meta.size })
    } else {
        storage::check_digest(Some(&u.sha256), &sha256).map_err(UploadError::from)
    };
    if let Err(refused) = refused {
        svc.storage.delete(&key).await?;
        svc.catalog.delete_upload(product, version, filename).await?;
        return Err(refused);
    }
    let artifact =
        Artifact { etag: Some(meta.etag), status: ArtifactStatus::Ready, sha512: Some(sha512), ..u.as_artifact() };
    match svc.catalog.put_artifact(&artifact).await {
        Ok(_) => {}
        Err(e @ CatalogError::Missing { .. }) => {
            // The release went away meanwhile; nothing may refer to the bytes.
            abandon(svc, &u).await?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    svc.catalog.delete_upload(product, version, filename).await?;
    artifact_uploaded(svc, &artifact).await;
    Ok(Completed::Recorded(artifact))
}

fn upload_key(u: &PendingUpload) -> Result<ObjectKey, UploadError> {
    ObjectKey::parse(&u.storage_key)
        .map_err(|e| UploadError::Catalog(CatalogError::Invalid { field: "storage_key", reason: e.to_string() }))
}

/// Give up a direct upload: abort its parts, remove anything it wrote (no
/// artifact refers to it: a plan is only made for a new file, and a streaming
/// upload of the file is refused while the plan is pending), then its record.
pub async fn abandon(svc: &Services, u: &PendingUpload) -> Result<(), UploadError> {
    let key = upload_key(u)?;
    if let Some(id) = &u.upload_id {
        svc.storage.abort_upload(&key, id).await?;
    }
    svc.storage.delete(&key).await?;
    svc.catalog.delete_upload(&u.product, &u.version, &u.filename).await?;
    Ok(())
}

/// Abandon the direct uploads whose plans expired more than `grace` seconds
/// ago, or that have received nothing for `uploads.abandon_idle_for` (a
/// crashed client's), and remove what crashed streaming uploads left in
/// storage. Returns how many uploads were abandoned.
pub async fn sweep(svc: &Services, grace: u64) -> usize {
    let now = svc.clock.now_unix();
    let mut abandoned = 0;
    match svc.catalog.all_uploads().await {
        Ok(uploads) => {
            // One being completed is left alone for a day (its verification
            // reads the whole file).
            let completing = |u: &PendingUpload| u.completing_since.is_some_and(|t| t.0.saturating_add(86_400) >= now);
            for u in uploads.iter().filter(|u| !completing(u)) {
                let why = if u.expires_at.0.saturating_add(grace) < now {
                    "its URLs expired"
                } else if idle(svc, u, now).await {
                    "it received nothing for storage.s3.abandon_uploads_idle_for"
                } else {
                    continue;
                };
                match abandon(svc, u).await {
                    Ok(()) => {
                        abandoned += 1;
                        tracing::info!(file = %u.storage_key, reason = why, "direct upload abandoned");
                    }
                    Err(e) => tracing::warn!(file = %u.storage_key, error = %e, "could not abandon a direct upload"),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not list pending uploads"),
    }
    // A live streaming upload writes all the time and a stalled one is cut
    // after the idle timeout; an hour (or twice the timeout) is safely dead.
    let age = (svc.uploads.idle_timeout * 2).max(Duration::from_secs(3600));
    match svc.storage.sweep(age).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "temporary files of cut uploads removed"),
        Err(e) => tracing::warn!(error = %e, "could not sweep temporary upload files"),
    }
    abandoned
}

/// Whether a direct upload has received nothing for the configured idle
/// time: neither the plan nor its newest part (by storage's clock) is that
/// recent. A multipart upload storage no longer knows is idle; storage that
/// cannot say is given the benefit of the doubt.
async fn idle(svc: &Services, u: &PendingUpload, now: u64) -> bool {
    let limit = svc.uploads.abandon_idle_for.as_secs();
    if u.created_at.0.saturating_add(limit) >= now {
        return false;
    }
    let Ok(key) = upload_key(u) else { return false };
    let last = match svc.storage.upload_activity(&key, u.upload_id.as_deref()).await {
        Ok(at) => at.map_or(0, crate::clock::unix_seconds),
        Err(StorageError::NotFound) => 0,
        Err(e) => {
            tracing::warn!(file = %u.storage_key, error = %e, "could not read a direct upload's parts");
            return false;
        }
    };
    last.saturating_add(limit) < now
}

/// The upload sweep, every [`SWEEP_EVERY`] (or a third of the idle limit
/// when that is shorter), until the task is dropped.
pub async fn sweep_worker(svc: std::sync::Arc<Services>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY.min(svc.uploads.abandon_idle_for / 3));
    loop {
        tick.tick().await;
        let n = sweep(&svc, SWEEP_GRACE_SECS).await;
        if n > 0 {
            tracing::info!(abandoned = n, "direct uploads abandoned");
        }
    }
}
