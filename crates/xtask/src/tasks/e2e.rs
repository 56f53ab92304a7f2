//! `cargo xtask e2e`: the real docker-compose.yml under Docker, asserted from
//! outside (docker/ci/e2e.sh), on local stand-ins for images nobody can pull.

use crate::support::{Result, build_release, provision, run as run_command, workspace_root};
use std::process::Command;

pub fn run() -> Result {
    provision::ensure_docker()?;
    let root = workspace_root();
    run_command(Command::new("bash").arg(root.join("docker/ci/standins.sh")))?;
    build_release(&["hardware", "portal"])?;
    run_command(
        Command::new("bash")
            .arg(root.join("docker/ci/e2e.sh"))
            .arg(root.join("target/release"))
            .current_dir(&root),
    )
}
