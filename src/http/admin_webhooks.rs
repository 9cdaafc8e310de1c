//! Webhook endpoints on the admin API: `/admin/v1/webhooks`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::Items;
use super::admin_api::{AdminError, AdminResult, body, deleted, path};
use super::problem::{Problem, RawBody};
use crate::catalog::repo::check_id;
use crate::catalog::store::{Kind, put_json};
use crate::catalog::{CatalogError, Timestamp};
use crate::events::EventType;
use crate::events::webhooks::{self, DeadLetter, Endpoint, EndpointView};
use crate::services::Services;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    /// `https://…` (or `http://…`) that accepts `POST`.
    url: String,
    /// Event types to deliver; absent or empty: all.
    #[serde(default)]
    types: Vec<EventType>,
    /// Default true.
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

fn invalid(field: &'static str, reason: impl Into<String>) -> AdminError {
    AdminError::Catalog(CatalogError::Invalid { field, reason: reason.into() })
}

/// Create or replace an endpoint. A new one gets a signing secret, shown in
/// this answer only, and receives the events recorded from now on; a
/// replaced one keeps its secret and its place in the log.
#[utoipa::path(put, path = "/admin/v1/webhooks/{id}", tag = "admin", params(("id" = String, Path, description = "endpoint id")), request_body = WebhookBody, responses((status = 201, description = "created; the answer holds the secret", body = EndpointView), (status = 200, description = "replaced", body = EndpointView)))]
pub(crate) async fn put_webhook(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
    RawBody(raw): RawBody,
) -> AdminResult {
    let id = path(p)?;
    check_id("id", &id)?;
    let b: WebhookBody = body(&raw)?;
    let uri: Uri = b.url.parse().map_err(|_| invalid("url", "not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(invalid("url", "must be an http:// or https:// URL with a host"));
    }
    let store = s.catalog.records();
    let existing = webhooks::endpoint_of(store.as_ref(), &id).await.map_err(CatalogError::from)?;
    let created = existing.is_none();
    let endpoint = match existing {
        Some(old) => Endpoint { url: b.url, types: b.types, enabled: b.enabled, ..old },
        None => {
            let e = Endpoint {
                id,
                url: b.url,
                secret: webhooks::generate_secret().map_err(CatalogError::from)?,
                types: b.types,
                enabled: b.enabled,
                created_at: Timestamp(s.clock.now_unix()),
                generation: webhooks::generate_generation().map_err(CatalogError::from)?,
            };
            // The group first: the endpoint gets events from its creation on.
            // Dead letters a deleted endpoint of this id left go.
            s.event_log.reset_group(&webhooks::group(&e)).await.map_err(CatalogError::from)?;
            remove_dead_letters(&s, &e.id).await?;
            e
        }
    };
    put_json(store.as_ref(), Kind::Webhook, &endpoint.id, &endpoint).await.map_err(CatalogError::from)?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(endpoint.view(created))).into_response())
}

#[utoipa::path(get, path = "/admin/v1/webhooks", tag = "admin", responses((status = 200, body = Items<EndpointView>)))]
pub(crate) async fn list_webhooks(State(s): State<Arc<Services>>) -> AdminResult {
    let all = webhooks::all_endpoints(s.catalog.records().as_ref()).await.map_err(CatalogError::from)?;
    Ok(Json(Items { items: all.iter().map(|e| e.view(false)).collect() }).into_response())
}

#[utoipa::path(get, path = "/admin/v1/webhooks/{id}", tag = "admin", params(("id" = String, Path, description = "endpoint id")), responses((status = 200, body = EndpointView)))]
pub(crate) async fn get_webhook(State(s): State<Arc<Services>>, p: Result<Path<String>, PathRejection>) -> AdminResult {
    let id = path(p)?;
    let e = webhooks::endpoint_of(s.catalog.records().as_ref(), &id).await.map_err(CatalogError::from)?;
    e.map(|e| Json(e.view(false)).into_response()).ok_or_else(|| AdminError::NotFound("webhook".into()))
}

/// Remove an endpoint, its place in the log and its dead letters.
#[utoipa::path(delete, path = "/admin/v1/webhooks/{id}", tag = "admin", params(("id" = String, Path, description = "endpoint id")), responses((status = 204, description = "deleted")))]
pub(crate) async fn delete_webhook(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    let id = path(p)?;
    let store = s.catalog.records();
    let Some(endpoint) = webhooks::endpoint_of(store.as_ref(), &id).await.map_err(CatalogError::from)? else {
        return deleted(false, "webhook");
    };
    // The group before the record: a failure here leaves the endpoint in
    // place, to delete again.
    s.event_log.delete_group(&webhooks::group(&endpoint)).await.map_err(CatalogError::from)?;
    let existed = store.delete(Kind::Webhook, &id).await.map_err(CatalogError::from)?;
    remove_dead_letters(&s, &id).await?;
    deleted(existed, "webhook")
}

async fn remove_dead_letters(s: &Services, id: &str) -> Result<(), AdminError> {
    let store = s.catalog.records();
    loop {
        let page = store.list(Kind::DeadLetter, &format!("{id}/"), None, crate::catalog::store::MAX_PAGE).await;
        let page = page.map_err(CatalogError::from)?;
        if page.is_empty() {
            return Ok(());
        }
        for (key, _) in page {
            store.delete(Kind::DeadLetter, &key).await.map_err(CatalogError::from)?;
        }
    }
}

async fn dead_letters_of(s: &Services, id: &str) -> Result<Vec<DeadLetter>, AdminError> {
    Ok(s.catalog.all(Kind::DeadLetter, &format!("{id}/")).await?)
}

/// Events the endpoint never accepted, after every attempt, oldest first.
#[utoipa::path(get, path = "/admin/v1/webhooks/{id}/dead-letters", tag = "admin", params(("id" = String, Path, description = "endpoint id")), responses((status = 200, body = Items<DeadLetter>)))]
pub(crate) async fn list_dead_letters(
    State(s): State<Arc<Services>>,
    p: Result<Path<String>, PathRejection>,
) -> AdminResult {
    let id = path(p)?;
    if webhooks::endpoint_of(s.catalog.records().as_ref(), &id).await.map_err(CatalogError::from)?.is_none() {
        return Err(AdminError::NotFound("webhook".into()));
    }
    Ok(Json(Items { items: dead_letters_of(&s, &id).await? }).into_response())
}

/// Send a dead letter again: once, within seconds, by the webhook
/// deliverer (`202`; the dead letter goes when the endpoint accepts it,
/// and stays, its attempt counted, when it does not).
#[utoipa::path(post, path = "/admin/v1/webhooks/{id}/dead-letters/{event}/redeliver", tag = "admin", params(("id" = String, Path, description = "endpoint id"), ("event" = String, Path, description = "the dead letter's event id")), responses((status = 202, description = "queued: sent within seconds", body = DeadLetter), (status = 409, description = "`webhook_disabled`: the endpoint is disabled", body = Problem)))]
pub(crate) async fn redeliver_dead_letter(
    State(s): State<Arc<Services>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (id, event) = path(p)?;
    redeliver(&s, &id, &event).await.map(|dead| (StatusCode::ACCEPTED, Json(dead)).into_response())
}

/// [`redeliver_dead_letter`]: the admin API's and the console's.
pub(crate) async fn redeliver(s: &Services, id: &str, event: &str) -> Result<DeadLetter, AdminError> {
    let store = s.catalog.records();
    let endpoint = webhooks::endpoint_of(store.as_ref(), id).await.map_err(CatalogError::from)?;
    let endpoint = endpoint.ok_or_else(|| AdminError::NotFound("webhook".into()))?;
    if !endpoint.enabled {
        return Err(AdminError::Conflict(
            "webhook_disabled",
            "The endpoint is disabled: enable it before sending to it again.".into(),
        ));
    }
    let now = Timestamp(s.clock.now_unix());
    webhooks::request_redelivery(store.as_ref(), id, event, now)
        .await
        .map_err(CatalogError::from)?
        .ok_or_else(|| AdminError::NotFound("dead letter".into()))
}

/// Every endpoint with its dead letters (the console's webhooks page).
pub(crate) async fn endpoints_with_dead_letters(s: &Services) -> Result<Vec<(Endpoint, Vec<DeadLetter>)>, AdminError> {
    let endpoints = webhooks::all_endpoints(s.catalog.records().as_ref()).await.map_err(CatalogError::from)?;
    let mut out = Vec::new();
    for e in endpoints {
        let dead = dead_letters_of(s, &e.id).await?;
        out.push((e, dead));
    }
    Ok(out)
}
