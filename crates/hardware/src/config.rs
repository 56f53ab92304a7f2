//! Settings: every one a flag with an environment fallback (`hardware --help`).
//!
//! Parsing is clap's job; [`Settings::validate`] then checks what clap cannot
//! (cross-field rules, files that must exist) and names the offending setting.

use clap::{Args, Parser, Subcommand};
use ops::telemetry::LogFormat;
use sqlx::mysql::MySqlConnectOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The private hardware service.
#[derive(Debug, Parser)]
#[command(name = "hardware", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

/// What the binary does; `serve` when none is given.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit (run once per deployment, as
    /// a user with DDL rights).
    Migrate,
    /// Exit 0 when the local `/healthz` answers 2xx (for exec-form healthchecks).
    Healthcheck,
    /// List, add, change, remove, import and export inventory items through
    /// the running service (`hardware items --help`).
    Items(crate::items_cli::ItemsArgs),
}

/// Every setting of the service.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "HARDWARE_LISTEN", default_value = "0.0.0.0:5001")]
    pub listen: SocketAddr,

    /// MySQL/MariaDB URL, `mysql://user@host:port/db` (required to serve or migrate).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// File holding the database password; overrides a password in the URL.
    #[arg(long, env = "DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,

    /// Largest number of pooled database connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// How long a query waits for a pooled connection before failing with 503.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub database_acquire_timeout: Duration,

    /// Longest a database statement may run: past it the client drops the
    /// connection (a silent network) and the server aborts the statement
    /// (`max_statement_time`); writes then answer 503, `/readyz` not ready.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub database_statement_timeout: Duration,

    /// Apply migrations at start-up (convenient locally; deployments run `hardware migrate` once).
    #[arg(long, env = "MIGRATE_ON_START")]
    pub migrate_on_start: bool,

    /// Duration of the simulated slow availability process.
    #[arg(long, env = "PROBE_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub probe_delay: Duration,

    /// A probe that takes longer than this counts as failed (the old value is kept).
    #[arg(long, env = "PROBE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub probe_timeout: Duration,

    /// Most probes in flight at once, across all items. The default lets
    /// 100,000 items get their first values within one probe's time (the
    /// simulated probe is a timer: ~1 KB per probe in flight); lower it when
    /// the probe calls something with limits of its own.
    #[arg(long, env = "PROBE_CONCURRENCY", default_value_t = 100_000)]
    pub probe_concurrency: usize,

    /// How long a computed availability value is fresh; each item is probed once per TTL.
    #[arg(long, env = "AVAILABILITY_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub availability_ttl: Duration,

    /// Default and upper bound of the list endpoint's `wait` for never-computed values.
    #[arg(long, env = "AVAILABILITY_MAX_WAIT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub availability_max_wait: Duration,

    /// How often the inventory is re-read from the database, to pick up changes
    /// made through other replicas.
    #[arg(long, env = "INVENTORY_REFRESH", default_value = "2s", value_parser = humantime::parse_duration)]
    pub inventory_refresh: Duration,

    /// File holding the bearer token that enables writes; without it the API is read-only.
    #[arg(long, env = "ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Redis shared by the replicas (`redis://host:6379`): one probe per item
    /// per TTL across the tier. Without it each replica probes on its own.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// File holding the Redis password (of the URL's user, or `default`);
    /// overrides a password in the URL.
    #[arg(long, env = "REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,

    /// Prefix of this deployment's keys in Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "hardware")]
    pub redis_key_prefix: String,

    /// Limit of one Redis call; slower means "work alone for now".
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// Name sent in `x-served-by` (default: the host name).
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

/// A setting that is missing or invalid; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("DATABASE_URL (--database-url) is required")]
    MissingDatabaseUrl,
    #[error("DATABASE_URL (--database-url) is not a valid mysql:// URL: {0}")]
    InvalidDatabaseUrl(String),
    #[error("{setting}: cannot read {path}: {source}")]
    UnreadableFile {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The admin token; its `Debug` never shows the value.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// The shortest admin token accepted: a guessable token is worse than none.
pub const MIN_TOKEN_LEN: usize = 16;

fn read_secret(setting: &'static str, path: &Path) -> Result<String, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::UnreadableFile {
        setting,
        path: path.to_owned(),
        source,
    })?;
    // Files written by `echo` or editors end with a newline that is not part of the secret.
    Ok(raw.trim_end_matches(['\r', '\n']).to_owned())
}

/// A password from a file: any printable characters (quotes, backslashes and
/// `$` included: it travels in the protocol, never in SQL or a command line),
/// but not empty and no control characters, which no generator writes and
/// which a copy-paste accident would otherwise turn into a silent mismatch.
fn read_password(setting: &'static str, path: &Path) -> Result<String, ConfigError> {
    let password = read_secret(setting, path)?;
    if password.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{setting}: {} is empty",
            path.display()
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(ConfigError::Invalid(format!(
            "{setting}: {} holds a control character (a line break inside?)",
            path.display()
        )));
    }
    Ok(password)
}

impl Settings {
    /// Checks the settings that do not concern the database.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ops::settings::require_positive(&[
            (
                "AVAILABILITY_TTL (--availability-ttl)",
                self.availability_ttl,
            ),
            ("PROBE_TIMEOUT (--probe-timeout)", self.probe_timeout),
            (
                "INVENTORY_REFRESH (--inventory-refresh)",
                self.inventory_refresh,
            ),
            (
                "DATABASE_ACQUIRE_TIMEOUT (--database-acquire-timeout)",
                self.database_acquire_timeout,
            ),
            (
                "DATABASE_STATEMENT_TIMEOUT (--database-statement-timeout)",
                self.database_statement_timeout,
            ),
        ])
        .map_err(ConfigError::Invalid)?;
        if self.probe_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "PROBE_CONCURRENCY (--probe-concurrency) must be at least 1".into(),
            ));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError::Invalid(
                "DATABASE_MAX_CONNECTIONS (--database-max-connections) must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Connection options from `DATABASE_URL` and `DATABASE_PASSWORD_FILE`.
    pub fn connect_options(&self) -> Result<MySqlConnectOptions, ConfigError> {
        let url = self
            .database_url
            .as_deref()
            .ok_or(ConfigError::MissingDatabaseUrl)?;
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(ConfigError::InvalidDatabaseUrl(
                "the scheme must be mysql://".into(),
            ));
        }
        // The parser's message may quote the URL; keep only its kind, never the password.
        let mut options = MySqlConnectOptions::from_str(url)
            .map_err(|_| ConfigError::InvalidDatabaseUrl("cannot parse it".into()))?;
        if let Some(path) = &self.database_password_file {
            let password =
                read_password("DATABASE_PASSWORD_FILE (--database-password-file)", path)?;
            options = options.password(&password);
        }
        Ok(options)
    }

    /// The admin token, when writes are enabled.
    pub fn admin_token(&self) -> Result<Option<AdminToken>, ConfigError> {
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let token = read_secret("ADMIN_TOKEN_FILE (--admin-token-file)", path)?;
        if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
            return Err(ConfigError::Invalid(format!(
                "ADMIN_TOKEN_FILE (--admin-token-file): the token must be at least {MIN_TOKEN_LEN} characters with no white space"
            )));
        }
        Ok(Some(AdminToken(token)))
    }

    /// The shared cache, when `REDIS_URL` is set.
    pub fn shared_cache(
        &self,
    ) -> Result<Option<std::sync::Arc<dyn crate::engine::SharedCache>>, ConfigError> {
        let Some(url) = &self.redis_url else {
            return Ok(None);
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(ConfigError::Invalid(
                "REDIS_URL (--redis-url) must start with redis://".into(),
            ));
        }
        let password = match &self.redis_password_file {
            Some(path) => Some(read_password(
                "REDIS_PASSWORD_FILE (--redis-password-file)",
                path,
            )?),
            None => None,
        };
        let cache = crate::engine::RedisCache::new(
            url,
            password.as_deref(),
            &self.redis_key_prefix,
            &self.instance(),
            self.redis_timeout,
        )
        .map_err(|_| {
            ConfigError::Invalid("REDIS_URL (--redis-url) is not a valid Redis URL".into())
        })?;
        Ok(Some(std::sync::Arc::new(cache)))
    }

    /// The name this instance answers with in `x-served-by`.
    pub fn instance(&self) -> String {
        ops::instance::name(self.instance_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Settings {
        let mut argv = vec!["hardware"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.settings,
            Err(err) => panic!("parse failed: {err}"),
        }
    }

    #[test]
    fn defaults_match_the_design() {
        let settings = parse(&[]);
        assert_eq!(settings.listen.port(), 5001);
        assert_eq!(settings.probe_delay, Duration::from_secs(5));
        assert_eq!(settings.availability_ttl, Duration::from_secs(30));
        assert_eq!(settings.availability_max_wait, Duration::from_secs(10));
    }

    #[test]
    fn durations_use_humantime() {
        let settings = parse(&["--probe-delay", "250ms"]);
        assert_eq!(settings.probe_delay, Duration::from_millis(250));
    }

    #[test]
    fn a_bad_duration_is_rejected_naming_the_setting() {
        let err = Cli::try_parse_from(["hardware", "--probe-delay", "soon"])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("--probe-delay"), "{err}");
    }

    #[test]
    fn serving_without_a_database_url_names_the_setting() {
        // The test runner may export DATABASE_URL; this test is about its absence.
        let settings = Settings {
            database_url: None,
            ..parse(&[])
        };
        let err = settings.connect_options().expect_err("must fail");
        assert!(err.to_string().contains("DATABASE_URL"));
    }

    #[test]
    fn an_invalid_url_error_never_echoes_the_password() {
        let settings = parse(&["--database-url", "mysql://u:hunter2@host:notaport/db"]);
        let err = settings
            .connect_options()
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("DATABASE_URL") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn password_files_take_any_printable_character_and_name_the_setting_otherwise() {
        let dir = std::env::temp_dir().join(format!("hw-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("password");
        let settings = parse(&[
            "--database-url",
            "mysql://app@db/hardware",
            "--database-password-file",
            path.to_str().expect("utf-8"),
        ]);
        std::fs::write(&path, "it's a \\ $HOME \"test\"\n").expect("write");
        settings
            .connect_options()
            .expect("quotes, backslashes and $ are fine");
        for bad in ["", "\n", "two\nlines\n", "tab\tinside"] {
            std::fs::write(&path, bad).expect("write");
            let err = settings.connect_options().expect_err(bad).to_string();
            assert!(err.contains("DATABASE_PASSWORD_FILE"), "{bad:?}: {err}");
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_short_admin_token_is_refused() {
        let dir = std::env::temp_dir().join(format!("hw-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token");
        std::fs::write(&path, "short\n").expect("write");
        let settings = parse(&["--admin-token-file", path.to_str().expect("utf-8")]);
        let err = settings.admin_token().expect_err("must fail").to_string();
        assert!(err.contains("ADMIN_TOKEN_FILE"), "{err}");
        std::fs::write(&path, "0123456789abcdef0123\n").expect("write");
        let token = settings.admin_token().expect("valid").expect("configured");
        assert_eq!(token.expose(), "0123456789abcdef0123");
        assert_eq!(format!("{token:?}"), "AdminToken(***)");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn zero_ttl_is_rejected() {
        let err = parse(&["--availability-ttl", "0s"])
            .validate()
            .expect_err("must fail");
        assert!(err.to_string().contains("AVAILABILITY_TTL"));
    }
}
