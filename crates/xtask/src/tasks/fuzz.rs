//! `cargo xtask fuzz`: schemathesis (pinned, from PyPI) against the hardware
//! service's own `/openapi.json`, every check on, writes authorized: positive
//! and negative cases and stateful sequences. Fails on any finding or when
//! fewer than 1,000 cases were generated.

use crate::support::http::wait_for_200;
use crate::support::mariadb::MariaDb;
use crate::support::services::start_hardware;
use crate::support::{Result, build_release, free_port, provision, scratch, venv, workspace_root};
use std::process::Command;
use std::time::Duration;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const MIN_CASES: u64 = 1000;

pub fn run() -> Result {
    provision::ensure_mariadb()?;
    let root = workspace_root();
    let bin = venv("fuzz", &[SCHEMATHESIS])?;
    build_release(&["hardware"])?;
    let db = MariaDb::start()?;
    let token = format!("fuzz-{:x}-{:x}", std::process::id(), free_port()?);
    let token = format!("{token:0<24}");
    let token_file = root.join("target/xtask/fuzz-token");
    std::fs::write(&token_file, &token).map_err(|e| e.to_string())?;
    let port = free_port()?;
    let _hardware = start_hardware(
        &db,
        port,
        &[
            ("PROBE_DELAY", "50ms".to_owned()),
            ("ADMIN_TOKEN_FILE", token_file.display().to_string()),
        ],
    )?;
    wait_for_200(port, "/readyz", Duration::from_secs(30))?;
    // schemathesis keeps a cache in its working directory: a scratch one, so
    // running the tests leaves the tree clean.
    let out = Command::new(bin.join("schemathesis"))
        .current_dir(scratch("fuzz")?)
        .args(["run", &format!("http://127.0.0.1:{port}/openapi.json")])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "150",
            "--max-failures",
            "20",
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .map_err(|e| format!("schemathesis: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let generated = text
        .lines()
        .find(|l| l.contains(" generated"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    println!("fuzz figure: {generated} generated cases");
    if !out.status.success() {
        return Err("schemathesis found failures (see above)".into());
    }
    if generated < MIN_CASES {
        return Err(format!(
            "only {generated} cases generated; at least {MIN_CASES} expected"
        ));
    }
    Ok(())
}
