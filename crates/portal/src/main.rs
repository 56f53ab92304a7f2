//! `portal`: a thin binary over the library — parse settings, start logging, run.

use clap::Parser;
use portal::config::{Cli, Command};
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    ops::telemetry::init(cli.settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.settings).await,
        Command::Healthcheck => {
            // The admin listener is plain HTTP even when the public one is not.
            let target = ops::healthcheck::local_target(cli.settings.admin_listen);
            ops::healthcheck::check(target, "/healthz", Duration::from_secs(3))
                .await
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("portal: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: &portal::config::Settings) -> anyhow::Result<()> {
    let app = portal::Application::build(settings).await?;
    app.run_until(ops::shutdown::signal()).await
}
