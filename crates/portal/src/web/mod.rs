//! The public HTTP surface: dashboard, live updates, assets, health.

mod assets;
mod cache;
mod dashboard;
mod error;
pub mod events;
pub mod limit;
mod view;

use crate::catalog::Catalog;
use crate::client::{ClientKey, Quota, TrustedProxies};
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
pub use cache::{PageCache, RenderTurns};
pub use error::PageError;
use ops::metrics::HttpMetrics;
use std::net::SocketAddr;
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
    /// Renders of uncached pages: one per core at once, one per client at a time.
    pub renders: cache::RenderTurns,
    /// How long a visitor of a portal that never fetched waits for the first attempt.
    pub first_fetch_wait: Duration,
    /// Live-update streams held, in all and per client.
    pub streams: Quota,
    pub stream_lifetime: Duration,
}

/// Middleware: works out who sent the request ([`ClientKey`], through
/// trusted proxies only) for the per-client bounds behind it.
pub async fn identify(
    axum::extract::State(trusted): axum::extract::State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    // Without a peer (in-process `oneshot` tests) every request is one client.
    let ip = peer.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |peer| {
        trusted.client_ip(peer, request.headers())
    });
    request.extensions_mut().insert(ClientKey::of(ip));
    next.run(request).await
}

/// Content Security Policy: only our own compiled-in CSS and JS, no inline
/// script or style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Ready once it holds an inventory: before its first successful fetch every
/// page would be a 503, so a load balancer must not send visitors here yet (a
/// new pod of a rolling update would otherwise fail requests the old pods
/// could serve). Once it has data it stays ready whatever hardware does: it
/// serves the last-known-good data, flagged stale.
async fn ready(axum::extract::State(state): axum::extract::State<WebState>) -> Response {
    if state.catalog.view().data.is_some() {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no inventory fetched from hardware yet\n",
        )
            .into_response()
    }
}

/// The public router.
pub fn router(
    state: WebState,
    http_metrics: HttpMetrics,
    limiter: Option<limit::RateLimiter>,
    trusted: TrustedProxies,
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
        .route("/readyz", get(ready))
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
    let routes = routes.layer(axum::middleware::from_fn_with_state(trusted, identify));
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
/// HSTS only when this process terminates TLS: over plain HTTP a browser
/// ignores it, and a proxy in front that terminates TLS sets its own (which a
/// `max-age=0` from here would erase).
fn with_security_headers(router: Router, tls: bool) -> Router {
    let router = router
        .layer(header_layer("content-security-policy", CSP))
        .layer(header_layer("x-content-type-options", "nosniff"))
        .layer(header_layer("referrer-policy", "no-referrer"))
        .layer(header_layer("x-frame-options", "DENY"))
        .layer(header_layer("cross-origin-opener-policy", "same-origin"))
        .layer(header_layer(
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        ));
    if tls {
        router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ))
    } else {
        router
    }
}
