//! Releases: every product's, a release's page, publish / yank / restore.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;

use super::{CsrfForm, Nav, error, failed, signed, view};
use crate::catalog::{ReleaseAction, Timestamp};
use crate::http::portal::{human_size, same, see_other, word};
use crate::services::Services;
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
    let mut products = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match s.catalog.products(cursor.as_deref(), Some(200)).await {
            Ok(p) => p,
            Err(e) => return failed(Some(nav), &e),
        };
        for p in page.items {
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
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
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
    let release = match s.catalog.release(&product, &v).await {
        Ok(Some(r)) => r,
        Ok(None) => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such release."),
        Err(e) => return failed(Some(nav), &e),
    };
    let artifacts = match s.catalog.artifacts(&product, &v).await {
        Ok(a) => a,
        Err(e) => return failed(Some(nav), &e),
    };
    let now = Timestamp(s.clock.now_unix());
    let eligible = match crate::entitlement::access::eligible_customers(&s.catalog, &release, &artifacts, now).await {
        Ok(e) => e,
        Err(e) => return failed(Some(nav), &e),
    };
    let may_change = session.role.may(&Method::POST, &format!("/admin/v1/products/{product}"));
    let t = ReleasePage {
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

/// `POST /console/releases/{product}/{version}/{publish|yank|restore}`: as
/// the admin API does it (events, notices), if the session's role may.
pub(super) async fn release_action(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((product, version, action)): Path<(String, String, String)>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, nav) = match signed(&s, &headers, "releases").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    if !same(&form.map(|Form(f)| f.csrf).unwrap_or_default(), &session.csrf) {
        return error(Some(nav), StatusCode::FORBIDDEN, "csrf_refused", "This form is out of date; reload the page.");
    }
    let path = format!("/admin/v1/products/{product}/releases/{version}/{action}");
    if !session.role.may(&Method::POST, &path) {
        let detail = format!("You are signed in as {} ({}): it does not change releases.", nav.who, nav.role);
        return error(Some(nav), StatusCode::FORBIDDEN, "role_forbids", detail);
    }
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
            see_other(&format!(
                "/console/releases/{}/{}",
                crate::signing::encode_segment(&product),
                crate::signing::encode_segment(&version)
            ))
        }
        Err(e) => {
            let p = e.to_problem();
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(Some(nav), status, p.code, p.detail.unwrap_or_default())
        }
    }
}
