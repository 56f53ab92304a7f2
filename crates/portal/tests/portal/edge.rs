//! The public edge against one hostile or unlucky client: timeouts, caps,
//! client identity through proxies, the shared first fetch, and live streams
//! that mean the same on every replica and after a restart.

use crate::helpers::{
    Behaviour, StubHardware, eventually, metric_sum, seed_items, spawn_hardware, spawn_portal,
};
use sqlx::MySqlPool;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes); returns
/// what was read and how long the server took to close.
async fn until_closed(socket: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some((seen, started.elapsed()))
}

#[tokio::test]
async fn unfinished_heads_and_idle_connections_are_closed_within_the_timeout_streams_are_not() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let portal = spawn_portal(&stub.url(), &["--header-read-timeout=600ms"]).await;

    let mut trickle = TcpStream::connect(portal.addr).await.expect("connects");
    trickle
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .expect("writes");
    let (_, took) = until_closed(&mut trickle, Duration::from_secs(5))
        .await
        .expect("the server closes an unfinished head");
    assert!(took < Duration::from_millis(1500), "closed after {took:?}");

    // A kept-alive connection that goes quiet after one request is closed too.
    let mut idle = TcpStream::connect(portal.addr).await.expect("connects");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("writes");
    let (answer, took) = until_closed(&mut idle, Duration::from_secs(5))
        .await
        .expect("the server closes an idle connection");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(took < Duration::from_millis(1500), "closed after {took:?}");

    // The bound is on the whole head, not on the gap between bytes: a head
    // trickled a byte every 100 ms is closed all the same.
    let mut drip = TcpStream::connect(portal.addr).await.expect("connects");
    let started = Instant::now();
    let mut closed_after = None;
    for byte in b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if drip.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), drip.read(&mut probe)).await
        {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the server closes a trickled head");
    assert!(
        closed_after < Duration::from_millis(1500),
        "closed after {closed_after:?}"
    );

    // A request being answered is not waiting for a head: a live stream stays
    // open well past the timeout.
    let mut stream = TcpStream::connect(portal.addr).await.expect("connects");
    stream
        .write_all(b"GET /events HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("writes");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let held = Instant::now();
    while held.elapsed() < Duration::from_millis(2000) {
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => panic!("the stream was closed after {:?}", held.elapsed()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    portal.stop.cancel();
}

#[tokio::test]
async fn one_client_holds_no_more_connections_than_its_share() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let portal = spawn_portal(&stub.url(), &["--max-connections-per-client=4"]).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let socket = TcpStream::connect(portal.addr).await.expect("connects");
        held.push(socket);
    }
    // Give the accept loop time to count them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = TcpStream::connect(portal.addr).await.expect("connects");
    let (answer, _) = until_closed(&mut fifth, Duration::from_secs(2))
        .await
        .expect("closed at once");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(held.pop());
    // The place is free once the portal has seen the close (its gauge says
    // so); a connection before that would rightly be refused.
    let metrics = format!("http://{}/metrics", portal.admin);
    let noticed = eventually(Duration::from_secs(2), || async {
        metric_sum(&metrics, "portal_connections_open", "").await == 3
    })
    .await;
    assert!(noticed, "the closed connection is given back");
    let freed = reqwest::get(portal.url("/healthz"))
        .await
        .is_ok_and(|r| r.status() == 200);
    assert!(freed, "a place given back can be used");
    let metrics = reqwest::get(format!("http://{}/metrics", portal.admin))
        .await
        .expect("admin")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("portal_connections_refused_total{reason=\"client_full\"} 1"),
        "{metrics}"
    );
    portal.stop.cancel();
}

#[tokio::test]
async fn twenty_visitors_waiting_on_a_hung_hardware_all_get_an_answer_within_3s() {
    let stub = StubHardware::start(Behaviour::Hang).await;
    // Default timeouts, as in production: one attempt may take 2 × 1 s.
    let portal = spawn_portal(
        &stub.url(),
        &["--upstream-timeout=1s", "--refresh-interval=1h"],
    )
    .await;
    let started = Instant::now();
    let visitors: Vec<_> = (0..20)
        .map(|_| {
            let url = portal.url("/");
            tokio::spawn(async move {
                let response = reqwest::get(url).await.expect("answers");
                (response.status().as_u16(), Instant::now())
            })
        })
        .collect();
    for visitor in visitors {
        let (status, at) = visitor.await.expect("visitor");
        assert_eq!(status, 503);
        let waited = at - started;
        assert!(waited <= Duration::from_secs(3), "waited {waited:?}");
    }
    // Once an attempt has failed, the next visitor is answered at once.
    let again = Instant::now();
    let status = reqwest::get(portal.url("/"))
        .await
        .expect("answers")
        .status();
    assert_eq!(status, 503);
    assert!(
        again.elapsed() < Duration::from_millis(300),
        "{:?}",
        again.elapsed()
    );
    portal.stop.cancel();
}

async fn status_from(portal: &str, forwarded_for: &str) -> u16 {
    reqwest::Client::new()
        .get(portal)
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .expect("answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_rate_limit_separates_clients_behind_a_trusted_proxy_only() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let limit = ["--rate-limit-per-second=1", "--rate-limit-burst=2"];
    let behind_proxy = spawn_portal(
        &stub.url(),
        &[limit[0], limit[1], "--trusted-proxies=127.0.0.0/8"],
    )
    .await;
    let url = behind_proxy.url("/");
    assert_eq!(status_from(&url, "198.51.100.1").await, 200);
    assert_eq!(status_from(&url, "198.51.100.1").await, 200);
    assert_eq!(status_from(&url, "198.51.100.1").await, 429, "A is over");
    assert_eq!(
        status_from(&url, "198.51.100.2").await,
        200,
        "B, behind the same proxy, has its own bucket"
    );
    behind_proxy.stop.cancel();

    let direct = spawn_portal(&stub.url(), &limit).await;
    let url = direct.url("/");
    assert_eq!(status_from(&url, "198.51.100.1").await, 200);
    assert_eq!(status_from(&url, "198.51.100.2").await, 200);
    assert_eq!(
        status_from(&url, "198.51.100.3").await,
        429,
        "an untrusted peer cannot pick a new identity with a header"
    );
    direct.stop.cancel();
}

#[tokio::test]
async fn event_streams_are_capped_per_client_and_request_ids_are_checked() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let portal = spawn_portal(&stub.url(), &["--max-event-streams-per-client=2"]).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let stream = reqwest::get(portal.url("/events?since=0"))
            .await
            .expect("opens");
        assert_eq!(stream.status(), 200);
        open.push(stream);
    }
    let third = reqwest::get(portal.url("/events")).await.expect("answers");
    assert_eq!(third.status(), 503);
    assert!(third.headers().contains_key("retry-after"));
    drop(open);

    let client = reqwest::Client::new();
    let long = "a".repeat(8000);
    let response = client
        .get(portal.url("/healthz"))
        .header("x-request-id", &long)
        .send()
        .await
        .expect("answers");
    let echoed = response.headers()["x-request-id"].to_str().expect("ascii");
    assert!(echoed.len() <= 64 && echoed != long, "{echoed}");
    let response = client
        .get(portal.url("/healthz"))
        .header("x-request-id", "trace-42.a_b")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.headers()["x-request-id"], "trace-42.a_b");
    assert!(
        !response.headers().contains_key("strict-transport-security"),
        "no HSTS from a portal that does not terminate TLS"
    );
    portal.stop.cancel();
}

fn version_of(page: &str) -> String {
    page.split("data-version=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("page carries its data version")
        .to_owned()
}

/// Reads `stream` until an `update` frame arrives; returns it.
async fn next_update(stream: &mut reqwest::Response, seen: &mut String) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            while let Some(end) = seen.find("\n\n") {
                let frame: String = seen.drain(..end + 2).collect();
                if frame.lines().any(|line| line == "event: update") {
                    return Some(frame);
                }
            }
            match stream.chunk().await {
                Ok(Some(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

async fn add_item(pool: &MySqlPool, name: &str) -> u64 {
    sqlx::query("INSERT INTO hardware (provider, name) VALUES ('Test', ?)")
        .bind(name)
        .execute(pool)
        .await
        .expect("insert")
        .last_insert_id()
}

async fn settled_page(portal: &crate::helpers::RunningPortal) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = reqwest::get(portal.url("/"))
            .await
            .expect("page")
            .text()
            .await
            .expect("text");
        if !body.contains("badge-unknown") {
            return body;
        }
        assert!(Instant::now() < deadline, "every value filled in: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrations = "../../sql")]
async fn a_stream_follows_changes_from_another_replica_and_after_a_restart(pool: MySqlPool) {
    let hardware = spawn_hardware(pool.clone(), "hw-versions", Duration::from_millis(200)).await;
    let portal_a = spawn_portal(&hardware.url(), &["--instance-id=portal-a"]).await;
    let portal_b = spawn_portal(&hardware.url(), &["--instance-id=portal-b"]).await;

    // A page rendered by portal A; its live stream served by portal B.
    let version = version_of(&settled_page(&portal_a).await);
    let mut stream = reqwest::get(portal_b.url(&format!("/events?since={version}")))
        .await
        .expect("stream opens");
    let mut seen = String::new();
    let id = add_item(&pool, "added-while-watching").await;
    let frame = next_update(&mut stream, &mut seen)
        .await
        .expect("portal B sends the change");
    assert!(frame.contains(&format!("\"id\":{id}")), "{frame}");
    assert!(
        !frame.contains("\"id\":1,"),
        "portal B knew portal A's version: only the change, not a snapshot: {frame}"
    );
    // Follow until the new item's value has landed; remember where we are.
    let mut last = frame;
    while last.contains("\"level\":\"UNKNOWN\"") {
        last = next_update(&mut stream, &mut seen)
            .await
            .expect("the value lands");
    }
    let resume = last
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .expect("frames carry their version")
        .to_owned();
    drop(stream);
    portal_b.stop.cancel();

    // A portal started afresh understands the version a browser carries over.
    let restarted = spawn_portal(&hardware.url(), &["--instance-id=portal-b2"]).await;
    assert_eq!(version_of(&settled_page(&restarted).await), resume);
    let mut stream = reqwest::Client::new()
        .get(restarted.url("/events"))
        .header("last-event-id", &resume)
        .send()
        .await
        .expect("stream opens");
    let mut seen = String::new();
    let id = add_item(&pool, "added-after-restart").await;
    let frame = next_update(&mut stream, &mut seen)
        .await
        .expect("the restarted portal sends the change");
    assert!(frame.contains(&format!("\"id\":{id}")), "{frame}");
    assert!(!frame.contains("\"id\":1,"), "only the change: {frame}");
    portal_a.stop.cancel();
    restarted.stop.cancel();
}

#[tokio::test]
async fn shutdown_cuts_what_is_still_open_at_the_drain_deadline() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let app = crate::helpers::build_portal(
        &stub.url(),
        &["--header-read-timeout=1h", "--drain-timeout=500ms"],
    )
    .await;
    let addr = app.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    // A connection stuck mid-head, which no graceful shutdown can finish.
    let mut stuck = TcpStream::connect(addr).await.expect("connects");
    stuck
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("writes");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(3), running)
        .await
        .expect("the portal stops at the drain deadline")
        .expect("task")
        .expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let closed = until_closed(&mut stuck, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "the stuck connection was cut");
}
