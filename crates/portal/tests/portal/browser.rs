//! A real browser: headless Chromium driven over WebDriver (ChromeDriver).
//!
//! Needs Debian's `chromium` and `chromium-driver`; `cargo xtask test`
//! installs them. Without them this test fails: it is never skipped.

use crate::helpers::{eventually, metric_sum, spawn_hardware, spawn_hardware_gated, spawn_portal};
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

/// Headless Chromium over ChromeDriver with a profile of its own.
struct Browser {
    session: Session,
    profile: PathBuf,
    _driver: Driver,
}

impl Browser {
    async fn start(name: &str) -> Self {
        let chromium =
            find_program("chromium").expect("chromium not found (cargo xtask test installs it)");
        let driver = Driver::start().await;
        let profile = std::env::temp_dir().join(format!("portal-{name}-{}", std::process::id()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--hide-scrollbars", "--window-size=1200,800",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        caps.insert(
            "goog:loggingPrefs".into(),
            serde_json::json!({"browser": "ALL"}),
        );
        let session = Session::start(&driver.url(), serde_json::Value::Object(caps)).await;
        Self {
            session,
            profile,
            _driver: driver,
        }
    }

    async fn close(self) {
        self.session.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[sqlx::test(migrations = "../../sql")]
async fn a_browser_sees_the_seed_rows_and_pending_values_fill_in_without_reload(pool: MySqlPool) {
    let (hardware, gate) = spawn_hardware_gated(pool, "hw-browser").await;
    let portal = spawn_portal(&hardware.url(), &[]).await;
    let chrome = Browser::start("browser").await;
    let browser = &chrome.session;

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
    // The slow process answers only now: the page saw both values pending.
    gate.open();
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

    // A reload of the unchanged view costs a 304: the page is revalidated
    // with its entity tag, not downloaded again. The first reload may still
    // fetch it (the values filled in since it was loaded); the next may not.
    // (WebDriver's refresh returns once the page has loaded.)
    // DevTools reports a revalidated document as the cached 200, so the
    // portal's own count of 304s is the witness.
    let metrics = format!("http://{}/metrics", portal.admin);
    let not_modified = || metric_sum(&metrics, "portal_http_requests_total", "status=\"304\"");
    browser.refresh().await;
    let before = not_modified().await;
    browser.refresh().await;
    let after = not_modified().await;
    assert_eq!(after, before + 1, "a reload of an unchanged view is a 304");
    let _ = browser.find("table.items").await;
    let shown = browser.text(&browser.find("table.items").await).await;
    assert!(
        shown.contains("c5"),
        "the revalidated page is shown: {shown}"
    );

    // Away and back: the page comes from the back/forward cache (a marker set
    // before leaving survives), its live stream closed while away and open
    // again after the restore.
    let streams = || metric_sum(&metrics, "portal_event_streams_open", "");
    let holds = eventually(Duration::from_secs(5), || async { streams().await == 1 }).await;
    assert!(
        holds,
        "the page holds its live stream (one: the reloads closed theirs)"
    );
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

    chrome.close().await;
    portal.stop.cancel();
}

/// axe-core's browser build, installed by `npm ci --prefix tools/audit`
/// (pinned in tools/audit/package-lock.json; `cargo xtask test` runs it).
fn axe_source() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/audit/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}: run `npm ci --prefix tools/audit` (cargo xtask test does this)",
            path.display()
        )
    })
}

/// axe-core's violations on the current page (every rule axe runs by
/// default: WCAG 2.x A and AA, and best practices), as "rule: help (n nodes)".
async fn axe_violations(browser: &Session, axe: &str) -> Vec<String> {
    // WebDriver scripts run outside the page's Content-Security-Policy.
    browser
        .execute(&format!("{axe}\n;return typeof axe;"))
        .await;
    let found = browser
        .execute_async(
            "var done = arguments[arguments.length - 1]; \
             axe.run(document, {resultTypes: ['violations']}).then( \
               function (r) { done(r.violations.map(function (v) { \
                 return v.id + ': ' + v.help + ' (' + v.nodes.length + ' nodes: ' + \
                   v.nodes.map(function (n) { return n.target.join(' '); }).slice(0, 3).join(', ') + ')'; })); }, \
               function (e) { done(['axe failed: ' + e]); });",
        )
        .await;
    found
        .as_array()
        .unwrap_or_else(|| panic!("axe answered {found}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Emulates the reader's colour scheme (`prefers-color-scheme`).
async fn color_scheme(browser: &Session, scheme: &str) {
    browser
        .cdp(
            "Emulation.setEmulatedMedia",
            serde_json::json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
}

/// The README's pictures may be at most this big.
const SCREENSHOT_BUDGET: usize = 150 * 1024;

#[sqlx::test(migrations = "../../sql")]
async fn axe_finds_nothing_on_the_dashboard_the_stale_banner_or_the_503_page(pool: MySqlPool) {
    let axe = axe_source();
    let hardware = spawn_hardware(pool, "hw-axe", Duration::from_millis(100)).await;
    let portal = spawn_portal(&hardware.url(), &[]).await;
    let chrome = Browser::start("axe").await;
    let browser = &chrome.session;
    // One line per state audited, for the test command's log (artifacts/axe.txt).
    let mut summary = Vec::new();

    // The dashboard with the seed rows, every value in: light, then dark.
    // Each is audited, then photographed for the README (artifacts/; `cargo
    // xtask screenshots` copies them to docs/).
    browser.goto(&portal.url("/")).await;
    let settled = eventually(Duration::from_secs(20), || async {
        browser.find_all("tr.pending").await.is_empty()
    })
    .await;
    assert!(settled, "the seed values fill in");
    for scheme in ["light", "dark"] {
        color_scheme(browser, scheme).await;
        let text = browser.text(&browser.find("table.items").await).await;
        let rows = browser.find_all("table.items tbody tr").await.len();
        assert!(
            rows == 2 && text.contains("Amazon") && text.contains("c5") && text.contains("H16mr"),
            "the page photographed is the seed data: {rows} rows: {text}"
        );
        let violations = axe_violations(browser, &axe).await;
        assert!(
            violations.is_empty(),
            "axe, dashboard ({scheme}): {violations:#?}"
        );
        summary.push(format!("dashboard ({scheme}): 0 violations"));
        let png = browser.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        assert!(
            png.len() <= SCREENSHOT_BUDGET,
            "the {scheme} screenshot is {} bytes, over {SCREENSHOT_BUDGET}",
            png.len()
        );
        let shot = artifacts_dir().join(format!("dashboard-{scheme}.png"));
        std::fs::write(&shot, png).expect("screenshot saved");
        println!("screenshot: {}", shot.display());
    }
    color_scheme(browser, "light").await;

    // Hardware gone: the open page shows the stale banner (pushed over its
    // live stream), audited as it is shown.
    hardware.kill().await;
    let stale = eventually(Duration::from_secs(20), || async {
        browser
            .execute("return !document.getElementById('stale').hidden;")
            .await
            == serde_json::json!(true)
    })
    .await;
    assert!(stale, "the stale banner shows");
    let banner = browser.text(&browser.find("#stale").await).await;
    assert!(banner.contains("stale since"), "{banner}");
    let violations = axe_violations(browser, &axe).await;
    assert!(violations.is_empty(), "axe, stale banner: {violations:#?}");
    summary.push("stale banner: 0 violations".to_owned());

    // A portal that never reached hardware: the friendly 503 page.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let lonely = spawn_portal(&format!("http://{closed}"), &[]).await;
    browser.goto(&lonely.url("/")).await;
    let heading = browser.text(&browser.find("h1").await).await;
    let page = browser.text(&browser.find("main").await).await;
    assert!(page.contains("not available yet"), "{heading}: {page}");
    let violations = axe_violations(browser, &axe).await;
    assert!(violations.is_empty(), "axe, 503 page: {violations:#?}");
    summary.push("503 page: 0 violations".to_owned());
    let version = browser.execute("return axe.version;").await;
    let summary = format!(
        "axe-core {}, default rules (WCAG 2 A/AA and best practices): {}\n",
        version.as_str().unwrap_or("?"),
        summary.join("; ")
    );
    print!("{summary}");
    std::fs::write(artifacts_dir().join("axe.txt"), summary).expect("axe summary saved");

    chrome.close().await;
    lonely.stop.cancel();
    portal.stop.cancel();
}
