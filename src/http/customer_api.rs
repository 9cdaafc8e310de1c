//! The customer API on the public listener, under `/v1`, authenticated with
//! the customer's API key (`Authorization: Bearer tg_…`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::AppState;
use super::admin_auth::bearer;
use super::problem::{Problem, from_catalog};
use crate::catalog::{Customer, CustomerStatus, Entitlement, EntitlementStatus, Timestamp};

/// Every customer route; all of them require an API key.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/entitlements", get(list_entitlements))
        .route_layer(axum::middleware::from_fn_with_state(state, require_customer))
}

/// The authenticated caller, put into the request by [`require_customer`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub customer: Customer,
    pub key_id: String,
}

fn unauthorized() -> Response {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
        .with_detail("This needs a valid API key: Authorization: Bearer tg_….")
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tollgate\""))
        .into_response()
}

/// Middleware: a live API key of an existing, active customer, or a refusal
/// (`401` for unknown or revoked keys, `403 customer_suspended`).
pub async fn require_customer(State(s): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let now = Timestamp(s.clock.now_unix());
    let Some(text) = bearer(&request).map(str::to_owned) else {
        return unauthorized();
    };
    let key = match s.catalog.authenticate(&text, now).await {
        Ok(Some(key)) => key,
        Ok(None) => return unauthorized(),
        Err(e) => {
            tracing::warn!(error = %e, "customer authentication failed in the store");
            return from_catalog(&e).into_response();
        }
    };
    let customer = match s.catalog.customer(&key.customer).await {
        Ok(Some(c)) => c,
        Ok(None) => return unauthorized(),
        Err(e) => return from_catalog(&e).into_response(),
    };
    tracing::Span::current().record("customer", customer.id.as_str());
    if customer.status == CustomerStatus::Suspended {
        return Problem::new(StatusCode::FORBIDDEN, "customer_suspended", "Forbidden")
            .with_detail("The customer account is suspended.")
            .into_response();
    }
    request.extensions_mut().insert(Caller { customer, key_id: key.id });
    next.run(request).await
}

/// An entitlement as the customer sees it: what it covers, and whether it is
/// in force right now.
#[derive(Debug, Serialize)]
struct EntitlementView {
    #[serde(flatten)]
    entitlement: Entitlement,
    active_now: bool,
}

async fn list_entitlements(State(s): State<Arc<AppState>>, Extension(caller): Extension<Caller>) -> Response {
    let now = Timestamp(s.clock.now_unix());
    match s.catalog.entitlements_of(&caller.customer.id).await {
        Ok(list) => {
            let items: Vec<EntitlementView> = list
                .into_iter()
                .map(|e| {
                    let active_now = e.status == EntitlementStatus::Active
                        && e.starts_at <= now
                        && e.expires_at.is_none_or(|end| now < end);
                    EntitlementView { entitlement: e, active_now }
                })
                .collect();
            Json(serde_json::json!({ "items": items })).into_response()
        }
        Err(e) => from_catalog(&e).into_response(),
    }
}
