//! Live activity: the newest events, and a server-sent stream of new ones.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Nav, error, failed, signed, view};
use crate::events::Filter;
use crate::services::Services;

// Live activity.

/// The activity page's script: optional (the page works without it).
const ACTIVITY_JS: &str = include_str!("../../../templates/console/activity.js");
/// How long one stream runs before the browser reconnects (from where it
/// was, by `Last-Event-ID`).
const STREAM_FOR: std::time::Duration = std::time::Duration::from_secs(600);
/// How often a stream looks for new events.
const STREAM_POLL: std::time::Duration = std::time::Duration::from_millis(500);
/// Between two pages of a stream catching up (a resumed one).
const STREAM_PACE: std::time::Duration = std::time::Duration::from_millis(20);
/// How often a running stream checks that its session is still live.
const STREAM_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
pub(super) struct ActivityQuery {
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl ActivityQuery {
    /// The log filter; `Err` names an unknown event type.
    fn filter(&self) -> Result<Filter, String> {
        let some = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let mut types = Vec::new();
        if let Some(kind) = some(&self.kind) {
            types.push(crate::events::EventType::parse(&kind).ok_or(kind)?);
        }
        Ok(Filter { types, customer: some(&self.customer), product: some(&self.product) })
    }
}

#[derive(Template)]
#[template(path = "console/activity.html")]
struct ActivityPage {
    nav: Option<Nav>,
    customer: String,
    product: String,
    kind: String,
    kinds: Vec<&'static str>,
    query: String,
    rows: Vec<[String; 4]>,
}

fn event_row(e: &crate::events::Event) -> [String; 4] {
    let at = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at));
    let sub = &e.subject;
    let mut about = [&sub.customer, &sub.product, &sub.version, &sub.filename]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(actor) = &e.actor {
        about.push_str(&format!(" · by {actor}"));
    }
    let data = serde_json::to_value(&e.detail).ok().map(|v| v["data"].to_string()).unwrap_or_default();
    [at.to_string(), e.event_type().as_str().to_owned(), about, data]
}

/// `GET /console/activity`: the newest events (filtered), and, with the
/// page's script, the ones that happen while it is open.
pub(super) async fn activity_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<ActivityQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (_, nav) = match signed(&s, &headers, "activity").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let filter = match q.filter() {
        Ok(f) => f,
        Err(kind) => {
            return error(Some(nav), StatusCode::BAD_REQUEST, "invalid_type", format!("No event type {kind:?}."));
        }
    };
    let events = match s.event_log.recent(&filter, 50, 20_000).await {
        Ok(e) => e,
        Err(e) => return failed(Some(nav), &e),
    };
    let query = query_string(&[
        ("customer", filter.customer.as_deref()),
        ("product", filter.product.as_deref()),
        ("type", filter.types.first().map(|t| t.as_str())),
    ]);
    let t = ActivityPage {
        nav: Some(nav),
        customer: filter.customer.clone().unwrap_or_default(),
        product: filter.product.clone().unwrap_or_default(),
        kind: filter.types.first().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        kinds: crate::events::EventType::ALL.iter().map(|t| t.as_str()).collect(),
        query,
        rows: events.iter().map(event_row).collect(),
    };
    view(StatusCode::OK, &t)
}

/// A query string of the pairs that have a value.
fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC))))
        .collect::<Vec<_>>()
        .join("&")
}

pub(super) async fn activity_script() -> Response {
    let mut r = ACTIVITY_JS.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

/// `GET /console/activity/stream`: server-sent events, one per new event
/// matching the filter, from now (or after `Last-Event-ID`, a log
/// position, when the browser reconnects). Each ends after
/// [`STREAM_FOR`]; the browser reconnects where it was.
pub(super) async fn activity_stream(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<ActivityQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use axum::response::sse::{Event as Sse, KeepAlive};
    if let Err(r) = signed(&s, &headers, "activity").await {
        return r;
    }
    // Looked at again while the stream runs: a sign-out, a removed token or
    // a changed role ends it.
    let session_key = super::session_key(&headers);
    let Ok(filter) = q.map(|Query(q)| q).unwrap_or_default().filter() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|c| s.event_log.valid_cursor(c))
        .map(str::to_owned);
    let start = match resumed {
        Some(c) => Some(c),
        None => match s.event_log.end().await {
            Ok(end) => end,
            Err(e) => {
                tracing::warn!(error = %e, "the activity stream could not find the log's end");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        },
    };
    let until = tokio::time::Instant::now() + STREAM_FOR;
    let checked = tokio::time::Instant::now();
    let state = (s, start, filter, std::collections::VecDeque::new(), checked);
    let events = futures_util::stream::unfold(state, move |(s, mut after, filter, mut queue, mut checked)| {
        let session_key = session_key.clone();
        async move {
            loop {
                if let Some((position, event)) = queue.pop_front() {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    let item = Sse::default().id(position).data(data);
                    return Some((Ok::<_, std::convert::Infallible>(item), (s, after, filter, queue, checked)));
                }
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                if checked.elapsed() >= STREAM_RECHECK {
                    checked = tokio::time::Instant::now();
                    if !super::still_signed(&s, &session_key).await {
                        return None;
                    }
                }
                match s.event_log.read(after.as_deref(), &filter, 100, 10_000).await {
                    Ok(page) => {
                        if page.next.is_some() {
                            after = page.next;
                        }
                        queue.extend(page.items);
                    }
                    Err(e) => tracing::warn!(error = %e, "the activity stream could not read the log"),
                }
                // Idle: wait for news; catching up: a breath between pages.
                tokio::time::sleep(if queue.is_empty() { STREAM_POLL } else { STREAM_PACE }).await;
            }
        }
    });
    let mut r = axum::response::sse::Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
