//! Liveness and readiness.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::problem::Problem;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The gateway can do its job: its storage answers.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.storage.check().await {
        Ok(()) => Json(json!({ "status": "ready", "storage": state.storage.backend() })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, backend = state.storage.backend(), "readiness check failed");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "Service Unavailable")
                .with_detail("Storage is not reachable.")
                .into_response()
        }
    }
}
