//! The command line's client of the admin API (plain HTTP on a private
//! address, or HTTPS), over [`crate::http_client`].

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::Request;
use serde_json::Value;

pub use crate::http_client::{HttpClient, ReqBody, full};

/// The admin API of a running gateway: base URL and token.
#[derive(Debug, Clone)]
pub struct AdminApi {
    pub client: HttpClient,
    pub base: String,
    token: String,
}

/// An admin API answer: the status and the body as JSON (`Null` when empty
/// or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The problem's `code`, for refusals.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("-")
    }

    /// `<status> <code>: <detail>`, for messages.
    pub fn problem(&self) -> String {
        let detail = self.body["detail"].as_str().or(self.body["title"].as_str()).unwrap_or("");
        format!("{} {}: {detail}", self.status, self.code())
    }
}

impl AdminApi {
    pub fn new(base: &str, token: String) -> anyhow::Result<Self> {
        if !base.starts_with("http://") && !base.starts_with("https://") {
            anyhow::bail!("--url {base:?}: expected http://host:port");
        }
        Ok(Self { client: HttpClient::new()?, base: base.trim_end_matches('/').to_owned(), token })
    }

    /// One request with a JSON body (or none).
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req =
            self.request(method, path)?.header(hyper::header::CONTENT_TYPE, "application/json").body(full(bytes))?;
        self.send(req).await
    }

    /// A request to `path` with the token set, for the caller to finish.
    pub fn request(&self, method: &str, path: &str) -> anyhow::Result<http::request::Builder> {
        let method = hyper::Method::from_bytes(method.as_bytes())?;
        Ok(Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token)))
    }

    pub async fn send(&self, req: Request<ReqBody>) -> anyhow::Result<Answer> {
        let (status, bytes) = self.send_raw(req).await?;
        Ok(Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) })
    }

    /// The status and the body as sent (CSV, for one).
    pub async fn send_raw(&self, req: Request<ReqBody>) -> anyhow::Result<(u16, Bytes)> {
        let response =
            self.client.send(req).await.with_context(|| {
                format!("cannot reach the admin API at {} (is `tollgate serve` running?)", self.base)
            })?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.context("the admin API's answer was cut")?.to_bytes();
        Ok((status, bytes))
    }
}
