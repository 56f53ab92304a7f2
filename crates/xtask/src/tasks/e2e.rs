//! `cargo xtask e2e`: the real docker-compose.yml under Docker, asserted from
//! outside (docker/ci/e2e.sh): both images built by the Dockerfile's own build
//! stage, on local stand-ins for the base images nobody can pull here, with
//! the current Compose: v5, built here from the Go module proxy
//! (tools/compose) as a CLI plugin in a Docker config folder of its own
//! (target/tools/docker-config), so the user's `~/.docker` is left alone.

use crate::support::{GoBuild, Result, go_build, provision, run as run_command, workspace_root};
use std::process::Command;

/// The Compose release the e2e runs (pinned in tools/compose/go.mod).
const COMPOSE_VERSION: &str = "v5.6.0";

pub fn run() -> Result {
    provision::ensure_docker()?;
    let root = workspace_root();
    let mut e2e = Command::new("bash");
    e2e.arg(root.join("docker/ci/e2e.sh")).current_dir(&root);
    // COMPOSE=docker-compose (or another command) runs the e2e under that
    // one instead: the one-line switch back to v1.
    match std::env::var("COMPOSE") {
        Ok(chosen) if !chosen.trim().is_empty() => {
            eprintln!("xtask: the compose e2e runs under COMPOSE={chosen}");
        }
        _ => {
            e2e.env("DOCKER_CONFIG", compose_plugin()?)
                .env("COMPOSE", "docker compose");
        }
    }
    run_command(Command::new("bash").arg(root.join("docker/ci/standins.sh")))?;
    run_command(&mut e2e)
}

/// Builds Compose v5 into `target/tools/docker-config/cli-plugins/`; returns
/// that Docker config folder.
fn compose_plugin() -> Result<std::path::PathBuf> {
    let ldflags = format!("-X github.com/docker/compose/v5/internal.Version={COMPOSE_VERSION}");
    go_build(&GoBuild {
        module: "tools/compose",
        stamp: "compose",
        outputs: &["docker-config/cli-plugins/docker-compose"],
        args: &[
            "-ldflags",
            &ldflags,
            "-o",
            "target/tools/docker-config/cli-plugins/docker-compose",
            "github.com/docker/compose/v5/cmd",
        ],
        static_binary: false,
    })?;
    Ok(workspace_root().join("target/tools/docker-config"))
}
