//! Stub hardware, real hardware, and portal start-up helpers.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use hardware::engine::{Gate, GatedProbe, Probe, SimulatedProbe};
use sqlx::MySqlPool;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire::{Availability, Item};

/// What the stub hardware answers to `GET /hardware/`.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Items(Vec<Item>),
    Status(u16),
    Hang,
    Garbage,
}

/// A stand-in for hardware: real HTTP, canned answers.
#[derive(Clone)]
pub struct StubHardware {
    pub addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl StubHardware {
    pub async fn start(behaviour: Behaviour) -> Self {
        let behaviour = Arc::new(Mutex::new(behaviour));
        let app = Router::new()
            .route("/hardware/", get(answer))
            .with_state(Arc::clone(&behaviour));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, behaviour }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("lock") = behaviour;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn answer(State(behaviour): State<Arc<Mutex<Behaviour>>>) -> Response {
    let current = behaviour.lock().expect("lock").clone();
    match current {
        Behaviour::Items(items) => ([(wire::SERVED_BY, "stub")], axum::Json(items)).into_response(),
        Behaviour::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Behaviour::Garbage => "this is not json".into_response(),
    }
}

pub fn item(id: u64, provider: &str, name: &str, level: Availability) -> Item {
    Item {
        id,
        provider: provider.into(),
        name: name.into(),
        availability: level,
        checked_at: (level != Availability::Unknown).then(chrono::Utc::now),
    }
}

pub fn seed_items() -> Vec<Item> {
    vec![
        item(1, "Amazon", "c5", Availability::High),
        item(2, "Azure", "H16mr", Availability::Low),
    ]
}

/// Portal settings for tests: loopback, port 0, short timeouts.
pub fn portal_settings(hardware_urls: &str, extra: &[&str]) -> portal::config::Settings {
    let mut argv = vec![
        "portal".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        "--admin-listen=127.0.0.1:0".to_owned(),
        format!("--hardware-url={hardware_urls}"),
        "--upstream-timeout=500ms".to_owned(),
        "--upstream-connect-timeout=200ms".to_owned(),
        "--refresh-interval=100ms".to_owned(),
        "--instance-id=portal-test".to_owned(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    portal::config::Cli::try_parse_from(argv)
        .expect("valid portal settings")
        .settings
}

/// A built (not running) portal, for `oneshot` tests.
pub async fn build_portal(hardware_urls: &str, extra: &[&str]) -> portal::Application {
    portal::Application::build(&portal_settings(hardware_urls, extra))
        .await
        .expect("portal builds")
}

/// A running portal.
pub struct RunningPortal {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub upstream: portal::upstream::Upstream,
    pub stop: CancellationToken,
}

impl RunningPortal {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub async fn spawn_portal(hardware_urls: &str, extra: &[&str]) -> RunningPortal {
    let app = build_portal(hardware_urls, extra).await;
    let addr = app.local_addr();
    let admin = app.admin_addr();
    let upstream = app.upstream();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    RunningPortal {
        addr,
        admin,
        upstream,
        stop,
    }
}

/// A running hardware service on `pool`; `stop` shuts it down (its port closes).
pub struct RunningHardware {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningHardware {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it and waits until its listener is closed.
    pub async fn kill(self) {
        self.stop.cancel();
        let _ = self.done.await;
    }
}

pub async fn spawn_hardware(
    pool: MySqlPool,
    instance: &str,
    probe_delay: Duration,
) -> RunningHardware {
    spawn_hardware_with(pool, instance, probe_delay, &[]).await
}

/// [`spawn_hardware`] with more flags.
pub async fn spawn_hardware_with(
    pool: MySqlPool,
    instance: &str,
    probe_delay: Duration,
    extra: &[String],
) -> RunningHardware {
    spawn_hardware_probed(
        pool,
        instance,
        Arc::new(SimulatedProbe::new(probe_delay)),
        extra,
    )
    .await
}

/// [`spawn_hardware`] whose probes wait for the returned [`Gate`].
pub async fn spawn_hardware_gated(pool: MySqlPool, instance: &str) -> (RunningHardware, Gate) {
    let (probe, gate) = GatedProbe::new();
    let hardware = spawn_hardware_probed(pool, instance, Arc::new(probe), &[]).await;
    (hardware, gate)
}

async fn spawn_hardware_probed(
    pool: MySqlPool,
    instance: &str,
    probe: Arc<dyn Probe>,
    extra: &[String],
) -> RunningHardware {
    let mut argv = vec![
        "hardware".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        format!("--instance-id={instance}"),
        "--inventory-refresh=100ms".to_owned(),
    ];
    argv.extend_from_slice(extra);
    let settings = hardware::config::Cli::try_parse_from(argv)
        .expect("valid hardware settings")
        .settings;
    let app = hardware::Application::with_parts(&settings, pool, probe)
        .await
        .expect("hardware builds");
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let done = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("http://{addr}/readyz")).send().await
            && response.status().is_success()
        {
            return RunningHardware { addr, stop, done };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("hardware did not become ready");
}

/// Polls `check` every 100 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The sum of the samples of metric `name` (lines starting with it and
/// containing `must_contain`) at `metrics_url`.
pub async fn metric_sum(metrics_url: &str, name: &str, must_contain: &str) -> u64 {
    let text = reqwest::get(metrics_url)
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| line.starts_with(name) && line.contains(must_contain))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
