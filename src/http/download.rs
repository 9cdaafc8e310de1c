//! The data plane: `GET`/`HEAD /d/{product}/{version}/{filename}?<token>`.
//!
//! The handler parses the request and renders outcomes; the lifecycle
//! (token, grant re-check, initiation, lease, events) is [`crate::downloads`].
//! Order of work: rate limit, redeem (nothing touches storage before the
//! token verifies), validators and ranges on the object's metadata, then
//! deliver.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use axum::response::IntoResponse;
use base64::Engine as _;

use super::byteranges::Multipart;
use super::conditional::{self, Precondition, RangeDecision};
use super::problem::from_download;
use super::{PeerAddr, client_ip};
use crate::catalog::Artifact;
use crate::downloads::{self, DeliverRequest, Delivered, DownloadError, RedeemRequest};
use crate::server::ClientCertificate;
use crate::services::Services;
use crate::storage::{ObjectMeta, naming};

impl IntoResponse for DownloadError {
    fn into_response(self) -> axum::response::Response {
        from_download(&self).logged("data_plane", &self)
    }
}

pub async fn download(
    State(svc): State<Arc<Services>>,
    Extension(peer): Extension<PeerAddr>,
    certificate: Option<Extension<ClientCertificate>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> axum::response::Response {
    let certificate = certificate.map(|Extension(c)| c);
    let fingerprint = certificate.as_ref().map(|c| c.sha256.as_ref());
    match serve(&svc, peer, fingerprint, &method, &uri, &headers).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    svc: &Arc<Services>,
    peer: PeerAddr,
    client_certificate: Option<&str>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<axum::response::Response, DownloadError> {
    let client = client_ip(peer.0.ip(), headers, &svc.trusted_proxies);
    // A CDN's cache fills come from a few addresses; the ones that show an
    // origin secret are not held to one client's request rate.
    if !svc.cdn.origin_admits(&crate::cdn::OriginProof { headers, client_certificate }) {
        svc.limits.data_plane_request(client).map_err(DownloadError::RateLimited)?;
    }
    let fetch = method == Method::GET;
    let request = RedeemRequest {
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        client,
        fetch,
        headers: Some(headers),
        client_certificate,
    };
    let redemption = downloads::redeem(svc, &request).await?;
    let meta = &redemption.meta;
    match conditional::evaluate_preconditions(headers, method, meta) {
        Precondition::Proceed => {}
        Precondition::NotModified => return Ok(not_modified(meta)),
        Precondition::Failed => return Err(DownloadError::PreconditionFailed),
    }
    let ranges = match conditional::evaluate_range(headers, method, meta) {
        RangeDecision::Full => Vec::new(),
        RangeDecision::Partial(r) => vec![r],
        RangeDecision::Multi(rs) => rs,
        RangeDecision::Unsatisfiable => return Err(DownloadError::RangeNotSatisfiable { size: meta.size }),
    };

    let mut h = HeaderMap::with_capacity(12);
    let registered = redemption.checked.as_ref().and_then(|c| c.artifact.content_type.as_deref());
    object_headers(&mut h, meta, redemption.file_name(), registered);
    if let Some(c) = &redemption.checked {
        artifact_headers(&mut h, &c.artifact);
    }
    // Several ranges: a multipart body, each part typed as the file is.
    let multipart = (ranges.len() > 1).then(|| {
        let file_type = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream");
        Multipart::new(&ranges, meta.size, file_type)
    });
    let length = match (&ranges[..], &multipart) {
        (_, Some(m)) => {
            h.insert(header::CONTENT_TYPE, header_value(&m.content_type()));
            m.content_length()
        }
        ([r], None) => {
            h.insert(header::CONTENT_RANGE, header_value(&format!("bytes {}-{}/{}", r.start, r.last(), meta.size)));
            r.len
        }
        _ => meta.size,
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));

    // HEAD is answered from metadata alone and never starts a grant; the
    // first GET does (and counts), whatever range it asks for.
    let body = if fetch {
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        let deliver =
            DeliverRequest { ranges: &ranges, range_header: text(header::RANGE), user_agent: text(header::USER_AGENT) };
        match (redemption.deliver(svc, deliver).await?, multipart) {
            (Delivered::Proxy(Some(stream)), Some(m)) => Body::from_stream(m.frame(stream)),
            (Delivered::Proxy(Some(stream)), None) => Body::from_stream(stream),
            (Delivered::Proxy(None), _) => Body::empty(),
            (Delivered::Redirect(r), _) => return Ok(redirect(&r, prefers_no_redirect(headers))),
        }
    } else {
        Body::empty()
    };
    let mut response = Response::new(body);
    *response.status_mut() = if ranges.is_empty() { StatusCode::OK } else { StatusCode::PARTIAL_CONTENT };
    *response.headers_mut() = h;
    Ok(response)
}

/// A `redirect` delivery: `303 See Other` to the presigned storage URL, or,
/// for a client that asked `Prefer: no-redirect` (a script that wants the
/// URL, not the bytes), `200` with it in a JSON body. Neither may be
/// cached: the URL is good for a minute and was counted.
fn redirect(r: &downloads::Redirect, json: bool) -> axum::response::Response {
    let expires_at = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.expires_at));
    let mut response = if json {
        let body = serde_json::json!({ "url": r.location, "expires_at": r.expires_at });
        let mut response = axum::Json(body).into_response();
        response.headers_mut().insert("preference-applied", HeaderValue::from_static("no-redirect"));
        response
    } else {
        let mut response = StatusCode::SEE_OTHER.into_response();
        response.headers_mut().insert(header::LOCATION, header_value(&r.location));
        response
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::EXPIRES, header_value(&expires_at));
    response
}

/// Does the request carry the `Prefer: no-redirect` preference (RFC 7240;
/// several preferences may share the header, each with parameters)?
fn prefers_no_redirect(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.split(';').next())
        .any(|token| token.trim().eq_ignore_ascii_case("no-redirect"))
}

/// What the artifact record adds: the digest (RFC 9530 `Repr-Digest`, and the
/// hex form download scripts compare).
fn artifact_headers(h: &mut HeaderMap, a: &Artifact) {
    if let Ok(raw) = hex::decode(&a.sha256) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        h.insert("repr-digest", header_value(&format!("sha-256=:{b64}:")));
        h.insert("x-checksum-sha256", header_value(&a.sha256));
    }
}

/// Headers every object response carries (200, 206, and most of them on 304);
/// `registered` is the artifact's content type, if it has one.
fn object_headers(h: &mut HeaderMap, meta: &ObjectMeta, file_name: &str, registered: Option<&str>) {
    validator_headers(h, meta);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_TYPE, header_value(&naming::content_type(registered, meta, file_name)));
    h.insert(header::CONTENT_DISPOSITION, header_value(&naming::content_disposition(file_name)));
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

/// A header value from text we built; anything unrepresentable becomes empty
/// rather than a panic.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_no_redirect_preference_is_found_among_others() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("prefer", HeaderValue::from_str(v).unwrap());
            }
            prefers_no_redirect(&h)
        };
        assert!(with(&["no-redirect"]));
        assert!(with(&["respond-async, No-Redirect"]));
        assert!(with(&["wait=5", "no-redirect; x=1"]));
        assert!(!with(&[]));
        assert!(!with(&["return=minimal"]));
        assert!(!with(&["no-redirects", "x=no-redirect"]));
    }

    #[test]
    fn a_redirect_is_never_cached_and_names_its_expiry() {
        let r =
            downloads::Redirect { location: "http://s3.test/b/k?X-Amz-Signature=x".into(), expires_at: 1_700_000_060 };
        let answer = redirect(&r, false);
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        assert_eq!(answer.headers()[header::LOCATION], "http://s3.test/b/k?X-Amz-Signature=x");
        assert_eq!(answer.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(answer.headers()[header::EXPIRES], "Tue, 14 Nov 2023 22:14:20 GMT");
        let answer = redirect(&r, true);
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(answer.headers().get(header::LOCATION).is_none());
        assert_eq!(answer.headers()["preference-applied"], "no-redirect");
    }
}
