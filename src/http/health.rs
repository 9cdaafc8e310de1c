//! Liveness and readiness.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::problem::Problem;
use crate::services::Services;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The gateway can do its job: its blob storage and its state store answer.
pub async fn readyz(State(state): State<Arc<Services>>) -> Response {
    let store = state.catalog.records();
    let (storage_check, store_check) = tokio::join!(state.storage.check(), store.ping());
    let failed = match (storage_check, store_check) {
        (Ok(()), Ok(())) => {
            let body = json!({ "status": "ready", "storage": state.storage.backend(), "store": store.backend() });
            return Json(body).into_response();
        }
        (Err(e), _) => {
            tracing::warn!(error = %e, backend = state.storage.backend(), "readiness: blob storage failed");
            "Blob storage is not reachable."
        }
        (_, Err(e)) => {
            tracing::warn!(error = %e, backend = store.backend(), "readiness: state store failed");
            "The state store is not reachable."
        }
    };
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "Service Unavailable")
        .with_detail(failed)
        .into_response()
}
