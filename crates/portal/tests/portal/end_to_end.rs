//! The real hardware service on a real MariaDB, behind the portal.

use crate::helpers::{eventually, spawn_hardware, spawn_hardware_gated, spawn_portal};
use sqlx::MySqlPool;
use std::time::Duration;

async fn page(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("portal answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[sqlx::test(migrations = "../../sql")]
async fn seed_rows_appear_pending_then_filled_in_and_stale_when_hardware_dies(pool: MySqlPool) {
    let (hardware, gate) = spawn_hardware_gated(pool, "hw-e2e").await;
    let portal = spawn_portal(&hardware.url(), &["--stale-after=2s"]).await;

    let (status, body) = page(&portal.url("/")).await;
    assert_eq!(status, 200);
    assert!(body.contains(">c5<") && body.contains(">H16mr<"), "{body}");
    assert!(
        body.contains("badge-unknown"),
        "values still pending at first"
    );
    assert!(body.contains("still being computed"));

    gate.open();
    let filled = eventually(Duration::from_secs(10), || async {
        let (_, body) = page(&portal.url("/")).await;
        !body.contains("badge-unknown")
    })
    .await;
    assert!(filled, "pending values filled in");

    // Metrics live on the admin listener only.
    let metrics = reqwest::get(format!("http://{}/metrics", portal.admin))
        .await
        .expect("admin answers")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("portal_upstream_calls_total"), "{metrics}");
    assert_eq!(page(&portal.url("/metrics")).await.0, 404);

    hardware.kill().await;
    let stale = eventually(Duration::from_secs(5), || async {
        let (status, body) = page(&portal.url("/")).await;
        status == 200 && body.contains(r#"role="alert" >"#) && body.contains(">c5<")
    })
    .await;
    assert!(
        stale,
        "hardware gone: last-known-good page with the stale banner"
    );
    portal.stop.cancel();
}

#[sqlx::test(migrations = "../../sql")]
async fn the_live_stream_sends_values_as_they_land(pool: MySqlPool) {
    let (hardware, gate) = spawn_hardware_gated(pool, "hw-sse").await;
    let portal = spawn_portal(&hardware.url(), &[]).await;
    let (_, body) = page(&portal.url("/")).await;
    assert!(body.contains("badge-unknown"));
    let version = body
        .split("data-version=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("page carries its data version")
        .to_owned();
    let mut stream = reqwest::get(portal.url(&format!("/events?since={version}")))
        .await
        .expect("stream opens");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    gate.open();
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: update")
                && !seen.contains("\"level\":\"UNKNOWN\"")
                && seen.contains("\"class\"")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "{seen}");
    portal.stop.cancel();
}

/// The sum of a counter family's values on the portal's admin listener.
async fn counter(admin: std::net::SocketAddr, name: &str, must_contain: &str) -> u64 {
    crate::helpers::metric_sum(&format!("http://{admin}/metrics"), name, must_contain).await
}

/// With nothing changed, every refresh is a `304`: no item crosses the wire
/// (each call of the window is one); a change shows within a refresh + 1 s.
#[sqlx::test(migrations = "../../sql")]
async fn an_unchanged_inventory_costs_no_items_and_a_change_shows_within_a_refresh(
    pool: MySqlPool,
) {
    let hardware = spawn_hardware(pool.clone(), "hw-etag", Duration::from_millis(100)).await;
    let portal = spawn_portal(&hardware.url(), &["--refresh-interval=200ms"]).await;
    let filled = eventually(Duration::from_secs(10), || async {
        let (_, body) = page(&portal.url("/")).await;
        !body.contains("badge-unknown")
    })
    .await;
    assert!(filled);
    // Values are fresh for 30 s: nothing changes from here on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = || {
        counter(
            portal.admin,
            "portal_upstream_calls_total",
            "outcome=\"ok\"",
        )
    };
    let not_modified = || counter(portal.admin, "portal_upstream_not_modified_total", "");
    let (calls_before, unchanged_before) = (calls().await, not_modified().await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (calls_after, unchanged_after) = (calls().await, not_modified().await);
    let (calls, unchanged) = (
        calls_after - calls_before,
        unchanged_after - unchanged_before,
    );
    println!("{calls} refreshes in 2 s with nothing changed: {unchanged} answered 304");
    assert!(calls >= 5, "{calls}");
    assert_eq!(unchanged, calls, "every refresh was a 304 (no body)");
    let received = || counter(portal.admin, "portal_catalog_items_received_total", "");
    let before = received().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        received().await,
        before,
        "no item crossed with nothing changed"
    );

    sqlx::query("INSERT INTO hardware (provider, name) VALUES ('P', 'arrives')")
        .execute(&pool)
        .await
        .expect("insert");
    let started = std::time::Instant::now();
    let shown = eventually(Duration::from_secs(3), || async {
        page(&portal.url("/")).await.1.contains(">arrives<")
    })
    .await;
    let took = started.elapsed();
    println!("a new item shown after {took:?}");
    assert!(shown && took <= Duration::from_millis(1300), "{took:?}");
    portal.stop.cancel();
}

/// The version a portal's page shows (`data-version`).
async fn shown_version(portal: &crate::helpers::RunningPortal) -> String {
    let (_, body) = page(&portal.url("/")).await;
    body.split("data-version=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// Three hardware replicas sharing Redis hold the same data, so the same
/// version (their lists' `ETag`); two portals spreading over them converge on
/// that version, and again after each kind of change (an addition, a rename,
/// a removal). After first contact with each replica, changes cross as
/// changes: no further list is fetched, and a change costs a few items, not
/// the inventory.
#[sqlx::test(migrations = "../../sql")]
async fn two_portals_and_three_replicas_converge_on_every_change(pool: MySqlPool) {
    const ITEMS: usize = 500;
    let redis = std::env::var("TEST_REDIS_URL")
        .expect("TEST_REDIS_URL is not set: run the tests with `cargo xtask test`");
    let prefix = format!("converge-{}", std::process::id());
    let values: Vec<String> = (0..ITEMS).map(|i| format!("('Bulk', 'b{i:04}')")).collect();
    // Built from constants only.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO hardware (provider, name) VALUES {}",
        values.join(",")
    )))
    .execute(&pool)
    .await
    .expect("insert");
    let mut replicas = Vec::new();
    for n in 0..3 {
        replicas.push(
            crate::helpers::spawn_hardware_with(
                pool.clone(),
                &format!("hw-{n}"),
                Duration::from_millis(200),
                &[
                    format!("--redis-url={redis}"),
                    format!("--redis-key-prefix={prefix}"),
                    // No re-probe within the test: the changes are ours.
                    "--availability-ttl=10m".to_owned(),
                ],
            )
            .await,
        );
    }
    let urls: Vec<String> = replicas.iter().map(|r| r.url()).collect();
    let portals = [
        spawn_portal(&urls.join(","), &["--refresh-interval=200ms"]).await,
        spawn_portal(&urls.join(","), &["--refresh-interval=200ms"]).await,
    ];
    let replica_versions = || async {
        let mut tags = std::collections::BTreeSet::new();
        for url in &urls {
            let answer = reqwest::get(format!("{url}/hardware/?wait=0"))
                .await
                .expect("hardware answers");
            let tag = answer.headers()["etag"].to_str().expect("ascii").to_owned();
            tags.insert(tag.trim_matches('"').to_owned());
        }
        tags
    };
    // Converged: for 1.5 s (a dozen refreshes, whichever replica answers
    // each), both portals show one and the same version, which is every
    // replica's, and `path` shows `wanted` (and not `gone`) with nothing
    // pending. A portal that missed a change would show another version.
    let converged = |path: &'static str, wanted: &'static str, gone: &'static str| {
        let portals = &portals;
        let replica_versions = &replica_versions;
        async move {
            let seen = std::sync::Mutex::new(String::new());
            let seen = &seen;
            let ok = eventually(Duration::from_secs(20), || async move {
                let mut versions = std::collections::BTreeSet::new();
                for _ in 0..10 {
                    for portal in portals {
                        let (_, body) = page(&portal.url(path)).await;
                        let (_, first) = page(&portal.url("/")).await;
                        if !body.contains(wanted)
                            || (!gone.is_empty() && body.contains(gone))
                            || first.contains("badge-unknown")
                        {
                            return false;
                        }
                        versions.insert(shown_version(portal).await);
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                let hardware = replica_versions().await;
                *seen.lock().expect("lock") = format!(
                    "portals {}, replicas {}",
                    versions.iter().cloned().collect::<Vec<_>>().join(","),
                    hardware.iter().cloned().collect::<Vec<_>>().join(",")
                );
                versions.len() == 1 && hardware == versions
            })
            .await;
            let seen = seen.lock().expect("lock").clone();
            (ok, seen)
        }
    };
    let (ok, first) = converged("/", ">c5<", "").await;
    assert!(ok, "one version on both portals and every replica: {first}");
    let received = || async {
        let mut items = 0;
        let mut lists = 0;
        for portal in &portals {
            items += counter(portal.admin, "portal_catalog_items_received_total", "").await;
            lists += counter(portal.admin, "portal_catalog_syncs_total", "kind=\"list\"").await;
        }
        (items, lists)
    };
    let (items_before, lists_before) = received().await;
    assert!(
        lists_before <= 6,
        "a list per replica per portal at most: {lists_before}"
    );

    sqlx::query("INSERT INTO hardware (provider, name) VALUES ('P', 'converges')")
        .execute(&pool)
        .await
        .expect("insert");
    let (ok, added) = converged("/?q=converges", ">converges<", "").await;
    assert!(ok, "one version again after an addition: {added}");
    assert_ne!(first, added);
    sqlx::query("UPDATE hardware SET name = 'renamed-item' WHERE name = 'converges'")
        .execute(&pool)
        .await
        .expect("rename");
    let (ok, renamed) = converged("/?q=renamed", ">renamed-item<", "").await;
    assert!(ok, "one version again after a rename: {renamed}");
    sqlx::query("DELETE FROM hardware WHERE name = 'b0001'")
        .execute(&pool)
        .await
        .expect("delete");
    let (ok, removed) = converged("/?q=b000", ">b0002<", ">b0001<").await;
    assert!(ok, "one version again after a removal: {removed}");

    let (items_after, lists_after) = received().await;
    let items = items_after - items_before;
    println!(
        "three changes: {items} items received by two portals, {} lists",
        lists_after - lists_before
    );
    assert_eq!(
        lists_after, lists_before,
        "no list fetched once each replica was met"
    );
    // Each change reaches each portal from each replica at most twice (the
    // new item's name, then its first value): far below one list of 500.
    assert!(items <= 3 * 2 * 3 * 2, "{items} items for three changes");
    for portal in &portals {
        portal.stop.cancel();
    }
}

async fn readyz(portal: &crate::helpers::RunningPortal) -> u16 {
    reqwest::get(portal.url("/readyz"))
        .await
        .expect("portal answers")
        .status()
        .as_u16()
}

/// A load balancer sends visitors to a portal only once it can show them data,
/// and keeps sending them when hardware goes away (last-known-good is served).
#[sqlx::test(migrations = "../../sql")]
async fn ready_only_once_it_holds_an_inventory_and_then_whatever_hardware_does(pool: MySqlPool) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let lonely = spawn_portal(&format!("http://{closed}"), &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(readyz(&lonely).await, 503, "no inventory, not ready");

    let hardware = spawn_hardware(pool, "hw-ready", Duration::from_millis(50)).await;
    let portal = spawn_portal(&hardware.url(), &[]).await;
    let ready = eventually(Duration::from_secs(5), || async {
        readyz(&portal).await == 200
    })
    .await;
    assert!(ready, "ready once the first fetch succeeded");
    hardware.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        readyz(&portal).await,
        200,
        "still ready: it serves last-known-good"
    );
    let (status, _) = page(&portal.url("/")).await;
    assert_eq!(status, 200);
}
