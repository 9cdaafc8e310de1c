//! Customers: search, create, a customer's page (entitlements, quota use,
//! users, keys, downloads and denials), edit and suspend, entitlements
//! added, edited and removed with what is wrong shown beside its field.
//!
//! Every write goes through the admin API's own functions (its checks, its
//! events) and carries the revision the form was read at: a form posted
//! after someone else changed the record is shown again with the news, not
//! written over it.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use semver::VersionReq;
use serde::Deserialize;

use super::{ConsoleSession, Nav, error, failed, signed, view};
use crate::catalog::store::Expect;
use crate::catalog::{
    CatalogError, Channel, Customer, CustomerStatus, Entitlement, EntitlementStatus, License, Timestamp,
};
use crate::events::{EventType, Filter, day_of};
use crate::http::admin_api::{AdminError, CustomerBody, remove_entitlement, write_customer, write_entitlement};
use crate::http::portal::{see_other, word};
use crate::services::Services;
use crate::signing::encode_segment;

/// A form's fields, as posted (repeated names kept: the channel boxes).
type Fields = Vec<(String, String)>;

fn field<'f>(f: &'f Fields, name: &str) -> &'f str {
    f.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str()).trim()
}

/// What is wrong with a form: beside a field, or about the whole form.
#[derive(Debug, Default)]
struct Problems {
    fields: Vec<(&'static str, String)>,
    form: Option<String>,
    /// The record changed meanwhile, or the id is taken: `409`, not `422`.
    conflict: bool,
}

impl Problems {
    fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.fields.push((field, message.into()));
    }

    fn of(&self, field: &str) -> String {
        self.fields.iter().find(|(f, _)| *f == field).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_none()
    }

    /// The status of a page showing these problems.
    fn status(&self) -> StatusCode {
        match (self.is_empty(), self.conflict) {
            (true, _) => StatusCode::OK,
            (false, true) => StatusCode::CONFLICT,
            (false, false) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// The admin API's refusal, placed beside the field it names.
    fn from_admin(e: &AdminError) -> Self {
        let mut p = Problems::default();
        match e {
            AdminError::Catalog(CatalogError::Invalid { field, reason }) => p.add(field, reason.clone()),
            AdminError::Catalog(CatalogError::Missing { kind, id }) if *kind == "product" => {
                p.add("product", format!("There is no product {id:?}."));
            }
            AdminError::Catalog(CatalogError::PreconditionFailed) => {
                p.conflict = true;
                p.form = Some(
                    "Someone changed this since you opened the form (or created it first). Nothing was written; \
                     the form now shows what is stored — check it and save again."
                        .into(),
                );
            }
            other => p.form = Some(other.to_problem().detail.unwrap_or_else(|| "That did not work.".into())),
        }
        p
    }
}

/// Changes to customers are the admin API's `/admin/v1/customers/…`.
const CUSTOMERS: &str = "/admin/v1/customers/-";

/// A posted form's fields and session, checked ([`super::form_session`]).
async fn posted(
    s: &Services,
    headers: &HeaderMap,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
    method: Method,
) -> Result<(ConsoleSession, Nav, Fields), Response> {
    let fields = form.map(|Form(f)| f).unwrap_or_default();
    let (session, nav) =
        super::form_session(s, headers, "customers", field(&fields, "csrf"), (method, CUSTOMERS), "customers").await?;
    Ok((session, nav, fields))
}

fn may_change(session: &ConsoleSession) -> bool {
    session.role.may(&Method::PUT, CUSTOMERS)
}

fn customer_url(id: &str) -> String {
    format!("/console/customers/{}", encode_segment(id))
}

/// The revision a form was read at (`""`: none, the record is new).
fn expect(fields: &Fields) -> Result<Expect, ()> {
    match field(fields, "revision") {
        "" => Ok(Expect::Absent),
        r => r.parse().map(Expect::Revision).map_err(|_| ()),
    }
}

// The list, and a new customer.

#[derive(Template)]
#[template(path = "console/customers.html")]
struct CustomersPage {
    nav: Option<Nav>,
    csrf: String,
    q: String,
    rows: Vec<CustomerRow>,
    may_change: bool,
    new_id: String,
    new_name: String,
    problems: Problems,
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

async fn list(s: &Services, q: &str) -> Result<Vec<CustomerRow>, CatalogError> {
    let needle = q.trim().to_lowercase();
    let mut rows = Vec::new();
    for c in s.catalog.all_customers().await? {
        if !needle.is_empty() && !c.id.to_lowercase().contains(&needle) && !c.name.to_lowercase().contains(&needle) {
            continue;
        }
        let entitlements = s.catalog.entitlements_of(&c.id).await?.len();
        rows.push(CustomerRow { status: word(&c.status), id: c.id, name: c.name, entitlements });
    }
    Ok(rows)
}

/// `GET /console/customers?q=`: every customer whose id or name contains
/// `q` (any case), and the form for a new one.
pub(super) async fn customers_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (session, nav) = match signed(&s, &headers, "customers").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q.q.unwrap_or_default()).unwrap_or_default();
    let rows = match list(&s, &q).await {
        Ok(rows) => rows,
        Err(e) => return failed(Some(nav), &e),
    };
    let t = CustomersPage {
        csrf: session.csrf.clone(),
        may_change: may_change(&session),
        nav: Some(nav),
        q,
        rows,
        new_id: String::new(),
        new_name: String::new(),
        problems: Problems::default(),
    };
    view(StatusCode::OK, &t)
}

/// `POST /console/customers`: a new customer (`id`, `name`); never over an
/// existing one.
pub(super) async fn create_customer(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, nav, fields) = match posted(&s, &headers, form, Method::PUT).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (id, name) = (field(&fields, "id").to_owned(), field(&fields, "name").to_owned());
    let mut problems = Problems::default();
    if id.is_empty() {
        problems.add("id", "Give the customer an id (your system's, e.g. its account number).");
    }
    if name.is_empty() {
        problems.add("name", "Give the customer a name.");
    }
    if problems.is_empty() {
        let body = CustomerBody { name: name.clone(), status: None, allowed_cidrs: None, quota: None };
        let written = super::attributed(&session, write_customer(&s, &id, Some(Expect::Absent), &body)).await;
        match written {
            Ok(_) => {
                tracing::info!(token = %session.token_id, customer = %id, "console created a customer");
                return see_other(&customer_url(&id));
            }
            Err(AdminError::Catalog(CatalogError::PreconditionFailed)) => {
                problems.add("id", format!("There is a customer {id:?} already."));
                problems.conflict = true;
            }
            Err(e) => problems = Problems::from_admin(&e),
        }
    }
    let rows = match list(&s, "").await {
        Ok(rows) => rows,
        Err(e) => return failed(Some(nav), &e),
    };
    let t = CustomersPage {
        csrf: session.csrf.clone(),
        may_change: true,
        nav: Some(nav),
        q: String::new(),
        rows,
        new_id: id,
        new_name: name,
        problems,
    };
    view(t.problems.status(), &t)
}

// A customer.

#[derive(Template)]
#[template(path = "console/customer.html")]
struct CustomerPage {
    nav: Option<Nav>,
    csrf: String,
    may_change: bool,
    id: String,
    url: String,
    revision: u64,
    /// The form's values: as stored, or as posted when refused.
    name: String,
    status: String,
    networks: String,
    problems: Problems,
    entitlements: Vec<EntitlementRow>,
    usage: Vec<crate::http::portal::UsageView>,
    users: Vec<[String; 3]>,
    keys: Vec<[String; 3]>,
    downloads: Vec<[String; 4]>,
    denials: Vec<[String; 4]>,
}

struct EntitlementRow {
    id: String,
    url: String,
    product: String,
    license: String,
    versions: String,
    channels: String,
    dates: String,
    status: String,
}

fn date(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "—".to_owned(), |t| t.to_string())
}

fn event_rows(events: &[crate::events::Event]) -> Vec<[String; 4]> {
    events
        .iter()
        .map(|e| {
            let at = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at));
            let sub = &e.subject;
            let what = [&sub.product, &sub.version, &sub.filename]
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            let data = serde_json::to_value(&e.detail).ok().map(|v| v["data"].clone()).unwrap_or_default();
            let why = match e.event_type() {
                EventType::DownloadDenied => {
                    format!("{} ({})", data["reason"].as_str().unwrap_or("-"), data["surface"].as_str().unwrap_or("-"))
                }
                _ => data["via"].as_str().or(data["by"].as_str()).unwrap_or("").to_owned(),
            };
            [at.to_string(), e.event_type().as_str().to_owned(), what, why]
        })
        .collect()
}

/// The page, with the form's values as given (`None`: as stored).
async fn customer_view(
    s: &Services,
    session: &ConsoleSession,
    nav: Nav,
    id: &str,
    posted: Option<&Fields>,
    problems: Problems,
) -> Response {
    let stored = match s.catalog.customer_stored(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", format!("No customer {id:?}.")),
        Err(e) => return failed(Some(nav), &e),
    };
    let customer: &Customer = &stored.record;
    let found = async {
        let entitlements = s.catalog.entitlements_of(id).await.map_err(|e| e.to_string())?;
        let users = crate::portal::Portal::new(s).users_of(id).await.map_err(|e| e.to_string())?;
        let keys = s.catalog.api_keys(id).await.map_err(|e| e.to_string())?;
        let usage = crate::downloads::usage(s, customer, None).await.map_err(|e| e.to_string())?;
        let of = |t| Filter { types: vec![t], customer: Some(id.to_owned()), product: None };
        let log = &s.event_log;
        let downloads = log.recent(&of(EventType::DownloadInitiated), 10, 20_000).await.map_err(|e| e.to_string())?;
        let denials = log.recent(&of(EventType::DownloadDenied), 10, 20_000).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((entitlements, users, keys, usage, downloads, denials))
    };
    let (entitlements, users, keys, usage, downloads, denials) = match found.await {
        Ok(found) => found,
        Err(e) => return failed(Some(nav), &e),
    };
    // Values as posted keep the revision they were read at, so a second
    // Save cannot overwrite what someone else changed since.
    let (status, name, networks, revision) = match posted {
        Some(f) => (
            field(f, "status").to_owned(),
            field(f, "name").to_owned(),
            field(f, "networks").to_owned(),
            field(f, "revision").parse().unwrap_or(stored.revision),
        ),
        None => (
            word(&customer.status),
            customer.name.clone(),
            customer.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
            stored.revision,
        ),
    };
    let url = customer_url(id);
    let t = CustomerPage {
        csrf: session.csrf.clone(),
        may_change: may_change(session),
        nav: Some(nav),
        id: id.to_owned(),
        revision,
        name,
        status,
        networks,
        problems,
        entitlements: entitlements
            .into_iter()
            .map(|e| EntitlementRow {
                url: format!("{url}/entitlements/{}", encode_segment(&e.id)),
                product: e.product,
                license: word(&e.license),
                versions: e.versions.to_string(),
                channels: e.channels.iter().map(word).collect::<Vec<_>>().join(", "),
                dates: format!(
                    "{} → {}{}",
                    Day::Start.shown(e.starts_at),
                    e.expires_at.map_or_else(|| "no end".to_owned(), |t| format!("through {}", Day::Through.shown(t))),
                    e.maintenance_until
                        .map_or_else(String::new, |t| format!(" (updates until {})", Day::LastSecond.shown(t)))
                ),
                status: word(&e.status),
                id: e.id,
            })
            .collect(),
        usage: crate::http::portal::usage_views(&usage.usage),
        users: users.into_iter().map(|u| [u.email, u.role.as_str().to_owned(), date(u.last_sign_in_at)]).collect(),
        keys: keys
            .into_iter()
            .map(|k| {
                let state = k.revoked_at.map_or_else(|| "active".to_owned(), |t| format!("revoked {t}"));
                [if k.name.is_empty() { k.id } else { k.name }, date(k.last_used_at), state]
            })
            .collect(),
        downloads: event_rows(&downloads),
        denials: event_rows(&denials),
        url,
    };
    view(t.problems.status(), &t)
}

/// `GET /console/customers/{id}`.
pub(super) async fn customer_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, nav) = match signed(&s, &headers, "customers").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    customer_view(&s, &session, nav, &id, None, Problems::default()).await
}

/// `POST /console/customers/{id}`: name, status (suspend, reactivate) and
/// allowed networks, at the revision the form was read at.
pub(super) async fn edit_customer(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, nav, fields) = match posted(&s, &headers, form, Method::PUT).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut problems = Problems::default();
    let name = field(&fields, "name").to_owned();
    if name.is_empty() {
        problems.add("name", "A customer needs a name.");
    }
    let status = match field(&fields, "status") {
        "active" => Some(CustomerStatus::Active),
        "suspended" => Some(CustomerStatus::Suspended),
        other => {
            problems.add("status", format!("{other:?} is not a status (active or suspended)."));
            None
        }
    };
    let mut networks = Vec::new();
    for line in field(&fields, "networks").split([',', '\n', ' ']).map(str::trim).filter(|l| !l.is_empty()) {
        match line.parse::<ipnet::IpNet>() {
            Ok(n) => networks.push(n.trunc()),
            Err(_) => {
                problems.add("networks", format!("{line:?} is not a network (203.0.113.0/24, 2001:db8::/32)."));
                break;
            }
        }
    }
    let Ok(pre) = expect(&fields) else {
        return error(Some(nav), StatusCode::BAD_REQUEST, "invalid_request", "The form's revision is not readable.");
    };
    if pre == Expect::Absent {
        // An edit is of a customer that exists.
        return error(Some(nav), StatusCode::BAD_REQUEST, "invalid_request", "The form names no revision.");
    }
    if problems.is_empty() {
        let body = CustomerBody { name, status, allowed_cidrs: Some(networks), quota: None };
        match super::attributed(&session, write_customer(&s, &id, Some(pre), &body)).await {
            Ok(_) => {
                tracing::info!(token = %session.token_id, customer = %id, "console changed a customer");
                return see_other(&customer_url(&id));
            }
            Err(e) => problems = Problems::from_admin(&e),
        }
    }
    // Changed meanwhile: shown as it is now, with the news.
    let posted = (!problems.conflict).then_some(&fields);
    customer_view(&s, &session, nav, &id, posted, problems).await
}

// Entitlements.

#[derive(Template)]
#[template(path = "console/entitlement.html")]
struct EntitlementPage {
    nav: Option<Nav>,
    csrf: String,
    may_change: bool,
    customer: String,
    customer_url: String,
    /// `None`: a new one.
    existing: Option<String>,
    action: String,
    revision: String,
    products: Vec<String>,
    v: EntitlementValues,
    problems: Problems,
}

/// How a form's UTC day stands for an entitlement's instant: it starts at
/// the day's first second; it works *through* its end day (the stored end
/// is exclusive: the next day's first second); "updates until" covers
/// releases published on that day too (its last second).
#[derive(Debug, Clone, Copy)]
enum Day {
    Start,
    Through,
    LastSecond,
}

impl Day {
    fn instant(self, day_start: u64) -> Timestamp {
        Timestamp(match self {
            Day::Start => day_start,
            Day::Through => day_start + 86_400,
            Day::LastSecond => day_start + 86_399,
        })
    }

    fn shown(self, t: Timestamp) -> String {
        match self {
            Day::Through => day_of(t.0.saturating_sub(1)),
            Day::Start | Day::LastSecond => day_of(t.0),
        }
    }
}

/// The form's values, as text.
#[derive(Debug, Default)]
struct EntitlementValues {
    id: String,
    product: String,
    license: String,
    starts: String,
    expires: String,
    maintenance: String,
    versions: String,
    channels: Vec<String>,
    platforms: String,
    status: String,
}

impl EntitlementValues {
    fn of(e: &Entitlement) -> Self {
        Self {
            id: e.id.clone(),
            product: e.product.clone(),
            license: word(&e.license),
            starts: Day::Start.shown(e.starts_at),
            expires: e.expires_at.map(|t| Day::Through.shown(t)).unwrap_or_default(),
            maintenance: e.maintenance_until.map(|t| Day::LastSecond.shown(t)).unwrap_or_default(),
            versions: e.versions.to_string(),
            channels: e.channels.iter().map(word).collect(),
            platforms: e.platforms.as_ref().map(|p| p.join(", ")).unwrap_or_default(),
            status: word(&e.status),
        }
    }

    fn posted(f: &Fields) -> Self {
        Self {
            id: field(f, "id").to_owned(),
            product: field(f, "product").to_owned(),
            license: field(f, "license").to_owned(),
            starts: field(f, "starts").to_owned(),
            expires: field(f, "expires").to_owned(),
            maintenance: field(f, "maintenance").to_owned(),
            versions: field(f, "versions").to_owned(),
            channels: f.iter().filter(|(k, _)| k == "channels").map(|(_, v)| v.clone()).collect(),
            platforms: field(f, "platforms").to_owned(),
            status: field(f, "status").to_owned(),
        }
    }

    fn has_channel(&self, c: &str) -> bool {
        self.channels.iter().any(|x| x == c)
    }

    /// The entitlement these values describe, or what is wrong with them.
    /// A date that still shows the stored value's day keeps the stored
    /// instant (the form shows days; the API may have set a time).
    fn entitlement(&self, customer: &str, before: Option<&Entitlement>) -> Result<Entitlement, Problems> {
        let mut p = Problems::default();
        let parse = |field: &'static str, text: &str, kept: Option<Timestamp>, day: Day, p: &mut Problems| {
            if text.is_empty() {
                return None;
            }
            if let Some(kept) = kept.filter(|k| day.shown(*k) == text) {
                return Some(kept);
            }
            match crate::http::admin_events::parse_day(field, text) {
                Ok(t) if text.len() == 10 => Some(day.instant(t)),
                _ => {
                    p.add(field, format!("{text:?} is not a date (YYYY-MM-DD)."));
                    None
                }
            }
        };
        if self.id.is_empty() {
            p.add("id", "Give the entitlement an id (your system's, e.g. the order line).");
        }
        if self.product.is_empty() {
            p.add("product", "Choose a product.");
        }
        let license = serde_json::from_value::<License>(serde_json::Value::String(self.license.clone()));
        if license.is_err() {
            p.add("license", "Choose a license type.");
        }
        let starts = parse("starts_at", &self.starts, before.map(|b| b.starts_at), Day::Start, &mut p);
        if self.starts.is_empty() {
            p.add("starts_at", "Give the day it starts.");
        }
        let expires = parse("expires_at", &self.expires, before.and_then(|b| b.expires_at), Day::Through, &mut p);
        let maintenance = parse(
            "maintenance_until",
            &self.maintenance,
            before.and_then(|b| b.maintenance_until),
            Day::LastSecond,
            &mut p,
        );
        let versions = if self.versions.is_empty() { Ok(VersionReq::STAR) } else { VersionReq::parse(&self.versions) };
        if let Err(e) = &versions {
            p.add("versions", format!("{:?} is not a version requirement (*, ^2, >=2.1, <3): {e}.", self.versions));
        }
        let mut channels = Vec::new();
        for c in &self.channels {
            match serde_json::from_value::<Channel>(serde_json::Value::String(c.clone())) {
                Ok(c) if !channels.contains(&c) => channels.push(c),
                Ok(_) => {}
                Err(_) => p.add("channels", format!("{c:?} is not a channel.")),
            }
        }
        if channels.is_empty() && p.of("channels").is_empty() {
            p.add("channels", "Tick at least one channel.");
        }
        let status = serde_json::from_value::<EntitlementStatus>(serde_json::Value::String(self.status.clone()));
        if status.is_err() {
            p.add("status", "Choose a status.");
        }
        let platforms: Vec<String> = self
            .platforms
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect();
        for platform in &platforms {
            if !crate::signing::is_valid_id(platform) {
                p.add("platforms", format!("{platform:?} is not a platform name (A-Z a-z 0-9 . _ -)."));
                break;
            }
        }
        if let (Some(s), Some(e)) = (starts, expires)
            && e <= s
            && p.of("expires_at").is_empty()
        {
            p.add("expires_at", "It must not end before it starts.");
        }
        match (license, status, versions, starts) {
            (Ok(license), Ok(status), Ok(versions), Some(starts_at)) if p.is_empty() => Ok(Entitlement {
                id: self.id.clone(),
                customer: customer.to_owned(),
                product: self.product.clone(),
                license,
                starts_at,
                expires_at: expires,
                maintenance_until: maintenance,
                versions,
                channels,
                platforms: (!platforms.is_empty()).then_some(platforms),
                status,
                // The console does not edit quotas (the API does); kept.
                quota: before.map(|b| b.quota).unwrap_or_default(),
            }),
            _ => Err(p),
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "one page's parts")]
async fn entitlement_view(
    s: &Services,
    session: &ConsoleSession,
    nav: Nav,
    customer: &str,
    existing: Option<(String, u64)>,
    v: EntitlementValues,
    problems: Problems,
) -> Response {
    let products = match s.catalog.all_products().await {
        Ok(p) => p.into_iter().map(|p| p.id).collect(),
        Err(e) => return failed(Some(nav), &e),
    };
    let customer_url = customer_url(customer);
    let action = match &existing {
        Some((id, _)) => format!("{customer_url}/entitlements/{}", encode_segment(id)),
        None => format!("{customer_url}/entitlements"),
    };
    let status = problems.status();
    let t = EntitlementPage {
        csrf: session.csrf.clone(),
        may_change: may_change(session),
        nav: Some(nav),
        customer: customer.to_owned(),
        customer_url,
        revision: existing.as_ref().map(|(_, r)| r.to_string()).unwrap_or_default(),
        existing: existing.map(|(id, _)| id),
        action,
        products,
        v,
        problems,
    };
    view(status, &t)
}

/// `GET /console/customers/{id}/new-entitlement`: the form for a new one,
/// starting today, stable channel, every version.
pub(super) async fn new_entitlement_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path(customer): Path<String>,
) -> Response {
    let (session, nav) = match signed(&s, &headers, "customers").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    match s.catalog.customer(&customer).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", format!("No customer {customer:?}.")),
        Err(e) => return failed(Some(nav), &e),
    }
    let v = EntitlementValues {
        license: "subscription".into(),
        starts: day_of(s.clock.now_unix()),
        versions: "*".into(),
        channels: vec!["stable".into()],
        status: "active".into(),
        ..EntitlementValues::default()
    };
    entitlement_view(&s, &session, nav, &customer, None, v, Problems::default()).await
}

/// `GET /console/customers/{id}/entitlements/{entitlement}`: its form.
pub(super) async fn entitlement_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((customer, id)): Path<(String, String)>,
) -> Response {
    let (session, nav) = match signed(&s, &headers, "customers").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    match s.catalog.entitlement_stored(&customer, &id).await {
        Ok(Some(e)) => {
            let v = EntitlementValues::of(&e.record);
            entitlement_view(&s, &session, nav, &customer, Some((id, e.revision)), v, Problems::default()).await
        }
        Ok(None) => error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such entitlement."),
        Err(e) => failed(Some(nav), &e),
    }
}

/// `POST /console/customers/{id}/entitlements` (new) and
/// `POST /console/customers/{id}/entitlements/{entitlement}` (replace, at
/// the revision read): checked here field by field, then by the admin
/// API's own rules; refused values are shown again beside their reasons.
pub(super) async fn create_entitlement(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path(customer): Path<String>,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Response {
    save_entitlement(&s, &headers, customer, None, form.map(|Form(f)| f).unwrap_or_default()).await
}

pub(super) async fn replace_entitlement(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((customer, id)): Path<(String, String)>,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Response {
    save_entitlement(&s, &headers, customer, Some(id), form.map(|Form(f)| f).unwrap_or_default()).await
}

async fn save_entitlement(
    s: &Services,
    headers: &HeaderMap,
    customer: String,
    existing: Option<String>,
    fields: Fields,
) -> Response {
    let csrf = field(&fields, "csrf");
    let (session, nav) =
        match super::form_session(s, headers, "customers", csrf, (Method::PUT, CUSTOMERS), "customers").await {
            Ok(signed) => signed,
            Err(r) => return r,
        };
    let pre = match (expect(&fields), &existing) {
        // A new one is written only where there is none.
        (_, None) => Expect::Absent,
        (Ok(Expect::Revision(r)), Some(_)) => Expect::Revision(r),
        _ => {
            return error(
                Some(nav),
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The form's revision is not readable.",
            );
        }
    };
    let mut v = EntitlementValues::posted(&fields);
    if let Some(id) = &existing {
        // The id is the URL's; a form cannot move an entitlement.
        v.id = id.clone();
    }
    let before = match &existing {
        Some(id) => match s.catalog.entitlement_stored(&customer, id).await {
            Ok(Some(e)) => Some(e),
            Ok(None) => return error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such entitlement."),
            Err(e) => return failed(Some(nav), &e),
        },
        None => None,
    };
    // Shown again with the revision it was read at (not the stored one):
    // saving it again cannot overwrite a change made meanwhile.
    let read_at = match pre {
        Expect::Revision(r) => r,
        Expect::Absent => 0,
    };
    let shown = existing.clone().map(|id| (id, read_at));
    let problems = match v.entitlement(&customer, before.as_ref().map(|b| &b.record)) {
        Err(p) => p,
        Ok(e) => {
            match super::attributed(&session, write_entitlement(s, &e, Some(pre))).await {
                Ok(_) => {
                    tracing::info!(token = %session.token_id, customer = %customer, entitlement = %e.id, "console saved an entitlement");
                    return see_other(&customer_url(&customer));
                }
                Err(AdminError::Catalog(CatalogError::PreconditionFailed)) if existing.is_none() => {
                    let mut p = Problems { conflict: true, ..Problems::default() };
                    p.add("id", format!("{:?} is taken: this customer has an entitlement by that id.", e.id));
                    p
                }
                Err(AdminError::Catalog(CatalogError::PreconditionFailed)) => {
                    // Shown as it is now, with the news.
                    let now = s.catalog.entitlement_stored(&customer, &e.id).await.ok().flatten();
                    let problems = Problems::from_admin(&AdminError::Catalog(CatalogError::PreconditionFailed));
                    return match now {
                        Some(now) => {
                            let values = EntitlementValues::of(&now.record);
                            let shown = Some((e.id.clone(), now.revision));
                            entitlement_view(s, &session, nav, &customer, shown, values, problems).await
                        }
                        None => error(Some(nav), StatusCode::NOT_FOUND, "not_found", "It was removed meanwhile."),
                    };
                }
                Err(e) => Problems::from_admin(&e),
            }
        }
    };
    entitlement_view(s, &session, nav, &customer, shown, v, problems).await
}

/// `POST /console/customers/{id}/entitlements/{entitlement}/delete`.
pub(super) async fn delete_entitlement(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((customer, id)): Path<(String, String)>,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, nav, _) = match posted(&s, &headers, form, Method::DELETE).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match super::attributed(&session, remove_entitlement(&s, &customer, &id)).await {
        Ok(true) => {
            tracing::info!(token = %session.token_id, customer = %customer, entitlement = %id, "console removed an entitlement");
            see_other(&customer_url(&customer))
        }
        Ok(false) => error(Some(nav), StatusCode::NOT_FOUND, "not_found", "No such entitlement."),
        Err(e) => {
            let p = e.to_problem();
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(Some(nav), status, p.code, p.detail.unwrap_or_default())
        }
    }
}

#[derive(Template)]
#[template(path = "console/view_as.html")]
struct ViewAsPage {
    nav: Option<Nav>,
    customer: String,
    link: String,
}

/// `POST /console/customers/{id}/view-as`: open the customer's portal
/// read-only, for [`crate::portal::VIEW_FOR`], through a single-use link
/// on the public listener; `portal.viewed_as` names who, when it is used.
pub(super) async fn view_as(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, nav, _) = match posted(&s, &headers, form, Method::POST).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !s.portal.enabled {
        return error(
            Some(nav),
            StatusCode::CONFLICT,
            "portal_disabled",
            "The customer portal is off (portal.enabled).",
        );
    }
    match crate::portal::Portal::new(&s).new_view_link(&id, &session.token_id).await {
        Ok(Some(token)) => {
            tracing::info!(token = %session.token_id, customer = %id, "console opened a customer's portal read-only");
            let base = s.downloads.urls.public_url.trim_end_matches('/');
            // A page with the link, not a redirect: the console's pages
            // send forms to this origin only (CSP form-action).
            let t = ViewAsPage { nav: Some(nav), customer: id, link: format!("{base}/portal/auth?token={token}") };
            view(StatusCode::OK, &t)
        }
        Ok(None) => error(
            Some(nav),
            StatusCode::CONFLICT,
            "customer_unavailable",
            format!("No active customer {id:?}: a suspended customer's portal is closed to everyone."),
        ),
        Err(e) => failed(Some(nav), &e),
    }
}
