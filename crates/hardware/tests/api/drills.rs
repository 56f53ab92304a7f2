//! Fault drills: the database goes away (cleanly or silently) and comes
//! back; a replica drains on shutdown.

use crate::fault_proxy::{FaultProxy, Mode};
use crate::helpers::{TOKEN, assert_problem, settings};
use hardware::engine::{Probe, SimulatedProbe};
use sqlx::MySqlPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn status(client: &reqwest::Client, url: String) -> u16 {
    client
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The limits the drills run with, and the bound they check: `/readyz`
/// answers within the statement limit, a write within acquire + 2 × the
/// statement limit (its statement, then at most one limit for its own
/// refresh), plus slack for a loaded CI machine.
const ACQUIRE: Duration = Duration::from_millis(500);
const STATEMENT: Duration = Duration::from_secs(1);
const READY_WITHIN: Duration = Duration::from_millis(1500);
const ANSWER_WITHIN: Duration = Duration::from_millis(3000);

/// A service whose database traffic goes through a [`FaultProxy`].
struct Proxied {
    proxy: FaultProxy,
    base: String,
    client: reqwest::Client,
    _token: crate::helpers::TempDir,
}

impl Proxied {
    async fn start(pool: &MySqlPool) -> Self {
        let options = (*pool.connect_options()).clone();
        let upstream: SocketAddr = format!("{}:{}", options.get_host(), options.get_port())
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], options.get_port())));
        let proxy = FaultProxy::start(upstream).await;
        let proxied = options.host("127.0.0.1").port(proxy.addr.port());
        let app_pool = hardware::db::lazy_pool(proxied, 5, ACQUIRE, Some(STATEMENT));
        let token = crate::helpers::TempDir::new("drill-token");
        let token_file = token.0.join("token");
        std::fs::write(&token_file, TOKEN).expect("token");
        let args = vec![
            "--availability-ttl=1s".to_owned(),
            format!("--database-statement-timeout={}ms", STATEMENT.as_millis()),
            format!("--admin-token-file={}", token_file.display()),
        ];
        let probe: Arc<dyn Probe> = Arc::new(SimulatedProbe::new(Duration::from_millis(20)));
        let app = hardware::Application::with_parts(&settings(&args), app_pool, probe)
            .await
            .expect("builds");
        let base = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until(std::future::pending()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        for _ in 0..100 {
            if status(&client, format!("{base}/readyz")).await == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            proxy,
            base,
            client,
            _token: token,
        }
    }

    async fn list(&self) -> (u16, Vec<wire::Item>) {
        let answer = self
            .client
            .get(format!("{}/hardware/", self.base))
            .send()
            .await
            .expect("list answered");
        let code = answer.status().as_u16();
        (code, answer.json().await.unwrap_or_default())
    }

    /// `/readyz`'s status and how long it took.
    async fn ready(&self) -> (u16, Duration) {
        let started = Instant::now();
        let code = status(&self.client, format!("{}/readyz", self.base)).await;
        (code, started.elapsed())
    }

    async fn create(&self, name: &str) -> (reqwest::Response, Duration) {
        let started = Instant::now();
        let answer = self
            .client
            .post(format!("{}/hardware/", self.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"provider": "Drill", "name": name}))
            .send()
            .await
            .expect("write answered");
        (answer, started.elapsed())
    }

    /// How long after the database is back `/readyz` says 200.
    async fn ready_again(&self) -> Duration {
        let restored = Instant::now();
        while restored.elapsed() < Duration::from_secs(10) {
            if self.ready().await.0 == 200 {
                return restored.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("not ready again within 10 s of the database coming back, without a restart");
    }
}

/// The outage checks shared by the clean and the silent drill.
async fn outage(mode: Mode, pool: MySqlPool) {
    let service = Proxied::start(&pool).await;
    let (code, before) = service.list().await;
    assert_eq!(code, 200);
    assert!(
        before
            .iter()
            .all(|i| i.availability != wire::Availability::Unknown)
    );

    service.proxy.set(mode);
    // Reads: the cached inventory and values, with fresh probes still landing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, during) = service.list().await;
    assert_eq!(code, 200, "{mode:?}: reads survive the outage");
    assert_eq!(during.len(), before.len());
    let (code, took) = service.ready().await;
    println!("drill {mode:?}: /readyz answered {code} in {took:?}");
    assert_eq!(code, 503, "{mode:?}: not ready without a database");
    assert!(took <= READY_WITHIN, "{mode:?}: /readyz took {took:?}");
    assert_eq!(
        status(&service.client, format!("{}/healthz", service.base)).await,
        200,
        "but alive"
    );
    let (write, took) = service.create("during-outage").await;
    println!(
        "drill {mode:?}: a write answered {} in {took:?}",
        write.status()
    );
    assert!(took <= ANSWER_WITHIN, "{mode:?}: the write took {took:?}");
    assert_eq!(write.headers()["retry-after"], "2");
    assert_problem(write, 503).await;

    service.proxy.set(Mode::Open);
    let ready_after = service.ready_again().await;
    println!("drill {mode:?}: ready {ready_after:?} after the database came back");
    assert!(ready_after <= Duration::from_secs(5), "{ready_after:?}");
    let (write, _) = service.create("after-outage").await;
    assert_eq!(write.status(), 201, "writes work again");
    let (code, after) = service.list().await;
    assert_eq!(code, 200);
    assert!(after.iter().any(|i| &*i.name == "after-outage"));
    assert!(!after.iter().any(|i| &*i.name == "during-outage"));
}

#[sqlx::test(migrations = "../../sql")]
async fn a_database_cut_keeps_reads_up_fails_writes_cleanly_and_heals_by_itself(pool: MySqlPool) {
    outage(Mode::Cut, pool).await;
}

#[sqlx::test(migrations = "../../sql")]
async fn a_silent_database_is_seen_within_the_statement_limit_and_heals_by_itself(pool: MySqlPool) {
    outage(Mode::Blackhole, pool).await;
}

/// A statement already running when the network goes silent: the server's
/// answer never comes, so the client's own limit must end it. The table is
/// locked from a connection of the test's own, so the write is surely in
/// flight when the silence starts. Without silence, the server's
/// `max_statement_time` ends the same wait with a clean error.
#[sqlx::test(migrations = "../../sql")]
async fn a_statement_in_flight_when_the_network_goes_silent_ends_at_the_limit(pool: MySqlPool) {
    let service = Arc::new(Proxied::start(&pool).await);
    let mut locker = pool.acquire().await.expect("connection");
    for silent in [false, true] {
        sqlx::query("LOCK TABLES hardware WRITE")
            .execute(&mut *locker)
            .await
            .expect("lock");
        let name = format!("stuck-{silent}");
        let write = tokio::spawn({
            let service = Arc::clone(&service);
            async move {
                let (answer, took) = service.create(&name).await;
                (answer.status().as_u16(), took)
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        if silent {
            service.proxy.set(Mode::Blackhole);
        }
        let (code, took) = write.await.expect("writer");
        println!("drill: a write waiting on a lock, network silent: {silent}: {code} in {took:?}");
        assert_eq!(code, 503, "silent: {silent}");
        assert!(
            took >= STATEMENT - Duration::from_millis(100) && took <= ANSWER_WITHIN,
            "silent: {silent}: {took:?}"
        );
        sqlx::query("UNLOCK TABLES")
            .execute(&mut *locker)
            .await
            .expect("unlock");
        service.proxy.set(Mode::Open);
        service.ready_again().await;
    }
    // Whatever the server did with the interrupted writes, a retry settles
    // each one and none is stored twice.
    for silent in [false, true] {
        let (answer, _) = service.create(&format!("stuck-{silent}")).await;
        assert!(matches!(answer.status().as_u16(), 201 | 409));
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hardware WHERE name = ?")
            .bind(format!("stuck-{silent}"))
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(rows, 1);
    }
}

/// Writes keep coming while the database goes silent and comes back; a
/// client retries every 503 until it gets an answer that settles it. After:
/// every write is there exactly once (none lost, none applied twice), and no
/// answer took longer than the stated bound.
#[sqlx::test(migrations = "../../sql")]
async fn writes_across_a_silent_outage_are_neither_lost_nor_doubled(pool: MySqlPool) {
    let service = Arc::new(Proxied::start(&pool).await);
    let writer = tokio::spawn({
        let service = Arc::clone(&service);
        async move {
            let mut slowest = Duration::ZERO;
            let mut outcomes = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(40);
            for n in 0..30 {
                let name = format!("w{n}");
                let mut tries = 0;
                let settled = loop {
                    tries += 1;
                    let (answer, took) = service.create(&name).await;
                    slowest = slowest.max(took);
                    match answer.status().as_u16() {
                        // 409 after a 503: the first try had been applied.
                        code @ (201 | 409) => break code,
                        503 if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        other => panic!("{name}: unexpected {other}"),
                    }
                };
                outcomes.push((name, tries, settled));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (outcomes, slowest)
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    service.proxy.set(Mode::Blackhole);
    tokio::time::sleep(Duration::from_secs(3)).await;
    service.proxy.set(Mode::Open);
    let (outcomes, slowest) = writer.await.expect("writer");
    let retried = outcomes.iter().filter(|(_, tries, _)| *tries > 1).count();
    println!(
        "drill: 30 writes across a 3 s silent outage: {retried} needed retries, slowest answer {slowest:?}"
    );
    assert!(
        retried > 0,
        "the outage hit no write: the drill proved nothing"
    );
    assert!(slowest <= ANSWER_WITHIN, "slowest answer {slowest:?}");
    for (name, tries, settled) in &outcomes {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hardware WHERE name = ?")
            .bind(name)
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(
            rows, 1,
            "{name} ({tries} tries, settled {settled}) stored once"
        );
    }
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
