//! The HTTP API: routes, shared state and the middleware stack.

pub mod auth;
mod document;
pub mod error;
mod extract;
mod health;
mod items;
mod query;
mod select;

use crate::engine::Engine;
use crate::inventory::Inventory;
use auth::TokenDigest;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use error::ApiError;
pub use items::{FULL_LIST_KEPT, FullListCache};
use ops::metrics::HttpMetrics;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Largest accepted request body: an item is two short strings.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest import body: room for [`crate::import::MAX_ITEMS`] short items.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// What every handler can reach. Cheap to clone: handles and `Arc`s only.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: crate::db::Database,
    pub engine: Engine,
    pub inventory: Inventory,
    pub admin: Option<TokenDigest>,
    /// Default and upper bound of `wait`.
    pub max_wait: Duration,
    pub registry: Arc<Registry>,
    /// Set once the embedded migrations were seen applied (it never turns false).
    pub migrated: Arc<AtomicBool>,
    /// The serialized unfiltered list (what the portal and old clients ask for).
    pub full_list: items::FullListCache,
}

/// The service: every route, [`ops::http::observe`]d.
pub type Service = ops::http::Observe<Router>;

/// The router with every route and the shared middleware.
pub fn router(state: AppState, http_metrics: HttpMetrics, instance: &str) -> Service {
    let api = Router::new()
        .route("/hardware", get(items::list).post(items::create))
        .route("/hardware/", get(items::list).post(items::create))
        .route("/hardware/changes", get(items::changes))
        .route(
            "/hardware/import",
            post(items::import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .route(
            "/hardware/{id}",
            get(items::show).put(items::update).delete(items::remove),
        )
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route_layer(ops::metrics::Track(http_metrics))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    ops::http::observe(api, instance)
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    summary = "Prometheus metrics (OpenMetrics text)",
    responses((status = 200, description = "Metrics", body = String, content_type = "application/openmetrics-text")),
)]
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    ops::metrics::render(&state.registry)
}

/// The OpenAPI document of this API, generated from the handlers and types
/// (`document`) once, at first request.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "OpenAPI document", body = Object)),
)]
async fn openapi() -> impl IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(document::json).as_str(),
    )
}
