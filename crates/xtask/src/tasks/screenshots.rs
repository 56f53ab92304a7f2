//! `cargo xtask screenshots`: the README's pictures of the dashboard.
//!
//! Runs the browser test that audits the dashboard with axe and photographs it
//! (seed data, light and dark, each at most 150 KB: the test fails otherwise),
//! then copies the pictures from artifacts/ to docs/. Run on purpose, like the
//! bench: the test command writes only to artifacts/, so it leaves `git status`
//! clean.

use crate::support::mariadb::MariaDb;
use crate::support::{Result, cargo, provision, run as run_command, workspace_root};

const TEST: &str = "browser::axe_finds_nothing_on_the_dashboard_the_stale_banner_or_the_503_page";

pub fn run() -> Result {
    provision::ensure_mariadb()?;
    provision::ensure_browser()?;
    provision::ensure_auditors()?;
    let db = MariaDb::start()?;
    let result = run_command(
        cargo()
            .args(["test", "-p", "portal", "--test", "portal", "--locked", TEST])
            .args(["--", "--exact", "--nocapture"])
            .env("DATABASE_URL", db.url()),
    );
    drop(db);
    result?;
    let root = workspace_root();
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs).map_err(|err| format!("{}: {err}", docs.display()))?;
    for scheme in ["light", "dark"] {
        let name = format!("dashboard-{scheme}.png");
        let from = root.join("artifacts").join(&name);
        let to = docs.join(&name);
        let bytes = std::fs::copy(&from, &to)
            .map_err(|err| format!("copying {} to {}: {err}", from.display(), to.display()))?;
        println!("screenshots: docs/{name} ({bytes} bytes)");
    }
    Ok(())
}
