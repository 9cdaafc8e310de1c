//! Customers: search, a customer's page.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{Nav, error, failed, signed, view};
use crate::catalog::Timestamp;
use crate::events::Filter;
use crate::http::portal::word;
use crate::services::Services;

// Customers.

#[derive(Template)]
#[template(path = "console/customers.html")]
struct CustomersPage {
    nav: Option<Nav>,
    q: String,
    rows: Vec<CustomerRow>,
}

struct CustomerRow {
    id: String,
    name: String,
    status: String,
    entitlements: usize,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
}

/// `GET /console/customers?q=`: every customer whose id or name contains
/// `q` (any case).
pub(super) async fn customers_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (_, nav) = match signed(&s, &headers, "customers").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q.q.unwrap_or_default()).unwrap_or_default();
    let needle = q.trim().to_lowercase();
    let customers = match s.catalog.all_customers().await {
        Ok(c) => c,
        Err(e) => return failed(Some(nav), &e),
    };
    let mut rows = Vec::new();
    for c in customers {
        if !needle.is_empty() && !c.id.to_lowercase().contains(&needle) && !c.name.to_lowercase().contains(&needle) {
            continue;
        }
        let entitlements = match s.catalog.entitlements_of(&c.id).await {
            Ok(e) => e.len(),
            Err(e) => return failed(Some(nav), &e),
        };
        rows.push(CustomerRow { status: word(&c.status), id: c.id, name: c.name, entitlements });
    }
    view(StatusCode::OK, &CustomersPage { nav: Some(nav), q, rows })
}

#[derive(Template)]
#[template(path = "console/customer.html")]
struct CustomerPage {
    nav: Option<Nav>,
    id: String,
    name: String,
    status: String,
    entitlements: Vec<[String; 6]>,
    users: Vec<[String; 3]>,
    keys: Vec<[String; 3]>,
    events: Vec<[String; 4]>,
}

/// `GET /console/customers/{id}`: entitlements, portal users, API keys and
/// the newest events.
pub(super) async fn customer_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_, nav) = match signed(&s, &headers, "customers").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let customer = match s.catalog.customer(&id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", format!("No customer {id:?}.")),
        Err(e) => return failed(Some(nav), &e),
    };
    let date = |t: Option<Timestamp>| t.map_or_else(|| "—".to_owned(), |t| t.to_string());
    let found = async {
        let entitlements = s.catalog.entitlements_of(&id).await.map_err(|e| e.to_string())?;
        let users = crate::portal::Portal::new(&s).users_of(&id).await.map_err(|e| e.to_string())?;
        let keys = s.catalog.api_keys(&id).await.map_err(|e| e.to_string())?;
        let filter = Filter { types: vec![], customer: Some(id.clone()), product: None };
        let events = s.event_log.recent(&filter, 20, 20_000).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((entitlements, users, keys, events))
    };
    let (entitlements, users, keys, events) = match found.await {
        Ok(found) => found,
        Err(e) => return failed(Some(nav), &e),
    };
    let t = CustomerPage {
        nav: Some(nav),
        name: customer.name,
        status: word(&customer.status),
        entitlements: entitlements
            .into_iter()
            .map(|e| {
                let channels = e.channels.iter().map(word).collect::<Vec<_>>().join(", ");
                [e.id, e.product, word(&e.license), e.versions.to_string(), channels, date(e.expires_at)]
            })
            .collect(),
        users: users.into_iter().map(|u| [u.email, u.role.as_str().to_owned(), date(u.last_sign_in_at)]).collect(),
        keys: keys
            .into_iter()
            .map(|k| {
                let state = k.revoked_at.map_or_else(|| "active".to_owned(), |t| format!("revoked {t}"));
                [if k.name.is_empty() { k.id } else { k.name }, date(k.last_used_at), state]
            })
            .collect(),
        events: events
            .into_iter()
            .map(|e| {
                let at =
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at));
                let sub = &e.subject;
                let what = [&sub.product, &sub.version, &sub.filename]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ");
                let detail = serde_json::to_value(&e.detail).ok().map(|v| v["data"].to_string()).unwrap_or_default();
                [at.to_string(), e.event_type().as_str().to_owned(), what, detail]
            })
            .collect(),
        id,
    };
    view(StatusCode::OK, &t)
}
