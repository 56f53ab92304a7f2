//! Installing what the tests need on a Debian/Ubuntu machine.
//!
//! As root, missing packages are installed with apt-get; otherwise the error
//! says exactly what to install.

use super::Result;
use std::path::Path;
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Ok when running as root, else why `what` needs it.
pub fn root_for(what: &str) -> Result {
    if is_root() {
        Ok(())
    } else {
        Err(format!("{what} needs root"))
    }
}

/// Finds an executable on PATH or in the sbin folders (where Debian puts servers).
pub fn find(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

fn apt_install(packages: &[&str]) -> Result {
    let wanted = packages.join(" ");
    if !is_root() {
        return Err(format!(
            "missing packages; install them with: sudo apt-get install -y {wanted}"
        ));
    }
    if find("apt-get").is_none() {
        return Err(format!(
            "missing packages ({wanted}) and no apt-get: install them with your package manager"
        ));
    }
    eprintln!("xtask: installing {wanted} (apt-get)");
    super::run(Command::new("apt-get").args(["update", "-qq"]))?;
    super::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// MariaDB server and client binaries.
pub fn ensure_mariadb() -> Result {
    let needed = ["mariadbd", "mariadb-install-db", "mariadb"];
    if needed.iter().all(|program| find(program).is_some()) {
        return Ok(());
    }
    apt_install(&["mariadb-server", "mariadb-client"])?;
    match needed.iter().find(|program| find(program).is_none()) {
        Some(missing) => Err(format!(
            "{missing} is still missing after installing mariadb-server"
        )),
        None => Ok(()),
    }
}

/// Installs `packages` unless `program` is already there.
pub fn ensure_packages(packages: &[&str], program: &str) -> Result {
    if find(program).is_some() {
        return Ok(());
    }
    apt_install(packages)?;
    find(program)
        .map(drop)
        .ok_or_else(|| format!("{program} is still missing after installing it"))
}

/// Redis, for the shared-cache tests.
pub fn ensure_redis() -> Result {
    if find("redis-server").is_some() {
        return Ok(());
    }
    apt_install(&["redis-server"])?;
    find("redis-server")
        .map(drop)
        .ok_or_else(|| "redis-server is still missing after installing it".into())
}

/// Chromium and ChromeDriver for the browser test.
pub fn ensure_browser() -> Result {
    let needed = ["chromium", "chromedriver"];
    if needed.iter().all(|program| find(program).is_some()) {
        return Ok(());
    }
    apt_install(&["chromium", "chromium-driver", "fonts-dejavu-core"])?;
    match needed.iter().find(|program| find(program).is_none()) {
        Some(missing) => Err(format!(
            "{missing} is still missing after installing chromium"
        )),
        None => Ok(()),
    }
}

/// The page auditors (Lighthouse, axe-core) in tools/audit/node_modules,
/// installed from tools/audit/package-lock.json with `npm ci` when missing
/// or older than the lock; returns the `node` to run them with. Node.js and
/// npm are the machine's own (Lighthouse 12 wants Node.js 18.20 or later).
pub fn ensure_auditors() -> Result<std::path::PathBuf> {
    let node = find("node").ok_or("Node.js is missing: install Node.js 18.20 or later with npm")?;
    let npm = find("npm").ok_or("npm is missing: install it with Node.js")?;
    let dir = super::workspace_root().join("tools/audit");
    let lock = dir.join("package-lock.json");
    // npm ci writes this copy of the lock when it has installed everything.
    let installed = dir.join("node_modules/.package-lock.json");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let current = match (modified(&installed), modified(&lock)) {
        (Some(installed), Some(lock)) => installed >= lock,
        _ => false,
    };
    if !current {
        eprintln!("xtask: installing the page auditors (npm ci in tools/audit)");
        super::run(
            Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .current_dir(&dir),
        )?;
    }
    for file in ["axe-core/axe.min.js", "lighthouse/cli/index.js"] {
        if !dir.join("node_modules").join(file).is_file() {
            return Err(format!(
                "tools/audit/node_modules/{file} is missing after npm ci"
            ));
        }
    }
    Ok(node)
}

/// Whether a Docker engine answers right now (no installing, no starting).
pub fn docker_usable() -> Result {
    if find("docker").is_none() {
        return Err("no docker client".into());
    }
    let info = Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match info {
        Ok(status) if status.success() => Ok(()),
        _ if is_root() && find("dockerd").is_some() => ensure_docker(),
        _ => Err("no Docker engine answers `docker info`".into()),
    }
}

/// Docker engine, compose and debootstrap; starts dockerd when root and it is down.
pub fn ensure_docker() -> Result {
    let needed = ["docker", "dockerd", "debootstrap"];
    let compose = find("docker-compose").is_some()
        || Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|out| out.status.success());
    if needed.iter().any(|program| find(program).is_none()) || !compose {
        apt_install(&["docker.io", "docker-compose", "debootstrap"])?;
    }
    let answers = || {
        Command::new("docker")
            .arg("info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if answers() {
        return Ok(());
    }
    if !is_root() {
        return Err(
            "the Docker engine is not running; start it (sudo systemctl start docker)".into(),
        );
    }
    eprintln!("xtask: starting dockerd (left running; log in target/xtask/dockerd.log)");
    let log_dir = super::workspace_root().join("target").join("xtask");
    std::fs::create_dir_all(&log_dir).map_err(|err| err.to_string())?;
    let log = std::fs::File::create(log_dir.join("dockerd.log")).map_err(|err| err.to_string())?;
    Command::new("dockerd")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|err| err.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|err| format!("starting dockerd: {err}"))?;
    for _ in 0..120 {
        if answers() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Err("dockerd did not answer within 60 s; see target/xtask/dockerd.log".into())
}
