//! The public HTTP surface: dashboard, live updates, assets, health.

mod assets;
mod cache;
mod dashboard;
mod error;
mod events;
pub mod limit;
mod view;

use crate::catalog::Catalog;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::get;
pub use cache::PageCache;
pub use error::PageError;
use ops::metrics::HttpMetrics;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct WebState {
    pub catalog: Catalog,
    pub page_size: usize,
    pub stale_after: Duration,
    pub instance: String,
    /// Cancelled at shutdown, so long-lived event streams end and the drain finishes.
    pub shutdown: CancellationToken,
    /// Rendered pages, reused until the data, the second or the stale flag changes.
    pub pages: cache::PageCache,
}

/// Content Security Policy: only our own compiled-in CSS and JS, no inline
/// script or style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The public router.
pub fn router(
    state: WebState,
    http_metrics: HttpMetrics,
    limiter: Option<limit::RateLimiter>,
    tls: bool,
) -> Router {
    let instance = state.instance.clone();
    let routes = Router::new()
        .route("/", get(dashboard::page))
        .route("/events", get(events::stream))
        .route("/assets/app.css", get(assets::css))
        .route("/assets/app.js", get(assets::js))
        .route("/assets/favicon.svg", get(assets::favicon))
        .route("/healthz", get(|| async { "ok" }))
        // Ready when it can serve: a portal with hardware down still serves
        // last-known-good data or a friendly 503 page.
        .route("/readyz", get(|| async { "ready" }))
        .route_layer(axum::middleware::from_fn_with_state(
            http_metrics,
            ops::metrics::track,
        ))
        .fallback(|| async { PageError::NotFound })
        .with_state(state);
    let routes = match limiter {
        Some(limiter) => routes.layer(axum::middleware::from_fn_with_state(
            limiter,
            limit::enforce,
        )),
        None => routes,
    };
    let routes = with_security_headers(routes, tls);
    ops::http::observe(routes, &instance)
}

fn header_layer(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

/// Adds the security headers to every response that does not set its own.
fn with_security_headers(router: Router, tls: bool) -> Router {
    let hsts = if tls {
        "max-age=31536000; includeSubDomains"
    } else {
        // Browsers ignore HSTS over plain HTTP; say so explicitly.
        "max-age=0"
    };
    router
        .layer(header_layer("content-security-policy", CSP))
        .layer(header_layer("x-content-type-options", "nosniff"))
        .layer(header_layer("referrer-policy", "no-referrer"))
        .layer(header_layer("x-frame-options", "DENY"))
        .layer(header_layer("cross-origin-opener-policy", "same-origin"))
        .layer(header_layer(
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(hsts),
        ))
}
