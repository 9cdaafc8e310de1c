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

/// The gateway can do its job: its blob storage and its state store answer,
/// both within `server.readiness_timeout` (a dependency that hangs is down;
/// the check never hangs with it).
pub async fn readyz(State(state): State<Arc<Services>>) -> Response {
    let store = state.catalog.records();
    let deadline = state.readiness_timeout;
    let timed_out = || format!("no answer within {deadline:?} (server.readiness_timeout)");
    let (storage_check, store_check) = tokio::join!(
        async {
            tokio::time::timeout(deadline, state.storage.check())
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| e.to_string())
        },
        async {
            tokio::time::timeout(deadline, store.ping()).await.map_err(|_| timed_out())?.map_err(|e| e.to_string())
        },
    );
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
