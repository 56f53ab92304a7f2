//! What every task uses: paths, commands, ports, processes, the throwaway
//! databases, HTTP checks, load runs and the Python tools. Tasks import from
//! here; nothing here imports from a task.

pub mod http;
pub mod mariadb;
pub mod process;
pub mod provision;
pub mod redis;
pub mod services;
pub mod wrk;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a task returns: an error says what failed, in words.
pub type Result<T = ()> = std::result::Result<T, String>;

/// Path of the workspace root (xtask lives in crates/xtask).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// `target/xtask/<name>` (created): where tasks keep logs, caches and scratch
/// files, so that running them leaves `git status` clean.
pub fn scratch(name: &str) -> Result<PathBuf> {
    let dir = workspace_root().join("target/xtask").join(name);
    std::fs::create_dir_all(&dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
    Ok(dir)
}

/// Whether this runs in CI (`CI` set to anything but empty, `0` or `false`),
/// where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// Runs `cmd`, failing with its rendering when it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|err| format!("cannot start {shown}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

/// The cargo that runs us, in the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Release builds of `packages` (what bench, drills, fuzzing and e2e run).
pub fn build_release(packages: &[&str]) -> Result {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--locked"]);
    for package in packages {
        cmd.args(["-p", package]);
    }
    run(&mut cmd)
}

/// A TCP port free on 127.0.0.1 right now, and not handed out before by this
/// process: the kernel may give the port it just released to the next
/// `bind(0)`, so two calls in a row (a service's port and its admin port)
/// could otherwise name the same one.
pub fn free_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .map_err(|err| format!("no free port on 127.0.0.1: {err}"))?;
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err("no free port on 127.0.0.1 that was not handed out already".into())
}

/// A Go tool of `tools/` (a tiny main over a module pinned in tools/go.mod
/// and go.sum), built with the Go module proxy into `target/tools/<name>`;
/// rebuilt only when the pins change. Returns the binary.
pub fn go_tool(name: &str) -> Result<PathBuf> {
    go_build(&GoBuild {
        module: "tools",
        stamp: name,
        outputs: &[name],
        args: &["-o", &format!("target/tools/{name}"), &format!("./{name}")],
        static_binary: false,
    })?;
    Ok(workspace_root().join("target/tools").join(name))
}

/// One `go build` in a Go module of the repository (`module`, a folder with
/// its own go.mod and go.sum), run in that folder; `args` follow `go build
/// -trimpath` and write `outputs` into `target/tools/` (paths in `args` are
/// relative to the workspace root). Rebuilt only when the module's pins, its
/// own Go files or `args` changed since the build that wrote `stamp`.
pub struct GoBuild<'a> {
    pub module: &'a str,
    pub stamp: &'a str,
    pub outputs: &'a [&'a str],
    pub args: &'a [&'a str],
    /// CGO off: a binary that runs alone in an image of one file.
    pub static_binary: bool,
}

pub fn go_build(build: &GoBuild) -> Result {
    let root = workspace_root();
    let module = root.join(build.module);
    let tools = root.join("target/tools");
    let stamp = tools.join(format!("{}.pins", build.stamp));
    let mut pins = String::new();
    for file in ["go.mod", "go.sum"] {
        pins += &std::fs::read_to_string(module.join(file))
            .map_err(|err| format!("reading {}/{file}: {err}", build.module))?;
    }
    // The module's own mains (at its root or one folder deep): a change there
    // rebuilds too.
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&module)
        .map_err(|err| format!("reading {}: {err}", module.display()))?
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            let inner = std::fs::read_dir(&path).into_iter().flatten().flatten();
            sources.extend(inner.map(|inner| inner.path()));
        } else {
            sources.push(path);
        }
    }
    sources.retain(|path| path.extension().is_some_and(|ext| ext == "go"));
    sources.sort();
    for source in sources {
        pins += &std::fs::read_to_string(&source)
            .map_err(|err| format!("reading {}: {err}", source.display()))?;
    }
    pins += &build.args.join(" ");
    let built = build.outputs.iter().all(|name| tools.join(name).is_file());
    if built && std::fs::read_to_string(&stamp).ok().as_deref() == Some(pins.as_str()) {
        return Ok(());
    }
    std::fs::create_dir_all(&tools)
        .map_err(|err| format!("creating {}: {err}", tools.display()))?;
    eprintln!(
        "xtask: building {} from {} (Go module proxy)",
        build.outputs.join(", "),
        build.module
    );
    let args: Vec<String> = build
        .args
        .iter()
        .map(|arg| match arg.strip_prefix("target/") {
            Some(rest) => root.join("target").join(rest).display().to_string(),
            None => (*arg).to_owned(),
        })
        .collect();
    let mut cmd = Command::new("go");
    cmd.args(["build", "-trimpath"])
        .args(&args)
        .current_dir(&module);
    if build.static_binary {
        cmd.env("CGO_ENABLED", "0");
    }
    run(&mut cmd).map_err(|err| format!("{err} (Go 1.26+ and the module proxy are needed)"))?;
    std::fs::write(&stamp, pins).map_err(|err| format!("writing {}: {err}", stamp.display()))
}

/// A Python virtualenv `target/xtask/venv-<name>` holding exactly the pinned
/// `requirements` (`name==version`); created or refreshed when they change.
/// Returns its `bin` directory.
pub fn venv(name: &str, requirements: &[&str]) -> Result<PathBuf> {
    let dir = workspace_root()
        .join("target/xtask")
        .join(format!("venv-{name}"));
    let stamp = dir.join("requirements.txt");
    let wanted = requirements.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        eprintln!(
            "xtask: installing {} into {}",
            requirements.join(" "),
            dir.display()
        );
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        run(Command::new(dir.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(requirements))?;
        std::fs::write(&stamp, wanted)
            .map_err(|err| format!("writing {}: {err}", stamp.display()))?;
    }
    Ok(dir.join("bin"))
}
