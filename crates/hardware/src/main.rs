//! `hardware`: a thin binary over the library — parse settings, start logging, run.

use clap::Parser;
use hardware::config::{Cli, Command};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    ops::telemetry::init(cli.settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.settings).await,
        Command::Migrate => hardware::migrate(&cli.settings).await.map(|()| {
            tracing::info!("database migrations applied");
        }),
        Command::Healthcheck => ops::healthcheck::local(cli.settings.listen)
            .await
            .map_err(anyhow::Error::from),
    };
    ops::exit("hardware", result)
}

async fn serve(settings: &hardware::config::Settings) -> anyhow::Result<()> {
    let app = hardware::Application::build(settings).await?;
    app.run_until(ops::shutdown::signal()).await
}
