//! `tollgate publish`: put a build into a release from CI in one command —
//! create the release if needed, upload the file (straight to S3 with the
//! gateway's presigned plan when it offers one, else streamed through the
//! gateway), let the gateway verify size and SHA-256, and publish.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::admin::{ApiArgs, endpoint};
use super::http::{AdminApi, Answer, HttpClient, ReqBody};
use super::progress::Progress;
use crate::config::Config;
use crate::signing::encode_segment;
use crate::storage::{PlannedPart, UploadPlan, UploadedPart};

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The product's id (it must exist).
    #[arg(long)]
    product: String,
    /// The release's semantic version; a missing release is created.
    #[arg(long)]
    version: String,
    /// The channel of a new release (default stable). An existing release
    /// keeps its own; naming another one is an error.
    #[arg(long)]
    channel: Option<String>,
    /// e.g. linux-x86_64; default any.
    #[arg(long)]
    platform: Option<String>,
    /// The file's name in the release. Default: FILE's own name.
    #[arg(long)]
    filename: Option<String>,
    /// Default: guessed from the file name.
    #[arg(long)]
    content_type: Option<String>,
    /// Mark the release as a critical patch.
    #[arg(long)]
    critical: bool,
    /// Release notes, read from this file.
    #[arg(long, value_name = "FILE")]
    notes: Option<PathBuf>,
    /// The file's update signature, read from this file (Tauri's `.sig`, a
    /// Sparkle EdDSA signature): the update feeds hand it to clients.
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,
    /// Stage update offers of the release to this percentage of customers
    /// (1-100).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    rollout: Option<u8>,
    /// The oldest OS version the release runs on (Sparkle's
    /// minimumSystemVersion), e.g. 12.0.
    #[arg(long, value_name = "VERSION")]
    minimum_system_version: Option<String>,
    /// Upload, but leave the release a draft (e.g. more platforms to come).
    #[arg(long)]
    draft: bool,
    /// Replace the file if the release has it already, even published.
    #[arg(long)]
    force: bool,
    /// How the bytes travel: `auto` (straight to S3 when the gateway offers
    /// a presigned plan, else through the gateway), `direct` or `gateway`.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    via: Via,
    /// Tries per part (direct) or per upload (through the gateway) when the
    /// failure is worth retrying (connection errors, 5xx, 429).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    attempts: u32,
    /// Parts sent at once on a direct upload.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// Give up a request (and try again) when it has sent no byte and had no
    /// answer for this long, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// The file to upload.
    file: PathBuf,
}

/// How the bytes of an upload are sent: tries per request, parts at once,
/// and how long a request may go silent.
#[derive(Debug, Clone, Copy)]
pub struct Sending {
    pub attempts: u32,
    pub parallel: usize,
    pub idle: Duration,
}

impl PublishArgs {
    fn sending(&self) -> Sending {
        Sending { attempts: self.attempts, parallel: usize::from(self.parallel), idle: self.idle_timeout }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Via {
    Auto,
    Direct,
    Gateway,
}

/// Why a publish failed; each has its exit code, so CI can tell a refusal
/// (fix something, do not retry) from a transient failure (retry later).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Exit 1: the gateway or storage refused (conflict, bad input, not found).
    #[error("{0}")]
    Refused(String),
    /// Exit 2: bad arguments, no token, unreadable file.
    #[error("{0}")]
    Usage(String),
    /// Exit 3: unreachable, or 5xx/429 after every try.
    #[error("{0}")]
    Transient(String),
    /// Exit 4: what arrived is not the file (its size or SHA-256 differ).
    #[error("{0}")]
    Integrity(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Transient(_) => 3,
            Failure::Integrity(_) => 4,
        }
    }
}

/// Sort an admin API refusal by its status and code.
fn refusal(what: &str, a: &Answer) -> Failure {
    let text = format!("{what} refused: {}", a.problem());
    match (a.status, a.code()) {
        (_, "checksum_mismatch" | "size_mismatch") => Failure::Integrity(text),
        // The body was cut or stalled on the way: sending again may work.
        (400, "upload_incomplete") => Failure::Transient(text),
        // 501: this gateway cannot do it at all; 507: no room. Waiting for
        // a retry will not help either.
        (501 | 507, _) => Failure::Refused(text),
        (408 | 429 | 500.., _) => Failure::Transient(text),
        _ => Failure::Refused(text),
    }
}

fn transient(e: impl std::fmt::Display) -> Failure {
    Failure::Transient(format!("{e:#}"))
}

pub fn publish(config: &Config, args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match runtime.block_on(run(config, args)) {
        Ok(artifact) => {
            #[expect(clippy::print_stdout, reason = "the artifact is the command's output")]
            {
                println!("{}", serde_json::to_string_pretty(&artifact)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(f) => {
            eprintln!("tollgate publish: {f}");
            Ok(ExitCode::from(f.exit_code()))
        }
    }
}

async fn run(config: &Config, args: &PublishArgs) -> Result<Value, Failure> {
    let (url, token) = endpoint(config, &args.api).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let api = AdminApi::new(&url, token).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let size = match std::fs::metadata(&args.file) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Err(Failure::Usage(format!("{} is not a file", args.file.display()))),
        Err(e) => return Err(Failure::Usage(format!("cannot read {}: {e}", args.file.display()))),
    };
    let filename = match &args.filename {
        Some(f) => f.clone(),
        None => args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Failure::Usage(format!("{}: give --filename", args.file.display())))?
            .to_owned(),
    };
    let notes = match &args.notes {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", p.display())))?)
        }
        None => None,
    };
    let signature = match &args.signature {
        Some(p) => Some(std::fs::read(p).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", p.display())))?),
        None => None,
    };
    let sha256 = hash_file(&args.file, size).await?;
    let release =
        format!("/admin/v1/products/{}/releases/{}", encode_segment(&args.product), encode_segment(&args.version));
    ensure_release(&api, &release, args, notes).await?;
    let artifact = upload(&api, &release, args, &filename, size, &sha256).await?;
    if artifact["sha256"].as_str() != Some(sha256.as_str()) {
        return Err(Failure::Integrity(format!(
            "the gateway recorded SHA-256 {}, not the file's {sha256}",
            artifact["sha256"].as_str().unwrap_or("-")
        )));
    }
    let artifact = match signature {
        Some(sig) => {
            let path = format!("{release}/artifacts/{}/signature", encode_segment(&filename));
            let req = api
                .request("PUT", &path)
                .map_err(|e| Failure::Usage(format!("{e:#}")))?
                .header(hyper::header::CONTENT_TYPE, "text/plain")
                .body(crate::http_client::full(sig))
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let a = api.send(req).await.map_err(transient)?;
            if a.status >= 400 {
                return Err(refusal("storing the signature", &a));
            }
            a.body
        }
        None => artifact,
    };
    if !args.draft {
        let (api, path) = (&api, &format!("{release}/publish"));
        retried("publishing the release", args.attempts, || async move { Ok(api.call("POST", path, None).await) })
            .await?;
        eprintln!("published {} {}", args.product, args.version);
    }
    Ok(artifact)
}

/// The file's SHA-256, read once (the gateway checks the same digest).
async fn hash_file(path: &Path, size: u64) -> Result<String, Failure> {
    let progress = Progress::new("hashing  ", size);
    let mut file = tokio::fs::File::open(path).await.map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await.map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    progress.finish();
    Ok(hex::encode(hasher.finalize()))
}

/// The release fields `--rollout` and `--minimum-system-version` set (left
/// out, the release keeps its own).
fn staging(body: &mut Value, args: &PublishArgs) {
    if let Some(r) = args.rollout {
        body["rollout"] = r.into();
    }
    if let Some(m) = &args.minimum_system_version {
        body["minimum_system_version"] = m.clone().into();
    }
}

/// Create the release as a draft when it does not exist; set its flag and
/// notes when asked. An existing release's status and channel are kept.
async fn ensure_release(
    api: &AdminApi,
    release: &str,
    args: &PublishArgs,
    notes: Option<String>,
) -> Result<(), Failure> {
    let current = api.call("GET", release, None).await.map_err(transient)?;
    let body = match current.status {
        404 => {
            let mut body = json!({ "channel": args.channel.as_deref().unwrap_or("stable"), "critical": args.critical });
            if let Some(n) = notes {
                body["notes"] = n.into();
            }
            staging(&mut body, args);
            body
        }
        200 => {
            let r = &current.body;
            if let Some(c) = &args.channel
                && r["channel"].as_str() != Some(c.as_str())
            {
                return Err(Failure::Refused(format!(
                    "release {} {} is on the {} channel, not {c}",
                    args.product, args.version, r["channel"]
                )));
            }
            if !args.critical && notes.is_none() && args.rollout.is_none() && args.minimum_system_version.is_none() {
                return Ok(());
            }
            let mut body = json!({
                "channel": r["channel"],
                "critical": args.critical || r["critical"].as_bool() == Some(true),
                "notes": notes.map_or(r["notes"].clone(), Value::from),
            });
            staging(&mut body, args);
            body
        }
        _ => return Err(refusal("reading the release", &current)),
    };
    let a = api.call("PUT", release, Some(&body)).await.map_err(transient)?;
    if a.status >= 400 {
        return Err(refusal("creating the release", &a));
    }
    Ok(())
}

async fn upload(
    api: &AdminApi,
    release: &str,
    args: &PublishArgs,
    filename: &str,
    size: u64,
    sha256: &str,
) -> Result<Value, Failure> {
    if args.via != Via::Gateway {
        let mut body = json!({ "filename": filename, "size": size, "sha256": sha256 });
        if let Some(p) = &args.platform {
            body["platform"] = p.as_str().into();
        }
        if let Some(ct) = &args.content_type {
            body["content_type"] = ct.as_str().into();
        }
        let a = api.call("POST", &format!("{release}/artifacts"), Some(&body)).await.map_err(transient)?;
        match (a.status, a.code()) {
            (201, _) => return direct(api, &a.body, &args.file, args).await,
            (501, "direct_upload_unsupported") if args.via == Via::Auto => {}
            // The release has the file: only the streaming PUT replaces.
            (409, "conflict") if args.via == Via::Auto && args.force => {}
            _ => return Err(refusal("planning a direct upload", &a)),
        }
    }
    through_gateway(api, release, args, filename, size, sha256).await
}

/// Send the plan's parts straight to storage, then ask the gateway to
/// complete (it reads the object through and checks size and SHA-256).
async fn direct(api: &AdminApi, ticket: &Value, file: &Path, args: &PublishArgs) -> Result<Value, Failure> {
    let plan: UploadPlan = serde_json::from_value(ticket["plan"].clone())
        .map_err(|e| Failure::Refused(format!("the gateway's upload plan is not understood: {e}")))?;
    let complete = ticket["complete"].as_str().unwrap_or_default().to_owned();
    let total = plan.parts.iter().map(|p| p.size).sum();
    let progress = Arc::new(Progress::new("uploading", total));
    let parts = send_parts(&api.client, &plan, file, &progress, args.sending()).await;
    progress.finish();
    let parts = match parts {
        Ok(p) => p,
        Err(f) => {
            // Refused for good (an expired or bad signature): abandon the
            // plan so that its parts go and a rerun can start afresh.
            if matches!(f, Failure::Refused(_) | Failure::Usage(_)) {
                let path = complete.trim_end_matches("/complete");
                let _ = api.call("DELETE", path, None).await;
            }
            return Err(f);
        }
    };
    eprintln!("verifying on the gateway (it reads the file through)…");
    let body = json!({ "parts": if plan.upload_id.is_some() { parts } else { Vec::new() } });
    // `complete` is repeatable: a lost answer or a 5xx is tried again.
    let (complete, body) = (&complete, &body);
    retried("completing the upload", args.attempts, || async move { Ok(api.call("POST", complete, Some(body)).await) })
        .await
}

/// Make an admin call up to `attempts` times while it fails transiently
/// (unreachable, 5xx, 429); the answer's body once it succeeds. `call` fails
/// itself (`Err`) for what no retry can mend.
async fn retried<F, Fut>(what: &str, attempts: u32, mut call: F) -> Result<Value, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<anyhow::Result<Answer>, Failure>>,
{
    let mut last = Failure::Transient(String::new());
    for attempt in 1..=attempts {
        if attempt > 1 {
            eprintln!("{last} (try {} of {attempts})", attempt - 1);
            tokio::time::sleep(backoff(attempt)).await;
        }
        last = match call().await? {
            Ok(a) if a.status < 300 => return Ok(a.body),
            Ok(a) => match refusal(what, &a) {
                Failure::Transient(t) => Failure::Transient(t),
                other => return Err(other),
            },
            Err(e) => transient(e),
        };
    }
    Err(last)
}

/// Send every part, `parallel` at once, each tried up to `attempts` times;
/// their ETags in part order.
pub async fn send_parts(
    client: &HttpClient,
    plan: &UploadPlan,
    file: &Path,
    progress: &Arc<Progress>,
    how: Sending,
) -> Result<Vec<UploadedPart>, Failure> {
    let mut parts: Vec<UploadedPart> = futures_util::stream::iter(plan.parts.iter())
        .map(|part| send_part(client, part, file, progress, how))
        .buffer_unordered(how.parallel.max(1))
        .try_collect()
        .await?;
    parts.sort_by_key(|p| p.part_number);
    Ok(parts)
}

async fn send_part(
    client: &HttpClient,
    part: &PlannedPart,
    file: &Path,
    progress: &Arc<Progress>,
    how: Sending,
) -> Result<UploadedPart, Failure> {
    let attempts = how.attempts;
    let mut last = String::new();
    for attempt in 1..=attempts {
        if attempt > 1 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut req = hyper::Request::builder().method(part.method.as_str()).uri(&part.url);
        // The length is set below from the part; a signed one is the same.
        for (k, v) in part.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("content-length")) {
            req = req.header(k, v);
        }
        let req = req
            .header(hyper::header::CONTENT_LENGTH, part.size)
            .body(part_body(file, part.offset, part.size, progress.clone(), sent.clone()).await?)
            .map_err(|e| Failure::Refused(format!("part {}: bad request in the plan: {e}", part.part_number)))?;
        let outcome = unless_stalled(client.send(req), &sent, how.idle).await;
        let undo = sent.load(std::sync::atomic::Ordering::Relaxed);
        match outcome {
            None => {
                last = format!("part {}: no progress for {}", part.part_number, humantime::format_duration(how.idle))
            }
            Some(Ok(r)) if r.status().is_success() => {
                let etag = r.headers().get(hyper::header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or("");
                return Ok(UploadedPart { part_number: part.part_number, etag: etag.to_owned() });
            }
            Some(Ok(r)) => {
                let status = r.status();
                let body = r.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                last =
                    format!("part {}: storage answered {status}: {}", part.part_number, String::from_utf8_lossy(&body));
                // S3 answers a slow body with 400 RequestTimeout: worth another try.
                let timeout = status.as_u16() == 408 || body.windows(14).any(|w| w == b"RequestTimeout");
                if !(status.is_server_error() || status.as_u16() == 429 || timeout) {
                    return Err(Failure::Refused(last));
                }
            }
            Some(Err(e)) => last = format!("part {}: {e}", part.part_number),
        }
        progress.rewind(undo);
        eprintln!("{last} (try {attempt} of {attempts})");
    }
    Err(Failure::Transient(last))
}

/// `request`, or `None` once it has gone `idle` without sending a byte (as
/// counted in `sent`) or being answered: a stalled connection must not hang
/// a CI job.
async fn unless_stalled<F: Future>(
    request: F,
    sent: &std::sync::atomic::AtomicU64,
    idle: Duration,
) -> Option<F::Output> {
    tokio::pin!(request);
    let mut seen = sent.load(std::sync::atomic::Ordering::Relaxed);
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            out = &mut request => return Some(out),
            () = tokio::time::sleep(idle.min(Duration::from_millis(250))) => {
                let now = sent.load(std::sync::atomic::Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    quiet_since = tokio::time::Instant::now();
                } else if quiet_since.elapsed() >= idle {
                    return None;
                }
            }
        }
    }
}

/// Wait before try `attempt` (2, 3, …): 0.5 s doubling, at most 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << (attempt - 2).min(4))
}

/// Bytes `offset..offset + len` of the file, read as they are sent (memory
/// stays at one buffer per request in flight), each counted when taken.
async fn part_body(
    file: &Path,
    offset: u64,
    len: u64,
    progress: Arc<Progress>,
    sent: Arc<std::sync::atomic::AtomicU64>,
) -> Result<ReqBody, Failure> {
    let fail = |e: std::io::Error| Failure::Usage(format!("{}: {e}", file.display()));
    let mut f = tokio::fs::File::open(file).await.map_err(fail)?;
    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(fail)?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 * 1024).map_ok(move |chunk| {
        progress.advance(chunk.len() as u64);
        sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Frame::data(chunk)
    });
    Ok(StreamBody::new(stream).boxed_unsync())
}

/// Stream the file through the gateway (`PUT …/artifacts/{filename}`), the
/// whole upload tried again on a transient failure (a failed one leaves
/// nothing behind).
async fn through_gateway(
    api: &AdminApi,
    release: &str,
    args: &PublishArgs,
    filename: &str,
    size: u64,
    sha256: &str,
) -> Result<Value, Failure> {
    let mut query = Vec::new();
    if let Some(p) = &args.platform {
        query.push(format!("platform={}", encode_segment(p)));
    }
    if let Some(ct) = &args.content_type {
        query.push(format!("content_type={}", encode_segment(ct)));
    }
    if args.force {
        query.push("force=true".to_owned());
    }
    let path = format!(
        "{release}/artifacts/{}{}{}",
        encode_segment(filename),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let path = &path;
    retried("the upload", args.attempts, || async move {
        let progress = Arc::new(Progress::new("uploading", size));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let body = part_body(&args.file, 0, size, progress.clone(), sent.clone()).await?;
        let req = api
            .request("PUT", path)
            .and_then(|r| {
                Ok(r.header(hyper::header::CONTENT_LENGTH, size)
                    .header("x-checksum-sha256", sha256)
                    .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
                    .body(body)?)
            })
            .map_err(|e| Failure::Usage(format!("{e:#}")))?;
        let idle = args.idle_timeout;
        let answer = unless_stalled(api.send(req), &sent, idle).await.unwrap_or_else(|| {
            Err(anyhow::anyhow!("the upload made no progress for {}", humantime::format_duration(idle)))
        });
        progress.finish();
        Ok(answer)
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use bytes::Bytes;

    use super::*;

    /// What the storage stand-in received: per part number, the bodies of
    /// every request.
    type Seen = Arc<Mutex<HashMap<u32, Vec<Bytes>>>>;

    /// A storage stand-in on a free port: answers each part's first
    /// `failures[part]` requests with `status`, then 200 with an ETag.
    async fn storage(failures: HashMap<u32, (u32, u16)>) -> (std::net::SocketAddr, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (seen, failures) = (record.clone(), failures.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, failures) = (seen.clone(), failures.clone());
                        async move {
                            let part: u32 = req.uri().query().unwrap().trim_start_matches("part=").parse().unwrap();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let tries = {
                                let mut seen = seen.lock().unwrap();
                                let bodies = seen.entry(part).or_default();
                                bodies.push(body);
                                bodies.len() as u32
                            };
                            let (fail, status) = failures.get(&part).copied().unwrap_or((0, 200));
                            if tries <= fail && status == 0 {
                                // A stalled server: the body is in, no answer ever comes.
                                std::future::pending::<()>().await;
                            }
                            let response = if tries <= fail {
                                hyper::Response::builder().status(status).body(http_body_util::Full::new(Bytes::new()))
                            } else {
                                hyper::Response::builder()
                                    .header("etag", format!("\"etag-{part}\""))
                                    .body(http_body_util::Full::new(Bytes::new()))
                            };
                            Ok::<_, std::convert::Infallible>(response.unwrap())
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        (addr, seen)
    }

    fn plan(addr: std::net::SocketAddr, size: u64, part_size: u64) -> UploadPlan {
        let parts = (0..size.div_ceil(part_size))
            .map(|i| PlannedPart {
                part_number: u32::try_from(i + 1).unwrap(),
                offset: i * part_size,
                size: part_size.min(size - i * part_size),
                method: "PUT".into(),
                url: format!("http://{addr}/bucket/key?part={}", i + 1),
                headers: Default::default(),
            })
            .collect();
        UploadPlan { upload_id: Some("u".into()), part_size, parts }
    }

    fn how(attempts: u32, parallel: usize) -> Sending {
        Sending { attempts, parallel, idle: Duration::from_secs(60) }
    }

    fn file(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        (f, data)
    }

    #[tokio::test]
    async fn a_failed_part_is_sent_again_and_only_it() {
        let (f, data) = file(2_500_000);
        let (addr, seen) = storage(HashMap::from([(2, (2, 503))])).await;
        let progress = Arc::new(Progress::with_tty("test", data.len() as u64, false));
        let client = HttpClient::new().unwrap();
        let parts = send_parts(&client, &plan(addr, data.len() as u64, 1_000_000), f.path(), &progress, how(3, 2))
            .await
            .unwrap();
        let etags: Vec<_> = parts.iter().map(|p| (p.part_number, p.etag.as_str())).collect();
        assert_eq!(etags, vec![(1, "\"etag-1\""), (2, "\"etag-2\""), (3, "\"etag-3\"")]);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[&1].len(), 1);
        assert_eq!(seen[&2].len(), 3, "part 2 failed twice, then went through");
        assert_eq!(seen[&3].len(), 1);
        for (n, range) in [(1, 0..1_000_000), (2, 1_000_000..2_000_000), (3, 2_000_000..2_500_000)] {
            for body in &seen[&n] {
                assert_eq!(&body[..], &data[range.clone()], "part {n} carries its own bytes");
            }
        }
    }

    #[tokio::test]
    async fn a_part_failing_every_try_is_transient_and_a_refusal_is_final() {
        let (f, data) = file(10_000);
        let client = HttpClient::new().unwrap();
        let progress = Arc::new(Progress::with_tty("test", data.len() as u64, false));
        let (addr, seen) = storage(HashMap::from([(1, (9, 500))])).await;
        let e = send_parts(&client, &plan(addr, 10_000, 10_000), f.path(), &progress, how(2, 1)).await.unwrap_err();
        assert_eq!((e.exit_code(), seen.lock().unwrap()[&1].len()), (3, 2));
        // An expired or bad signature (403) is not retried.
        let (addr, seen) = storage(HashMap::from([(1, (9, 403))])).await;
        let e = send_parts(&client, &plan(addr, 10_000, 10_000), f.path(), &progress, how(5, 1)).await.unwrap_err();
        assert_eq!((e.exit_code(), seen.lock().unwrap()[&1].len()), (1, 1));
    }

    #[tokio::test]
    async fn a_stalled_part_is_given_up_and_sent_again() {
        let (f, data) = file(10_000);
        let client = HttpClient::new().unwrap();
        let progress = Arc::new(Progress::with_tty("test", data.len() as u64, false));
        let (addr, seen) = storage(HashMap::from([(1, (1, 0))])).await;
        let how = Sending { attempts: 2, parallel: 1, idle: Duration::from_millis(500) };
        let plan = plan(addr, 10_000, 10_000);
        let sent = send_parts(&client, &plan, f.path(), &progress, how);
        let parts = tokio::time::timeout(Duration::from_secs(30), sent).await.expect("not hung").unwrap();
        assert_eq!(parts[0].etag, "\"etag-1\"");
        assert_eq!(seen.lock().unwrap()[&1].len(), 2, "the stalled request was given up and the part sent again");
    }

    #[test]
    fn refusals_map_to_exit_codes() {
        let answer = |status, code: &str| Answer { status, body: json!({ "code": code }) };
        assert_eq!(refusal("x", &answer(422, "checksum_mismatch")).exit_code(), 4);
        assert_eq!(refusal("x", &answer(422, "size_mismatch")).exit_code(), 4);
        assert_eq!(refusal("x", &answer(409, "conflict")).exit_code(), 1);
        assert_eq!(refusal("x", &answer(503, "store_unavailable")).exit_code(), 3);
        assert_eq!(refusal("x", &answer(429, "rate_limited")).exit_code(), 3);
        assert_eq!(refusal("x", &answer(501, "direct_upload_unsupported")).exit_code(), 1);
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(9), Duration::from_secs(8));
    }
}
