//! The availability engine seen through the API: probes stay off the request path.

use crate::helpers::{FirstCallOnly, Options, blocked_probe, spawn_app};
use hardware::engine::{CountingProbe, SimulatedProbe};
use sqlx::MySqlPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{Availability, Item};

#[sqlx::test(migrations = "../../sql")]
async fn a_hundred_concurrent_lists_on_a_cold_cache_run_one_probe_per_item(pool: MySqlPool) {
    let probe = Arc::new(CountingProbe::new(SimulatedProbe::new(
        Duration::from_millis(300),
    )));
    let app = Arc::new(spawn_app(pool, Options::default().probe(probe.clone())).await);
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.list("/hardware/").await })
        })
        .collect();
    for request in requests {
        let items = request.await.expect("task");
        assert!(
            items
                .iter()
                .all(|i| i.availability != Availability::Unknown)
        );
    }
    let ids: Vec<u64> = app.list("/hardware/").await.iter().map(|i| i.id).collect();
    for id in ids {
        assert_eq!(probe.calls(id), 1, "item {id}");
    }
}

#[sqlx::test(migrations = "../../sql")]
async fn with_values_cached_a_list_returns_while_a_refresh_is_in_flight(pool: MySqlPool) {
    let probe = Arc::new(FirstCallOnly::default());
    let options = Options::default()
        .probe(probe.clone())
        .arg("availability-ttl", "200ms")
        .arg("availability-max-wait", "60s");
    let app = spawn_app(pool, options).await;
    let first = app.list("/hardware/").await;
    assert!(first.iter().all(|i| i.availability == Availability::Medium));
    // After one TTL every item's refresh has started, and never finishes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for item in &first {
        assert_eq!(probe.calls(item.id), 2, "refresh of {} in flight", item.id);
    }
    // Had the request waited for the refresh it would take the full 60 s wait.
    let response = tokio::time::timeout(Duration::from_secs(5), app.list("/hardware/"))
        .await
        .expect("answered while the refresh is in flight");
    assert_eq!(response, first, "the cached values, unchanged");
}

#[sqlx::test(migrations = "../../sql")]
async fn wait_zero_never_blocks_even_when_nothing_is_computed(pool: MySqlPool) {
    let probe = blocked_probe();
    let app = spawn_app(pool, Options::default().probe(probe.clone())).await;
    let started = Instant::now();
    let items = tokio::time::timeout(Duration::from_secs(5), app.list("/hardware/?wait=0"))
        .await
        .expect("answered at once");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|i| i.availability == Availability::Unknown && i.checked_at.is_none())
    );
    assert_eq!(
        probe.total_calls(),
        2,
        "probes run anyway, in the background"
    );
}

#[sqlx::test(migrations = "../../sql")]
async fn a_bounded_wait_answers_with_unknown_when_the_probe_is_slower(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default().probe(blocked_probe())).await;
    let item: Item = app
        .get("/hardware/1?wait=200ms")
        .await
        .json()
        .await
        .expect("item");
    assert_eq!(item.availability, Availability::Unknown);
    let items = app.list("/hardware/?wait=0.2").await;
    assert!(
        items
            .iter()
            .all(|i| i.availability == Availability::Unknown)
    );
}
