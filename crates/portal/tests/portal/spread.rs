//! Three hardware replicas behind one portal.

use crate::helpers::{spawn_hardware, spawn_portal};
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::time::Duration;

async fn accepted_connections(metrics_url: &str) -> u64 {
    crate::helpers::metric_sum(metrics_url, "hardware_http_connections_accepted_total", "").await
}

#[sqlx::test(migrations = "../../sql")]
async fn requests_spread_evenly_over_three_replicas_on_reused_connections(pool: MySqlPool) {
    let replicas = [
        spawn_hardware(pool.clone(), "hw-1", Duration::from_millis(10)).await,
        spawn_hardware(pool.clone(), "hw-2", Duration::from_millis(10)).await,
        spawn_hardware(pool, "hw-3", Duration::from_millis(10)).await,
    ];
    let urls: Vec<String> = replicas.iter().map(|r| r.url()).collect();
    // A slow background refresh, so the counted requests are ours.
    let portal = spawn_portal(&urls.join(","), &["--refresh-interval=1h"]).await;
    let before: u64 = {
        let mut sum = 0;
        for r in &replicas {
            sum += accepted_connections(&format!("{}/metrics", r.url())).await;
        }
        sum
    };

    const REQUESTS: usize = 300;
    let mut served: HashMap<String, usize> = HashMap::new();
    for i in 0..REQUESTS {
        let answer = portal
            .upstream
            .get_json::<Vec<wire::Item>>("/hardware/?wait=0", None, &format!("spread-{i}"))
            .await
            .expect("hardware answers");
        *served.entry(answer.served_by).or_default() += 1;
    }
    assert_eq!(served.len(), 3, "all three replicas reached: {served:?}");
    for (instance, count) in &served {
        let share = *count as f64 / REQUESTS as f64;
        assert!(
            (0.23..=0.43).contains(&share),
            "{instance} got {share:.2} of the requests"
        );
    }
    println!("spread over replicas: {served:?}");

    let mut after = 0;
    for r in &replicas {
        after += accepted_connections(&format!("{}/metrics", r.url())).await;
    }
    // Each metrics scrape above is one connection too (reqwest::get builds a client).
    let new_connections = after - before - 3;
    assert!(
        new_connections <= 6,
        "{new_connections} connections for {REQUESTS} requests"
    );
    portal.stop.cancel();
}

#[sqlx::test(migrations = "../../sql")]
async fn a_dead_replica_is_routed_around_without_failed_requests(pool: MySqlPool) {
    let alive = spawn_hardware(pool.clone(), "hw-alive", Duration::from_millis(10)).await;
    let doomed = spawn_hardware(pool, "hw-doomed", Duration::from_millis(10)).await;
    let portal = spawn_portal(
        &format!("{},{}", alive.url(), doomed.url()),
        &["--refresh-interval=1h"],
    )
    .await;
    doomed.kill().await;
    for i in 0..50 {
        let answer = portal
            .upstream
            .get_json::<Vec<wire::Item>>("/hardware/?wait=0", None, &format!("dead-{i}"))
            .await
            .expect("every request succeeds: retried on the live replica");
        assert_eq!(answer.served_by, "hw-alive");
    }
    portal.stop.cancel();
}
