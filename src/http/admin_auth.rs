//! The admin listener's authentication: every `/admin/v1` route needs one of
//! the configured admin tokens ([`crate::admin_tokens`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::bearer;
use super::problem::Problem;
use crate::services::Services;

/// Middleware: refuse with `401 unauthorized` unless an admin token is
/// given, and with `403 role_forbids` when the token's role does not change
/// what the request would.
pub async fn require_admin(State(state): State<Arc<Services>>, request: Request, next: Next) -> Response {
    match bearer(&request).and_then(|t| state.admin_tokens.check(t)) {
        Some((id, role)) if !role.may(request.method(), request.uri().path()) => {
            tracing::info!(token = id, role = role.as_str(), "admin request refused by role");
            Problem::new(StatusCode::FORBIDDEN, "role_forbids", "Forbidden")
                .with_detail(format!("Admin token {id:?} is {}: it does not change this.", role.as_str()))
                .into_response()
        }
        Some((id, _)) => {
            tracing::debug!(token = id, "admin request authorised");
            crate::events::acting_as(format!("admin:{id}"), next.run(request)).await
        }
        None => Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            .with_detail("This needs an admin token: Authorization: Bearer <token>.")
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tollgate-admin\""))
            .into_response(),
    }
}
