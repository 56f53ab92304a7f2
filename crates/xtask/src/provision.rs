//! Installing what the tests need on a Debian/Ubuntu machine.
//!
//! As root, missing packages are installed with apt-get; otherwise the error
//! says exactly what to install.

use std::path::Path;
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Finds an executable on PATH or in the sbin folders (where Debian puts servers).
pub fn find(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

fn apt_install(packages: &[&str]) -> Result<(), String> {
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
    crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// MariaDB server and client binaries.
pub fn ensure_mariadb() -> Result<(), String> {
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

/// Chromium and ChromeDriver for the browser test.
pub fn ensure_browser() -> Result<(), String> {
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
