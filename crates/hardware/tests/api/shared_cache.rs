//! The shared cache on a real Redis: one probe per item per TTL across replicas.
//!
//! `TEST_REDIS_URL` names a Redis that tests may write to (`cargo xtask test`
//! starts a throwaway one). Each test uses its own key prefix.

use hardware::engine::{
    CountingProbe, Engine, EngineSettings, Probe, RedisCache, SharedCache, SimulatedProbe, Target,
};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .expect("TEST_REDIS_URL is not set: run the tests with `cargo xtask test`")
}

fn prefix(test: &str) -> String {
    format!("test-{test}-{}-{}", std::process::id(), rand_part())
}

fn rand_part() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn targets(n: u64) -> Vec<Target> {
    (1..=n)
        .map(|id| Target {
            id,
            provider: "P".into(),
            name: format!("n{id}"),
        })
        .collect()
}

fn settings(ttl: Duration) -> EngineSettings {
    EngineSettings {
        ttl,
        probe_timeout: Duration::from_secs(2),
        concurrency: 100,
    }
}

/// An engine on `cache`, started.
fn replica(
    probe: Arc<CountingProbe<SimulatedProbe>>,
    cache: Arc<dyn SharedCache>,
    ttl: Duration,
) -> Engine {
    let engine = Engine::with_shared_cache(
        probe as Arc<dyn Probe>,
        Some(cache),
        settings(ttl),
        &mut Registry::default(),
    );
    tokio::spawn(engine.clone().run(std::future::pending()));
    engine
}

fn cache(url: &str, prefix: &str, owner: &str) -> Arc<dyn SharedCache> {
    Arc::new(RedisCache::new(url, prefix, owner, Duration::from_millis(500)).expect("valid URL"))
}

#[tokio::test]
async fn three_engines_on_one_redis_probe_each_item_once_per_ttl() {
    let url = redis_url();
    let prefix = prefix("three");
    let ttl = Duration::from_secs(2);
    let probes: Vec<_> = (0..3)
        .map(|_| {
            Arc::new(CountingProbe::new(SimulatedProbe::new(
                Duration::from_millis(200),
            )))
        })
        .collect();
    let engines: Vec<Engine> = probes
        .iter()
        .enumerate()
        .map(|(n, probe)| {
            replica(
                Arc::clone(probe),
                cache(&url, &prefix, &format!("r{n}")),
                ttl,
            )
        })
        .collect();
    let ids: Vec<u64> = (1..=20).collect();
    for engine in &engines {
        engine.track(targets(20));
    }
    for engine in &engines {
        engine.wait_for(&ids, Duration::from_secs(5)).await;
        assert!(
            engine.readings(ids.clone()).iter().all(Option::is_some),
            "every replica has every value"
        );
    }
    let calls = |id: u64| probes.iter().map(|p| p.calls(id)).sum::<usize>();
    for &id in &ids {
        assert_eq!(
            calls(id),
            1,
            "item {id}: one probe across the three replicas"
        );
    }
    // The same values everywhere: they came from the one probe.
    let first = engines[0].readings(ids.clone());
    for engine in &engines[1..] {
        assert_eq!(engine.readings(ids.clone()), first);
    }
    // One TTL later: one more probe per item in all (a window is `ttl` long).
    tokio::time::sleep(ttl + Duration::from_millis(700)).await;
    for &id in &ids {
        assert_eq!(calls(id), 2, "item {id}: one probe per TTL across the tier");
    }
}

#[tokio::test]
async fn a_lease_left_by_a_crashed_prober_expires_and_another_replica_takes_over() {
    let url = redis_url();
    let prefix = prefix("lease");
    // A prober took the lease of item 1 and died: nobody will release it.
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis is up");
    let lease_ms: u64 = 800;
    let () = redis::cmd("SET")
        .arg(format!("{prefix}:lease:1"))
        .arg("crashed-replica")
        .arg("PX")
        .arg(lease_ms)
        .query_async(&mut connection)
        .await
        .expect("set lease");

    let probe = Arc::new(CountingProbe::new(SimulatedProbe::new(
        Duration::from_millis(50),
    )));
    let started = Instant::now();
    let engine = replica(
        Arc::clone(&probe),
        cache(&url, &prefix, "survivor"),
        Duration::from_secs(30),
    );
    engine.track(targets(1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(probe.calls(1), 0, "no probe while the lease is held");
    engine.wait_for(&[1], Duration::from_secs(5)).await;
    assert!(engine.reading(1).is_some(), "probed once the lease expired");
    assert_eq!(probe.calls(1), 1);
    assert!(started.elapsed() >= Duration::from_millis(lease_ms));
}

#[tokio::test]
async fn with_redis_down_each_engine_probes_alone_and_values_still_land() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let probe = Arc::new(CountingProbe::new(SimulatedProbe::new(
        Duration::from_millis(50),
    )));
    let engine = replica(
        Arc::clone(&probe),
        cache(&url, "down", "alone"),
        Duration::from_secs(30),
    );
    engine.track(targets(3));
    engine.wait_for(&[1, 2, 3], Duration::from_secs(5)).await;
    assert!(engine.readings([1, 2, 3]).iter().all(Option::is_some));
    assert_eq!(probe.total_calls(), 3);
}
