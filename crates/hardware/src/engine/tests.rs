//! Engine behaviour under paused tokio time: no real sleeps.

use super::*;
use prometheus_client::registry::Registry;

const DELAY: Duration = Duration::from_secs(5);
const TTL: Duration = Duration::from_secs(30);

fn targets(n: u64) -> Vec<Target> {
    (1..=n)
        .map(|id| Target {
            id,
            provider: "Amazon".into(),
            name: format!("m{id}").into(),
        })
        .collect()
}

fn settings(concurrency: usize) -> EngineSettings {
    EngineSettings {
        ttl: TTL,
        probe_timeout: Duration::from_secs(60),
        concurrency,
    }
}

/// Starts an engine over `probe` on the (paused) runtime.
fn start<P: Probe>(probe: Arc<P>, concurrency: usize) -> Engine {
    let engine = Engine::new(probe, settings(concurrency), &mut Registry::default());
    tokio::spawn(engine.clone().run(std::future::pending()));
    engine
}

fn counting(delay: Duration) -> Arc<CountingProbe<SimulatedProbe>> {
    Arc::new(CountingProbe::new(SimulatedProbe::new(delay)))
}

#[tokio::test(start_paused = true)]
async fn a_hundred_waiters_on_a_cold_cache_cause_one_probe_per_item() {
    let probe = counting(DELAY);
    let engine = start(Arc::clone(&probe), 100);
    engine.track(targets(5));
    let ids: Vec<u64> = (1..=5).collect();
    let waiters: Vec<_> = (0..100)
        .map(|_| {
            let engine = engine.clone();
            let ids = ids.clone();
            tokio::spawn(async move { engine.wait_for(&ids, Duration::from_secs(10)).await })
        })
        .collect();
    for waiter in waiters {
        waiter.await.expect("waiter");
    }
    for id in ids {
        assert_eq!(probe.calls(id), 1, "item {id}");
        assert!(engine.reading(id).is_some());
    }
}

#[tokio::test(start_paused = true)]
async fn each_item_is_probed_once_per_ttl() {
    let probe = counting(DELAY);
    let engine = start(Arc::clone(&probe), 100);
    engine.track(targets(3));
    // Probes start at t=0, 30, 60, 90: four windows begun by t=100 s.
    tokio::time::sleep(Duration::from_secs(100)).await;
    for id in 1..=3 {
        assert_eq!(probe.calls(id), 4, "item {id}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cached_value_stays_readable_while_its_refresh_is_in_flight() {
    let probe = counting(DELAY);
    let engine = start(Arc::clone(&probe), 100);
    engine.track(targets(1));
    engine.wait_for(&[1], Duration::from_secs(10)).await;
    let first = engine.reading(1).expect("computed");
    // The refresh starts at t=30 s and lands at t=35 s; look in between.
    tokio::time::sleep(Duration::from_secs(32) - DELAY).await;
    assert_eq!(probe.calls(1), 2, "refresh started");
    assert_eq!(engine.reading(1), Some(first), "old value served meanwhile");
    let before = engine.version();
    tokio::time::sleep(DELAY).await;
    // (checked_at is wall-clock to the millisecond; paused time does not move it.)
    assert!(engine.version() > before, "replaced by the refresh");
    assert!(engine.reading(1).is_some());
}

#[tokio::test(start_paused = true)]
async fn probes_never_exceed_the_concurrency_bound() {
    let probe = counting(DELAY);
    let engine = start(Arc::clone(&probe), 4);
    engine.track(targets(20));
    let ids: Vec<u64> = (1..=20).collect();
    engine.wait_for(&ids, Duration::from_secs(60)).await;
    assert_eq!(probe.max_concurrent(), 4);
    assert!(engine.readings(ids).iter().all(Option::is_some));
    assert_eq!(probe.total_calls(), 20);
}

#[tokio::test(start_paused = true)]
async fn wait_returns_at_its_limit_when_the_probe_is_slower() {
    let engine = start(counting(DELAY), 10);
    engine.track(targets(1));
    let before = Instant::now();
    engine.wait_for(&[1], Duration::from_secs(2)).await;
    assert_eq!(before.elapsed(), Duration::from_secs(2));
    assert!(engine.reading(1).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_zero_wait_never_blocks() {
    let engine = start(counting(DELAY), 10);
    engine.track(targets(1));
    let before = Instant::now();
    engine.wait_for(&[1], Duration::ZERO).await;
    assert_eq!(before.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn untracked_items_are_not_waited_for_and_stop_being_probed() {
    let probe = counting(DELAY);
    let engine = start(Arc::clone(&probe), 10);
    engine.track(targets(2));
    engine.wait_for(&[1, 2], Duration::from_secs(10)).await;
    engine.track(targets(1));
    let before = Instant::now();
    engine.wait_for(&[2], Duration::from_secs(10)).await;
    assert_eq!(before.elapsed(), Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(95)).await;
    assert_eq!(probe.calls(2), 1, "deleted item no longer probed");
    assert!(probe.calls(1) > 1, "kept item still refreshed");
    assert!(engine.reading(2).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failing_probe_keeps_the_last_value_and_retries_soon() {
    /// Succeeds once, then fails.
    #[derive(Debug, Default)]
    struct Flaky(std::sync::atomic::AtomicUsize);
    impl Probe for Flaky {
        fn check<'a>(
            &'a self,
            _: &'a Target,
        ) -> futures_util::future::BoxFuture<'a, Result<Availability, ProbeError>> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    Ok(Availability::Low)
                } else {
                    Err(ProbeError("down".into()))
                }
            })
        }
    }
    let flaky = Arc::new(Flaky::default());
    let engine = start(Arc::clone(&flaky), 10);
    engine.track(targets(1));
    engine.wait_for(&[1], Duration::from_secs(1)).await;
    let value = engine.reading(1).expect("first probe succeeded");
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(engine.reading(1), Some(value), "old value kept");
    let calls = flaky.0.load(std::sync::atomic::Ordering::SeqCst);
    // Success at t=0, failure at t=30, then a retry every ttl/4 = 5 s: 35 … 55 (60 is
    // on the boundary). A full-TTL backoff would give 2 or 3; no backoff, hundreds.
    assert!((7..=8).contains(&calls), "probed {calls} times");
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_hangs_is_cut_off_at_the_timeout() {
    let probe = counting(Duration::from_secs(3600));
    let engine = Engine::new(
        Arc::clone(&probe) as Arc<dyn Probe>,
        EngineSettings {
            ttl: TTL,
            probe_timeout: Duration::from_secs(1),
            concurrency: 1,
        },
        &mut Registry::default(),
    );
    tokio::spawn(engine.clone().run(std::future::pending()));
    engine.track(targets(2));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // With one slot, item 2 only got its turn because item 1's probe timed out.
    assert_eq!(probe.calls(2), 1);
}

#[tokio::test(start_paused = true)]
async fn the_version_moves_when_values_land() {
    let engine = start(counting(DELAY), 10);
    let before = engine.version();
    engine.track(targets(1));
    engine.wait_for(&[1], Duration::from_secs(10)).await;
    assert!(engine.version() > before);
}

#[tokio::test(start_paused = true)]
async fn the_engine_knows_when_every_value_has_been_computed() {
    let engine = start(counting(DELAY), 10);
    assert!(!engine.has_never_computed());
    engine.track(targets(3));
    assert!(engine.has_never_computed());
    engine.wait_for(&[1, 2, 3], Duration::from_secs(10)).await;
    assert!(!engine.has_never_computed());
    // A new item is pending again; removing it clears the flag.
    engine.track(targets(4));
    assert!(engine.has_never_computed());
    engine.track(targets(3));
    assert!(!engine.has_never_computed());
}

fn version_of(engine: &Engine) -> Version {
    let (version, _, items) = engine.everything();
    assert_eq!(version, Version::of(&items), "kept equal to the data's");
    version
}

#[tokio::test(start_paused = true)]
async fn the_change_feed_tells_what_changed_since_a_version_it_handed_out() {
    let engine = start(counting(DELAY), 100);
    engine.track(targets(3));
    let empty = version_of(&engine);
    engine.wait_for(&[1, 2, 3], Duration::from_secs(10)).await;
    let filled = version_of(&engine);
    assert_ne!(empty, filled);
    assert!(matches!(engine.changes_since(filled), Since::Current));
    let Since::Changed {
        version,
        changed,
        removed,
    } = engine.changes_since(empty)
    else {
        panic!("a version it handed out is known");
    };
    assert_eq!(version, filled);
    assert_eq!(
        changed.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(removed.is_empty());

    // A rename, an addition and a removal in one inventory read.
    let mut next = targets(4);
    next.remove(0);
    next[0].name = "renamed".into();
    engine.track(next);
    let Since::Changed {
        version,
        changed,
        removed,
    } = engine.changes_since(filled)
    else {
        panic!("known");
    };
    assert_eq!(changed.iter().map(|i| i.id).collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(&*changed[0].name, "renamed");
    assert_eq!(removed, vec![1]);
    assert_eq!(version, version_of(&engine));
    // Nothing else happened: each version it handed out answers what came after.
    assert!(matches!(engine.changes_since(version), Since::Current));
    // A version it never handed out cannot be answered.
    assert!(matches!(
        engine.changes_since(Version::from_sum(42)),
        Since::Unknown
    ));
    // Values landing after the refresh are changes too.
    tokio::time::sleep(TTL + DELAY + Duration::from_secs(1)).await;
    let Since::Changed { changed, .. } = engine.changes_since(version) else {
        panic!("known");
    };
    // (The simulated probe may measure an equal value at an equal wall-clock
    // millisecond under paused time: such a re-probe changes nothing.)
    assert!(
        changed.iter().any(|i| i.id == 4),
        "its first value: {changed:?}"
    );
    let (_, _, now) = engine.everything();
    for item in &changed {
        assert!(now.contains(item), "as it is now: {item:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn removals_beyond_what_it_remembers_make_old_versions_unknown() {
    let engine = start(counting(DELAY), 1);
    let n = MAX_REMOVED as u64 + 10;
    engine.track(targets(n));
    let before = version_of(&engine);
    engine.track(targets(0));
    assert!(matches!(engine.changes_since(before), Since::Unknown));
    assert_eq!(engine.state().removed.len(), MAX_REMOVED, "bounded");
}
