//! `cargo xtask cluster`: the Kubernetes proof on a real single-node cluster.
//!
//! Builds every component from the Go module proxy at the versions pinned in
//! tools/cluster/ (cached in target/tools/), builds our images with the
//! Dockerfile's own build stage as the compose e2e does (reusing its layers),
//! brings the cluster up (tools/cluster/cluster.sh), runs the proof
//! (k8s/tests/cluster-e2e.sh) and tears the cluster down, also on failure.

use crate::support::{GoBuild, Result, go_build, provision, run as run_command, workspace_root};
use std::path::PathBuf;
use std::process::Command;

/// The migration only the rolling update's new release has (see `next_release_tree`).
const NEXT_MIGRATION: (&str, &str) = (
    "20991231000000_cluster_next_release.sql",
    "-- Only in the cluster e2e's \"next release\" build (cargo xtask cluster): a\n\
-- migration the running release does not have, applied by the new pods'\n\
-- init container during a rolling update. Nothing uses the table.\n\
CREATE TABLE cluster_next_release (id INT PRIMARY KEY);\n",
);

/// The Kubernetes release the cluster runs (the floor the README documents).
const KUBERNETES: &str = "v1.34.1";

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Leave the cluster running after the proof (tear it down later with
    /// `tools/cluster/cluster.sh down`).
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &Args) -> Result {
    let started = std::time::Instant::now();
    provision::ensure_docker()?;
    provision::ensure_packages(&["containerd"], "containerd")?;
    provision::ensure_packages(&["runc"], "runc")?;
    provision::ensure_packages(&["iptables"], "iptables")?;
    provision::ensure_packages(&["ipset"], "ipset")?;
    provision::ensure_packages(&["conntrack"], "conntrack")?;
    provision::ensure_packages(&["openssl"], "openssl")?;
    provision::ensure_packages(&["containernetworking-plugins"], "/usr/lib/cni/bridge")?;
    build_components()?;
    let root = workspace_root();
    run_command(Command::new("bash").arg(root.join("docker/ci/standins.sh")))?;
    build_images()?;

    let cluster = root.join("tools/cluster/cluster.sh");
    let images = [
        "hardware-portal/hardware:0.1.0",
        "hardware-portal/portal:0.1.0",
        "hardware-portal/hardware:0.1.1",
        "hardware-portal/portal:0.1.1",
        "hp-ci/mariadb:10.11",
        "hp-ci/redis:7",
        "localhost/hp/probe:1",
    ];
    let up = run_command(
        Command::new("bash")
            .arg(&cluster)
            .arg("up")
            .env("CLUSTER_IMAGES", images.join(" ")),
    );
    let proof = up.and_then(|()| {
        run_command(
            Command::new("bash")
                .arg(root.join("k8s/tests/cluster-e2e.sh"))
                .env("KUBECONFIG", root.join("target/cluster/admin.kubeconfig"))
                .env("NETPOL_PIDFILE", root.join("target/cluster/pids/netpol"))
                .env(
                    "KUBECTL",
                    format!("{} kubectl", root.join("target/tools/kube").display()),
                )
                .current_dir(&root),
        )
    });
    if args.keep && proof.is_ok() {
        eprintln!("xtask: cluster left running; KUBECONFIG=target/cluster/admin.kubeconfig");
        return Ok(());
    }
    let down = run_command(Command::new("bash").arg(&cluster).arg("down"));
    eprintln!(
        "xtask: the cluster stage took {} s (builds, images, up, proof, down)",
        started.elapsed().as_secs()
    );
    proof.and(down)
}

/// Every binary the cluster runs, each from its own pinned module.
fn build_components() -> Result {
    let mut version = String::new();
    for package in [
        "k8s.io/client-go/pkg/version",
        "k8s.io/component-base/version",
    ] {
        let minor = KUBERNETES.split('.').nth(1).unwrap_or_default();
        version += &format!(
            " -X {package}.gitVersion={KUBERNETES} -X {package}.gitMajor=1 -X {package}.gitMinor={minor} -X {package}.gitTreeState=clean"
        );
    }
    let ldflags = format!("-s -w{version}");
    go_build(&GoBuild {
        module: "tools/cluster",
        stamp: "kube",
        outputs: &["kube"],
        args: &["-ldflags", &ldflags, "-o", "target/tools/kube", "./kube"],
        static_binary: false,
    })?;
    go_build(&GoBuild {
        module: "tools/cluster",
        stamp: "pause",
        outputs: &["pause"],
        args: &["-ldflags", "-s -w", "-o", "target/tools/pause", "./pause"],
        static_binary: true,
    })?;
    go_build(&GoBuild {
        module: "tools/cluster/coredns",
        stamp: "coredns",
        outputs: &["coredns"],
        args: &[
            "-ldflags",
            "-s -w",
            "-o",
            "target/tools/",
            "github.com/coredns/coredns",
        ],
        static_binary: true,
    })?;
    // The NetworkPolicy engine: kube-router's policy controller alone (its
    // own module: its Kubernetes client libraries are older than the cluster's).
    go_build(&GoBuild {
        module: "tools/cluster/netpol",
        stamp: "netpol",
        outputs: &["netpol"],
        args: &["-ldflags", "-s -w", "-o", "target/tools/netpol", "."],
        static_binary: true,
    })?;
    go_build(&GoBuild {
        module: "tools/cluster/addons",
        stamp: "addons",
        outputs: &["metrics-server", "local-path-provisioner"],
        args: &[
            "-ldflags",
            "-s -w",
            "-o",
            "target/tools/",
            "sigs.k8s.io/metrics-server/cmd/metrics-server",
            "github.com/rancher/local-path-provisioner",
        ],
        static_binary: true,
    })
}

/// The rolling update's new release: a copy of this tree's sources plus one
/// migration they do not have, in `target/cluster-next/src`. Returns that
/// folder (the next images' build context).
fn next_release_tree() -> Result<PathBuf> {
    let root = workspace_root();
    let src = root.join("target/cluster-next/src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).map_err(|err| format!("creating {}: {err}", src.display()))?;
    run_command(
        Command::new("cp")
            .arg("-a")
            .args([
                "Cargo.toml",
                "Cargo.lock",
                ".cargo",
                ".dockerignore",
                "crates",
                "sql",
                ".sqlx",
            ])
            .arg(&src)
            .current_dir(&root),
    )?;
    let (name, sql) = NEXT_MIGRATION;
    std::fs::write(src.join("sql").join(name), sql)
        .map_err(|err| format!("writing the next release's migration: {err}"))?;
    Ok(src)
}

/// Our two images, built as `docker compose up --build` builds them
/// (docker/Dockerfile's own build stage on the stand-in bases): 0.1.0 from
/// this tree, whose layers all come from the cache when the compose e2e ran
/// first (built once, used twice), and 0.1.1, the rolling update's new
/// release, in which only our code changed: its dependency layer must come
/// from the cache (checked). Each build's time is printed.
fn build_images() -> Result {
    let root = workspace_root();
    // Not target/cluster: `cluster.sh up` starts from an empty folder there.
    let logs = root.join("target/cluster-next");
    std::fs::create_dir_all(&logs).map_err(|err| format!("creating {}: {err}", logs.display()))?;
    for (version, context) in [("0.1.0", root.clone()), ("0.1.1", next_release_tree()?)] {
        let started = std::time::Instant::now();
        let mut dependencies_cached = true;
        for target in ["hardware", "portal"] {
            let image = format!("hardware-portal/{target}:{version}");
            let output = Command::new("docker")
                .arg("build")
                .arg("-f")
                .arg(root.join("docker/Dockerfile"))
                .args(["--target", target])
                .args(["--build-arg", "RUST_IMAGE=hp-ci/rust:1.95"])
                .args(["--build-arg", "RUNTIME_IMAGE=hp-ci/runtime"])
                .args([
                    "--label",
                    &format!("org.opencontainers.image.version={version}"),
                ])
                .args(["-t", &image])
                .arg(&context)
                .output()
                .map_err(|err| format!("docker build: {err}"))?;
            let log = logs.join(format!("build-{target}-{version}.log"));
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            std::fs::write(&log, &text)
                .map_err(|err| format!("writing {}: {err}", log.display()))?;
            if !output.status.success() {
                return Err(format!("building {image} failed; see {}", log.display()));
            }
            dependencies_cached &= cook_came_from_cache(&text);
        }
        let how = if dependencies_cached {
            "the dependency layer came from the cache"
        } else {
            "dependencies compiled"
        };
        eprintln!(
            "xtask: images {version} built from docker/Dockerfile in {} s ({how})",
            started.elapsed().as_secs()
        );
        if version == "0.1.1" && !dependencies_cached {
            return Err(
                "only our code changed for 0.1.1, yet its dependency layer was rebuilt: \
                        the Dockerfile's cargo-chef cache does not hold"
                    .into(),
            );
        }
    }
    // The probe under the name the proof's pod uses (our own prefix); the
    // database and Redis stand-ins keep theirs (the test kustomizations name
    // them), so no image gets a name a registry serves.
    run_command(Command::new("docker").args(["tag", "hp-ci/probe", "localhost/hp/probe:1"]))?;
    Ok(())
}

/// Whether a classic-builder log shows the `cargo chef cook` step served
/// from the cache.
fn cook_came_from_cache(log: &str) -> bool {
    let mut lines = log
        .lines()
        .skip_while(|line| !line.contains("RUN cargo chef cook"));
    lines.next().is_some()
        && lines
            .next()
            .is_some_and(|line| line.contains("Using cache"))
}
