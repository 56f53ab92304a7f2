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
        Command::Healthcheck => {
            // The admin listener is plain HTTP even when the public one is not.
            ops::healthcheck::local(cli.settings.admin_listen)
                .await
                .map_err(anyhow::Error::from)
        }
    };
    ops::exit("portal", result)
}

async fn serve(settings: &portal::config::Settings) -> anyhow::Result<()> {
    let app = portal::Application::build(settings).await?;
    app.run_until(ops::shutdown::signal()).await
}
