//! The public portal.
//!
//! # Layout
//! - [`config`]: settings (flags with env fallbacks).
//! - [`edge`]: the public listener — connection caps, header/idle timeouts,
//!   bounded read buffers, optional TLS, drain deadline.
//! - [`client`]: who a request comes from (through trusted proxies only) and
//!   the per-client quotas.
//! - [`upstream`]: the client for the hardware tier — every replica resolved
//!   and used in turn, one retry elsewhere, failing replicas left out a while.
//! - [`catalog`]: the last good inventory fetched from hardware, refreshed in
//!   the background; pages render from it and never wait on hardware.
//! - [`web`]: the dashboard (askama), live updates (SSE), compiled-in assets,
//!   security headers, friendly error pages.
//! - [`Application`] (here): binds the public and the admin listener and runs
//!   everything until shutdown.
//!
//! # Invariants
//! - No page waits on hardware, except the very first visitors of a portal
//!   that has never fetched anything — once, bounded by `UPSTREAM_TIMEOUT`.
//! - Hardware down → last-known-good data with a visible stale banner; nothing
//!   ever fetched → a friendly 503 with `Retry-After`. Never a 500 for that.
//! - `/metrics` is only on the admin listener, never on the public one.

pub mod catalog;
pub mod client;
pub mod config;
pub mod edge;
pub mod upstream;
pub mod web;

use anyhow::Context;
use axum::routing::get;
use catalog::Catalog;
use client::{Quota, TrustedProxies};
use config::Settings;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use upstream::{Upstream, UpstreamSettings};
use web::WebState;

/// A built portal: listeners bound, background loops not yet started.
pub struct Application {
    public: TcpListener,
    admin: TcpListener,
    router: web::Public,
    admin_router: axum::Router,
    catalog: Catalog,
    upstream: Upstream,
    settings: Settings,
    shutdown: CancellationToken,
    tls: Option<tokio_rustls::TlsAcceptor>,
    edge_metrics: client::QuotaMetrics,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("public", &self.public)
            .field("admin", &self.admin)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        settings.validate().map_err(anyhow::Error::msg)?;
        let tls = match (&settings.tls_cert_file, &settings.tls_key_file) {
            (Some(cert), Some(key)) => Some(edge::tls_acceptor(cert, key)?),
            _ => None,
        };
        let mut registry = Registry::with_prefix("portal");
        let upstream = Upstream::new(
            UpstreamSettings {
                urls: settings.hardware_url.clone(),
                timeout: settings.upstream_timeout,
                connect_timeout: settings.upstream_connect_timeout,
                eject_for: settings.upstream_eject_for,
            },
            &mut registry,
        )?;
        let catalog = Catalog::new(upstream.clone(), &mut registry);
        let http_metrics = ops::metrics::HttpMetrics::register(&mut registry);
        let edge_metrics = edge::register_metrics(&mut registry);
        let stream_metrics = web::events::register_metrics(&mut registry);
        let shutdown = CancellationToken::new();
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let state = WebState::new(web::Shared {
            catalog: catalog.clone(),
            page_size: settings.page_size,
            stale_after: settings.stale_after,
            instance: settings.instance(),
            shutdown: shutdown.clone(),
            pages: web::PageCache::new(settings.page_cache_kib.saturating_mul(1024)),
            renders: web::RenderTurns::new(cores),
            // One attempt may try two replicas, each bounded by the upstream timeout.
            first_fetch_wait: settings.upstream_timeout * 2 + std::time::Duration::from_millis(250),
            streams: Quota::new(
                settings.max_event_streams,
                settings.max_event_streams_per_client,
            )
            .counted(stream_metrics),
            stream_lifetime: settings.event_stream_lifetime,
        });
        let limiter =
            web::limit::RateLimiter::new(settings.rate_limit_per_second, settings.rate_limit_burst);
        let router = web::router(
            state,
            http_metrics,
            limiter,
            TrustedProxies::new(&settings.trusted_proxies.0),
            tls.is_some(),
        );
        let registry = Arc::new(registry);
        let admin_router = axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/metrics",
                get(move || {
                    let registry = Arc::clone(&registry);
                    async move { ops::metrics::render(&registry) }
                }),
            );
        let public = edge::listen(settings.listen, settings.listen_backlog)
            .with_context(|| format!("PORTAL_LISTEN: cannot listen on {}", settings.listen))?;
        let admin = bind_admin(&settings.admin_listen).await.with_context(|| {
            format!(
                "PORTAL_ADMIN_LISTEN: cannot listen on {}",
                settings.admin_listen
            )
        })?;
        Ok(Self {
            public,
            admin,
            router,
            admin_router,
            catalog,
            upstream,
            settings: settings.clone(),
            shutdown,
            tls,
            edge_metrics,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The public service, for `oneshot` tests.
    pub fn router(&self) -> web::Public {
        self.router.clone()
    }

    /// The catalog, for tests that drive refreshes themselves.
    pub fn catalog(&self) -> Catalog {
        self.catalog.clone()
    }

    /// The hardware client (tests count where its requests go).
    pub fn upstream(&self) -> Upstream {
        self.upstream.clone()
    }

    /// Serves until `shutdown` resolves, then drains and stops the loops.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = self.shutdown.clone();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        self.upstream.resolve().await;
        tokio::spawn(self.upstream.clone().run_resolver(
            self.settings.upstream_resolve_interval,
            stop.clone().cancelled_owned(),
        ));
        tokio::spawn(self.catalog.clone().run(
            self.settings.refresh_interval,
            stop.clone().cancelled_owned(),
        ));
        tokio::spawn(ops::memory::trim_until(stop.clone().cancelled_owned()));
        tracing::info!(addr = %self.local_addr(), admin = %self.admin_addr(), "portal listening");
        let admin = axum::serve(self.admin, self.admin_router)
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::spawn(async move {
            if let Err(err) = admin.await {
                tracing::error!(error = %err, "admin listener failed");
            }
        });
        let served = edge::serve(
            self.public,
            self.router,
            self.tls,
            edge::Limits {
                max_connections: self.settings.max_connections,
                max_connections_per_client: self.settings.max_connections_per_client,
                header_read_timeout: self.settings.header_read_timeout,
                drain_timeout: self.settings.drain_timeout,
            },
            TrustedProxies::new(&self.settings.trusted_proxies.0),
            self.edge_metrics,
            stop,
        )
        .await;
        tracing::info!("portal stopped");
        served.context("serving HTTP")
    }
}

/// The admin listener on the first address `listen` stands for that this
/// host has (a name a private network gives every replica resolves to all of
/// them; only this one's is bound).
async fn bind_admin(listen: &config::AdminListen) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen.own().await?).await
}
