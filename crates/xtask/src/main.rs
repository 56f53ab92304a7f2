//! `cargo xtask <task>`: the project's automation, in Rust, with no dependencies.
//!
//! - `test [-- <cargo test args>]`: provision what the tests need (MariaDB,
//!   Redis, Chromium and ChromeDriver), start a throwaway MariaDB and Redis on
//!   free loopback ports, run every test in the workspace, stop what it
//!   started; then the deployment lint and (with Docker) the compose e2e.
//! - `run`: the whole stack natively on loopback (no Docker), Ctrl-C stops it.
//! - `db`: start a throwaway MariaDB and print its `DATABASE_URL`; Ctrl-C stops it.
//! - `e2e`: the real docker-compose.yml under Docker, asserted from outside (docker/ci/e2e.sh).
//! - `fuzz`: schemathesis against the hardware API's OpenAPI document.
//! - `drill`: fault drills against release builds (part of `test`).
//! - `bench`: the performance figures, written to BENCHMARKS.md.
//! - `sqlx-prepare`: regenerate `.sqlx/` (compile-time query metadata).
//!
//! In CI (`CI=true`) nothing is ever skipped: a missing tool is an error.

mod bench;
mod drill;
mod fuzz;
mod hostile;
mod mariadb;
mod provision;
mod redis;
mod stack;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "test" => test(rest),
        "db" => db(),
        "run" => run_stack(rest),
        "sqlx-prepare" => sqlx_prepare(),
        "e2e" => e2e(),
        "lint-deploy" => lint_deploy(),
        "fuzz" => fuzz::run(),
        "drill" => drill::run(
            flag(rest, "--soak-seconds", 60),
            rest.iter().any(|arg| arg == "--hostile-only"),
        ),
        "bench" => bench::run(flag(rest, "--seconds", 5)),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "\
Usage: cargo xtask <task>

Tasks:
  test [-- ARGS]   provision MariaDB + Chromium, run every test (ARGS go to cargo test)
  run [--replicas N] [--port P]
                   the whole stack natively: throwaway MariaDB, N hardware replicas,
                   the portal on http://127.0.0.1:P (default 5000); Ctrl-C stops all
  db               start a throwaway MariaDB on loopback and print DATABASE_URL
  bench [--seconds S]
                   release builds on loopback under wrk; writes BENCHMARKS.md
  drill [--soak-seconds S] [--hostile-only]
                   fault drills on loopback (soak, replica killed, hardware hung/down,
                   a hostile client against the portal)
  fuzz             schemathesis against hardware's /openapi.json (≥ 1,000 cases)
  lint-deploy      static checks of docker-compose.yml, Dockerfiles (and k8s/)
  e2e              the compose end-to-end proof (Docker; stand-ins for unpullable images)
  sqlx-prepare     regenerate .sqlx/ after changing a query or a migration
";

/// Path of the workspace root (xtask lives in crates/xtask).
pub fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Runs `cmd`, failing with its rendering when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|err| format!("cannot start {shown}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn test(extra: &[String]) -> Result<(), String> {
    provision::ensure_mariadb()?;
    provision::ensure_redis()?;
    provision::ensure_packages(&["wrk"], "wrk")?;
    let browser = provision::ensure_browser();
    match (&browser, in_ci()) {
        (Ok(()), _) => {}
        (Err(why), true) => return Err(format!("CI=true and the browser test cannot run: {why}")),
        (Err(why), false) => eprintln!("xtask: WARNING: {why}; the browser test will fail"),
    }
    let db = mariadb::MariaDb::start()?;
    eprintln!("xtask: throwaway MariaDB on {}", db.display_url());
    let redis = redis::Redis::start()?;
    eprintln!("xtask: throwaway Redis on {}", redis.url());
    // The query macros check every statement against this schema while the
    // tests compile, and write what they saw to `fresh`; compared with the
    // committed .sqlx/ below, that proves the offline data current.
    db.apply_schema(&workspace_root().join("sql"))?;
    let fresh = workspace_root().join("target/xtask/sqlx-fresh");
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).map_err(|err| err.to_string())?;
    let extra: Vec<&String> = extra.iter().skip_while(|arg| *arg == "--").collect();
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--locked"])
        .args(extra)
        .env("DATABASE_URL", db.url())
        .env("TEST_REDIS_URL", redis.url())
        .env("SQLX_OFFLINE", "false")
        .env("SQLX_OFFLINE_DIR", &fresh);
    let result = run(&mut cmd);
    drop(redis);
    drop(db);
    result?;
    check_sqlx_fresh(&fresh)?;
    lint_deploy()?;
    fuzz::run()?;
    drill::run(60, false)?;
    // The compose proof: always in CI; elsewhere when a Docker engine answers.
    match provision::docker_usable() {
        Ok(()) => e2e(),
        Err(why) if in_ci() => Err(format!("CI=true and the compose e2e cannot run: {why}")),
        Err(why) => {
            eprintln!(
                "\nxtask: COMPOSE E2E NOT RUN: {why}.\n       Run `cargo xtask e2e` as root on Debian/Ubuntu (it installs docker.io and starts dockerd)."
            );
            Ok(())
        }
    }
}

/// Every query file the macros wrote while compiling must equal the committed
/// one; when nothing was recompiled (a warm dev build) there is nothing to compare.
fn check_sqlx_fresh(fresh: &std::path::Path) -> Result<(), String> {
    let committed = workspace_root().join(".sqlx");
    let written: Vec<_> = std::fs::read_dir(fresh)
        .map_err(|err| err.to_string())?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    if written.is_empty() {
        eprintln!("xtask: .sqlx/ not compared (no query was recompiled in this build)");
        return Ok(());
    }
    for path in &written {
        let name = path.file_name().unwrap_or_default();
        let ours = std::fs::read_to_string(committed.join(name)).unwrap_or_default();
        let theirs = std::fs::read_to_string(path).map_err(|err| err.to_string())?;
        if ours.trim() != theirs.trim() {
            return Err(format!(
                ".sqlx/ is stale: {} differs from what the live schema gives; run `cargo xtask sqlx-prepare`",
                name.to_string_lossy()
            ));
        }
    }
    // All queries live in one crate, so a recompile writes every one of them:
    // a committed file nobody wrote belongs to a query that no longer exists.
    let names: Vec<_> = written.iter().filter_map(|p| p.file_name()).collect();
    for entry in std::fs::read_dir(&committed)
        .map_err(|err| err.to_string())?
        .flatten()
    {
        if !names.contains(&entry.file_name().as_os_str()) {
            return Err(format!(
                ".sqlx/{} belongs to no query any more; run `cargo xtask sqlx-prepare`",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    eprintln!(
        "xtask: .sqlx/ matches the live schema ({} queries)",
        written.len()
    );
    Ok(())
}

/// Release builds of `packages` (what bench, drills, fuzzing and e2e run).
pub fn build_release(packages: &[&str]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--locked"]);
    for package in packages {
        cmd.args(["-p", package]);
    }
    run(&mut cmd)
}

/// The value after `--name` in `args`, parsed, or `default`.
fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn lint_deploy() -> Result<(), String> {
    run(Command::new("bash").arg(workspace_root().join("docker/ci/lint.sh")))
}

fn e2e() -> Result<(), String> {
    provision::ensure_docker()?;
    let root = workspace_root();
    run(Command::new("bash").arg(root.join("docker/ci/standins.sh")))?;
    build_release(&["hardware", "portal"])?;
    run(Command::new("bash")
        .arg(root.join("docker/ci/e2e.sh"))
        .arg(root.join("target/release"))
        .current_dir(&root))
}

fn db() -> Result<(), String> {
    provision::ensure_mariadb()?;
    let db = mariadb::MariaDb::start()?;
    println!("DATABASE_URL={}", db.url());
    eprintln!("xtask: MariaDB is up; press Ctrl-C to stop it and delete its data");
    db.wait();
    Ok(())
}

fn run_stack(args: &[String]) -> Result<(), String> {
    let mut replicas = 1usize;
    let mut port = 5000u16;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--replicas" => replicas = value.parse().map_err(|_| "--replicas takes a number")?,
            "--port" => port = value.parse().map_err(|_| "--port takes a port number")?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    provision::ensure_mariadb()?;
    build_release(&["hardware", "portal"])?;
    stack::run(replicas.max(1), port)
}

fn sqlx_prepare() -> Result<(), String> {
    provision::ensure_mariadb()?;
    let db = mariadb::MariaDb::start()?;
    db.apply_schema(&workspace_root().join("sql"))?;
    let offline_dir = workspace_root().join(".sqlx");
    if offline_dir.exists() {
        std::fs::remove_dir_all(&offline_dir).map_err(|err| format!("clearing .sqlx: {err}"))?;
    }
    std::fs::create_dir_all(&offline_dir).map_err(|err| format!("creating .sqlx: {err}"))?;
    // The query macros write their metadata to SQLX_OFFLINE_DIR while they
    // expand online; cleaning the crates that hold queries makes them expand again.
    run(cargo().args(["clean", "--package", "hardware"]))?;
    run(cargo()
        .args(["check", "--workspace", "--all-targets"])
        .env("DATABASE_URL", db.url())
        .env("SQLX_OFFLINE", "false")
        .env("SQLX_OFFLINE_DIR", &offline_dir))?;
    eprintln!("xtask: .sqlx/ regenerated; commit it");
    Ok(())
}
