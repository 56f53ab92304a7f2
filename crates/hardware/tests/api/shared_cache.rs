//! The shared cache on a real Redis: one probe per item per TTL across replicas.
//!
//! `TEST_REDIS_URL` names a Redis that tests may write to (`cargo xtask test`
//! starts a throwaway one). Each test uses its own key prefix.

use crate::fault_proxy::{FaultProxy, Mode};
use hardware::engine::{
    CountingProbe, Engine, EngineSettings, FailingProbe, Probe, RedisCache, SharedCache,
    SimulatedProbe, Target,
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
            name: format!("n{id}").into(),
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
    cache_with_timeout(url, prefix, owner, Duration::from_millis(500))
}

fn cache_with_timeout(
    url: &str,
    prefix: &str,
    owner: &str,
    timeout: Duration,
) -> Arc<dyn SharedCache> {
    Arc::new(RedisCache::new(url, None, prefix, owner, timeout).expect("valid URL"))
}

/// A plain connection to the test Redis, to plant what a hostile client would.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis is up")
}

/// The loopback address of the test Redis (for a fault proxy in front of it).
fn redis_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.trim_start_matches("redis://");
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    hostport
        .parse()
        .expect("TEST_REDIS_URL names 127.0.0.1:port")
}

/// A counter of the engine's metrics, by its `outcome` label.
fn shared_outcome(registry: &Registry, outcome: &str) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find(|line| {
            line.starts_with("availability_shared_total")
                && line.contains(&format!("outcome=\"{outcome}\""))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
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

/// Redis silent (accepts, never answers) from the start: each replica must
/// notice once, then probe every item alone at once — not one connection
/// attempt per item in turn. 1,000 items, a 1 s probe: every value within
/// 2 × the probe delay on each of three replicas. Then Redis comes back and
/// the tier shares again: one probe per item per TTL across the three.
#[tokio::test]
async fn with_redis_silent_from_the_start_values_fill_alone_then_sharing_resumes() {
    let url = redis_url();
    let proxy = FaultProxy::start(redis_addr(&url)).await;
    proxy.set(Mode::Blackhole);
    let proxied = format!("redis://127.0.0.1:{}", proxy.addr.port());
    let prefix = prefix("silent");
    let delay = Duration::from_secs(1);
    let ttl = Duration::from_secs(3);
    let n = 1000;
    let probes: Vec<_> = (0..3)
        .map(|_| Arc::new(CountingProbe::new(SimulatedProbe::new(delay))))
        .collect();
    let started = Instant::now();
    let mut registries: Vec<Registry> = (0..3).map(|_| Registry::default()).collect();
    let engines: Vec<Engine> = probes
        .iter()
        .zip(registries.iter_mut())
        .enumerate()
        .map(|(r, (probe, registry))| {
            let engine = Engine::with_shared_cache(
                Arc::clone(probe) as Arc<dyn Probe>,
                Some(cache_with_timeout(
                    &proxied,
                    &prefix,
                    &format!("r{r}"),
                    // The tests' usual call limit: 200 ms made a loaded machine's
                    // scheduling hiccups look like Redis faults (12 in 1,000 once).
                    Duration::from_millis(500),
                )),
                EngineSettings {
                    ttl,
                    probe_timeout: Duration::from_secs(2),
                    concurrency: 10_000,
                },
                registry,
            );
            tokio::spawn(engine.clone().run(std::future::pending()));
            engine.track(targets(n));
            engine
        })
        .collect();
    let ids: Vec<u64> = (1..=n).collect();
    for (r, engine) in engines.iter().enumerate() {
        engine.wait_for(&ids, delay * 3).await;
        let filled = engine.readings(ids.clone()).iter().flatten().count();
        let took = started.elapsed();
        println!("drill: Redis silent: replica {r} had {filled}/{n} values after {took:?}");
        assert_eq!(filled as u64, n, "replica {r}");
        assert!(took <= delay * 2, "replica {r}: {took:?}");
    }

    proxy.set(Mode::Open);
    // The links come back at the next round (t = 3 s, backoff ≤ 5 s but only
    // tried when there is work); from the round after, one replica probes
    // each item and the others adopt. Count one whole TTL window from the
    // middle of one round to the middle of the next.
    let calls = |id: u64| probes.iter().map(|p| p.calls(id)).sum::<usize>();
    let alone = || {
        registries
            .iter()
            .map(|registry| shared_outcome(registry, "unavailable"))
            .sum::<u64>()
    };
    tokio::time::sleep_until((started + ttl * 2 + ttl / 2).into()).await;
    let before: Vec<usize> = ids.iter().map(|&id| calls(id)).collect();
    let alone_before = alone();
    tokio::time::sleep(ttl).await;
    let alone_in_window = alone() - alone_before;
    let deltas: Vec<usize> = ids
        .iter()
        .zip(&before)
        .map(|(&id, b)| calls(id) - b)
        .collect();
    let total: usize = deltas.iter().sum();
    for (r, registry) in registries.iter().enumerate() {
        println!(
            "drill: replica {r} so far: worked alone {} times, found the item busy {}, adopted {}, rejected {}",
            shared_outcome(registry, "unavailable"),
            shared_outcome(registry, "busy"),
            shared_outcome(registry, "adopted"),
            shared_outcome(registry, "rejected")
        );
    }
    println!(
        "drill: Redis back: {total} probes for {n} items in one TTL across 3 replicas ({:.2} per item)",
        total as f64 / n as f64
    );
    println!("drill: Redis back: {alone_in_window} calls found the link down in that window");
    // Every item probed in the window, and once — except where a replica found
    // Redis too slow for its 500 ms call limit and probed alone (the designed
    // fallback, counted as `unavailable`; seen once in 1,000 on a loaded CI
    // machine). Sharing must have resumed: such fallbacks stay rare.
    assert!(
        deltas.iter().all(|&d| d >= 1),
        "every item probed once per TTL; missed: {}",
        deltas.iter().filter(|&&d| d == 0).count()
    );
    let extra = total - ids.len();
    assert!(
        extra as u64 <= alone_in_window,
        "{extra} items probed more than once, only {alone_in_window} calls fell back to probing alone; saw {:?}",
        deltas
            .iter()
            .filter(|&&d| d != 1)
            .take(10)
            .collect::<Vec<_>>()
    );
    assert!(
        alone_in_window <= n / 100,
        "sharing resumed: {alone_in_window} fallbacks to probing alone in one TTL for {n} items"
    );
}

/// A value no replica could have written — a probe "started" in the future
/// (it would be adopted forever), garbage, inconsistent timestamps — is
/// ignored and counted, and the item is probed as if there were none.
#[tokio::test]
async fn poisoned_values_are_ignored_and_counted() {
    let url = redis_url();
    let prefix = prefix("poison");
    let mut connection = raw(&url).await;
    let now = chrono::Utc::now().timestamp_millis();
    let future = now + 365 * 24 * 3600 * 1000;
    let poisons = [
        format!("HIGH|{future}|{future}"),
        "garbage".to_owned(),
        format!("LOW|{}|{now}", now - 60_000),
        format!("UNKNOWN|{now}|{now}"),
    ];
    for (id, poison) in (1u64..).zip(&poisons) {
        let () = redis::cmd("SET")
            .arg(format!("{prefix}:availability:{id}"))
            .arg(poison)
            .query_async(&mut connection)
            .await
            .expect("plant");
    }
    let () = redis::cmd("SET")
        .arg(format!("{prefix}:availability:5"))
        .arg(b"\xff\xfe not utf-8".as_slice())
        .query_async(&mut connection)
        .await
        .expect("plant");
    let n = 5;
    let probe = Arc::new(CountingProbe::new(SimulatedProbe::new(
        Duration::from_millis(50),
    )));
    let mut registry = Registry::default();
    let engine = Engine::with_shared_cache(
        Arc::clone(&probe) as Arc<dyn Probe>,
        Some(cache(&url, &prefix, "victim")),
        settings(Duration::from_secs(30)),
        &mut registry,
    );
    tokio::spawn(engine.clone().run(std::future::pending()));
    engine.track(targets(n));
    let ids: Vec<u64> = (1..=n).collect();
    engine.wait_for(&ids, Duration::from_secs(5)).await;
    let rejected = shared_outcome(&registry, "rejected");
    println!("drill: {rejected} poisoned values rejected");
    assert_eq!(rejected, n);
    for id in ids {
        assert_eq!(probe.calls(id), 1, "item {id} probed, not adopted");
        let reading = engine.reading(id).expect("a value");
        assert!(reading.checked_at.timestamp_millis() <= chrono::Utc::now().timestamp_millis());
    }
}

/// A lease planted without an expiry (or with a year's) would stop every
/// replica from probing the item forever; the lease call gives it the
/// lease time, so probing resumes after it, like after a crashed prober.
#[tokio::test]
async fn a_lease_without_expiry_does_not_stop_probing() {
    let url = redis_url();
    let prefix = prefix("eternal");
    let mut connection = raw(&url).await;
    let () = redis::cmd("SET")
        .arg(format!("{prefix}:lease:1"))
        .arg("intruder")
        .query_async(&mut connection)
        .await
        .expect("plant");
    let () = redis::cmd("SET")
        .arg(format!("{prefix}:lease:2"))
        .arg("intruder")
        .arg("EX")
        .arg(365 * 24 * 3600)
        .query_async(&mut connection)
        .await
        .expect("plant");
    let probe = Arc::new(CountingProbe::new(SimulatedProbe::new(
        Duration::from_millis(50),
    )));
    // Lease time = probe timeout (1 s) + 1 s.
    let engine = Engine::with_shared_cache(
        Arc::clone(&probe) as Arc<dyn Probe>,
        Some(cache(&url, &prefix, "survivor")),
        EngineSettings {
            ttl: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(1),
            concurrency: 10,
        },
        &mut Registry::default(),
    );
    tokio::spawn(engine.clone().run(std::future::pending()));
    let started = Instant::now();
    engine.track(targets(2));
    engine.wait_for(&[1, 2], Duration::from_secs(6)).await;
    let took = started.elapsed();
    println!("drill: leases planted without expiry / for a year: probed after {took:?}");
    assert!(
        engine.readings([1, 2]).iter().all(Option::is_some),
        "{took:?}"
    );
    assert_eq!(probe.calls(1) + probe.calls(2), 2);
    assert!(took <= Duration::from_secs(3), "{took:?}");
}

/// A probe that fails gives its lease back at once: the item is not reported
/// busy (to other replicas, or to this one) for the rest of the lease time.
#[tokio::test]
async fn a_failed_probe_releases_its_lease() {
    let url = redis_url();
    let prefix = prefix("release");
    let engine = Engine::with_shared_cache(
        Arc::new(FailingProbe) as Arc<dyn Probe>,
        Some(cache(&url, &prefix, "unlucky")),
        EngineSettings {
            ttl: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(20),
            concurrency: 10,
        },
        &mut Registry::default(),
    );
    tokio::spawn(engine.clone().run(std::future::pending()));
    engine.track(targets(1));
    let mut connection = raw(&url).await;
    let key = format!("{prefix}:lease:1");
    let mut gone = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("pttl");
        // -2: no such key (released); a held lease would show up to 21 s.
        if ttl == -2 {
            gone = true;
            break;
        }
    }
    assert!(
        gone,
        "the lease of a failed probe is released, not held for 21 s"
    );
}

/// A store that fails after a good probe (Redis went silent in between)
/// keeps the value here: it is not thrown away and probed again.
#[tokio::test]
async fn a_good_probe_is_kept_when_storing_it_fails() {
    let url = redis_url();
    let proxy = FaultProxy::start(redis_addr(&url)).await;
    let proxied = format!("redis://127.0.0.1:{}", proxy.addr.port());
    let probe = Arc::new(CountingProbe::new(SimulatedProbe::new(
        Duration::from_millis(600),
    )));
    let mut registry = Registry::default();
    let engine = Engine::with_shared_cache(
        Arc::clone(&probe) as Arc<dyn Probe>,
        Some(cache_with_timeout(
            &proxied,
            &prefix("store"),
            "r",
            Duration::from_millis(200),
        )),
        settings(Duration::from_secs(30)),
        &mut registry,
    );
    tokio::spawn(engine.clone().run(std::future::pending()));
    engine.track(targets(1));
    // Load and lease went through; the probe is running: silence now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set(Mode::Blackhole);
    engine.wait_for(&[1], Duration::from_secs(3)).await;
    assert!(engine.reading(1).is_some(), "the probe's value is kept");
    assert_eq!(probe.calls(1), 1, "and not probed again");
    assert_eq!(shared_outcome(&registry, "store_failed"), 1);
}
