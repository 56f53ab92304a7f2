//! The public portal.
//!
//! # Layout
//! - [`config`]: settings (flags with env fallbacks).
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
pub mod config;
pub mod upstream;
pub mod web;

use anyhow::Context;
use axum::routing::get;
use axum_server::tls_rustls::RustlsConfig;
use catalog::Catalog;
use config::Settings;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use upstream::{Upstream, UpstreamSettings};
use web::WebState;

/// A built portal: listeners bound, background loops not yet started.
#[derive(Debug)]
pub struct Application {
    public: TcpListener,
    admin: TcpListener,
    router: axum::Router,
    admin_router: axum::Router,
    catalog: Catalog,
    upstream: Upstream,
    settings: Settings,
    shutdown: CancellationToken,
    tls: Option<RustlsConfig>,
}

/// Loads the certificate and key when both are set; errors name the setting.
async fn tls_config(settings: &Settings) -> anyhow::Result<Option<RustlsConfig>> {
    let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) else {
        return Ok(None);
    };
    // ring: the lighter of rustls's providers to build; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "TLS_CERT_FILE/TLS_KEY_FILE: cannot load {} and {}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Some(config))
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        settings.validate().map_err(anyhow::Error::msg)?;
        let tls = tls_config(settings).await?;
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
        let catalog = Catalog::new(upstream.clone());
        let http_metrics = ops::metrics::HttpMetrics::register(&mut registry);
        let shutdown = CancellationToken::new();
        let state = WebState {
            catalog: catalog.clone(),
            page_size: settings.page_size,
            stale_after: settings.stale_after,
            instance: settings.instance(),
            shutdown: shutdown.clone(),
            pages: web::PageCache::default(),
        };
        let limiter =
            web::limit::RateLimiter::new(settings.rate_limit_per_second, settings.rate_limit_burst);
        let router = web::router(state, http_metrics, limiter, tls.is_some());
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
        let public = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("PORTAL_LISTEN: cannot listen on {}", settings.listen))?;
        let admin = TcpListener::bind(settings.admin_listen)
            .await
            .with_context(|| {
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

    /// The public router, for `oneshot` tests.
    pub fn router(&self) -> axum::Router {
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
        tracing::info!(addr = %self.local_addr(), admin = %self.admin_addr(), "portal listening");
        let admin = axum::serve(self.admin, self.admin_router)
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::spawn(async move {
            if let Err(err) = admin.await {
                tracing::error!(error = %err, "admin listener failed");
            }
        });
        let served = match self.tls {
            Some(tls) => serve_tls(self.public, self.router, tls, stop).await,
            None => {
                let public = axum::serve::ListenerExt::tap_io(self.public, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(
                    public,
                    self.router
                        .into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .await
            }
        };
        tracing::info!("portal stopped");
        served.context("serving HTTP")
    }
}

/// HTTPS on the public listener, draining like the plain one on shutdown.
async fn serve_tls(
    listener: TcpListener,
    router: axum::Router,
    tls: RustlsConfig,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            stop.cancelled().await;
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        }
    });
    let listener = listener.into_std()?;
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
