//! Webhooks: the endpoints, their dead letters, and sending one again.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;

use super::{CsrfForm, Nav, error, failed, signed, view};
use crate::http::admin_webhooks::{endpoints_with_dead_letters, redeliver};
use crate::http::portal::see_other;
use crate::services::Services;

#[derive(Template)]
#[template(path = "console/webhooks.html")]
struct WebhooksPage {
    nav: Option<Nav>,
    csrf: String,
    may_change: bool,
    endpoints: Vec<EndpointRow>,
    message: Option<String>,
}

struct EndpointRow {
    id: String,
    url: String,
    types: String,
    enabled: bool,
    created: String,
    /// Event id, type, attempts, last error, failed at.
    dead: Vec<[String; 5]>,
}

async fn page(s: &Services, headers: &HeaderMap, message: Option<String>) -> Response {
    let (session, nav) = match signed(s, headers, "webhooks").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let endpoints = match endpoints_with_dead_letters(s).await {
        Ok(e) => e,
        Err(e) => return failed(Some(nav), &e),
    };
    let t = WebhooksPage {
        csrf: session.csrf.clone(),
        may_change: session.role.may(&Method::POST, "/admin/v1/webhooks/-"),
        nav: Some(nav),
        endpoints: endpoints
            .into_iter()
            .map(|(e, dead)| EndpointRow {
                types: if e.types.is_empty() {
                    "every event".to_owned()
                } else {
                    e.types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
                },
                created: e.created_at.to_string(),
                enabled: e.enabled,
                dead: dead
                    .into_iter()
                    .map(|d| {
                        [
                            d.event["id"].as_str().unwrap_or_default().to_owned(),
                            d.event["type"].as_str().unwrap_or_default().to_owned(),
                            d.attempts.to_string(),
                            d.last_error,
                            d.failed_at.to_string(),
                        ]
                    })
                    .collect(),
                id: e.id,
                url: e.url,
            })
            .collect(),
        message,
    };
    view(StatusCode::OK, &t)
}

/// `GET /console/webhooks`.
pub(super) async fn webhooks_page(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let sent = q.as_deref() == Some("sent=1");
    let message =
        sent.then(|| "Queued: it is sent again within seconds. Reload to see whether it was accepted.".to_owned());
    page(&s, &headers, message).await
}

/// `POST /console/webhooks/{id}/dead-letters/{event}/redeliver`: as the
/// admin API's, if the session's role may.
pub(super) async fn redeliver_action(
    State(s): State<Arc<Services>>,
    headers: HeaderMap,
    Path((id, event)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let change = (Method::POST, "/admin/v1/webhooks/-");
    let (session, nav) = match super::form_session(&s, &headers, "webhooks", &csrf, change, "webhooks").await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    match redeliver(&s, &id, &event).await {
        Ok(_) => {
            tracing::info!(token = %session.token_id, endpoint = %id, event = %event, "console asked to send a dead letter again");
            see_other("/console/webhooks?sent=1")
        }
        Err(e) => {
            let p = e.to_problem();
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(Some(nav), status, p.code, p.detail.unwrap_or_default())
        }
    }
}
