//! Blobs in an S3-compatible bucket via `aws-sdk-s3`: `<bucket>/<prefix><key>`.

use std::time::SystemTime;

use anyhow::Context as _;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region, timeout::TimeoutConfig};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;

use super::{BlobStore, ByteRange, ByteStream, ObjectKey, ObjectMeta, StorageError};
use crate::config::{Config, secret};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// Build a client from `storage.s3`: endpoint, region, path style, and either
    /// static credentials or the standard AWS credential chain.
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let s3 = config.storage.s3.as_ref().context("storage.s3 is not configured")?;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.storage.connect_timeout)
            .read_timeout(config.storage.first_byte_timeout)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(s3.region.clone()))
            .timeout_config(timeouts);
        if let Some(endpoint) = &s3.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(access_key) = &s3.access_key_id {
            let secret = secret::resolve(
                "storage.s3.secret_access_key",
                s3.secret_access_key.as_ref(),
                s3.secret_access_key_file.as_deref(),
                config.allow_world_readable_secrets,
            )?;
            loader = loader.credentials_provider(Credentials::new(
                access_key,
                secret.expose(),
                None,
                None,
                "tollgate-config",
            ));
        }
        let shared = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(s3.force_path_style).build();
        Ok(Self { client: Client::from_conf(conf), bucket: s3.bucket.clone(), prefix: s3.prefix.clone() })
    }

    fn object_key(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }
}

/// Sort an SDK error into the storage taxonomy. The detail is for logs only.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(err: SdkError<E, HttpResponse>) -> StorageError {
    match &err {
        SdkError::TimeoutError(_) => StorageError::Timeout("no answer from S3 in time"),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StorageError::Unavailable(DisplayErrorContext(&err).to_string())
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let detail = format!(
                "{} {}: {}",
                status,
                service.err().code().unwrap_or("?"),
                service.err().message().unwrap_or("")
            );
            match status {
                404 => StorageError::NotFound,
                412 => StorageError::Changed,
                429 | 500..=599 => StorageError::Unavailable(detail),
                _ => StorageError::Upstream(detail),
            }
        }
        _ => StorageError::Upstream(DisplayErrorContext(&err).to_string()),
    }
}

fn to_system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn meta(
    size: Option<i64>,
    last_modified: Option<&aws_sdk_s3::primitives::DateTime>,
    etag: Option<&str>,
    content_type: Option<&str>,
) -> Result<ObjectMeta, StorageError> {
    let size = size
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| StorageError::Upstream("S3 sent no Content-Length".into()))?;
    let last_modified = to_system_time(last_modified);
    let etag = match etag {
        Some(e) if e.starts_with('"') => e.to_owned(),
        Some(e) => format!("\"{e}\""),
        None => format!("\"{:x}-{:x}\"", size, crate::clock::unix_seconds(last_modified)),
    };
    Ok(ObjectMeta { size, last_modified, etag, content_type: content_type.map(str::to_owned) })
}

fn into_stream(body: SdkByteStream) -> ByteStream {
    Box::pin(futures_util::stream::unfold(body, |mut body| async move {
        match body.try_next().await {
            Ok(Some(chunk)) => Some((Ok(chunk), body)),
            Ok(None) => None,
            Err(e) => Some((Err(StorageError::Unavailable(DisplayErrorContext(&e).to_string())), body)),
        }
    }))
}

#[async_trait::async_trait]
impl BlobStore for S3Store {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let out =
            self.client.head_object().bucket(&self.bucket).key(self.object_key(key)).send().await.map_err(classify)?;
        meta(out.content_length, out.last_modified.as_ref(), out.e_tag.as_deref(), out.content_type.as_deref())
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
        expected: &ObjectMeta,
    ) -> Result<ByteStream, StorageError> {
        // If-Match: never splice bytes of a newer version into a response whose
        // headers describe the old one.
        let mut req = self.client.get_object().bucket(&self.bucket).key(self.object_key(key)).if_match(&expected.etag);
        if let Some(r) = range {
            req = req.range(format!("bytes={}-{}", r.start, r.last()));
        }
        let out = req.send().await.map_err(classify)?;
        // Not every S3-compatible service honours If-Match; check the answer too.
        if out.e_tag.as_deref().is_some_and(|tag| tag.trim_matches('"') != expected.etag.trim_matches('"')) {
            return Err(StorageError::Changed);
        }
        Ok(into_stream(out.body))
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(classify)?;
        Ok(())
    }
}

/// Used by tests and tools that need to place objects directly.
impl S3Store {
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Upload a small object in one request. Not for artifacts: the streaming
    /// multipart upload path is the vendor upload API.
    pub async fn put_small(&self, key: &ObjectKey, body: Vec<u8>) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}
