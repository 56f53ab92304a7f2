//! A throwaway MariaDB server: own data folder, free loopback port, no system paths.

use super::Result;
use super::free_port;
use super::provision::find;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "hp_test";

/// A running server; dropping it kills the server and deletes its data.
#[derive(Debug)]
pub struct MariaDb {
    child: Child,
    dir: PathBuf,
    port: u16,
    password: String,
}

fn random_hex() -> String {
    // Good enough for a throwaway password: time and pid mixed, no crate needed.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "root".into())
}

fn program(name: &str) -> Result<PathBuf> {
    find(name).ok_or_else(|| format!("{name} not found"))
}

/// Removes data folders of earlier runs whose xtask is gone, stopping their
/// server by the PID it recorded (only servers this tool started).
fn clean_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = dir
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix("mariadb-"))
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(owner) = owner else { continue };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        if let Ok(pid) = std::fs::read_to_string(dir.join("server.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl MariaDb {
    pub fn start() -> Result<Self> {
        let base = super::workspace_root().join("target").join("xtask");
        clean_stale(&base);
        let dir = base.join(format!("mariadb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|err| format!("creating {}: {err}", dir.display()))?;
        let data = dir.join("data");
        let user = current_user();
        let install_log =
            std::fs::File::create(dir.join("install.log")).map_err(|e| e.to_string())?;
        let status = Command::new(program("mariadb-install-db")?)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--user={user}"))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .stdout(install_log.try_clone().map_err(|e| e.to_string())?)
            .stderr(install_log)
            .status()
            .map_err(|err| format!("mariadb-install-db: {err}"))?;
        if !status.success() {
            return Err(format!(
                "mariadb-install-db failed; see {}",
                dir.join("install.log").display()
            ));
        }
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
        let child = Command::new(program("mariadbd")?)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--user={user}"))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("server.pid").display()))
            .args([
                "--skip-log-bin",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=0",
                "--max-connections=500",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|err| format!("starting mariadbd: {err}"))?;
        let mut db = Self {
            child,
            dir,
            port,
            password: random_hex(),
        };
        db.wait_until_up()?;
        db.sql(&format!(
            "CREATE USER '{USER}'@'%' IDENTIFIED BY '{pw}';\
             GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%' WITH GRANT OPTION;\
             CREATE DATABASE hardware;",
            pw = db.password
        ))?;
        Ok(db)
    }

    fn wait_until_up(&mut self) -> Result {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "mariadbd exited ({status}); see {}",
                    self.dir.join("server.log").display()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.sql("SELECT 1").is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("mariadbd did not come up within 60 s".into())
    }

    /// Runs SQL as root over the server's socket (fed on stdin: no size limit).
    pub fn sql(&self, statements: &str) -> Result {
        use std::io::Write as _;
        let mut child = Command::new(program("mariadb")?)
            .arg("--no-defaults")
            .arg("-uroot")
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("mariadb client: {err}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(statements.as_bytes())
                .map_err(|err| format!("mariadb client: {err}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|err| format!("mariadb client: {err}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Applies every `.sql` file of `dir`, in name order, to the `hardware` database.
    pub fn apply_schema(&self, dir: &Path) -> Result {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|err| format!("reading {}: {err}", dir.display()))?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        files.sort();
        for file in files {
            let sql = std::fs::read_to_string(&file).map_err(|err| err.to_string())?;
            self.sql(&format!("USE hardware; {sql}"))
                .map_err(|err| format!("{}: {err}", file.display()))?;
        }
        Ok(())
    }

    /// `mysql://` URL of the `hardware` database, for a user allowed to create databases.
    pub fn url(&self) -> String {
        format!(
            "mysql://{USER}:{}@127.0.0.1:{}/hardware",
            self.password, self.port
        )
    }

    /// The URL without its password, for logs.
    pub fn display_url(&self) -> String {
        format!("mysql://{USER}:***@127.0.0.1:{}/hardware", self.port)
    }

    /// Blocks until the server exits (Ctrl-C reaches it through the terminal).
    pub fn wait(mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
