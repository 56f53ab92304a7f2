//! `cargo xtask test`: every test the project has, on real parts.

use crate::support::mariadb::MariaDb;
use crate::support::redis::Redis;
use crate::support::{Result, cargo, in_ci, provision, run as run_command, workspace_root};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Passed to `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

pub fn run(args: &Args) -> Result {
    let mut stages = Stages::default();
    let result = run_stages(args, &mut stages);
    stages.print(&result);
    result
}

/// How long each stage of the test command took, printed at its end (also
/// when a stage failed: the table shows which).
#[derive(Default)]
struct Stages {
    began: Option<Instant>,
    done: Vec<(&'static str, Duration)>,
    current: Option<(&'static str, Instant)>,
}

impl Stages {
    /// Ends the running stage (if any) and starts `name`.
    fn next(&mut self, name: &'static str) {
        let now = Instant::now();
        self.began.get_or_insert(now);
        if let Some((previous, since)) = self.current.replace((name, now)) {
            self.done.push((previous, now - since));
        }
    }

    fn print(mut self, result: &Result) {
        let now = Instant::now();
        let failed = self.current.take().map(|(name, since)| (name, now - since));
        eprintln!("\nxtask: stage times");
        let mut rows = self.done.clone();
        if let Some(last) = failed {
            rows.push(last);
        }
        for (i, (name, took)) in rows.iter().enumerate() {
            let outcome = if i + 1 == rows.len() && result.is_err() {
                "FAILED"
            } else {
                "ok"
            };
            eprintln!("  {name:<28} {:>6} s  {outcome}", took.as_secs());
        }
        if let Some(began) = self.began {
            eprintln!("  {:<28} {:>6} s", "total", (now - began).as_secs());
        }
    }
}

fn run_stages(args: &Args, stages: &mut Stages) -> Result {
    stages.next("provision (packages)");
    provision::ensure_mariadb()?;
    provision::ensure_redis()?;
    provision::ensure_packages(&["wrk"], "wrk")?;
    let browser = provision::ensure_browser().and_then(|()| provision::ensure_auditors().map(drop));
    match (&browser, in_ci()) {
        (Ok(()), _) => {}
        (Err(why), true) => return Err(format!("CI=true and the browser test cannot run: {why}")),
        (Err(why), false) => {
            eprintln!("xtask: WARNING: {why}; the browser test and the audit will fail")
        }
    }
    stages.next("cargo test (MariaDB, Redis)");
    let db = MariaDb::start()?;
    eprintln!("xtask: throwaway MariaDB on {}", db.display_url());
    let redis = Redis::start()?;
    eprintln!("xtask: throwaway Redis on {}", redis.url());
    // The query macros check every statement against this schema while the
    // tests compile, and write what they saw to `fresh`; compared with the
    // committed .sqlx/ below, that proves the offline data current.
    db.apply_schema(&workspace_root().join("sql"))?;
    let fresh = workspace_root().join("target/xtask/sqlx-fresh");
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh)
        .map_err(|err| format!("creating {}: {err}", fresh.display()))?;
    // The browser test writes what axe-core found here; printed below.
    let axe = workspace_root().join("artifacts/axe.txt");
    let _ = std::fs::remove_file(&axe);
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--locked"])
        .args(&args.cargo_test_args)
        .env("DATABASE_URL", db.url())
        .env("TEST_REDIS_URL", redis.url())
        .env("SQLX_OFFLINE", "false")
        .env("SQLX_OFFLINE_DIR", &fresh);
    let result = run_command(&mut cmd);
    drop(redis);
    drop(db);
    result?;
    match std::fs::read_to_string(&axe) {
        Ok(found) => eprintln!("xtask: {}", found.trim()),
        Err(_) if args.cargo_test_args.is_empty() => {
            return Err(format!(
                "the browser test wrote no axe-core summary ({})",
                axe.display()
            ));
        }
        Err(_) => {}
    }
    check_sqlx_fresh(&fresh)?;
    stages.next("deps (cargo-machete)");
    super::deps::run()?;
    stages.next("lint (deployment files)");
    super::lint::run()?;
    stages.next("fuzz (schemathesis)");
    super::fuzz::run()?;
    stages.next("drills");
    super::drill::run(&super::drill::Args::default())?;
    stages.next("audit (Lighthouse)");
    super::audit::run()?;
    // The compose proof: always in CI; elsewhere when a Docker engine answers.
    let official_before = match provision::docker_usable() {
        Ok(()) => {
            stages.next("compose e2e");
            let before = official_images()?;
            super::e2e::run()?;
            before
        }
        Err(why) if in_ci() => {
            return Err(format!("CI=true and the compose e2e cannot run: {why}"));
        }
        Err(why) => {
            eprintln!(
                "\nxtask: COMPOSE E2E NOT RUN: {why}.\n       Run `cargo xtask e2e` as root on Debian/Ubuntu (it installs docker.io and starts dockerd)."
            );
            return Ok(());
        }
    };
    // The Kubernetes proof needs root (a kubelet) and the Docker engine above.
    match provision::root_for("the Kubernetes cluster") {
        Ok(()) => {
            stages.next("Kubernetes cluster");
            super::cluster::run(&super::cluster::Args::default())?;
        }
        Err(why) if in_ci() => {
            return Err(format!("CI=true and the cluster proof cannot run: {why}"));
        }
        Err(why) => {
            eprintln!("\nxtask: KUBERNETES PROOF NOT RUN: {why}. Run `sudo cargo xtask cluster`.");
        }
    }
    stages.next("official image names");
    let created: Vec<String> = official_images()?
        .difference(&official_before)
        .cloned()
        .collect();
    if created.is_empty() {
        eprintln!(
            "xtask: no image under an official name was created by the tests ({} there before)",
            official_before.len()
        );
        Ok(())
    } else {
        Err(format!(
            "the tests left images under names a registry serves (stand-ins must keep the \
             project's own prefix): {}",
            created.join(", ")
        ))
    }
}

/// The engine's images under names a public registry serves (Docker Hub's
/// official images the project uses or could, and gcr.io), as "name:tag id".
fn official_images() -> Result<std::collections::BTreeSet<String>> {
    const OFFICIAL: [&str; 7] = [
        "debian", "mariadb", "redis", "rust", "ubuntu", "alpine", "busybox",
    ];
    let out = std::process::Command::new("docker")
        .args([
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ])
        .output()
        .map_err(|err| format!("docker images: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker images: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            let name = line.split(':').next().unwrap_or_default();
            let name = name
                .strip_prefix("docker.io/library/")
                .or_else(|| name.strip_prefix("docker.io/"))
                .or_else(|| name.strip_prefix("library/"))
                .unwrap_or(name);
            OFFICIAL.contains(&name) || name.starts_with("gcr.io/")
        })
        .map(str::to_owned)
        .collect())
}

/// Every query file the macros wrote while compiling must equal the committed
/// one; when nothing was recompiled (a warm dev build) there is nothing to compare.
fn check_sqlx_fresh(fresh: &Path) -> Result {
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
