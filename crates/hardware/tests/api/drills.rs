//! Fault drills: the database goes away and comes back; a replica drains on shutdown.

use crate::helpers::{TOKEN, assert_problem, settings};
use hardware::engine::{Probe, SimulatedProbe};
use sqlx::MySqlPool;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay to MariaDB that the test can cut (every connection dropped,
/// new ones refused) and restore: a database outage without touching the
/// shared test server.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (cut2, links2) = (Arc::clone(&cut), Arc::clone(&links));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped at once
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links2.lock().expect("lock").push(link);
            }
        });
        Self { addr, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

async fn status(client: &reqwest::Client, url: String) -> u16 {
    client
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[sqlx::test(migrations = "../../sql")]
async fn a_database_outage_keeps_reads_up_fails_writes_cleanly_and_heals_by_itself(
    pool: MySqlPool,
) {
    let options = (*pool.connect_options()).clone();
    let upstream: SocketAddr = format!("{}:{}", options.get_host(), options.get_port())
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], options.get_port())));
    let relay = Relay::start(upstream).await;
    let relayed = options.host("127.0.0.1").port(relay.addr.port());
    let app_pool = hardware::db::lazy_pool(relayed, 5, Duration::from_millis(500));

    let mut args = vec!["--availability-ttl=1s".to_owned()];
    let token_dir = crate::helpers::TempDir::new("drill-token");
    let token_file = token_dir.0.join("token");
    std::fs::write(&token_file, TOKEN).expect("token");
    args.push(format!("--admin-token-file={}", token_file.display()));
    let probe: Arc<dyn Probe> = Arc::new(SimulatedProbe::new(Duration::from_millis(20)));
    let app = hardware::Application::with_parts(&settings(&args), app_pool, probe)
        .await
        .expect("builds");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if status(&client, format!("{base}/readyz")).await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before: Vec<wire::Item> = client
        .get(format!("{base}/hardware/"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(
        before
            .iter()
            .all(|i| i.availability != wire::Availability::Unknown)
    );

    relay.cut();
    // Reads: the cached inventory and values, with fresh probes still landing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = client
        .get(format!("{base}/hardware/"))
        .send()
        .await
        .expect("list");
    assert_eq!(during.status(), 200, "reads survive the outage");
    let during: Vec<wire::Item> = during.json().await.expect("json");
    assert_eq!(during.len(), before.len());
    assert_eq!(
        status(&client, format!("{base}/readyz")).await,
        503,
        "not ready without a database"
    );
    assert_eq!(
        status(&client, format!("{base}/healthz")).await,
        200,
        "but alive"
    );
    let write = client
        .post(format!("{base}/hardware/"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"provider": "P", "name": "during-outage"}))
        .send()
        .await
        .expect("write answered");
    assert_eq!(write.headers()["retry-after"], "2");
    assert_problem(write, 503).await;

    relay.restore();
    let restored = Instant::now();
    let mut ready_after = None;
    while restored.elapsed() < Duration::from_secs(10) {
        if status(&client, format!("{base}/readyz")).await == 200 {
            ready_after = Some(restored.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_after = ready_after.expect("ready again without a restart");
    println!("drill: ready {ready_after:?} after the database came back");
    assert!(ready_after <= Duration::from_secs(5), "{ready_after:?}");
    let write = client
        .post(format!("{base}/hardware/"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"provider": "P", "name": "after-outage"}))
        .send()
        .await
        .expect("write");
    assert_eq!(write.status(), 201, "writes work again");
}

#[sqlx::test(migrations = "../../sql")]
async fn shutdown_drains_a_request_already_in_flight(pool: MySqlPool) {
    let probe: Arc<dyn Probe> = Arc::new(SimulatedProbe::new(Duration::from_millis(800)));
    let app = hardware::Application::with_parts(&settings(&[]), pool, probe)
        .await
        .expect("builds");
    let base = format!("http://{}", app.local_addr());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if status(&client, format!("{base}/readyz")).await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A cold list waits for the slow probe; stop the server while it waits.
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/hardware/?wait=5");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let answered = in_flight.await.expect("task");
    assert_eq!(answered.expect("answered, not cut"), 200);
    server.await.expect("task").expect("clean exit");
    assert_eq!(
        status(&client, format!("{base}/healthz")).await,
        0,
        "listener closed after the drain"
    );
}
