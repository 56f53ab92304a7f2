//! `cargo xtask deps`: the dependency checks CI runs.
//!
//! - no declared dependency goes unused (cargo-machete, pinned, built into
//!   `target/tools/cargo`);
//! - no crate of the HTTP/database stack is linked in two majors.

use crate::support::{Result, cargo, run as run_command, workspace_root};
use std::collections::BTreeMap;
use std::process::Command;

const MACHETE: (&str, &str) = ("cargo-machete", "0.9.2");

/// Crates whose second major in the build would mean two HTTP or SQL stacks.
const SINGLE_MAJOR: &[&str] = &["axum", "hyper", "http", "tower", "reqwest", "sqlx"];

pub fn run() -> Result {
    let root = workspace_root();
    let tools = root.join("target/tools/cargo");
    let machete = tools.join("bin").join(MACHETE.0);
    let installed = Command::new(&machete)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(MACHETE.1));
    if !installed {
        run_command(
            cargo()
                .args([
                    "install",
                    "--locked",
                    "--quiet",
                    MACHETE.0,
                    "--version",
                    MACHETE.1,
                ])
                .arg("--root")
                .arg(&tools),
        )?;
    }
    run_command(
        Command::new(&machete)
            .arg("--with-metadata")
            .current_dir(&root),
    )
    .map_err(|err| format!("unused dependencies (see above): {err}"))?;

    let out = cargo()
        .args(["tree", "--workspace", "--locked", "-e", "normal,build,dev"])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .map_err(|err| format!("cargo tree: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let majors = majors(&String::from_utf8_lossy(&out.stdout));
    let mut doubled = Vec::new();
    for name in SINGLE_MAJOR {
        let seen = majors.get(*name).map(Vec::as_slice).unwrap_or_default();
        println!("deps: {name} {}", seen.join(", "));
        if seen.len() > 1 {
            doubled.push(format!("{name} ({})", seen.join(", ")));
        }
    }
    if doubled.is_empty() {
        println!("deps: no unused dependency; one major of each of {SINGLE_MAJOR:?}");
        Ok(())
    } else {
        Err(format!("two majors linked: {}", doubled.join("; ")))
    }
}

/// Crate name → the distinct majors (`0.x` counts as its own major) in a
/// `cargo tree --prefix none --format {p}` listing.
fn majors(tree: &str) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in tree.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(version) = version.strip_prefix('v') else {
            continue;
        };
        let mut parts = version.split('.');
        let major = match (parts.next(), parts.next()) {
            (Some("0"), Some(minor)) => format!("0.{minor}"),
            (Some(major), _) => major.to_owned(),
            _ => continue,
        };
        let entry = found.entry(name.to_owned()).or_default();
        if !entry.contains(&major) {
            entry.push(major);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::majors;

    #[test]
    fn majors_are_counted_per_name_with_zero_minors_apart() {
        let tree = "http v0.2.12\nhttp v1.5.0\nhttp v1.5.0 (*)\nsqlx v0.9.0\nsqlx-core v0.8.6\n\
                    hyper v1.2.0\nhyper v1.8.1\nportal v0.1.0 (/work/crates/portal)\n";
        let found = majors(tree);
        assert_eq!(found["http"], ["0.2", "1"]);
        assert_eq!(found["sqlx"], ["0.9"]);
        assert_eq!(found["hyper"], ["1"]);
    }
}
