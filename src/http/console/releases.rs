//! Releases: every product's, a release's page, publish / yank / restore.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;

use super::{CsrfForm, Nav, error, failed, signed, view};
use crate::catalog::{ReleaseAction, Timestamp};
use crate::events::day_of;
use crate::http::admin_api::audience;
use crate::http::admin_events::{AdoptionView, adoption_of};
use crate::http::portal::{human_size, see_other, word};
use crate::services::Services;
use crate::signing::encode_segment;
use semver::Version;

// Releases.

#[derive(Template)]
#[template(path = "console/releases.html")]
struct ReleasesPage {
    nav: Option<Nav>,
    products: Vec<(String, String, Vec<[String; 4]>)>,
}

/// `GET /console/releases`: every product's releases, newest first.
pub(super) async fn releases_page(State(s): State<Arc<Services>>, headers: HeaderMap) -> Response {
    let (_, nav) = match signed(&s, &headers, "releases").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let all = match s.catalog.all_products().await {
        Ok(p) => p,
        Err(e) => return failed(Some(nav), &e),
    };
    let mut products = Vec::new();
    for p in all {
        let mut releases = match s.catalog.all_releases(&p.id).await {
            Ok(r) => r,
            Err(e) => return failed(Some(nav), &e),
        };
        releases.sort_by(|a, b| b.version.cmp(&a.version));
        let rows = releases
            .into_iter()
            .map(|r| {
                let published = r.published_at.map_or_else(String::new, |t| t.to_string());
                [r.version.to_string(), word(&r.channel), word(&r.status), published]
            })
            .collect();
        products.push((p.id, p.name, rows));
    }
    view(StatusCode::OK, &ReleasesPage { nav: Some(nav), products })
}

#[derive(Template)]
#[template(path = "console/release.html")]
struct ReleasePage {
    nav: Option<Nav>,
    csrf: String,
    product: String,
    version: String,
    status: String,
    channel: String,
    critical: bool,
    files: Vec<[String; 4]>,
    eligible: Vec<[String; 3]>,
    /// The session's role may publish or yank it.
    may_change: bool,
    rollout: Option<u8>,
    url: String,
    /// Entitled customers who started a download of it, who completed one.
    adopted: usize,
    completed: usize,
    adoption_chart: String,
    /// Customer, name, first started, first completed.
    adopters: Vec<[String; 4]>,
    not_adopted: Vec<[String; 2]>,
}

/// Adoption over time is drawn for at most this many days.
const ADOPTION_DAYS: u64 = 90;

/// Entitled customers who had started a download by each day, from the
/// release's publication (or first download) to today.
fn adoption_chart(view: &AdoptionView, published: Option<Timestamp>, now: u64) -> String {
    let firsts: Vec<u64> =
        view.downloaded.iter().filter_map(|a| a.first_initiated.or(a.first_completed)).map(|t| t.0).collect();
    let start = published.map(|t| t.0).or_else(|| firsts.iter().copied().min()).unwrap_or(now);
    let today = now / 86_400;
    let first_day = (start / 86_400).max(today.saturating_sub(ADOPTION_DAYS - 1)).min(today);
    let labels: Vec<String> = (first_day..=today).map(|d| day_of(d * 86_400)).collect();
    let counts: Vec<u64> =
        (first_day..=today).map(|d| firsts.iter().filter(|t| **t / 86_400 <= d).count() as u64).collect();
    let series = vec![("customers who have it".to_owned(), counts)];
    crate::http::chart::stacked_bars(
        "adoption",
        &format!("Entitled customers who have downloaded it, by day ({} entitled)", view.entitled),
        &labels,
        &series,
    )
}

/// `GET /console/releases/{product}/{version}`: the release, its files,
/// and the customers it reaches (shown before publishing, and for a
/// yank, before yanking).
pub(super) async fn release_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((product, version)): Path<(String, String)>,
) -> Response {
    let (session, nav) = match signed(&s, &headers, "releases").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let Ok(v) = Version::parse(&version) else {
        return error(Some(nav), StatusCode::NOT_FOUND, "not_found", format!("{version:?} is not a version."));
    };
    let (release, artifacts, eligible) = match audience(&s, &product, &v).await {
        Ok(Some(found)) => found,
        Ok(None) => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such release."),
        Err(e) => return failed(Some(nav), &e),
    };
    let now = Timestamp(s.clock.now_unix());
    let may_change = session.role.may(&Method::POST, &format!("/admin/v1/products/{product}"));
    let adoption = match adoption_of(&s, &release, &eligible).await {
        Ok(a) => a,
        Err(e) => return failed(Some(nav), &e),
    };
    let date = |t: Option<Timestamp>| t.map_or_else(|| "—".to_owned(), |t| t.to_string());
    let t = ReleasePage {
        url: format!("/console/releases/{}/{}", encode_segment(&product), encode_segment(&v.to_string())),
        rollout: release.rollout,
        adopted: adoption.downloaded.len(),
        completed: adoption.completed,
        adoption_chart: adoption_chart(&adoption, release.published_at, now.0),
        adopters: adoption
            .downloaded
            .iter()
            .map(|a| [a.customer.clone(), a.name.clone(), date(a.first_initiated), date(a.first_completed)])
            .collect(),
        not_adopted: adoption.not_downloaded.iter().map(|a| [a.customer.clone(), a.name.clone()]).collect(),
        csrf: session.csrf,
        nav: Some(nav),
        status: word(&release.status),
        channel: word(&release.channel),
        critical: release.critical,
        files: artifacts.into_iter().map(|a| [a.filename, a.platform, human_size(a.size), a.sha256]).collect(),
        eligible: eligible.into_iter().map(|e| [e.customer, e.name, e.platforms.join(", ")]).collect(),
        may_change,
        product,
        version: v.to_string(),
    };
    view(StatusCode::OK, &t)
}

/// `GET /console/releases/{product}/{version}/adoption.csv`: every
/// customer entitled to it, whether and when they took it.
pub(super) async fn adoption_csv(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((product, version, file)): Path<(String, String, String)>,
) -> Response {
    let (_, nav) = match signed(&s, &headers, "releases").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    if file != "adoption.csv" {
        return error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such page.");
    }
    let Ok(v) = Version::parse(&version) else {
        return error(Some(nav), StatusCode::NOT_FOUND, "not_found", format!("{version:?} is not a version."));
    };
    let found = async {
        let Some((release, _, eligible)) = audience(&s, &product, &v).await? else { return Ok(None) };
        adoption_of(&s, &release, &eligible).await.map(Some)
    };
    let view = match found.await {
        Ok(Some(view)) => view,
        Ok(None) => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such release."),
        Err(e) => return failed(Some(nav), &e),
    };
    let field = crate::events::report::csv_field;
    let date = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
    let mut out = String::from("customer,name,downloaded,first_started,first_completed\r\n");
    for (a, took) in view.downloaded.iter().map(|a| (a, true)).chain(view.not_downloaded.iter().map(|a| (a, false))) {
        out.push_str(&format!(
            "{},{},{},{},{}\r\n",
            field(&a.customer),
            field(&a.name),
            if took { "yes" } else { "no" },
            date(a.first_initiated),
            date(a.first_completed)
        ));
    }
    crate::http::portal::csv_download(&format!("adoption-{}-{}", view.product, view.version), out)
}

/// `POST /console/releases/{product}/{version}/{publish|yank|restore}`: as
/// the admin API does it (events, notices), if the session's role may.
pub(super) async fn release_action(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((product, version, action)): Path<(String, String, String)>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let path = format!("/admin/v1/products/{product}/releases/{version}/{action}");
    let (session, nav) =
        match super::form_session(&s, &headers, "releases", &csrf, (Method::POST, &path), "releases").await {
            Ok(signed) => signed,
            Err(r) => return r,
        };
    let action = match action.as_str() {
        "publish" => ReleaseAction::Publish { backdated_to: None },
        "yank" => ReleaseAction::Yank,
        "restore" => ReleaseAction::Restore,
        _ => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such action."),
    };
    let Ok(v) = Version::parse(&version) else {
        return error(Some(nav), StatusCode::NOT_FOUND, "not_found", format!("{version:?} is not a version."));
    };
    match super::attributed(&session, crate::http::admin_api::change_release(&s, product.clone(), v, action)).await {
        Ok(_) => {
            tracing::info!(token = %session.token_id, product = %product, version = %version, "console release change");
            see_other(&format!("/console/releases/{}/{}", encode_segment(&product), encode_segment(&version)))
        }
        Err(e) => {
            let p = e.to_problem();
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(Some(nav), status, p.code, p.detail.unwrap_or_default())
        }
    }
}
