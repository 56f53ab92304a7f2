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
/// is not): healthy when one of the addresses it stands for answers.
async fn healthcheck(listen: &portal::config::AdminListen) -> anyhow::Result<()> {
    let mut last = anyhow::anyhow!("PORTAL_ADMIN_LISTEN {listen} stands for no address");
    for addr in listen.resolve().await? {
        match ops::healthcheck::local(addr).await {
            Ok(()) => return Ok(()),
            Err(err) => last = err.into(),
        }
    }
    Err(last)
}

async fn serve(settings: &portal::config::Settings) -> anyhow::Result<()> {
    let app = portal::Application::build(settings).await?;
    app.run_until(ops::shutdown::signal()).await
}
