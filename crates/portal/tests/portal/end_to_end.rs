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
