//! `cargo xtask audit`: Lighthouse on the real portal serving 10,000 items.
//!
//! Release builds of both services on loopback over a throwaway MariaDB, the
//! values computed, then `tools/audit/lighthouse.mjs` (Lighthouse 12.2.3,
//! pinned in tools/audit/package-lock.json) against `/` with Debian's
//! Chromium: the mobile profile with its default throttling, then desktop.
//! Its figures and PASS/FAIL lines are printed; reports go to target/xtask/audit.
//! axe-core runs in the browser test (`crates/portal/tests/portal/browser.rs`).

use crate::support::http::{http_get, wait_for_200};
use crate::support::mariadb::MariaDb;
use crate::support::services::{seed, start_hardware, start_portal};
use crate::support::{Result, build_release, free_port, provision, run as run_command, scratch};
use std::process::Command;
use std::time::{Duration, Instant};

/// The inventory size the page is audited at (the README's middle size).
const ITEMS: usize = 10_000;

pub fn run() -> Result {
    provision::ensure_mariadb()?;
    provision::ensure_browser()?;
    let chromium = provision::find("chromium").ok_or("chromium is missing")?;
    let node = provision::ensure_auditors()?;
    build_release(&["hardware", "portal"])?;
    let db = MariaDb::start()?;
    let hw_port = free_port()?;
    let fast = [("PROBE_DELAY", "1ms".to_owned())];
    // A first start applies the migrations; the inventory is seeded after.
    let hardware = start_hardware(&db, hw_port, &fast)?;
    wait_for_200(hw_port, "/readyz", Duration::from_secs(30))?;
    seed(&db, ITEMS)?;
    let (port, admin) = (free_port()?, free_port()?);
    // Rate limits as shipped: Lighthouse is one client making a page's worth
    // of requests.
    let _portal = start_portal(&format!("http://127.0.0.1:{hw_port}"), port, admin, false)?;
    wait_for_200(port, "/", Duration::from_secs(30))?;
    // Audited as a visitor sees it most of the time: every item listed and
    // every value in (no stream of updates under way).
    let started = Instant::now();
    loop {
        if let Ok((200, body, ..)) = http_get(port, "/")
            && let page = String::from_utf8_lossy(&body)
            && page.contains(&format!("of {ITEMS} items"))
            && page.contains(r#"data-count="UNKNOWN">0<"#)
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(180) {
            return Err(format!(
                "the portal did not show {ITEMS} items with every value in within 180 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "audit figure: {ITEMS} items listed with every value in after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let out = scratch("audit")?;
    let script = crate::support::workspace_root().join("tools/audit/lighthouse.mjs");
    let result = run_command(
        Command::new(node)
            .arg(script)
            .arg(format!("http://127.0.0.1:{port}/"))
            .arg(&out)
            .env("CHROME_PATH", chromium),
    );
    drop(hardware);
    drop(db);
    result.map_err(|err| format!("Lighthouse: {err}"))
}
