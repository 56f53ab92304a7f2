//! The public HTTP surface: dashboard, live updates, assets, health.

mod assets;
mod cache;
mod dashboard;
mod encoding;
mod error;
pub mod events;
pub mod limit;
mod view;

use crate::catalog::Catalog;
use crate::client::{ClientKey, Quota, TrustedProxies};
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
pub use cache::{PageCache, RenderTurns};
pub use error::PageError;
use ops::metrics::HttpMetrics;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What every handler can reach: cloned for every request by the `State`
/// extractor, so one pointer (the fields are behind it).
#[derive(Debug, Clone)]
pub struct WebState(std::sync::Arc<Shared>);

impl WebState {
    pub fn new(shared: Shared) -> Self {
        Self(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for WebState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`WebState`].
#[derive(Debug)]
pub struct Shared {
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

/// Works out who sent the request ([`ClientKey`], through trusted proxies
/// only) for the per-client bounds behind it.
pub fn identify(trusted: &TrustedProxies, mut request: Request) -> Request {
    // The edge has done it already (see `edge`); in-process tests have not.
    if request.extensions().get::<ClientKey>().is_some() {
        return request;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    // Without a peer (in-process `oneshot` tests) every request is one client.
    let ip = peer.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |peer| {
        trusted.client_ip(peer, request.headers())
    });
    request.extensions_mut().insert(ClientKey::of(ip));
    request
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

/// The public service: the routes behind the [`Gate`], [`ops::http::observe`]d
/// with the security headers. Served directly by the edge (no outer router).
pub type Public = ops::http::Observe<Gate<Router>>;

/// The public service.
pub fn router(
    state: WebState,
    http_metrics: HttpMetrics,
    limiter: Option<limit::RateLimiter>,
    trusted: TrustedProxies,
    tls: bool,
) -> Public {
    let instance = state.instance.clone();
    assets::prepare();
    let routes = Router::new()
        .route("/", get(dashboard::page))
        .route("/events", get(events::stream))
        .route("/assets/{file}", get(assets::serve))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route_layer(ops::metrics::Track(http_metrics))
        .fallback(|| async { PageError::NotFound })
        .with_state(state);
    let gate = Gate {
        inner: routes,
        trusted,
        limiter,
    };
    ops::http::observe(gate, &instance).with_headers(&security_headers(tls))
}

/// In front of the routes: finds who sent each request ([`identify`]) and
/// applies the per-client rate limit ([`limit::RateLimiter`]; `/healthz` and
/// `/readyz` are exempt). A plain service: no boxed future per request.
#[derive(Debug, Clone)]
pub struct Gate<S> {
    inner: S,
    trusted: TrustedProxies,
    limiter: Option<limit::RateLimiter>,
}

impl<S> tower::Service<Request> for Gate<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = ops::http::Answer<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let request = identify(&self.trusted, request);
        if let Some(limiter) = &self.limiter
            && let Some(refusal) = limit::refusal(limiter, &request)
        {
            return ops::http::Answer::Now {
                response: Some(refusal),
            };
        }
        ops::http::Answer::Later {
            future: self.inner.call(request),
        }
    }
}

/// The security headers, set on every response that does not set its own.
/// HSTS only when this process terminates TLS: over plain HTTP a browser
/// ignores it, and a proxy in front that terminates TLS sets its own (which a
/// `max-age=0` from here would erase).
fn security_headers(tls: bool) -> ops::http::ResponseHeaders {
    let mut headers = vec![
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        ),
    ];
    if tls {
        headers.push((
            header::STRICT_TRANSPORT_SECURITY.as_str(),
            "max-age=31536000; includeSubDomains",
        ));
    }
    ops::http::ResponseHeaders::new(headers.into_iter().map(|(name, value)| {
        (
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    }))
}
