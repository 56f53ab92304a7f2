//! `cargo xtask cluster`: the Kubernetes proof on a real single-node cluster.
//!
//! Builds every component from the Go module proxy at the versions pinned in
//! tools/cluster/ (cached in target/tools/), packs our images as the compose
//! e2e does, brings the cluster up (tools/cluster/cluster.sh), runs the proof
//! (k8s/tests/cluster-e2e.sh) and tears the cluster down, also on failure.

use crate::support::{
    GoBuild, Result, build_release, go_build, provision, run as run_command, workspace_root,
};
use std::path::PathBuf;
use std::process::Command;

/// The migration only the rolling update's new release has (see `build_next_hardware`).
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
    provision::ensure_packages(&["conntrack"], "conntrack")?;
    provision::ensure_packages(&["openssl"], "openssl")?;
    provision::ensure_packages(&["containernetworking-plugins"], "/usr/lib/cni/bridge")?;
    build_components()?;
    let root = workspace_root();
    run_command(Command::new("bash").arg(root.join("docker/ci/standins.sh")))?;
    build_release(&["hardware", "portal"])?;
    let next = build_next_hardware()?;
    build_images(&next)?;

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

/// The rolling update's new release of hardware: this tree plus one migration
/// it does not have, built from a copy of the sources into its own target
/// folder (kept between runs, so only what changed is rebuilt). Returns the
/// binary.
fn build_next_hardware() -> Result<PathBuf> {
    let root = workspace_root();
    let next = root.join("target/cluster-next");
    let src = next.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).map_err(|err| format!("creating {}: {err}", src.display()))?;
    // `cp -a` keeps modification times: cargo rebuilds only what changed.
    run_command(
        Command::new("cp")
            .arg("-a")
            .args([
                "Cargo.toml",
                "Cargo.lock",
                ".cargo",
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
    eprintln!("xtask: building the next release of hardware (one more migration)");
    run_command(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--locked", "-p", "hardware"])
            .env("CARGO_TARGET_DIR", next.join("target"))
            .env("SQLX_OFFLINE", "true")
            .current_dir(&src),
    )?;
    Ok(next.join("target/release/hardware"))
}

/// Our two images from the release binaries on the stand-in runtime (as the
/// compose e2e builds them): 0.1.0 from this tree, and 0.1.1, the rolling
/// update's new release (hardware with one more migration, `next`). The
/// stand-ins get the names the manifests use.
fn build_images(next: &std::path::Path) -> Result {
    let root = workspace_root();
    let prebuilt = |binary: &str, from: PathBuf| {
        std::fs::copy(&from, root.join("docker/prebuilt").join(binary))
            .map(drop)
            .map_err(|err| format!("copying {}: {err}", from.display()))
    };
    for version in ["0.1.1", "0.1.0"] {
        let hardware = if version == "0.1.1" {
            next.to_path_buf()
        } else {
            root.join("target/release/hardware")
        };
        prebuilt("hardware", hardware)?;
        prebuilt("portal", root.join("target/release/portal"))?;
        for target in ["hardware", "portal"] {
            run_command(
                Command::new("docker")
                    .args(["build", "-q", "-f", "docker/Dockerfile", "--target", target])
                    .args(["--build-arg", "RUST_IMAGE=hp-ci/debian:bookworm-slim"])
                    .args(["--build-arg", "RUNTIME_IMAGE=hp-ci/runtime"])
                    .args(["--build-arg", "PREBUILT=true"])
                    .args([
                        "--label",
                        &format!("org.opencontainers.image.version={version}"),
                    ])
                    .args(["-t", &format!("hardware-portal/{target}:{version}"), "."])
                    .stdout(std::process::Stdio::null())
                    .current_dir(&root),
            )?;
        }
    }
    // The probe under the name the proof's pod uses (our own prefix); the
    // database and Redis stand-ins keep theirs (the test kustomizations name
    // them), so no image gets a name a registry serves.
    run_command(Command::new("docker").args(["tag", "hp-ci/probe", "localhost/hp/probe:1"]))?;
    Ok(())
}
