//! The event log and reports on the admin API: `GET /admin/v1/events`,
//! `GET /admin/v1/reports/downloads` and a release's adoption.

#![allow(
    unused_qualifications,
    reason = "utoipa's generated code for `params(SomeIntoParams)` names the type by a qualified path"
)]

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin_api::{AdminError, AdminResult, query, release_audience};
use crate::catalog::Timestamp;
use crate::events::{Days, Dimension, Event, EventType, Filter, ReportRow, day_of, report};
use crate::services::Services;

/// Most events one page returns.
pub const MAX_EVENTS_PAGE: usize = 1000;
/// Most log entries one page examines when filtering on Redis.
const SCAN: usize = 10_000;
/// Longest report, in days.
const MAX_REPORT_DAYS: u64 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// `next` of the previous page: events after it. Without it, from the
    /// oldest event kept.
    after: Option<String>,
    /// Event types, comma-separated (`download.initiated,download.denied`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    types: Option<String>,
    customer: Option<String>,
    product: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of the event log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventPage {
    /// Oldest first.
    items: Vec<Event>,
    /// Pass as `after` to continue; it moves past events the filter skipped.
    /// Absent only while the log is empty.
    next: Option<String>,
    /// `true` if the page stopped before the end of the log: ask again now.
    /// `false`: the log ends here for now; poll with `next` later.
    more: bool,
}

/// Events, oldest first, after a cursor. Paging by `next` never skips or
/// repeats an event, whatever is appended meanwhile: the cursor is a position
/// in the log, and the log only grows at its end.
#[utoipa::path(get, path = "/admin/v1/events", tag = "admin", params(EventsQuery), responses((status = 200, body = EventPage), (status = 400, description = "`invalid_cursor` or `invalid_request`", body = super::problem::Problem)))]
pub(crate) async fn list_events(
    State(s): State<Arc<Services>>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> AdminResult {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
        return Err(AdminError::BadRequest(format!("limit must be 1 to {MAX_EVENTS_PAGE}")));
    }
    let mut filter = Filter { customer: q.customer, product: q.product, types: Vec::new() };
    for t in q.types.as_deref().unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let t = EventType::parse(t).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            AdminError::BadRequest(format!("unknown event type {t:?}; one of {}", known.join(", ")))
        })?;
        filter.types.push(t);
    }
    let log = &s.event_log;
    if let Some(after) = &q.after
        && !log.valid_cursor(after)
    {
        return Err(AdminError::InvalidCursor);
    }
    let page = log.read(q.after.as_deref(), &filter, limit, SCAN).await.map_err(crate::catalog::CatalogError::from)?;
    let next = page.next.or(q.after);
    Ok(Json(EventPage { items: page.items.into_iter().map(|(_, e)| e).collect(), next, more: page.more })
        .into_response())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    #[default]
    Json,
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportQuery {
    /// First UTC day, `2026-11-01` (or an RFC 3339 time on that day); default:
    /// 29 days before `to`.
    from: Option<String>,
    /// Last UTC day, inclusive; default today.
    to: Option<String>,
    /// `customer`, `product`, `release`, `artifact`, `platform` or `day`.
    group_by: Dimension,
    /// `json` (default) or `csv`.
    format: Option<Format>,
}

/// A download report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Report {
    from: String,
    to: String,
    group_by: Dimension,
    /// One per group with any activity, sorted by group.
    rows: Vec<ReportRow>,
    /// All rows added up (`customers` counts distinct customers overall).
    total: ReportRow,
}

/// A UTC day from `2026-11-24` or an RFC 3339 time.
pub(crate) fn parse_day(field: &str, text: &str) -> Result<u64, AdminError> {
    let t = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    humantime::parse_rfc3339_weak(&t)
        .map(|t| crate::clock::unix_seconds(t) / 86_400 * 86_400)
        .map_err(|_| AdminError::BadRequest(format!("{field}: {text:?} is not a date (2026-11-24) or RFC 3339 time")))
}

/// Downloads over a range of UTC days, grouped, from the counters kept on
/// write (the log is not scanned). JSON, or CSV with `format=csv`.
#[utoipa::path(get, path = "/admin/v1/reports/downloads", tag = "admin", params(ReportQuery), responses((status = 200, description = "JSON, or text/csv with format=csv", body = Report)))]
pub(crate) async fn downloads_report(
    State(s): State<Arc<Services>>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> AdminResult {
    let q = query(q)?;
    let today = s.clock.now_unix() / 86_400 * 86_400;
    let to = q.to.as_deref().map(|t| parse_day("to", t)).transpose()?.unwrap_or(today);
    let from = q.from.as_deref().map(|f| parse_day("from", f)).transpose()?.unwrap_or(to.saturating_sub(29 * 86_400));
    if from > to {
        return Err(AdminError::BadRequest("from is after to".into()));
    }
    if (to - from) / 86_400 >= MAX_REPORT_DAYS {
        return Err(AdminError::BadRequest(format!("a report covers at most {MAX_REPORT_DAYS} days")));
    }
    let days = Days { from: day_of(from), to: day_of(to) };
    let log = &s.event_log;
    let (cells, seen) = log.cells(&days, q.group_by).await.map_err(crate::catalog::CatalogError::from)?;
    let rows = report::rows(&cells, &seen);
    if q.format.unwrap_or_default() == Format::Csv {
        let name = format!("downloads-{}-{}-{}.csv", q.group_by.as_str(), days.from, days.to);
        let headers = [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ];
        return Ok((headers, report::csv(q.group_by, &rows)).into_response());
    }
    let total = report::total(&rows, &seen);
    Ok(Json(Report { from: days.from, to: days.to, group_by: q.group_by, rows, total }).into_response())
}

/// A customer entitled to a release and whether, and when, they took it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Adopter {
    pub customer: String,
    pub name: String,
    /// First download started, if any.
    pub first_initiated: Option<Timestamp>,
    /// First download that delivered the file's last byte, if any.
    pub first_completed: Option<Timestamp>,
}

/// Who among the customers entitled to a release has downloaded it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdoptionView {
    pub product: String,
    pub version: String,
    pub critical: bool,
    /// Customers entitled to the release now.
    pub entitled: usize,
    /// Entitled customers with a completed download.
    pub completed: usize,
    /// Entitled and have started a download of it.
    pub downloaded: Vec<Adopter>,
    /// Entitled and have not started one: who still needs it.
    pub not_downloaded: Vec<Adopter>,
}

/// Adoption of a release: for each customer entitled to it, whether they have
/// downloaded it, from counters kept on write.
#[utoipa::path(get, path = "/admin/v1/products/{product}/releases/{version}/adoption", tag = "admin", params(("product" = String, Path, description = "product id"), ("version" = String, Path, description = "semantic version")), responses((status = 200, body = AdoptionView)))]
pub(crate) async fn adoption(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (release, entitled) = release_audience(&s, p).await?;
    Ok(Json(adoption_of(&s, &release, &entitled).await?).into_response())
}

/// [`AdoptionView`] of `release` among `entitled` (the admin API's and the
/// console's).
pub(crate) async fn adoption_of(
    s: &Services,
    release: &crate::catalog::Release,
    entitled: &[crate::entitlement::access::Eligible],
) -> Result<AdoptionView, AdminError> {
    let (product, version) = (release.product.clone(), release.version.to_string());
    let taken = s.event_log.adoption(&product, &version).await.map_err(crate::catalog::CatalogError::from)?;
    let (mut downloaded, mut not_downloaded) = (Vec::new(), Vec::new());
    let mut completed = 0;
    for e in entitled {
        let a = taken.iter().find(|a| a.customer == e.customer);
        let adopter = Adopter {
            customer: e.customer.clone(),
            name: e.name.clone(),
            first_initiated: a.and_then(|a| a.first_initiated).map(|ms| Timestamp(ms / 1000)),
            first_completed: a.and_then(|a| a.first_completed).map(|ms| Timestamp(ms / 1000)),
        };
        completed += usize::from(adopter.first_completed.is_some());
        if adopter.first_initiated.is_some() || adopter.first_completed.is_some() {
            downloaded.push(adopter);
        } else {
            not_downloaded.push(adopter);
        }
    }
    Ok(AdoptionView {
        product,
        version,
        critical: release.critical,
        entitled: entitled.len(),
        completed,
        downloaded,
        not_downloaded,
    })
}
