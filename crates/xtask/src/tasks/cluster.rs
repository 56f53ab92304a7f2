//! `cargo xtask cluster`: the Kubernetes proof on a real single-node cluster.
//!
//! Builds every component from the Go module proxy at the versions pinned in
//! tools/cluster/ (cached in target/tools/), packs our images as the compose
//! e2e does, brings the cluster up (tools/cluster/cluster.sh), runs the proof
//! (k8s/tests/cluster-e2e.sh) and tears the cluster down, also on failure.

use crate::support::{
    GoBuild, Result, build_release, go_build, provision, run as run_command, workspace_root,
};
use std::process::Command;

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
    build_images()?;

    let cluster = root.join("tools/cluster/cluster.sh");
    let images = [
        "hardware-portal/hardware:0.1.0",
        "hardware-portal/portal:0.1.0",
        "hardware-portal/hardware:0.1.1",
        "hardware-portal/portal:0.1.1",
        "mariadb:10.11",
        "redis:7.4",
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

/// Our two images from the release binaries on the stand-in runtime (as the
/// compose e2e builds them), once as 0.1.0 and once as 0.1.1: the rolling
/// update's new release is a different image under a new tag. The stand-ins
/// get the names the manifests use.
fn build_images() -> Result {
    let root = workspace_root();
    for binary in ["hardware", "portal"] {
        std::fs::copy(
            root.join("target/release").join(binary),
            root.join("docker/prebuilt").join(binary),
        )
        .map_err(|err| format!("copying the {binary} release binary: {err}"))?;
    }
    for target in ["hardware", "portal"] {
        for version in ["0.1.0", "0.1.1"] {
            run_command(
                Command::new("docker")
                    .args(["build", "-q", "-f", "docker/Dockerfile", "--target", target])
                    .args(["--build-arg", "RUST_IMAGE=debian:bookworm-slim"])
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
    for (standin, name) in [
        ("hp-ci/mariadb:10.11", "mariadb:10.11"),
        ("hp-ci/redis:7", "redis:7.4"),
        ("hp-ci/probe", "localhost/hp/probe:1"),
    ] {
        run_command(Command::new("docker").args(["tag", standin, name]))?;
    }
    Ok(())
}
