//! The data plane: `GET`/`HEAD /d/{product}/{version}/{filename}?<token>`.
//!
//! Order of work: parse the path, verify the token (nothing touches storage
//! before that), read metadata, evaluate validators and ranges, then stream.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use axum::response::IntoResponse;
use base64::Engine as _;

use super::conditional::{self, Precondition, RangeDecision};
use super::problem::Problem;
use super::{AppState, PeerAddr, client_ip};
use crate::catalog::{Artifact, Grant, Timestamp};
use crate::entitlement::access::{AccessError, Checked, recheck_grant};
use crate::events::{Completion, Detail, Subject};
use crate::quota::{self, LeaseGuard, Outcome};
use crate::signing::{Presented, TokenError, decode_segment};
use crate::storage::{self, ObjectKey, ObjectMeta, StorageError, StreamEnd};
use crate::store::StoreError;

/// Where a failure came from; decides log level (and, later, metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Storage,
}

/// Every way a data-plane request can fail. Mapped to a problem in one place,
/// [`DownloadError::to_problem`].
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("the path is not /d/{{product}}/{{version}}/{{filename}}")]
    BadPath,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("no such file")]
    NotFound,
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error(transparent)]
    Storage(StorageError),
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Over a request-rate limit; retry after this long.
    #[error("rate limited")]
    RateLimited(std::time::Duration),
    /// The object's size or ETag differs from the artifact record: replaced
    /// behind the gateway's back. Serving it would contradict the advertised
    /// digest.
    #[error("the object in storage does not match its artifact record")]
    ArtifactChanged,
}

impl From<StorageError> for DownloadError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => DownloadError::NotFound,
            other => DownloadError::Storage(other),
        }
    }
}

impl DownloadError {
    pub fn origin(&self) -> Origin {
        match self {
            DownloadError::Storage(_)
            | DownloadError::ArtifactChanged
            | DownloadError::Access(AccessError::Catalog(_) | AccessError::Sign(_)) => Origin::Storage,
            _ => Origin::Client,
        }
    }

    pub fn to_problem(&self) -> Problem {
        match self {
            DownloadError::BadPath => Problem::new(StatusCode::BAD_REQUEST, "invalid_path", "Bad Request")
                .with_detail("Download paths look like /d/{product}/{version}/{filename}."),
            DownloadError::Token(e) => {
                Problem::new(StatusCode::FORBIDDEN, e.code(), "Forbidden").with_detail(e.to_string())
            }
            DownloadError::NotFound => {
                Problem::new(StatusCode::NOT_FOUND, "not_found", "Not Found").with_detail("There is no such file.")
            }
            DownloadError::PreconditionFailed => {
                Problem::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", "Precondition Failed")
            }
            DownloadError::RangeNotSatisfiable { size } => {
                let mut p =
                    Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", "Range Not Satisfiable")
                        .with_detail(format!("The file is {size} bytes long."));
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    p = p.with_header(header::CONTENT_RANGE, v);
                }
                p
            }
            DownloadError::Storage(e) => super::problem::from_storage(e),
            DownloadError::Access(e) => super::problem::from_access(e),
            DownloadError::RateLimited(wait) => super::problem::rate_limited(*wait),
            DownloadError::ArtifactChanged => Problem::new(StatusCode::BAD_GATEWAY, "artifact_changed", "Bad Gateway")
                .with_detail("The file in storage does not match the registered artifact."),
        }
    }
}

impl IntoResponse for DownloadError {
    fn into_response(self) -> axum::response::Response {
        let problem = self.to_problem();
        match self.origin() {
            // The detail of a storage failure goes to the log, never to the client.
            Origin::Storage => tracing::warn!(code = problem.code, error = %self, "download failed in storage"),
            Origin::Client => tracing::info!(code = problem.code, reason = %self, "download refused"),
        }
        problem.into_response()
    }
}

/// Split `/d/{product}/{version}/{filename}` into a validated object key.
pub fn object_key_for_path(path: &str) -> Result<ObjectKey, DownloadError> {
    let rest = path.strip_prefix("/d/").ok_or(DownloadError::BadPath)?;
    let mut segments = Vec::with_capacity(3);
    for raw in rest.split('/') {
        segments.push(decode_segment(raw).map_err(|_| DownloadError::BadPath)?);
    }
    if segments.len() != 3 {
        return Err(DownloadError::BadPath);
    }
    ObjectKey::from_segments(&segments).map_err(|_| DownloadError::BadPath)
}

impl DownloadError {
    /// A refusal on the grounds of the URL, the entitlement or the quota —
    /// what `download.denied` records. Malformed paths, missing files,
    /// conditional and range answers, rate limiting and failures are not.
    pub fn is_denial(&self) -> bool {
        match self {
            DownloadError::Token(_) => true,
            DownloadError::Access(a) => a.is_denial(),
            _ => false,
        }
    }
}

/// What a request has established so far, for its events: nothing a client
/// could make up goes in before the URL's signature is verified.
#[derive(Debug, Default)]
struct Known {
    client: Option<std::net::IpAddr>,
    grant: Option<String>,
    subject: Subject,
}

pub async fn download(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<PeerAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> axum::response::Response {
    let mut known = Known::default();
    match serve(&state, peer, &method, &uri, &headers, &mut known).await {
        Ok(response) => response,
        Err(e) => {
            // A HEAD fetches nothing: probes of old links are not refusals
            // of a download.
            if e.is_denial() && method == Method::GET {
                let problem = e.to_problem();
                let detail = Detail::DownloadDenied {
                    reason: problem.code.to_owned(),
                    status: problem.status,
                    grant: known.grant,
                    client_ip: known.client.map(|ip| ip.to_string()),
                    surface: "data_plane".to_owned(),
                };
                state.record(known.subject, detail).await;
            }
            e.into_response()
        }
    }
}

async fn serve(
    state: &Arc<AppState>,
    peer: PeerAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    known: &mut Known,
) -> Result<axum::response::Response, DownloadError> {
    let client = client_ip(peer.0.ip(), headers, &state.trusted_proxies);
    known.client = Some(client);
    state.limits.data_plane_request(client).map_err(DownloadError::RateLimited)?;
    let key = object_key_for_path(uri.path())?;
    let presented = Presented {
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        client_ip: Some(client),
        now: state.clock.now_unix(),
        skew: state.clock_skew,
    };
    // A started grant stays resumable past its URL's expiry, for the resume
    // window; whether it was started is the grant's to say, below.
    let token = state
        .keys
        .verify_with_grace(&presented, state.downloads.resume_window)
        .map_err(|e| refused_credentials(state, client, e.into()))?;
    let expired = DownloadError::Token(TokenError::Expired { expired_at: token.expires, now: presented.now });
    if token.expired && token.grant.is_none() {
        return Err(refused_credentials(state, client, expired));
    }
    let span = tracing::Span::current();
    span.record("customer", token.customer.unwrap_or("-"));
    span.record("grant", token.grant.unwrap_or("-"));
    // Signed: the customer, grant and path are the gateway's own words now.
    known.grant = token.grant.map(str::to_owned);
    known.subject.customer = token.customer.map(str::to_owned);
    if let [p, v, f] = key.segments().collect::<Vec<_>>().as_slice() {
        known.subject.product = Some((*p).to_owned());
        known.subject.version = Some((*v).to_owned());
        known.subject.filename = Some((*f).to_owned());
    }

    // A URL minted for a grant is re-checked against the catalog (one store
    // round trip); a URL without one was minted by an operator (`tollgate
    // sign`) for the object at its path.
    let checked = match token.grant {
        Some(grant) => match recheck(state, token.customer, grant, &key, client).await {
            Ok(c) => {
                let resumable = c
                    .grant
                    .started_at
                    .is_some_and(|t| presented.now < t.0.saturating_add(state.downloads.resume_window));
                if token.expired && !resumable {
                    return Err(refused_credentials(state, client, expired));
                }
                Some(c)
            }
            Err(DownloadError::Access(e)) if e.store_unavailable() && state.downloads.fail_open && !token.expired => {
                tracing::warn!(error = %e, "store unavailable: serving the grant URL on its signature alone (fail open)");
                None
            }
            Err(e @ DownloadError::Access(AccessError::UnknownGrant)) => {
                return Err(refused_credentials(state, client, e));
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let artifact = checked.as_ref().map(|c| &c.artifact);
    known.subject.platform = artifact.map(|a| a.platform.clone());
    let key = match artifact {
        Some(a) => ObjectKey::parse(&a.storage_key).map_err(|_| DownloadError::ArtifactChanged)?,
        None => key,
    };

    let backend = state.storage.backend();
    let meta = state.metrics.time_storage(backend, "head", state.storage.head(&key)).await?;
    if artifact.is_some_and(|a| a.size != meta.size || a.etag.as_ref().is_some_and(|e| *e != meta.etag)) {
        return Err(DownloadError::ArtifactChanged);
    }
    match conditional::evaluate_preconditions(headers, method, &meta) {
        Precondition::Proceed => {}
        Precondition::NotModified => return Ok(not_modified(&meta)),
        Precondition::Failed => return Err(DownloadError::PreconditionFailed),
    }
    let range = match conditional::evaluate_range(headers, method, &meta) {
        RangeDecision::Full => None,
        RangeDecision::Partial(r) => Some(r),
        RangeDecision::Unsatisfiable => return Err(DownloadError::RangeNotSatisfiable { size: meta.size }),
    };

    let mut h = HeaderMap::with_capacity(12);
    // The artifact's name, not the storage key's, is what the customer asked for.
    let file_name = artifact.map_or(key.file_name(), |a| a.filename.as_str());
    object_headers(&mut h, &meta, file_name);
    if let Some(a) = artifact {
        artifact_headers(&mut h, a);
    }
    let length = match range {
        Some(r) => {
            h.insert(header::CONTENT_RANGE, header_value(&format!("bytes {}-{}/{}", r.start, r.last(), meta.size)));
            r.len
        }
        None => meta.size,
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));

    // HEAD is answered from metadata alone and never starts a grant; the
    // first GET does (and counts), whatever range it asks for.
    let (lease, initiated) = match &checked {
        Some(c) if method == Method::GET => start(state, c, presented.now).await?,
        _ => (None, false),
    };
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if initiated && let Some(g) = checked.as_ref().map(|c| &c.grant) {
        let detail = Detail::DownloadInitiated {
            grant: g.id.clone(),
            client_ip: Some(client.to_string()),
            user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
            range: range_header.clone(),
            delivery: "proxy".to_owned(),
        };
        state.record(known.subject.clone(), detail).await;
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let mut delivery = Delivery {
            state: state.clone(),
            subject: known.subject.clone(),
            grant: known.grant.clone(),
            range: range_header,
            expected: length,
            to_the_end: range.is_none_or(|r| r.last() + 1 == meta.size),
            started: std::time::Instant::now(),
            _gauge: state.active_downloads.start(),
            _lease: lease,
        };
        if length == 0 {
            delivery.end(0, true);
            Body::empty()
        } else {
            let stream = match state.metrics.time_storage(backend, "get", state.storage.get(&key, range, &meta)).await {
                Ok(s) => s,
                Err(e) => {
                    delivery.end(0, false);
                    return Err(e.into());
                }
            };
            Body::from_stream(storage::guarded(stream, length, state.storage_idle_timeout, delivery))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    *response.headers_mut() = h;
    Ok(response)
}

/// A refused token or grant counts against the client's address; past the
/// limit the answer is `429` (one map lookup) instead of the refusal.
fn refused_credentials(state: &AppState, client: std::net::IpAddr, e: DownloadError) -> DownloadError {
    match state.limits.refused_credential(client) {
        Ok(()) => e,
        Err(wait) => DownloadError::RateLimited(wait),
    }
}

/// The initiation, when this is the grant's first `GET`: every quota checked
/// and the download counted, atomically (once per grant, however many
/// requests race for it). Returns the lease this stream holds.
async fn start(state: &AppState, c: &Checked, now: u64) -> Result<(Option<LeaseGuard>, bool), DownloadError> {
    let g = &c.grant;
    let mut initiated = false;
    if g.started_at.is_none() {
        let limits = quota::limits_for(&state.downloads.defaults, &c.customer, Some(&c.entitlement));
        let plan = quota::plan(g, &c.artifact, &limits, &state.downloads, now);
        let store = state.catalog.store();
        match state.metrics.time_store(store.backend(), "quota_initiate", store.quotas().initiate(&plan)).await {
            Ok(Outcome::Started) => {
                tracing::info!(product = %g.product, version = %g.version, filename = %g.filename, "download initiated");
                initiated = true;
                record_start(state, g, now).await;
            }
            // Started by a racing request, or its record's update was lost:
            // the record learns the start (resumes past expiry need it).
            Ok(Outcome::AlreadyStarted { at }) => record_start(state, g, at).await,
            Ok(Outcome::Refused { index, used, oldest_lease_expires }) => {
                let exceeded = plan.exceeded(index, used, oldest_lease_expires).ok_or_else(|| {
                    AccessError::from(StoreError::Internal(format!("the store refused unlimited step {index}")))
                })?;
                return Err(AccessError::Quota(exceeded).into());
            }
            Err(e @ StoreError::Unavailable(_)) if state.downloads.fail_open => {
                tracing::warn!(error = %e, "store unavailable: download not counted (fail open)");
                return Ok((None, false));
            }
            Err(e) => return Err(AccessError::from(e).into()),
        }
    }
    Ok((Some(state.leases.hold(&g.customer, &g.id, quota::lease_sets(g), initiated).await), initiated))
}

/// What a response body carries along: the download gauge, the grant's
/// lease, and what `download.completed` will say when the body is done.
struct Delivery {
    state: Arc<AppState>,
    subject: Subject,
    grant: Option<String>,
    range: Option<String>,
    expected: u64,
    /// The response ends at the file's last byte.
    to_the_end: bool,
    started: std::time::Instant,
    _gauge: super::DownloadGuard,
    _lease: Option<LeaseGuard>,
}

impl StreamEnd for Delivery {
    fn end(&mut self, sent: u64, complete: bool) {
        let detail = Detail::DownloadCompleted {
            grant: self.grant.take(),
            result: if complete { Completion::Complete } else { Completion::Aborted },
            bytes_sent: sent,
            bytes_expected: self.expected,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            reached_end: complete && self.to_the_end,
            range: self.range.take(),
        };
        // Queued before the drop returns, so a shutdown that follows the
        // last download finds it.
        self.state.record_now(std::mem::take(&mut self.subject), detail);
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("grant", &self.grant).field("expected", &self.expected).finish_non_exhaustive()
    }
}

/// Write the grant's start into its record. The store's started mark is what
/// counts; the record lets later requests skip the quota step and tells
/// whether an expired URL may still resume. A failure is logged: the next
/// request repairs it.
async fn record_start(state: &AppState, g: &Grant, at: u64) {
    let started = Grant { started_at: Some(Timestamp(at)), ..g.clone() };
    if let Err(e) = state.catalog.put_grant(&started).await {
        tracing::warn!(grant = %g.id, error = %e, "could not record the grant's start");
    }
}

async fn recheck(
    state: &AppState,
    customer: Option<&str>,
    grant: &str,
    key: &ObjectKey,
    client: std::net::IpAddr,
) -> Result<Checked, DownloadError> {
    // Grant URLs always carry the customer; one without is not ours.
    let customer = customer.ok_or(AccessError::UnknownGrant)?;
    let parts: Vec<&str> = key.segments().collect();
    let [product, version, filename] = parts.as_slice() else {
        return Err(DownloadError::BadPath);
    };
    let version = semver::Version::parse(version).map_err(|_| DownloadError::NotFound)?;
    Ok(recheck_grant(&state.catalog, customer, grant, product, &version, filename, client).await?)
}

/// What the artifact record adds: the digest (RFC 9530 `Repr-Digest`, and the
/// hex form download scripts compare) and its registered content type.
fn artifact_headers(h: &mut HeaderMap, a: &Artifact) {
    if let Ok(raw) = hex::decode(&a.sha256) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        h.insert("repr-digest", header_value(&format!("sha-256=:{b64}:")));
        h.insert("x-checksum-sha256", header_value(&a.sha256));
    }
    if let Some(ct) = &a.content_type {
        h.insert(header::CONTENT_TYPE, header_value(ct));
    }
}

/// Headers every object response carries (200, 206, and most of them on 304).
fn object_headers(h: &mut HeaderMap, meta: &ObjectMeta, file_name: &str) {
    validator_headers(h, meta);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_TYPE, header_value(&content_type(meta, file_name)));
    h.insert(header::CONTENT_DISPOSITION, header_value(&conditional::content_disposition(file_name)));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

fn validator_headers(h: &mut HeaderMap, meta: &ObjectMeta) {
    h.insert(header::ETAG, header_value(&meta.etag));
    h.insert(header::LAST_MODIFIED, header_value(&httpdate::fmt_http_date(meta.last_modified)));
    // Signed URLs are per customer: shared caches must not keep the bytes.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
}

fn not_modified(meta: &ObjectMeta) -> axum::response::Response {
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    validator_headers(r.headers_mut(), meta);
    r
}

/// Storage's content type unless it is a generic default; else a guess from the
/// file name; else `application/octet-stream`.
fn content_type(meta: &ObjectMeta, file_name: &str) -> String {
    match meta.content_type.as_deref() {
        Some(ct) if ct != "application/octet-stream" && ct != "binary/octet-stream" => ct.to_owned(),
        _ => mime_guess::from_path(file_name).first_or_octet_stream().essence_str().to_owned(),
    }
}

/// A header value from text we built; anything unrepresentable becomes empty
/// rather than a panic.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_paths_map_to_keys() {
        assert_eq!(object_key_for_path("/d/app/1.0/app.tar.gz").unwrap().as_str(), "app/1.0/app.tar.gz");
        assert_eq!(object_key_for_path("/d/app/1.0/My%20App.dmg").unwrap().as_str(), "app/1.0/My App.dmg");
        for bad in [
            "/d/app/1.0",
            "/d/app/1.0/x/y",
            "/d/app/../x",
            "/d/app/1.0/..%2F..%2Fetc%2Fpasswd",
            "/d/app/%2e%2e/x",
            "/d/app/1.0/%00",
            "/d/app/1.0/%zz",
            "/x/app/1.0/a",
        ] {
            assert!(object_key_for_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_error_has_a_problem_with_a_code() {
        let errors = [
            DownloadError::BadPath,
            DownloadError::Token(TokenError::InvalidSignature),
            DownloadError::NotFound,
            DownloadError::PreconditionFailed,
            DownloadError::RangeNotSatisfiable { size: 3 },
            DownloadError::Storage(StorageError::Unavailable("secret detail".into())),
            DownloadError::Storage(StorageError::Upstream("secret detail".into())),
        ];
        let expected = [
            (400, "invalid_path"),
            (403, "invalid_signature"),
            (404, "not_found"),
            (412, "precondition_failed"),
            (416, "range_not_satisfiable"),
            (503, "upstream_unavailable"),
            (502, "upstream_unavailable"),
        ];
        for (e, (status, code)) in errors.iter().zip(expected) {
            let p = e.to_problem();
            assert_eq!((p.status, p.code), (status, code), "{e:?}");
            assert!(!p.detail.unwrap_or_default().contains("secret detail"));
        }
    }

    #[test]
    fn content_type_prefers_specific_storage_types() {
        let mut m =
            ObjectMeta { size: 1, last_modified: std::time::UNIX_EPOCH, etag: "\"x\"".into(), content_type: None };
        assert_eq!(content_type(&m, "a.zip"), "application/zip");
        assert_eq!(content_type(&m, "a.unknownext"), "application/octet-stream");
        m.content_type = Some("binary/octet-stream".into());
        assert_eq!(content_type(&m, "a.zip"), "application/zip");
        m.content_type = Some("application/x-apple-diskimage".into());
        assert_eq!(content_type(&m, "a.zip"), "application/x-apple-diskimage");
    }
}
