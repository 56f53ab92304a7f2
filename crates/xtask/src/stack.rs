//! `cargo xtask run`: MariaDB + hardware replicas + portal on loopback.

use crate::mariadb::MariaDb;
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|err| format!("no free port: {err}"))
}

/// Children killed (SIGTERM first, for a graceful drain) when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        std::thread::sleep(Duration::from_millis(500));
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn run(replicas: usize, port: u16) -> Result<(), String> {
    let root = crate::workspace_root();
    let bin = root.join("target").join("release");
    let db = MariaDb::start()?;
    let token_path = root.join("target").join("xtask").join("admin-token");
    let token = format!("dev-{:x}{:x}", std::process::id(), port);
    let token = format!("{token:0<24}");
    std::fs::write(&token_path, &token).map_err(|err| format!("writing the admin token: {err}"))?;

    let mut children = Children(Vec::new());
    let mut urls = Vec::new();
    for n in 1..=replicas {
        let hw_port = free_port()?;
        let child = Command::new(bin.join("hardware"))
            .env("DATABASE_URL", db.url())
            .env("HARDWARE_LISTEN", format!("127.0.0.1:{hw_port}"))
            .env("INSTANCE_ID", format!("hardware-{n}"))
            .env("ADMIN_TOKEN_FILE", &token_path)
            .env("MIGRATE_ON_START", "true")
            .env("LOG_FORMAT", "text")
            .spawn()
            .map_err(|err| format!("starting hardware: {err}"))?;
        children.0.push(child);
        urls.push(format!("http://127.0.0.1:{hw_port}"));
    }
    let admin_port = free_port()?;
    let portal = Command::new(bin.join("portal"))
        .env("HARDWARE_URL", urls.join(","))
        .env("PORTAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTAL_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("INSTANCE_ID", "portal")
        .env("LOG_FORMAT", "text")
        .spawn()
        .map_err(|err| format!("starting portal: {err}"))?;
    children.0.push(portal);
    eprintln!(
        "\nxtask: the stack is up\n  portal     http://127.0.0.1:{port}/\n  metrics    http://127.0.0.1:{admin_port}/metrics\n  hardware   {}\n  admin token in {}\n  database   {}\nPress Ctrl-C to stop everything.\n",
        urls.join(" "),
        token_path.display(),
        db.display_url()
    );
    // Wait for the portal; Ctrl-C reaches every child through the terminal.
    if let Some(portal) = children.0.last_mut() {
        let _ = portal.wait();
    }
    drop(children);
    drop(db);
    Ok(())
}
