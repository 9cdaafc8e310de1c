//! Logging: `tracing` to stderr as text or JSON, and one span per request.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Install the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(&config.level)?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// Wrap a request in a span carrying method, route template, path and a request
/// id; handlers add `customer` and `grant`. The id is echoed in `X-Request-Id`.
// SECURITY: the query string is never logged: on the data plane it holds the
// URL's signature, which is a bearer credential until it expires.
pub async fn request_span(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let request_id = request_id(&request);
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        path = %request.uri().path(),
        request_id = %request_id,
        customer = tracing::field::Empty,
        grant = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    tracing::info!(
        parent: &span,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "response headers sent"
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// The caller's `X-Request-Id` if it is short and plain, else a new random id.
fn request_id(request: &Request) -> String {
    let given = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    match given {
        Some(v) => v.to_owned(),
        None => {
            let mut bytes = [0u8; 8];
            // An all-zero id on the (never seen) failure of the OS RNG is harmless.
            let _ = getrandom::fill(&mut bytes);
            hex::encode(bytes)
        }
    }
}
