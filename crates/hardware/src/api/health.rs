//! Liveness and readiness.

use super::AppState;
use super::document::NotReady;
use super::error::ApiError;
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
///
/// Answers within `DATABASE_STATEMENT_TIMEOUT` whatever the database does (a
/// silent one included): a probe sees "not ready", never a hang.
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
    let limit = state.db.statement_limit();
    // In a task of its own: when the answer is late, the check finishes (within
    // its own bounds) in the background rather than being cut mid-statement.
    let checking = tokio::spawn(async move { check(&state).await });
    match tokio::time::timeout(limit, checking).await {
        Ok(Ok(result)) => result,
        Ok(Err(panicked)) => Err(ApiError::Internal(panicked.into())),
        Err(_) => {
            tracing::warn!(?limit, "readiness: the database did not answer in time");
            Err(ApiError::Unavailable(format!(
                "the database did not answer within {limit:?}"
            )))
        }
    }
}

async fn check(state: &AppState) -> Result<Json<Status>, ApiError> {
    if let Err(err) = state.db.ping().await {
        tracing::warn!(error = %err, "readiness: database unreachable");
        return Err(ApiError::Unavailable("the database is unreachable".into()));
    }
    if !state.migrated.load(Ordering::Relaxed) {
        let applied = state.db.migrations_applied().await.unwrap_or(false);
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
