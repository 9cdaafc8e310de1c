//! Reports with charts drawn on the server.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{Nav, error, failed, signed, view};
use crate::events::report::Dimension;
use crate::events::{Days, day_of, metric};
use crate::http::portal::human_size;
use crate::services::Services;
use std::collections::BTreeMap;

// Reports.

#[derive(Template)]
#[template(path = "console/reports.html")]
struct ReportsPage {
    nav: Option<Nav>,
    from: String,
    to: String,
    chart: String,
    rows: Vec<(String, u64, u64, String)>,
    total: u64,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ReportQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// `GET /console/reports?from=&to=`: downloads started per day, stacked by
/// product (an SVG drawn here), and each product's totals; the admin API's
/// report counters, so the numbers are the API's.
pub(super) async fn reports_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (_, nav) = match signed(&s, &headers, "reports").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let today = s.clock.now_unix() / 86_400 * 86_400;
    let day = |text: Option<&str>, default: u64| {
        text.filter(|t| !t.is_empty())
            .map(|t| crate::http::admin_events::parse_day("date", t).map_err(|_| t.to_owned()))
            .transpose()
            .map(|d| d.unwrap_or(default))
    };
    let (to, from) = match day(q.to.as_deref(), today) {
        Ok(to) => match day(q.from.as_deref(), to.saturating_sub(13 * 86_400)) {
            Ok(from) => (to, from),
            Err(bad) => {
                return error(
                    Some(nav),
                    StatusCode::BAD_REQUEST,
                    "invalid_date",
                    format!("{bad:?} is not a date (YYYY-MM-DD)."),
                );
            }
        },
        Err(bad) => {
            return error(
                Some(nav),
                StatusCode::BAD_REQUEST,
                "invalid_date",
                format!("{bad:?} is not a date (YYYY-MM-DD)."),
            );
        }
    };
    if from > to || (to - from) / 86_400 >= 366 {
        return error(
            Some(nav),
            StatusCode::BAD_REQUEST,
            "invalid_range",
            "From must be before to, at most a year apart.",
        );
    }
    let days = Days { from: day_of(from), to: day_of(to) };
    let cells = match s.event_log.cells(&days, Dimension::Product).await {
        Ok((cells, _)) => cells,
        Err(e) => return failed(Some(nav), &e),
    };
    let labels: Vec<String> = (0..=(to - from) / 86_400).map(|i| day_of(from + i * 86_400)).collect();
    let mut series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut completed: BTreeMap<String, u64> = BTreeMap::new();
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    for c in &cells {
        match c.metric.as_str() {
            metric::INITIATED => {
                if let Some(i) = labels.iter().position(|d| *d == c.day) {
                    series.entry(c.value.clone()).or_insert_with(|| vec![0; labels.len()])[i] += c.n;
                }
            }
            metric::COMPLETED => *completed.entry(c.value.clone()).or_default() += c.n,
            metric::BYTES => *bytes.entry(c.value.clone()).or_default() += c.n,
            _ => {}
        }
    }
    let series: Vec<(String, Vec<u64>)> = series.into_iter().collect();
    let chart = crate::http::chart::stacked_bars("Downloads started per day, by product", &labels, &series);
    let rows: Vec<(String, u64, u64, String)> = series
        .iter()
        .map(|(p, counts)| {
            let started = counts.iter().sum();
            (p.clone(), started, completed.get(p).copied().unwrap_or(0), human_size(bytes.get(p).copied().unwrap_or(0)))
        })
        .collect();
    let total = rows.iter().map(|r| r.1).sum();
    view(StatusCode::OK, &ReportsPage { nav: Some(nav), from: days.from, to: days.to, chart, rows, total })
}
