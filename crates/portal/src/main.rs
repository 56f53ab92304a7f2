//! `portal`: a thin binary over the library — parse settings, start logging, run.

use clap::Parser;
use portal::config::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    ops::run(async_main())
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    ops::telemetry::init(cli.settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.settings).await,
        Command::Healthcheck => healthcheck(&cli.settings.admin_listen).await,
    };
    ops::exit("portal", result)
}

/// `GET /healthz` on the admin listener (plain HTTP even when the public one
/// is not), at the address the server bound: this host's own, never another
/// replica's that the same name resolves to.
async fn healthcheck(listen: &portal::config::AdminListen) -> anyhow::Result<()> {
    let own = listen.own().await?;
    Ok(ops::healthcheck::local(own).await?)
}

async fn serve(settings: &portal::config::Settings) -> anyhow::Result<()> {
    let app = portal::Application::build(settings).await?;
    app.run_until(ops::shutdown::signal()).await
}
