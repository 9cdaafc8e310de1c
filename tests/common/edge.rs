//! A stand-in CDN edge: an HTTP server in front of the gateway that checks
//! each request's CDN token with a check written from that CDN's
//! documentation (not with Tollgate's code), refuses with `403` what fails,
//! and forwards the rest to the origin with the origin secret, streaming the
//! answer back. It caches nothing, so every customer request reaches the
//! origin (the worst case for an origin).
#![allow(clippy::unwrap_used, reason = "test harness: a failure to start is a failed run")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// What the edge checks a request with: `Err` is the reason it refuses.
pub type Check = Arc<dyn Fn(&http::request::Parts, u64) -> Result<(), String> + Send + Sync>;

pub struct Edge {
    pub addr: SocketAddr,
    /// Requests the edge let through to the origin.
    pub forwarded: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// A bound edge that is not serving yet (its address goes into the
/// gateway's configuration first).
pub struct Bound(TcpListener);

impl Bound {
    pub async fn new() -> Bound {
        Bound(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.0.local_addr().unwrap())
    }

    /// Serve: check, then forward to `origin` with `secret` (header, value).
    pub fn serve(self, origin: SocketAddr, secret: (&'static str, String), check: Check) -> Edge {
        let addr = self.0.local_addr().unwrap();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let count = forwarded.clone();
        let listener = self.0;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (check, secret, count) = (check.clone(), secret.clone(), count.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (check, secret, count) = (check.clone(), secret.clone(), count.clone());
                        async move { Ok::<_, Infallible>(handle(req, origin, &secret, &check, &count).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        Edge { addr, forwarded, task }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: u16, body: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(body.to_owned())).map_err(|never| match never {}).boxed();
    Response::builder().status(status).body(body).unwrap()
}

async fn handle(
    req: Request<Incoming>,
    origin: SocketAddr,
    secret: &(&'static str, String),
    check: &Check,
    count: &AtomicUsize,
) -> Response<Body> {
    let (mut parts, _) = req.into_parts();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    if let Err(why) = check(&parts, now) {
        return text(403, &format!("edge: {why}"));
    }
    count.fetch_add(1, Ordering::SeqCst);
    // SECURITY (the CDN's, mirrored): a client cannot bring its own origin
    // secret; the edge sets it.
    parts.headers.remove(secret.0);
    parts.headers.insert(secret.0, secret.1.parse().unwrap());
    parts.headers.insert("host", origin.to_string().parse().unwrap());
    let Ok(tcp) = TcpStream::connect(origin).await else { return text(502, "edge: origin down") };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await else {
        return text(502, "edge: origin handshake");
    };
    tokio::spawn(conn);
    let forward = Request::from_parts(parts, Full::new(Bytes::new()));
    match sender.send_request(forward).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(_) => text(502, "edge: origin failed"),
    }
}

/// The query parameter `name`, as sent.
pub fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|p| p.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// CloudFront, canned policy ("Create a signed URL using a canned policy"):
/// rebuild the policy from the URL without the signing parameters, undo
/// CloudFront's base64 substitutions, check the RSA SHA-1 signature with
/// the public key, then the expiry.
pub fn cloudfront_canned(base_url: String, key_pair_id: &'static str, public_key_pkcs1: Vec<u8>) -> Check {
    Arc::new(move |parts, now| {
        let query = parts.uri.query().ok_or("no query")?;
        let expires: u64 = param(query, "Expires").ok_or("no Expires")?.parse().map_err(|_| "bad Expires")?;
        let signature = param(query, "Signature").ok_or("no Signature")?;
        if param(query, "Key-Pair-Id") != Some(key_pair_id) {
            return Err("unknown Key-Pair-Id".into());
        }
        let rest: Vec<&str> = query
            .split('&')
            .filter(|p| !["Expires=", "Signature=", "Key-Pair-Id=", "Hash-Algorithm="].iter().any(|n| p.starts_with(n)))
            .collect();
        let mut resource = format!("{base_url}{}", parts.uri.path());
        if !rest.is_empty() {
            resource = format!("{resource}?{}", rest.join("&"));
        }
        let policy = format!(
            "{{\"Statement\":[{{\"Resource\":\"{resource}\",\"Condition\":{{\"DateLessThan\":{{\"AWS:EpochTime\":{expires}}}}}}}]}}"
        );
        let standard = signature.replace('-', "+").replace('_', "=").replace('~', "/");
        let sig = base64::engine::general_purpose::STANDARD.decode(standard).map_err(|_| "bad Signature")?;
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            &public_key_pkcs1,
        );
        key.verify(policy.as_bytes(), &sig).map_err(|_| "signature mismatch")?;
        if now >= expires {
            return Err("expired".into());
        }
        Ok(())
    })
}

/// Cloudflare `is_timed_hmac_valid_v0(key, http.request.uri, ttl, now, 8)`
/// ("Configure token authentication"): the URI is `<path>?verify=<ts>-<mac>`,
/// the MAC base64(HMAC-SHA256(key, path + ts)), URL-encoded.
pub fn cloudflare(key: &'static str, ttl: u64) -> Check {
    use hmac::{KeyInit as _, Mac as _};
    Arc::new(move |parts, now| {
        let query = parts.uri.query().ok_or("no query")?;
        let value = param(query, "verify").ok_or("no verify")?;
        let (ts, mac) = value.split_once('-').ok_or("bad verify")?;
        if ts.len() != 10 {
            return Err("the timestamp is ten digits".into());
        }
        let issued: u64 = ts.parse().map_err(|_| "bad timestamp")?;
        let mac = percent_encoding::percent_decode_str(mac).decode_utf8().map_err(|_| "bad escape")?;
        let mac = base64::engine::general_purpose::STANDARD.decode(mac.as_bytes()).map_err(|_| "bad base64")?;
        let mut h = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        h.update(parts.uri.path().as_bytes());
        h.update(ts.as_bytes());
        h.verify_slice(&mac).map_err(|_| "MAC mismatch")?;
        if now >= issued + ttl {
            return Err("expired".into());
        }
        Ok(())
    })
}

/// Akamai EdgeAuth 2.0, a URL token in the `__token__` cookie: the fields
/// before `~hmac=`, then `~url=<path>`, HMAC-SHA256 under the hex key, hex.
pub fn akamai_cookie(key_hex: &'static str) -> Check {
    use hmac::{KeyInit as _, Mac as _};
    Arc::new(move |parts, now| {
        let cookies = parts.headers.get("cookie").ok_or("no cookie")?.to_str().map_err(|_| "bad cookie")?;
        let token = cookies
            .split(';')
            .map(str::trim)
            .find_map(|c| c.strip_prefix("__token__="))
            .ok_or("no __token__ cookie")?;
        let (fields, mac) = token.rsplit_once("~hmac=").ok_or("no hmac")?;
        let mut h = hmac::Hmac::<sha2::Sha256>::new_from_slice(&hex::decode(key_hex).unwrap()).unwrap();
        h.update(format!("{fields}~url={}", parts.uri.path()).as_bytes());
        h.verify_slice(&hex::decode(mac).map_err(|_| "bad hex")?).map_err(|_| "MAC mismatch")?;
        let exp: u64 =
            fields.split('~').find_map(|f| f.strip_prefix("exp=")).ok_or("no exp")?.parse().map_err(|_| "bad exp")?;
        if now >= exp {
            return Err("expired".into());
        }
        Ok(())
    })
}
