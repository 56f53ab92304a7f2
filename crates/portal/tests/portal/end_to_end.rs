//! The real hardware service on a real MariaDB, behind the portal.

use crate::helpers::{eventually, spawn_hardware, spawn_portal};
use sqlx::MySqlPool;
use std::time::Duration;

async fn page(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("portal answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[sqlx::test(migrations = "../../sql")]
async fn seed_rows_appear_pending_then_filled_in_and_stale_when_hardware_dies(pool: MySqlPool) {
    let hardware = spawn_hardware(pool, "hw-e2e", Duration::from_millis(1500)).await;
    let portal = spawn_portal(&hardware.url(), &["--stale-after=2s"]).await;

    let (status, body) = page(&portal.url("/")).await;
    assert_eq!(status, 200);
    assert!(body.contains(">c5<") && body.contains(">H16mr<"), "{body}");
    assert!(
        body.contains("badge-unknown"),
        "values still pending at first"
    );
    assert!(body.contains("still being computed"));

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
    let hardware = spawn_hardware(pool, "hw-sse", Duration::from_millis(800)).await;
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

/// Three hardware replicas sharing Redis give the same bytes, so the same
/// `ETag`, for the same data; two portals spreading over them converge on
/// one version, and again after a change.
#[sqlx::test(migrations = "../../sql")]
async fn two_portals_and_three_replicas_converge_on_every_change(pool: MySqlPool) {
    let redis = std::env::var("TEST_REDIS_URL")
        .expect("TEST_REDIS_URL is not set: run the tests with `cargo xtask test`");
    let prefix = format!("converge-{}", std::process::id());
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
    // Converged: for 1.5 s (a dozen refreshes, whichever replica answers
    // each), both portals show one and the same version, with `wanted` and
    // nothing pending. A replica with other bytes would make versions flip.
    let converged = |wanted: &'static str| {
        let portals = &portals;
        async move {
            let seen = std::sync::Mutex::new(String::new());
            let seen = &seen;
            let ok = eventually(Duration::from_secs(15), || async move {
                let mut versions = std::collections::BTreeSet::new();
                for _ in 0..10 {
                    for portal in portals {
                        let (_, body) = page(&portal.url("/")).await;
                        if !body.contains(wanted) || body.contains("badge-unknown") {
                            return false;
                        }
                        versions.insert(shown_version(portal).await);
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                *seen.lock().expect("lock") =
                    versions.iter().cloned().collect::<Vec<_>>().join(",");
                versions.len() == 1
            })
            .await;
            let seen = seen.lock().expect("lock").clone();
            (ok, seen)
        }
    };
    let (ok, first) = converged(">c5<").await;
    assert!(ok, "one version on both portals: {first}");
    sqlx::query("INSERT INTO hardware (provider, name) VALUES ('P', 'converges')")
        .execute(&pool)
        .await
        .expect("insert");
    let (ok, second) = converged(">converges<").await;
    assert!(ok, "one version again after a change: {second}");
    assert_ne!(first, second);
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
