//! `cargo xtask run`: MariaDB + hardware replicas + the portal on loopback,
//! started in dependency order so the first screen is clean: the schema is
//! migrated once, every replica is ready before the portal starts.

use crate::support::http::wait_for_200;
use crate::support::mariadb::MariaDb;
use crate::support::process::Service;
use crate::support::{
    Result, build_release, free_port, provision, run as run_command, workspace_root,
};
use std::process::Command;
use std::time::Duration;

/// Flags of `cargo xtask run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hardware replicas to start.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    replicas: u16,
    /// Port of the portal on 127.0.0.1.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
}

pub fn run(args: &Args) -> Result {
    provision::ensure_mariadb()?;
    build_release(&["hardware", "portal"])?;
    let root = workspace_root();
    let bin = root.join("target/release");
    let db = MariaDb::start()?;
    let token_path = root.join("target/xtask/admin-token");
    let token = format!("dev-{:x}{:x}", std::process::id(), args.port);
    let token = format!("{token:0<24}");
    std::fs::write(&token_path, &token).map_err(|err| format!("writing the admin token: {err}"))?;
    run_command(
        Command::new(bin.join("hardware"))
            .arg("migrate")
            .env("DATABASE_URL", db.url()),
    )?;

    let mut services = Vec::new();
    let mut urls = Vec::new();
    for n in 1..=args.replicas {
        let port = free_port()?;
        let child = Command::new(bin.join("hardware"))
            .env("DATABASE_URL", db.url())
            .env("HARDWARE_LISTEN", format!("127.0.0.1:{port}"))
            .env("INSTANCE_ID", format!("hardware-{n}"))
            .env("ADMIN_TOKEN_FILE", &token_path)
            .env("LOG_FORMAT", "text")
            .spawn()
            .map_err(|err| format!("starting hardware-{n}: {err}"))?;
        services.push(Service(child));
        wait_for_200(port, "/healthz", Duration::from_secs(30))
            .map_err(|err| format!("hardware-{n} did not come up: {err}"))?;
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    let admin_port = free_port()?;
    let portal = Command::new(bin.join("portal"))
        .env("HARDWARE_URL", urls.join(","))
        .env("PORTAL_LISTEN", format!("127.0.0.1:{}", args.port))
        .env("PORTAL_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("INSTANCE_ID", "portal")
        .env("LOG_FORMAT", "text")
        .spawn()
        .map_err(|err| format!("starting the portal: {err}"))?;
    let mut portal = Service(portal);
    eprintln!(
        "\nxtask: the stack is up\n  portal     http://127.0.0.1:{}/\n  metrics    http://127.0.0.1:{admin_port}/metrics\n  hardware   {}\n  admin token in {}\n  database   {}\nPress Ctrl-C to stop everything.\n",
        args.port,
        urls.join(" "),
        token_path.display(),
        db.display_url()
    );
    // Wait for the portal; Ctrl-C reaches every child through the terminal.
    let _ = portal.0.wait();
    drop(portal);
    drop(services);
    drop(db);
    Ok(())
}
