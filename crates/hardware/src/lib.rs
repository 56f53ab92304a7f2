//! The private hardware service.
//!
//! # Layout
//! - [`config`]: settings (flags with env fallbacks) and their validation.
//! - [`db`]: every SQL statement, the embedded migrations and the pool.
//! - [`inventory`]: the in-memory snapshot of the table that requests read.
//! - [`engine`]: the availability engine — probes off the request path, once
//!   per item per TTL, with singleflight and bounded concurrency.
//! - [`api`]: routes, the problem+json error type and bearer-token auth.
//! - [`Application`] (here): wires them together, binds the listener and runs
//!   until shutdown. `main.rs` only parses settings and calls it.
//!
//! # Invariants
//! - No request ever starts a probe: only the engine's scheduler does.
//! - Requests never wait for a probe unless they asked (`wait`), and then at
//!   most `AVAILABILITY_MAX_WAIT`.
//! - Reads never touch the database (except a by-id miss); a database outage
//!   degrades writes and readiness, not reads.

pub mod api;
pub mod config;
pub mod db;
pub mod engine;
pub mod import;
pub mod inventory;
pub mod items_cli;
pub mod rules;

use anyhow::Context;
use api::AppState;
use api::auth::TokenDigest;
use config::Settings;
use engine::{Engine, EngineSettings, Probe, SimulatedProbe};
use inventory::Inventory;
use prometheus_client::registry::Registry;
use sqlx::MySqlPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A built service: listener bound, router ready, background loops not yet started.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: api::Service,
    state: AppState,
    inventory_refresh: Duration,
    migrate_on_start: bool,
    connections: prometheus_client::metrics::counter::Counter<u64>,
}

impl Application {
    /// Builds the service from settings, with the simulated probe.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let options = settings.connect_options()?;
        let pool = db::lazy_pool(
            options,
            settings.database_max_connections,
            settings.database_acquire_timeout,
            Some(settings.database_statement_timeout),
        );
        let probe = Arc::new(SimulatedProbe::new(settings.probe_delay));
        Self::with_parts(settings, pool, probe).await
    }

    /// Builds the service on a given pool and probe (tests bring their own).
    pub async fn with_parts(
        settings: &Settings,
        pool: MySqlPool,
        probe: Arc<dyn Probe>,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        let admin = settings.admin_token()?.map(|t| TokenDigest::of(t.expose()));
        if admin.is_none() {
            tracing::info!("no ADMIN_TOKEN_FILE: the API is read-only");
        }
        let mut registry = Registry::with_prefix("hardware");
        let shared = settings.shared_cache()?;
        if shared.is_some() {
            tracing::info!("sharing availability values through Redis");
        }
        let engine = Engine::with_shared_cache(
            probe,
            shared,
            EngineSettings {
                ttl: settings.availability_ttl,
                probe_timeout: settings.probe_timeout,
                concurrency: settings.probe_concurrency,
            },
            &mut registry,
        );
        let http_metrics = ops::metrics::HttpMetrics::register(&mut registry);
        let connections = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register(
            "http_connections_accepted",
            "TCP connections accepted (clients that reuse connections keep this low)",
            connections.clone(),
        );
        let db = db::Database::new(pool, settings.database_statement_timeout);
        let inventory = Inventory::new(db.clone(), engine.clone());
        let state = AppState {
            db,
            engine,
            inventory,
            admin,
            max_wait: settings.availability_max_wait,
            registry: Arc::new(registry),
            migrated: Arc::new(AtomicBool::new(false)),
            full_list: api::FullListCache::default(),
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("HARDWARE_LISTEN: cannot listen on {}", settings.listen))?;
        let router = api::router(state.clone(), http_metrics, &settings.instance());
        Ok(Self {
            listener,
            router,
            state,
            inventory_refresh: settings.inventory_refresh,
            migrate_on_start: settings.migrate_on_start,
            connections,
        })
    }

    /// The address actually bound (tests listen on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The engine, for tests and benchmarks that inspect it.
    pub fn engine(&self) -> Engine {
        self.state.engine.clone()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and
    /// stops the background loops.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        tokio::spawn(
            self.state
                .engine
                .clone()
                .run(stop.clone().cancelled_owned()),
        );
        tokio::spawn(ops::memory::trim_until(stop.clone().cancelled_owned()));
        let full_list = self.state.full_list.clone();
        tokio::spawn(ops::periodic::every(
            api::FULL_LIST_KEPT / 3,
            stop.clone().cancelled_owned(),
            move || {
                full_list.forget_unused(api::FULL_LIST_KEPT);
                std::future::ready(())
            },
        ));
        // With MIGRATE_ON_START the inventory is polled once the schema
        // exists, not before (no "table doesn't exist" warnings on a first start).
        let state = self.state.clone();
        let (refresh, migrate_first, until) =
            (self.inventory_refresh, self.migrate_on_start, stop.clone());
        tokio::spawn(async move {
            if migrate_first {
                migrate_until_done(state.clone(), until.clone()).await;
            }
            state
                .inventory
                .clone()
                .run(refresh, until.cancelled_owned())
                .await;
        });
        tracing::info!(addr = %self.local_addr(), "hardware listening");
        let connections = self.connections;
        let listener = axum::serve::ListenerExt::tap_io(self.listener, move |tcp| {
            connections.inc();
            // Small JSON answers: send them now rather than wait for Nagle.
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(self.router),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        stop.cancel();
        tracing::info!("hardware stopped");
        served.context("serving HTTP")
    }
}

/// Applies migrations at start-up, retrying while the database is not up yet.
async fn migrate_until_done(state: AppState, stop: CancellationToken) {
    loop {
        match state.db.migrate().await {
            Ok(()) => {
                state.migrated.store(true, Ordering::Relaxed);
                tracing::info!("database migrations applied");
                // Load the inventory now rather than at the poller's next tick.
                if let Err(err) = state.inventory.refresh().await {
                    tracing::warn!(error = %err, "inventory refresh after migrating failed");
                }
                return;
            }
            Err(err) => tracing::warn!(error = %err, "cannot apply migrations yet; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// `hardware migrate`: applies pending migrations once and returns.
///
/// Safe when several run at once: see [`db::migrate`].
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let options = settings.connect_options()?;
    let pool = db::lazy_pool(options, 1, Duration::from_secs(30), None);
    db::migrate(&pool).await.context("applying migrations")?;
    pool.close().await;
    Ok(())
}
