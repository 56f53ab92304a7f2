//! Our release binaries started on loopback with test-friendly settings.

use super::Result;
use super::mariadb::MariaDb;
use super::process::Service;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

static BIN_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Runs the binaries in `dir` instead of `target/release` (to compare
/// another build like-for-like); only the first call counts.
pub fn use_bin_dir(dir: PathBuf) {
    let _ = BIN_DIR.set(dir);
}

/// A release binary of ours.
pub fn bin(name: &str) -> PathBuf {
    BIN_DIR
        .get()
        .cloned()
        .unwrap_or_else(|| super::workspace_root().join("target/release"))
        .join(name)
}

fn log_file(name: &str) -> Result<std::fs::File> {
    let dir = super::workspace_root().join("target/xtask/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())
}

pub fn start_hardware(db: &MariaDb, port: u16, envs: &[(&str, String)]) -> Result<Service> {
    let mut cmd = Command::new(bin("hardware"));
    cmd.env("DATABASE_URL", db.url())
        .env("HARDWARE_LISTEN", format!("127.0.0.1:{port}"))
        .env("MIGRATE_ON_START", "true")
        .env("PROBE_DELAY", "5s")
        .env("AVAILABILITY_TTL", "60s")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file(&format!("hardware-{port}"))?);
    for (key, value) in envs {
        cmd.env(key, value);
    }
    cmd.spawn()
        .map(Service)
        .map_err(|e| format!("hardware: {e}"))
}

/// `unlimited`: rate limiting off, since every request of a load generator
/// comes from one address.
pub fn start_portal(
    hardware_urls: &str,
    port: u16,
    admin: u16,
    unlimited: bool,
) -> Result<Service> {
    let limits: &[(&str, &str)] = if unlimited {
        // The per-client bounds would cap the load generator itself.
        &[
            ("RATE_LIMIT_PER_SECOND", "0"),
            ("MAX_CONNECTIONS_PER_CLIENT", "0"),
            ("MAX_CONNECTIONS", "8192"),
        ]
    } else {
        &[("RATE_LIMIT_PER_SECOND", "50")]
    };
    start_portal_with(hardware_urls, port, admin, limits)
}

/// The portal with these settings (the rest defaults).
pub fn start_portal_with(
    hardware_urls: &str,
    port: u16,
    admin: u16,
    envs: &[(&str, &str)],
) -> Result<Service> {
    Command::new(bin("portal"))
        .envs(envs.iter().copied())
        .env("HARDWARE_URL", hardware_urls)
        .env("PORTAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTAL_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file(&format!("portal-{port}"))?)
        .spawn()
        .map(Service)
        .map_err(|e| format!("portal: {e}"))
}

pub fn seed(db: &MariaDb, n: usize) -> Result {
    let providers = ["Amazon", "Azure", "GCP", "Oracle"];
    let mut sql = String::from("USE hardware; DELETE FROM hardware;");
    if n > 0 {
        sql.push_str(" INSERT INTO hardware (provider, name) VALUES ");
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "('{}','m{i:05}')", providers[i % providers.len()]);
        }
        sql.push(';');
    }
    db.sql(&sql)
}
