//! Reports with charts drawn on the server as SVG, from the same per-day
//! counters as `GET /admin/v1/reports/downloads`, so every number here is
//! the API's: downloads started per day stacked by a grouping, started
//! against completed, denials by reason, top customers, the platform mix;
//! each table exportable as CSV.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{Nav, error, failed, signed, view};
use crate::events::report::{self, Dimension, ReportRow};
use crate::events::{Days, day_of, metric};
use crate::http::portal::human_size;
use crate::services::Services;

/// The groupings the first chart may be stacked by.
const GROUPINGS: [(&str, Dimension); 4] = [
    ("product", Dimension::Product),
    ("release", Dimension::Release),
    ("platform", Dimension::Platform),
    ("customer", Dimension::Customer),
];
/// Series beyond this many are summed into "other" in the stacked chart.
const MAX_SERIES: usize = 8;
/// Rows of the top-customers table.
const TOP: usize = 10;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ReportQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

/// What the query asks for, or the page saying what is wrong with it.
struct Asked {
    days: Days,
    labels: Vec<String>,
    group: (&'static str, Dimension),
    query: String,
}

fn asked(s: &Services, q: &ReportQuery) -> Result<Asked, (&'static str, String)> {
    let today = s.clock.now_unix() / 86_400 * 86_400;
    let day = |text: Option<&str>, default: u64| match text.filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(t) => crate::http::admin_events::parse_day("date", t)
            .map_err(|_| ("invalid_date", format!("{t:?} is not a date (YYYY-MM-DD)."))),
    };
    let to = day(q.to.as_deref(), today)?;
    let from = day(q.from.as_deref(), to.saturating_sub(13 * 86_400))?;
    if from > to || (to - from) / 86_400 >= 366 {
        return Err(("invalid_range", "From must be before to, at most a year apart.".into()));
    }
    let name = q.group.as_deref().filter(|g| !g.is_empty()).unwrap_or("product");
    let group = GROUPINGS.into_iter().find(|(n, _)| *n == name).ok_or_else(|| {
        ("invalid_group", format!("{name:?} is not a grouping (product, release, platform, customer)."))
    })?;
    let labels: Vec<String> = (0..=(to - from) / 86_400).map(|i| day_of(from + i * 86_400)).collect();
    let days = Days { from: day_of(from), to: day_of(to) };
    let query = format!("from={}&to={}&group={}", days.from, days.to, group.0);
    Ok(Asked { days, labels, group, query })
}

/// A signed-in request for a report and what it asks, or the answer.
async fn report_request(
    s: &Services,
    headers: &HeaderMap,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(Nav, Asked), Response> {
    let (_, nav) = signed(s, headers, "reports").await?;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    match asked(s, &q) {
        Ok(a) => Ok((nav, a)),
        Err((code, detail)) => Err(error(Some(nav), StatusCode::BAD_REQUEST, code, detail)),
    }
}

#[derive(Template)]
#[template(path = "console/reports.html")]
struct ReportsPage {
    nav: Option<Nav>,
    from: String,
    to: String,
    group: &'static str,
    groupings: Vec<&'static str>,
    query: String,
    started_chart: String,
    compared_chart: String,
    denials_chart: String,
    platforms_chart: String,
    rows: Vec<Row>,
    total: Row,
    denials: Vec<(String, u64)>,
    customers: Vec<Row>,
    platforms: Vec<Row>,
}

/// A table row, as shown.
struct Row {
    group: String,
    started: u64,
    completed: u64,
    aborted: u64,
    bytes: String,
    customers: u64,
    denied: u64,
}

impl Row {
    fn of(r: &ReportRow) -> Self {
        Row {
            group: r.group.clone(),
            started: r.initiations,
            completed: r.completions,
            aborted: r.aborted,
            bytes: human_size(r.bytes),
            customers: r.customers,
            denied: r.denied(),
        }
    }
}

/// The report API's rows for `dimension` over `days`.
async fn report_rows(s: &Services, days: &Days, dimension: Dimension) -> Result<Vec<ReportRow>, String> {
    let (cells, seen) = s.event_log.cells(days, dimension).await.map_err(|e| e.to_string())?;
    Ok(report::rows(&cells, &seen))
}

/// `GET /console/reports?from=&to=&group=`.
pub(super) async fn reports_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (nav, a) = match report_request(&s, &headers, q).await {
        Ok(asked) => asked,
        Err(r) => return r,
    };
    let found = async {
        // The grouping's counters read once: its chart, table and total
        // agree with each other whatever arrives meanwhile.
        let (cells, seen) = s.event_log.cells(&a.days, a.group.1).await.map_err(|e| e.to_string())?;
        let by_group = report::rows(&cells, &seen);
        let by_day = report_rows(&s, &a.days, Dimension::Day).await?;
        let by_customer = report_rows(&s, &a.days, Dimension::Customer).await?;
        let by_platform = report_rows(&s, &a.days, Dimension::Platform).await?;
        Ok::<_, String>((cells, by_group, by_day, by_customer, by_platform, seen))
    };
    let (cells, by_group, by_day, mut by_customer, mut by_platform, seen) = match found.await {
        Ok(found) => found,
        Err(e) => return failed(Some(nav), &e),
    };

    // Started per day, stacked by the grouping (the largest groups; the
    // rest summed as "other").
    let mut series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in cells.iter().filter(|c| c.metric == metric::INITIATED) {
        if let Some(i) = a.labels.iter().position(|d| *d == c.day) {
            series.entry(c.value.clone()).or_insert_with(|| vec![0; a.labels.len()])[i] += c.n;
        }
    }
    let mut series: Vec<(String, Vec<u64>)> = series.into_iter().collect();
    series.sort_by_key(|(_, v)| std::cmp::Reverse(v.iter().sum::<u64>()));
    if series.len() > MAX_SERIES {
        let rest = series.split_off(MAX_SERIES - 1);
        let mut other = vec![0; a.labels.len()];
        for (_, v) in rest {
            for (o, n) in other.iter_mut().zip(v) {
                *o += n;
            }
        }
        series.push(("other".into(), other));
    }
    let title = format!("Downloads started per day, by {}", a.group.0);
    let started_chart = crate::http::chart::stacked_bars("started", &title, &a.labels, &series);

    // Started against completed, per day.
    let per_day = |f: fn(&ReportRow) -> u64| -> Vec<u64> {
        a.labels.iter().map(|d| by_day.iter().find(|r| r.group == *d).map_or(0, f)).collect()
    };
    let compared =
        vec![("started".to_owned(), per_day(|r| r.initiations)), ("completed".to_owned(), per_day(|r| r.completions))];
    let compared_chart =
        crate::http::chart::grouped_bars("compared", "Downloads started and completed per day", &a.labels, &compared);

    // Denials by reason, over every group.
    let mut denials: BTreeMap<String, u64> = BTreeMap::new();
    for r in &by_day {
        for (reason, n) in &r.denials {
            *denials.entry(reason.clone()).or_default() += n;
        }
    }
    let mut denials: Vec<(String, u64)> = denials.into_iter().collect();
    denials.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let denials_chart = crate::http::chart::bars("denials", "Downloads refused, by reason", &denials);

    by_customer.sort_by_key(|r| (std::cmp::Reverse(r.initiations), std::cmp::Reverse(r.bytes)));
    by_customer.truncate(TOP);
    by_platform.sort_by_key(|r| std::cmp::Reverse(r.initiations));
    let platform_items: Vec<(String, u64)> = by_platform.iter().map(|r| (r.group.clone(), r.initiations)).collect();
    let platforms_chart = crate::http::chart::bars("platforms", "Downloads started, by platform", &platform_items);

    let total = report::total(&by_group, &seen);
    let t = ReportsPage {
        nav: Some(nav),
        from: a.days.from.clone(),
        to: a.days.to.clone(),
        group: a.group.0,
        groupings: GROUPINGS.iter().map(|(n, _)| *n).collect(),
        query: a.query,
        started_chart,
        compared_chart,
        denials_chart,
        platforms_chart,
        rows: by_group.iter().map(Row::of).collect(),
        total: Row::of(&total),
        denials,
        customers: by_customer.iter().map(Row::of).collect(),
        platforms: by_platform.iter().map(Row::of).collect(),
    };
    view(StatusCode::OK, &t)
}

/// `GET /console/reports/{table}.csv?from=&to=&group=`: a table of the
/// page as CSV — `downloads` (by the grouping; the report API's CSV),
/// `customers`, `platforms`, `days`, `denials`.
pub(super) async fn report_csv(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path(file): Path<String>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (nav, a) = match report_request(&s, &headers, q).await {
        Ok(asked) => asked,
        Err(r) => return r,
    };
    let dimension = match file.as_str() {
        "downloads.csv" => a.group.1,
        "customers.csv" => Dimension::Customer,
        "platforms.csv" => Dimension::Platform,
        "days.csv" | "denials.csv" => Dimension::Day,
        _ => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such table."),
    };
    let rows = match report_rows(&s, &a.days, dimension).await {
        Ok(rows) => rows,
        Err(e) => return failed(Some(nav), &e),
    };
    let body = if file == "denials.csv" {
        let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &rows {
            for (reason, n) in &r.denials {
                *by_reason.entry(reason).or_default() += n;
            }
        }
        let mut out = String::from("reason,denied\r\n");
        for (reason, n) in by_reason {
            out.push_str(&format!("{},{n}\r\n", report::csv_field(reason)));
        }
        out
    } else {
        report::csv(dimension, &rows)
    };
    crate::http::portal::csv_download(&format!("{}-{}-{}", file.trim_end_matches(".csv"), a.days.from, a.days.to), body)
}
