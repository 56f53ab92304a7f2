//! `cargo xtask sqlx-prepare`: regenerates `.sqlx/` (the query metadata the
//! macros check against when building offline).

use crate::support::mariadb::MariaDb;
use crate::support::{Result, cargo, provision, run as run_command, workspace_root};

pub fn run() -> Result {
    provision::ensure_mariadb()?;
    let db = MariaDb::start()?;
    db.apply_schema(&workspace_root().join("sql"))?;
    let offline_dir = workspace_root().join(".sqlx");
    if offline_dir.exists() {
        std::fs::remove_dir_all(&offline_dir).map_err(|err| format!("clearing .sqlx: {err}"))?;
    }
    std::fs::create_dir_all(&offline_dir).map_err(|err| format!("creating .sqlx: {err}"))?;
    // The query macros write their metadata to SQLX_OFFLINE_DIR while they
    // expand online; cleaning the crates that hold queries makes them expand again.
    run_command(cargo().args(["clean", "--package", "hardware"]))?;
    run_command(
        cargo()
            .args(["check", "--workspace", "--all-targets"])
            .env("DATABASE_URL", db.url())
            .env("SQLX_OFFLINE", "false")
            .env("SQLX_OFFLINE_DIR", &offline_dir),
    )?;
    eprintln!("xtask: .sqlx/ regenerated; commit it");
    Ok(())
}
