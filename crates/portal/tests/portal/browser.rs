//! A real browser: headless Chromium driven over WebDriver (ChromeDriver).
//!
//! Needs Debian's `chromium` and `chromium-driver`; `cargo xtask test`
//! installs them. Without them this test fails: it is never skipped.

use crate::helpers::{eventually, metric_sum, spawn_hardware, spawn_portal};
use crate::webdriver::Session;
use sqlx::MySqlPool;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/lib/chromium"])
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|path| path.is_file())
}

/// ChromeDriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Self {
        let program = find_program("chromedriver").expect(
            "chromedriver not found: install Debian's chromium and chromium-driver \
             (cargo xtask test does this)",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self { child, port };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromedriver did not listen on {port}");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

#[sqlx::test(migrations = "../../sql")]
async fn a_browser_sees_the_seed_rows_and_pending_values_fill_in_without_reload(pool: MySqlPool) {
    let chromium =
        find_program("chromium").expect("chromium not found (cargo xtask test installs it)");
    let hardware = spawn_hardware(pool, "hw-browser", Duration::from_millis(5000)).await;
    let portal = spawn_portal(&hardware.url(), &[]).await;
    let driver = Driver::start().await;
    let profile = std::env::temp_dir().join(format!("portal-browser-{}", std::process::id()));

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1200,800",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    caps.insert(
        "goog:loggingPrefs".into(),
        serde_json::json!({"browser": "ALL"}),
    );
    let browser = Session::start(&driver.url(), serde_json::Value::Object(caps)).await;

    browser.goto(&portal.url("/")).await;
    let table = browser.find("table.items").await;
    let text = browser.text(&table).await;
    assert!(text.contains("Amazon") && text.contains("c5"), "{text}");
    assert!(text.contains("Azure") && text.contains("H16mr"), "{text}");
    let pending = browser.find_all("tr.pending").await;
    assert_eq!(pending.len(), 2, "both values pending on a cold start");
    let live = browser.find("#live[aria-live=polite]").await;
    assert!(browser.text(&live).await.contains("still being computed"));

    // A marker that a reload would wipe out.
    browser
        .execute("window.__sameDocument = 'yes'; return true;")
        .await;
    let mut filled = false;
    for _ in 0..150 {
        let pending = browser.find_all("tr.pending").await;
        if pending.is_empty() {
            filled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(filled, "pending values filled in");
    let marker = browser
        .execute("return window.__sameDocument || null;")
        .await;
    assert_eq!(marker, serde_json::json!("yes"), "no reload happened");
    let badges = browser.find_all("td .badge").await;
    for badge in badges {
        let level = browser.text(&badge).await;
        assert!(
            ["HIGH", "MEDIUM", "LOW"].contains(&level.as_str()),
            "{level}"
        );
    }
    let pending_count = browser
        .text(&browser.find(r#"[data-count="UNKNOWN"]"#).await)
        .await;
    assert_eq!(
        pending_count, "0",
        "the pending count follows the live updates"
    );
    let live_text = browser.text(&live).await;
    assert!(live_text.contains("up to date"), "{live_text}");

    // A phone (390 CSS px wide): the table turns into cards and its caption
    // stays on one or two lines (it used to wrap one word per line).
    browser.resize(390, 844).await;
    let caption = browser
        .execute(
            "var r = document.createRange(); \
             r.selectNodeContents(document.querySelector('table.items caption')); \
             return {lines: r.getClientRects().length, \
                     width: document.documentElement.clientWidth};",
        )
        .await;
    assert!(
        caption["width"].as_f64().is_some_and(|w| w <= 400.0),
        "the viewport is phone-sized: {caption}"
    );
    assert!(
        caption["lines"].as_f64().is_some_and(|n| n <= 2.0),
        "the caption reads as a line or two at 390 px: {caption}"
    );
    let phone = browser.screenshot().await;
    std::fs::write(artifacts_dir().join("browser-dashboard-390px.png"), phone)
        .expect("screenshot saved");

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let shot = artifacts_dir().join("browser-dashboard.png");
    std::fs::write(&shot, png).expect("screenshot saved");
    println!("screenshot: {}", shot.display());

    // Console errors (CSP violations, script errors) come back as SEVERE entries.
    let entries = browser.console().await;
    let severe: Vec<_> = entries.iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");

    // Away and back: the page comes from the back/forward cache (a marker set
    // before leaving survives), its live stream closed while away and open
    // again after the restore.
    let metrics = format!("http://{}/metrics", portal.admin);
    let streams = || metric_sum(&metrics, "portal_event_streams_open", "");
    assert_eq!(streams().await, 1, "the page holds its live stream");
    browser
        .execute("window.__beforeLeaving = 'kept'; return true;")
        .await;
    browser.goto(&portal.url("/healthz")).await;
    let closed = eventually(Duration::from_secs(5), || async { streams().await == 0 }).await;
    assert!(closed, "leaving the page closed its stream");
    browser.execute("history.back(); return true;").await;
    let mut restored = serde_json::Value::Null;
    for _ in 0..50 {
        restored = browser
            .execute(
                "return location.pathname === '/' ? (window.__beforeLeaving || 'reloaded') : null;",
            )
            .await;
        if !restored.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        restored,
        serde_json::json!("kept"),
        "back restores the page from the back/forward cache"
    );
    let reopened = eventually(Duration::from_secs(5), || async { streams().await == 1 }).await;
    assert!(reopened, "the live stream is open again after the restore");

    browser.close().await;
    let _ = std::fs::remove_dir_all(profile);
    portal.stop.cancel();
}
