//! Liveness and readiness.

use super::AppState;
use super::error::ApiError;
use crate::db;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// Liveness: the process answers. No dependency is consulted, so a database
/// outage never gets healthy replicas restarted.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers, every migration is applied and the
/// inventory has been loaded, so this replica can serve lists.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if let Err(err) = db::ping(&state.pool).await {
        tracing::warn!(error = %err, "readiness: database unreachable");
        return Err(ApiError::Unavailable("the database is unreachable".into()));
    }
    if !state.migrated.load(Ordering::Relaxed) {
        let applied = db::migrations_applied(&state.pool).await.unwrap_or(false);
        if !applied {
            return Err(ApiError::Unavailable(
                "database migrations are not applied yet (run `hardware migrate`)".into(),
            ));
        }
        state.migrated.store(true, Ordering::Relaxed);
    }
    if state.inventory.snapshot().is_none() {
        return Err(ApiError::Unavailable(
            "the inventory is not loaded yet".into(),
        ));
    }
    Ok(Json(json!({"status": "ready"})))
}
