//! Update feeds that stock update clients read, filtered by entitlement:
//! the Tauri updater's dynamic server (`/v1/updates/tauri/…`), a Sparkle
//! appcast (`/v1/updates/sparkle/{product}/appcast.xml`) and
//! electron-updater's generic provider (`/v1/updates/electron/{product}/`). Every
//! download link in them is a grant from `downloads::issue` (through
//! `downloads::upgrade` for "the newest newer than mine"), so the
//! maintenance window, channel, platform, yank, quota and rollout rules
//! apply exactly as on `POST /v1/downloads`. The callers authenticate as on
//! the customer API (`Authorization: Bearer`, or HTTP Basic with the key
//! as password, as stock clients send it).

#![allow(
    unused_qualifications,
    reason = "utoipa's generated code for `params(SomeIntoParams)` names the type by a qualified path"
)]

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use semver::Version;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::customer_api::{ApiError, Caller, path, query};
use super::problem::Problem;
use super::{PeerAddr, client_ip};
use crate::catalog::{Channel, Timestamp};
use crate::downloads::{self, Granted, IssueRequest, UpgradeRequest};
use crate::entitlement::access::{self, AccessError, Filter, Wanted};
use crate::services::Services;

/// Ids in the Tauri request: `target` (`linux`, `darwin`, `windows`),
/// `arch` (`x86_64`, `aarch64`, `i686`, `armv7`), `bundle_type`.
fn check_word(field: &'static str, v: &str) -> Result<(), ApiError> {
    if (1..=32).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(ApiError::Invalid(field, format!("{v:?}: 1-32 of a-z A-Z 0-9 _")))
    }
}

fn current_version(v: &str) -> Result<Version, ApiError> {
    Version::parse(v).map_err(|e| ApiError::Invalid("current_version", format!("{v:?} is not semver: {e}")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TauriQuery {
    /// `linux`, `darwin` or `windows` (Tauri's `{{target}}`).
    target: String,
    /// `x86_64`, `aarch64`, `i686` or `armv7` (`{{arch}}`).
    arch: String,
    /// The installed version (`{{current_version}}`).
    current_version: String,
    /// `appimage`, `deb`, `rpm`, `msi`, `nsis` or `app` (`{{bundle_type}}`,
    /// Tauri 2.1+): a file registered for `{target}-{arch}-{bundle_type}` is
    /// preferred to one for `{target}-{arch}`.
    bundle_type: Option<String>,
}

/// What the Tauri updater reads (v2 "dynamic update server" format).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TauriUpdate {
    version: String,
    /// RFC 3339.
    pub_date: Option<Timestamp>,
    /// A grant URL: no header needed.
    url: String,
    /// The contents of the file's `.sig`.
    signature: String,
    notes: String,
}

/// `GET /v1/updates/tauri/{product}?target=&arch=&current_version=`: `204`
/// when nothing newer may be installed, else the newest release's file for
/// the platform `{target}-{arch}` with a fresh grant URL.
#[utoipa::path(get, path = "/v1/updates/tauri/{product}", tag = "customer", security(("api_key" = [])), params(("product" = String, Path, description = "product id"), TauriQuery), responses((status = 200, body = TauriUpdate), (status = 204, description = "no newer release this customer may install (none, not entitled, over quota, or staged out)"), (status = 409, description = "`unsigned_update`: the newest release's file has no signature to give the updater", body = Problem)))]
pub(crate) async fn tauri(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<TauriQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let product = path(p)?;
    let q = query(q)?;
    tauri_answer(&s, &caller, peer, &headers, &product, &q).await
}

/// The same, with the parameters in the path (Tauri's URL template
/// `…/{{target}}/{{arch}}/{{current_version}}`).
#[utoipa::path(get, path = "/v1/updates/tauri/{product}/{target}/{arch}/{current_version}", tag = "customer", security(("api_key" = [])), params(("product" = String, Path, description = "product id"), ("target" = String, Path, description = "linux, darwin, windows"), ("arch" = String, Path, description = "x86_64, aarch64, i686, armv7"), ("current_version" = String, Path, description = "the installed version")), responses((status = 200, body = TauriUpdate), (status = 204, description = "no newer release this customer may install")))]
pub(crate) async fn tauri_path(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (product, target, arch, current_version) = path(p)?;
    let q = TauriQuery { target, arch, current_version, bundle_type: None };
    tauri_answer(&s, &caller, peer, &headers, &product, &q).await
}

async fn tauri_answer(
    s: &Arc<Services>,
    caller: &Caller,
    peer: PeerAddr,
    headers: &HeaderMap,
    product: &str,
    q: &TauriQuery,
) -> Result<Response, ApiError> {
    // A name no product can have is refused, not answered "no update".
    crate::catalog::repo::check_id("product", product)?;
    check_word("target", &q.target)?;
    check_word("arch", &q.arch)?;
    if let Some(b) = &q.bundle_type {
        check_word("bundle_type", b)?;
    }
    let from = current_version(&q.current_version)?;
    let client = client_ip(peer.0.ip(), headers, &s.trusted_proxies);
    let base = format!("{}-{}", q.target, q.arch);
    let mut asked = vec![];
    if let Some(b) = &q.bundle_type {
        asked.push(format!("{base}-{b}"));
    }
    asked.push(base);
    // The vendor's names for these platforms, where it has its own.
    let record = s.catalog.product(product).await?;
    let platforms: Vec<&str> =
        asked.iter().map(|p| record.as_ref().map_or(p.as_str(), |r| r.update_platform(p))).collect();
    for (i, &platform) in platforms.iter().enumerate() {
        let req = UpgradeRequest {
            customer: &caller.customer,
            product,
            from: &from,
            constraint: None,
            platform,
            channel: None,
            client,
            surface: "tauri",
        };
        let Some((release, granted)) = offered(downloads::upgrade(s, &req).await)? else { continue };
        // A bundle-specific file is looked for first; without one, the
        // platform's.
        if i + 1 < platforms.len() && granted.issued.artifact.platform != platform {
            continue;
        }
        let artifact = &granted.issued.artifact;
        let Some(signature) = artifact.signature.clone() else {
            return Err(ApiError::UnsignedUpdate(artifact.filename.clone()));
        };
        let body = TauriUpdate {
            version: release.release.version.to_string(),
            pub_date: release.release.published_at,
            url: granted.issued.url.clone(),
            signature,
            notes: release.release.notes.clone().unwrap_or_default(),
        };
        return Ok(no_store(axum::Json(body).into_response()));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An update offer, or none: a refusal on the entitlement's or the quota's
/// grounds (recorded by `issue` as `download.denied`) is "no update" to an
/// update client, which cannot act on it anyway.
fn offered<T>(r: Result<Option<T>, AccessError>) -> Result<Option<T>, ApiError> {
    match r {
        Ok(found) => Ok(found),
        Err(e) if e.denial().is_some() => Ok(None),
        Err(AccessError::NotFound("artifact")) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    r
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SparkleQuery {
    /// Only releases on channels this one covers (default `stable`).
    channel: Option<Channel>,
    /// The platform of the files to offer (default `macos`).
    platform: Option<String>,
    /// The installed version: only newer releases are listed.
    current_version: Option<String>,
}

/// The most items an appcast lists (newest first): enough for clients on
/// an older OS to find one whose `minimumSystemVersion` they meet.
pub const APPCAST_ITEMS: usize = 3;

/// `GET /v1/updates/sparkle/{product}/appcast.xml`: an RSS 2.0 appcast of
/// the newest releases the caller may install, each enclosure a fresh grant
/// URL with the file's length and EdDSA signature.
#[utoipa::path(get, path = "/v1/updates/sparkle/{product}/appcast.xml", tag = "customer", security(("api_key" = [])), params(("product" = String, Path, description = "product id"), SparkleQuery), responses((status = 200, description = "an RSS 2.0 appcast with Sparkle's namespace", content_type = "application/rss+xml")))]
pub(crate) async fn sparkle(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<SparkleQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let product = path(p)?;
    let q = query(q)?;
    let asked = q.platform.as_deref().unwrap_or("macos");
    let from = q.current_version.as_deref().map(current_version).transpose()?;
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    let record = s.catalog.product(&product).await?;
    let platform = record.as_ref().map_or(asked, |r| r.update_platform(asked));
    let channel = Some(q.channel.unwrap_or(Channel::Stable));
    let filter = Filter { channel, platform: Some(platform) };
    let newer = downloads::offers(&s, &caller.customer, &product, filter, from.as_ref(), None).await?;
    let title = record.as_ref().map_or_else(|| product.clone(), |p| p.name.clone());
    let mut items = Vec::new();
    for d in newer.iter().take(APPCAST_ITEMS) {
        let files: Vec<_> = d.artifacts.iter().map(|(a, _)| a.clone()).collect();
        let Ok(artifact) = access::pick_artifact(&files, platform) else { continue };
        let req = IssueRequest {
            customer: &caller.customer,
            product: &product,
            version: &d.release.version,
            wanted: Wanted::File(&artifact.filename),
            client,
            surface: "sparkle",
            by: None,
        };
        if let Some(granted) = offered(downloads::issue(&s, &req).await.map(Some))? {
            items.push(appcast_item(&d.release, &granted));
        }
    }
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\" \
         xmlns:sparkle=\"http://www.andymatuschak.org/xml-namespaces/sparkle\">\n<channel>\n<title>{}</title>\n{}</channel>\n</rss>\n",
        xml_text(&title),
        items.concat()
    );
    let mut response = (StatusCode::OK, xml).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/rss+xml; charset=utf-8"));
    Ok(no_store(response))
}

fn appcast_item(release: &crate::catalog::Release, granted: &Granted) -> String {
    let a = &granted.issued.artifact;
    let version = xml_text(&release.version.to_string());
    let mut item = format!("<item>\n<title>{version}</title>\n");
    if let Some(t) = release.published_at {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.0);
        item.push_str(&format!("<pubDate>{}</pubDate>\n", httpdate::fmt_http_date(at)));
    }
    item.push_str(&format!("<sparkle:version>{version}</sparkle:version>\n"));
    item.push_str(&format!("<sparkle:shortVersionString>{version}</sparkle:shortVersionString>\n"));
    if let Some(m) = &release.minimum_system_version {
        item.push_str(&format!("<sparkle:minimumSystemVersion>{}</sparkle:minimumSystemVersion>\n", xml_text(m)));
    }
    if release.critical {
        item.push_str("<sparkle:criticalUpdate></sparkle:criticalUpdate>\n");
    }
    if let Some(notes) = &release.notes {
        item.push_str(&format!("<description>{}</description>\n", xml_text(&super::notes::to_html(notes))));
    }
    let signature = a.signature.as_deref().map(|s| format!(" sparkle:edSignature=\"{}\"", xml_text(s.trim())));
    item.push_str(&format!(
        "<enclosure url=\"{}\" length=\"{}\" type=\"{}\"{}/>\n</item>\n",
        xml_text(&granted.issued.url),
        a.size,
        xml_text(a.content_type.as_deref().unwrap_or("application/octet-stream")),
        signature.unwrap_or_default()
    ));
    item
}

/// The platforms an electron-updater channel file covers, by its suffix
/// (`latest.yml`, `latest-mac.yml`, `latest-linux.yml`,
/// `latest-linux-arm64.yml`, …): the key a product's `update_platforms`
/// names it by, and the platforms an artifact is in when its platform is
/// one of them or starts with one and `-`.
fn electron_platforms(suffix: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match suffix {
        "" => ("electron-windows", &["windows"]),
        "-mac" => ("electron-mac", &["darwin", "macos"]),
        "-linux" => ("electron-linux", &["linux-x86_64"]),
        "-linux-arm64" => ("electron-linux-arm64", &["linux-aarch64", "linux-arm64"]),
        "-linux-armv7l" => ("electron-linux-armv7l", &["linux-armv7"]),
        _ => return None,
    })
}

fn platform_in(platform: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| platform == *p || platform.strip_prefix(p).is_some_and(|rest| rest.starts_with('-')))
}

/// `{channel}{suffix}` of a channel file name: electron-updater's channel
/// (`latest` is stable) and the platforms.
fn electron_channel(file: &str) -> Option<(Channel, (&'static str, &'static [&'static str]))> {
    let stem = file.strip_suffix(".yml")?;
    for (name, channel) in
        [("latest", Channel::Stable), ("rc", Channel::Rc), ("beta", Channel::Beta), ("alpha", Channel::Alpha)]
    {
        if let Some(suffix) = stem.strip_prefix(name) {
            return electron_platforms(suffix).map(|p| (channel, p));
        }
    }
    None
}

/// `GET /v1/updates/electron/{product}/{file}.yml`: the channel file
/// electron-updater's generic provider reads (`url` = this directory): the
/// newest release the caller may install on the file's platforms, its files
/// with their SHA-512 and sizes (and `blockMapSize` when a `.blockmap` was
/// published), their URLs relative to this directory.
#[utoipa::path(get, path = "/v1/updates/electron/{product}/{file}", tag = "customer", security(("api_key" = [])), params(("product" = String, Path, description = "product id"), ("file" = String, Path, description = "latest.yml, latest-mac.yml, latest-linux.yml, latest-linux-arm64.yml, beta.yml, …")), responses((status = 200, description = "electron-builder's update info, YAML", content_type = "text/yaml"), (status = 404, description = "no such channel file, or no release to offer", body = Problem)))]
pub(crate) async fn electron_channel_file(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (product, file) = path(p)?;
    let (channel, (key, defaults)) =
        electron_channel(&file).ok_or(ApiError::Access(AccessError::NotFound("channel file")))?;
    let record = s.catalog.product(&product).await?;
    let mapped = record.as_ref().and_then(|r| r.update_platforms.get(key)).map(String::as_str);
    let mapped = mapped.as_slice();
    let platforms: &[&str] = if mapped.is_empty() { defaults } else { mapped };
    let filter = Filter { channel: Some(channel), platform: None };
    // The client compares versions itself: every offer, newest first.
    let newest_first = downloads::offers(&s, &caller.customer, &product, filter, None, None).await?;
    for d in &newest_first {
        let all: Vec<&crate::catalog::Artifact> = d.artifacts.iter().map(|(a, _)| a).collect();
        let files: Vec<String> = all
            .iter()
            .filter(|a| platform_in(&a.platform, platforms) && !access::is_update_metadata(&a.filename))
            .filter_map(|a| {
                let sha512 = base64_of_hex(a.sha512.as_deref()?)?;
                let blockmap = all.iter().find(|b| b.filename == format!("{}.blockmap", a.filename));
                let mut entry = format!(
                    "  - url: {}\n    sha512: {}\n    size: {}\n",
                    yaml_string(&format!("{}/{}", d.release.version, a.filename)),
                    yaml_string(&sha512),
                    a.size
                );
                if let Some(b) = blockmap {
                    entry.push_str(&format!("    blockMapSize: {}\n", b.size));
                }
                Some(entry)
            })
            .collect();
        let Some(first) = all.iter().find(|a| {
            platform_in(&a.platform, platforms) && !access::is_update_metadata(&a.filename) && a.sha512.is_some()
        }) else {
            continue;
        };
        let r = &d.release;
        let mut yaml = format!("version: {}\nfiles:\n{}", yaml_string(&r.version.to_string()), files.concat());
        yaml.push_str(&format!("path: {}\n", yaml_string(&format!("{}/{}", r.version, first.filename))));
        yaml.push_str(&format!(
            "sha512: {}\n",
            yaml_string(&base64_of_hex(first.sha512.as_deref().unwrap_or("")).unwrap_or_default())
        ));
        if let Some(t) = r.published_at {
            yaml.push_str(&format!("releaseDate: {}\n", yaml_string(&t.to_string())));
        }
        yaml.push_str(&format!("releaseName: {}\n", yaml_string(&r.version.to_string())));
        if let Some(notes) = &r.notes {
            yaml.push_str(&format!("releaseNotes: {}\n", yaml_string(&super::notes::to_html(notes))));
        }
        let mut response = (StatusCode::OK, yaml).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/yaml; charset=utf-8"));
        return Ok(no_store(response));
    }
    Err(ApiError::Access(AccessError::NotFound("release")))
}

/// `GET /v1/updates/electron/{product}/{version}/{filename}`: a file a
/// channel file names; a fresh grant for it, `302` to its URL (a path on
/// this origin; the grant URL needs no header).
#[utoipa::path(get, path = "/v1/updates/electron/{product}/{version}/{filename}", tag = "customer", security(("api_key" = [])), params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version"), ("filename" = String, Path, description = "file name")), responses((status = 302, description = "to the file's grant URL"), (status = 403, description = "refused: the code names the rule", body = Problem)))]
pub(crate) async fn electron_file(
    State(s): State<Arc<Services>>,
    Extension(caller): Extension<Caller>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (product, version, filename) = path(p)?;
    let version = Version::parse(&version).map_err(|_| ApiError::InvalidVersion(version.clone()))?;
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    if access::is_update_metadata(&filename) {
        return electron_blockmap(&s, &caller, client, &product, &version, &filename).await;
    }
    let req = IssueRequest {
        customer: &caller.customer,
        product: &product,
        version: &version,
        wanted: Wanted::File(&filename),
        client,
        surface: "electron",
        by: None,
    };
    let granted = downloads::issue(&s, &req).await?;
    // The grant URL on this origin, as a path: the client asked this
    // listener, whatever `server.public_url` says (an `edge` product's URL
    // is the CDN's, absolute).
    let url = granted.issued.url.as_str();
    let local = url.strip_prefix(s.downloads.urls.public_url.trim_end_matches('/')).filter(|p| p.starts_with("/d/"));
    let location = HeaderValue::from_str(local.unwrap_or(url))
        .map_err(|_| ApiError::Access(AccessError::EdgeSign("the URL is not a header value".into())))?;
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(no_store(response))
}

/// A release's `.blockmap` (electron-builder's block checksums of a file,
/// which a differential update compares with the installed version's):
/// metadata, not a download, so it is served to a caller the release is
/// downloadable for without a grant and without counting against a quota.
/// The bytes it lets the client skip are what the grant's range requests
/// then leave out.
async fn electron_blockmap(
    s: &Services,
    caller: &Caller,
    client: std::net::IpAddr,
    product: &str,
    version: &Version,
    filename: &str,
) -> Result<Response, ApiError> {
    // The rules a download of the release would meet, but the quota's: the
    // customer's networks, the entitlement, a rollout that reaches it.
    access::check_address(&caller.customer, client)?;
    let now = Timestamp(s.clock.now_unix());
    let releases = access::downloadable_releases(&s.catalog, &caller.customer, product, Filter::default(), now).await?;
    let artifact = releases
        .iter()
        .filter(|d| d.release.version == *version && access::in_rollout(&caller.customer.id, &d.release))
        .flat_map(|d| d.artifacts.iter().map(|(a, _)| a))
        .find(|a| a.filename == filename)
        .ok_or(ApiError::Access(AccessError::NotFound("artifact")))?;
    let key = crate::storage::ObjectKey::parse(&artifact.storage_key)
        .map_err(|_| ApiError::Access(AccessError::NotFound("artifact")))?;
    let meta = s.storage.head(&key).await?;
    let stream = s.storage.get(&key, None, &meta).await?;
    let stream = crate::storage::guarded(stream, meta.size, s.downloads.idle_timeout, ());
    let mut response = axum::body::Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    Ok(no_store(response))
}

/// Base64 of a hex digest (electron-builder writes SHA-512 in base64).
fn base64_of_hex(hex_digest: &str) -> Option<String> {
    use base64::Engine as _;
    hex::decode(hex_digest).ok().map(|b| base64::engine::general_purpose::STANDARD.encode(b))
}

/// A YAML scalar for any text: JSON's double-quoted string is one.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AtomQuery {
    /// The customer's feed token (`POST /admin/v1/customers/{c}/feed-token`).
    token: Option<String>,
}

/// The most entries an Atom feed carries, newest first.
pub const ATOM_ENTRIES: usize = 100;

/// `GET /feeds/{customer}/releases.atom?token=`: an Atom 1.0 feed of the
/// releases the customer is entitled to — new ones, critical patches
/// flagged, yanks — for feed readers, which cannot send headers: the
/// customer's read-only feed token is in the URL.
#[utoipa::path(get, path = "/feeds/{customer}/releases.atom", tag = "customer", security(("feed_token" = [])), params(("customer" = String, Path, description = "customer id"), AtomQuery), responses((status = 200, description = "an Atom 1.0 feed", content_type = "application/atom+xml"), (status = 403, description = "`invalid_feed_token`, or `customer_suspended`", body = Problem)))]
pub(crate) async fn atom(
    State(s): State<Arc<Services>>,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<AtomQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let customer_id = path(p)?;
    let q = query(q)?;
    let client = client_ip(peer.0.ip(), &headers, &s.trusted_proxies);
    let valid = match &q.token {
        Some(t) => s.catalog.check_feed_token(&customer_id, t).await?,
        None => false,
    };
    // SECURITY: a guessed token costs the guesser (past the limit, 429).
    if !valid {
        if let Err(wait) = s.limits.refused_credential(client) {
            return Ok(super::problem::rate_limited(wait).into_response());
        }
        return Err(ApiError::InvalidFeedToken);
    }
    let customer = s.catalog.customer(&customer_id).await?.ok_or(ApiError::InvalidFeedToken)?;
    if customer.status == crate::catalog::CustomerStatus::Suspended {
        return Err(AccessError::Denied(crate::entitlement::Denial::CustomerSuspended).into());
    }
    let now = Timestamp(s.clock.now_unix());
    let entitlements = s.catalog.entitlements_of(&customer.id).await?;
    let mut products: Vec<&str> = entitlements.iter().map(|e| e.product.as_str()).collect();
    products.sort_unstable();
    products.dedup();
    let mut entries: Vec<(u64, String)> = Vec::new();
    for product in products {
        let name = s.catalog.product(product).await?.map_or_else(|| product.to_owned(), |p| p.name);
        match access::downloadable_releases(&s.catalog, &customer, product, Filter::default(), now).await {
            Ok(releases) => {
                for d in &releases {
                    entries.push(atom_entry(&s, &name, &d.release, false));
                }
            }
            Err(e) if e.denial().is_some() => {}
            Err(e) => return Err(e.into()),
        }
        // Yanks of releases the customer's entitlements cover.
        let page = s.catalog.releases(product, None, Some(ATOM_ENTRIES)).await?;
        for r in page.items.iter().filter(|r| r.status == crate::catalog::ReleaseStatus::Yanked) {
            let covered = entitlements
                .iter()
                .any(|e| e.product == product && crate::entitlement::version_covered(&e.versions, &r.version));
            if covered {
                entries.push(atom_entry(&s, &name, r, true));
            }
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    entries.truncate(ATOM_ENTRIES);
    let updated = entries.first().map_or(now, |(t, _)| Timestamp(*t));
    let self_url = feed_url(&s.downloads.urls.public_url, &customer.id);
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <id>urn:tollgate:feed:{id}</id>\n<title>{title}</title>\n<updated>{updated}</updated>\n\
         <author><name>{author}</name></author>\n<link rel=\"self\" href=\"{self_url}\"/>\n{entries}</feed>\n",
        id = xml_text(&customer.id),
        title = xml_text(&format!("Releases for {}", customer.name)),
        author = xml_text(&customer.name),
        self_url = xml_text(&self_url),
        entries = entries.into_iter().map(|(_, e)| e).collect::<String>(),
    );
    let mut response = (StatusCode::OK, xml).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/atom+xml; charset=utf-8"));
    Ok(no_store(response))
}

/// A customer's Atom feed, without its token.
pub(crate) fn feed_url(public_url: &str, customer: &str) -> String {
    format!("{}/feeds/{}/releases.atom", public_url.trim_end_matches('/'), crate::signing::encode_segment(customer))
}

/// One release as an Atom entry, with the instant it is about (its
/// publication; a yank has no time of its own in the record).
fn atom_entry(s: &Services, product_name: &str, r: &crate::catalog::Release, yanked: bool) -> (u64, String) {
    let at = r.published_at.unwrap_or(Timestamp(0));
    let mut title = format!("{product_name} {}", r.version);
    if yanked {
        title.push_str(" (yanked)");
    } else if r.critical {
        title.push_str(" (critical)");
    }
    let link = format!(
        "{}/v1/products/{}/releases",
        s.downloads.urls.public_url.trim_end_matches('/'),
        crate::signing::encode_segment(&r.product)
    );
    let mut entry = format!(
        "<entry>\n<id>urn:tollgate:release:{}:{}{}</id>\n<title>{}</title>\n<updated>{at}</updated>\n<link href=\"{}\"/>\n",
        xml_text(&r.product),
        xml_text(&r.version.to_string()),
        if yanked { ":yanked" } else { "" },
        xml_text(&title),
        xml_text(&link),
    );
    let channel = serde_json::to_value(r.channel).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    entry.push_str(&format!("<category term=\"{}\"/>\n", xml_text(&channel)));
    if r.critical {
        entry.push_str("<category term=\"critical\"/>\n");
    }
    if yanked {
        entry.push_str("<category term=\"yanked\"/>\n");
    }
    let (kind, summary) = match (&r.notes, yanked) {
        (_, true) => ("text", "This release was withdrawn; do not install it.".to_owned()),
        (Some(n), false) => ("html", super::notes::to_html(n)),
        (None, false) => ("text", format!("{product_name} {} is available.", r.version)),
    };
    entry.push_str(&format!("<content type=\"{kind}\">{}</content>\n</entry>\n", xml_text(&summary)));
    (at.0, entry)
}

/// Text for an XML element or attribute.
pub fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::xml_text;

    #[test]
    fn xml_text_escapes_markup_and_drops_what_xml_cannot_carry() {
        assert_eq!(xml_text("a<b>&\"c'\u{1}\n"), "a&lt;b&gt;&amp;&quot;c&apos;\n");
    }
}
