//! Liveness and readiness.

use super::AppState;
use super::document::NotReady;
use super::error::ApiError;
use crate::db;
use axum::Json;
use axum::extract::State;
use std::sync::atomic::Ordering;

/// The body of a healthy answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Status {
    status: &'static str,
}

/// Liveness: the process answers. No dependency is consulted, so a database
/// outage never gets healthy replicas restarted.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "live",
    summary = "Liveness (no dependencies)",
    responses((status = 200, description = "Alive", body = Status)),
)]
pub async fn live() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: the database answers, every migration is applied and the
/// inventory has been loaded, so this replica can serve lists.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "ready",
    summary = "Readiness: database reachable, migrations applied, inventory loaded",
    responses(
        (status = 200, description = "Ready", body = Status),
        NotReady,
    ),
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
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
    Ok(Json(Status { status: "ready" }))
}
