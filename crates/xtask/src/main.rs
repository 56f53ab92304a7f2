//! `cargo xtask <task>`: the project's automation, in Rust.
//!
//! `support` holds what every task uses (paths, commands, ports, processes,
//! the throwaway MariaDB and Redis, HTTP checks, wrk, Python tools); `tasks`
//! holds one module per task. Tasks import from `support`, never from here;
//! only `test`, which runs the others in order, calls other tasks.
//!
//! In CI (`CI=true`) nothing is ever skipped: a missing tool is an error.

mod support;
mod tasks;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The project's automation: tests, the native stack, drills, benchmarks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Every test: provisions MariaDB, Redis, Chromium and wrk, runs the
    /// workspace's tests, then the deployment lint, the fuzzer, the drills and
    /// the compose end-to-end proof.
    Test(tasks::test::Args),
    /// The whole stack natively on loopback (throwaway MariaDB, hardware
    /// replicas, the portal); Ctrl-C stops all of it.
    Run(tasks::stack::Args),
    /// A throwaway MariaDB on loopback; prints its DATABASE_URL, Ctrl-C stops it.
    Db,
    /// Release builds on loopback under wrk; writes BENCHMARKS.md.
    Bench(tasks::bench::Args),
    /// Fault drills on loopback against release builds (soak, a replica killed,
    /// hardware hung or down, a hostile client against the portal).
    Drill(tasks::drill::Args),
    /// schemathesis against hardware's /openapi.json (at least 1,000 cases).
    Fuzz,
    /// Static checks of docker-compose.yml, the Dockerfiles and k8s/.
    LintDeploy,
    /// The compose end-to-end proof under Docker (local stand-ins for images
    /// that cannot be pulled).
    E2e,
    /// The Kubernetes proof: a real single-node cluster built from the Go
    /// module proxy, overlays dev and prod applied and exercised, torn down.
    Cluster(tasks::cluster::Args),
    /// Dependency checks: none unused (cargo-machete), one major of each of
    /// axum, hyper, http, tower, reqwest and sqlx.
    Deps,
    /// Regenerates .sqlx/ after a query or a migration changed.
    SqlxPrepare,
    /// Lighthouse (mobile and desktop) on the release portal serving 10,000
    /// items; fails below 100 in Accessibility, Best Practices and SEO or 95
    /// in Performance.
    Audit,
    /// Runs the browser test and copies its dashboard screenshots (light and
    /// dark) to docs/, where the README shows them.
    Screenshots,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test(args) => tasks::test::run(&args),
        Task::Run(args) => tasks::stack::run(&args),
        Task::Db => tasks::db::run(),
        Task::Bench(args) => tasks::bench::run(&args),
        Task::Drill(args) => tasks::drill::run(&args),
        Task::Fuzz => tasks::fuzz::run(),
        Task::LintDeploy => tasks::lint::run(),
        Task::E2e => tasks::e2e::run(),
        Task::Cluster(args) => tasks::cluster::run(&args),
        Task::Deps => tasks::deps::run(),
        Task::SqlxPrepare => tasks::sqlx_prepare::run(),
        Task::Audit => tasks::audit::run(),
        Task::Screenshots => tasks::screenshots::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bad_flag_value_is_an_error_not_a_default() {
        for args in [
            &["cargo xtask", "bench", "--seconds", "five"][..],
            &["cargo xtask", "drill", "--soak-seconds", "-1"],
            &["cargo xtask", "run", "--replicas", "0"],
            &["cargo xtask", "run", "--port", "70000"],
            &["cargo xtask", "run", "--bogus"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
        assert!(Cli::try_parse_from(["cargo xtask", "drill", "--soak-seconds", "5"]).is_ok());
    }
}
