//! `spawn_app` and one helper per endpoint.

use clap::Parser;
use futures_util::future::BoxFuture;
use hardware::config::{Cli, Settings};
use hardware::engine::{CountingProbe, Probe, ProbeError, SimulatedProbe, Target};
use sqlx::MySqlPool;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use wire::Availability;

pub const TOKEN: &str = "test-admin-token-0123456789";

/// A running service.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    _token_dir: Option<TempDir>,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "hardware-test-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How to start the app.
pub struct Options {
    pub probe: Arc<dyn Probe>,
    pub args: Vec<String>,
    pub admin: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            probe: Arc::new(SimulatedProbe::new(Duration::from_millis(20))),
            args: Vec::new(),
            admin: true,
        }
    }
}

impl Options {
    pub fn probe(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probe = probe;
        self
    }

    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.args.push(format!("--{flag}={value}"));
        self
    }

    pub fn read_only(mut self) -> Self {
        self.admin = false;
        self
    }
}

pub fn settings(args: &[String]) -> Settings {
    let mut argv = vec![
        "hardware".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        "--instance-id=test-instance".to_owned(),
        "--inventory-refresh=100ms".to_owned(),
        "--availability-max-wait=10s".to_owned(),
    ];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv)
        .expect("valid test settings")
        .settings
}

/// Starts the service on `pool` and waits until its inventory is loaded.
pub async fn spawn_app(pool: MySqlPool, options: Options) -> TestApp {
    let mut args = options.args;
    let token_dir = options.admin.then(|| {
        let dir = TempDir::new("token");
        let path = dir.0.join("admin-token");
        std::fs::write(&path, format!("{TOKEN}\n")).expect("token file");
        args.push(format!("--admin-token-file={}", path.display()));
        dir
    });
    let settings = settings(&args);
    let app = hardware::Application::with_parts(&settings, pool, options.probe)
        .await
        .expect("app builds");
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));
    let test_app = TestApp {
        addr,
        client: reqwest::Client::new(),
        _token_dir: token_dir,
    };
    test_app.wait_ready().await;
    test_app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the app did not become ready");
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// `GET path` expecting 200 and a JSON array of items.
    pub async fn list(&self, path: &str) -> Vec<wire::Item> {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.expect("item array")
    }

    pub async fn create(&self, provider: &str, name: &str) -> reqwest::Response {
        self.client
            .post(self.url("/hardware/"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"provider": provider, "name": name}))
            .send()
            .await
            .expect("request")
    }

    pub async fn update(&self, id: u64, provider: &str, name: &str) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/hardware/{id}")))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"provider": provider, "name": name}))
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, id: u64) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/hardware/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request")
    }
}

/// Asserts a problem+json answer with `status`, returning its detail.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, wire::PROBLEM_JSON);
    let problem: wire::Problem = response.json().await.expect("problem body");
    assert_eq!(problem.status, status);
    assert!(!problem.title.is_empty() && !problem.detail.is_empty());
    problem.detail
}

/// A probe whose first call per item answers at once and whose later calls
/// block until the test ends: "a refresh is in flight" made deterministic.
#[derive(Debug)]
pub struct FirstCallOnly {
    calls: std::sync::Mutex<std::collections::HashMap<u64, usize>>,
    never: Semaphore,
}

impl Default for FirstCallOnly {
    fn default() -> Self {
        Self {
            calls: std::sync::Mutex::default(),
            never: Semaphore::new(0),
        }
    }
}

impl FirstCallOnly {
    pub fn calls(&self, id: u64) -> usize {
        self.calls
            .lock()
            .expect("lock")
            .get(&id)
            .copied()
            .unwrap_or(0)
    }
}

impl Probe for FirstCallOnly {
    fn check<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Availability, ProbeError>> {
        let n = {
            let mut calls = self.calls.lock().expect("lock");
            let n = calls.entry(target.id).or_default();
            *n += 1;
            *n
        };
        Box::pin(async move {
            if n > 1 {
                // No permit is ever added: this waits until the runtime ends.
                let _permit = self.never.acquire().await;
            }
            Ok(Availability::Medium)
        })
    }
}

/// A probe that never answers.
pub fn blocked_probe() -> Arc<CountingProbe<SimulatedProbe>> {
    Arc::new(CountingProbe::new(SimulatedProbe::new(
        Duration::from_secs(3600),
    )))
}
