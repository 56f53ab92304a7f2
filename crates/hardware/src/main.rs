//! `hardware`: a thin binary over the library — parse settings, start logging, run.

use clap::Parser;
use hardware::config::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    ops::run(async_main())
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    ops::telemetry::init(cli.settings.log_format);
    let result = match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.settings).await,
        Command::Migrate => hardware::migrate(&cli.settings).await.map(|()| {
            tracing::info!("database migrations applied");
        }),
        Command::Healthcheck => ops::healthcheck::local(cli.settings.listen)
            .await
            .map_err(anyhow::Error::from),
        Command::Items(args) => {
            hardware::items_cli::run(
                &args,
                &cli.settings,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )
            .await
        }
    };
    ops::exit("hardware", result)
}

async fn serve(settings: &hardware::config::Settings) -> anyhow::Result<()> {
    let app = hardware::Application::build(settings).await?;
    app.run_until(ops::shutdown::signal()).await
}
