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

/// Middleware: refuse with `401 unauthorized` unless an admin token is given.
pub async fn require_admin(State(state): State<Arc<Services>>, request: Request, next: Next) -> Response {
    match bearer(&request).and_then(|t| state.admin_tokens.check(t)) {
        Some(id) => {
            tracing::debug!(token = id, "admin request authorised");
            next.run(request).await
        }
        None => Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            .with_detail("This needs an admin token: Authorization: Bearer <token>.")
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tollgate-admin\""))
            .into_response(),
    }
}
