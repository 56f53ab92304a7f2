//! Settings: every one a flag with an environment fallback (`portal --help`).

use crate::client::CidrList;
use clap::{Args, Parser, Subcommand};
use ops::telemetry::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// The public hardware portal.
#[derive(Debug, Parser)]
#[command(name = "portal", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

/// What the binary does; `serve` when none is given.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Serve the dashboard (the default).
    Serve,
    /// Exit 0 when the local `/healthz` answers 2xx (for exec-form healthchecks).
    Healthcheck,
}

/// Every setting of the portal.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Public address to listen on.
    #[arg(long, env = "PORTAL_LISTEN", default_value = "0.0.0.0:5000")]
    pub listen: SocketAddr,

    /// Private address for `/metrics` and `/healthz` (never publish it):
    /// `IP:PORT`, or `NAME:PORT` with a name resolved once at start (e.g. a
    /// network alias that exists only on a private network, so the listener
    /// is on that network's address alone).
    #[arg(long, env = "PORTAL_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: AdminListen,

    /// Where the hardware tier lives. Every address the host resolves to is
    /// used; several URLs may be given, comma-separated.
    #[arg(
        long,
        env = "HARDWARE_URL",
        default_value = "http://hardware:5001",
        value_delimiter = ','
    )]
    pub hardware_url: Vec<Url>,

    /// Time limit of one call to hardware, connection included.
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,

    /// Time limit for opening a connection to a hardware replica.
    #[arg(long, env = "UPSTREAM_CONNECT_TIMEOUT", default_value = "300ms", value_parser = humantime::parse_duration)]
    pub upstream_connect_timeout: Duration,

    /// How often the hardware host names are resolved again (replicas come and go).
    #[arg(long, env = "UPSTREAM_RESOLVE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub upstream_resolve_interval: Duration,

    /// How long a failing replica is left out before it is tried again.
    #[arg(long, env = "UPSTREAM_EJECT_FOR", default_value = "10s", value_parser = humantime::parse_duration)]
    pub upstream_eject_for: Duration,

    /// How often the inventory is fetched from hardware. Pages are rendered
    /// from the last fetch, so this bounds how old what they show can be.
    #[arg(long, env = "REFRESH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub refresh_interval: Duration,

    /// Data older than this is shown with a "stale since" banner.
    #[arg(long, env = "STALE_AFTER", default_value = "5s", value_parser = humantime::parse_duration)]
    pub stale_after: Duration,

    /// Rows per page unless the visitor asks otherwise.
    #[arg(long, env = "PAGE_SIZE", default_value_t = 50)]
    pub page_size: usize,

    /// Requests per second one client address may make (0 turns limiting off).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 50)]
    pub rate_limit_per_second: u32,

    /// Requests one client may make in a burst above that rate.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 100)]
    pub rate_limit_burst: u32,

    /// Proxies whose `Forwarded`/`X-Forwarded-For` names the client
    /// (comma-separated addresses or CIDR blocks; default none). From any other
    /// peer those headers are ignored: the TCP peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: CidrList,

    /// Connections open at once on the public listener; more are closed at accept.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Connections the kernel may queue for the public listener before the
    /// portal accepts them (listen backlog; the kernel caps it at
    /// net.core.somaxconn). When the queue is full the kernel drops new SYNs and
    /// a visitor's browser retries only after a second.
    #[arg(long, env = "LISTEN_BACKLOG", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub listen_backlog: u32,

    /// Connections one client may hold open (0: no per-client cap). A trusted
    /// proxy's connections count only toward MAX_CONNECTIONS.
    #[arg(long, env = "MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64)]
    pub max_connections_per_client: usize,

    /// Time a client has to send a request head (and the TLS handshake); also
    /// how long a kept-alive connection may sit idle.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// On shutdown, how long open requests may take to finish before their
    /// connections are cut.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Live-update streams (`/events`) open at once; more get a 503.
    #[arg(long, env = "MAX_EVENT_STREAMS", default_value_t = 512)]
    pub max_event_streams: usize,

    /// Live-update streams one client may hold open (0: no per-client cap).
    #[arg(long, env = "MAX_EVENT_STREAMS_PER_CLIENT", default_value_t = 8)]
    pub max_event_streams_per_client: usize,

    /// A live-update stream ends after this long; the browser reconnects and
    /// carries on from the version it last saw.
    #[arg(long, env = "EVENT_STREAM_LIFETIME", default_value = "10m", value_parser = humantime::parse_duration)]
    pub event_stream_lifetime: Duration,

    /// Memory for rendered pages kept for reuse, in KiB.
    #[arg(long, env = "PAGE_CACHE_KIB", default_value_t = 8 * 1024)]
    pub page_cache_kib: usize,

    /// PEM certificate chain; with TLS_KEY_FILE, serve HTTPS.
    #[arg(long, env = "TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key for TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Name sent in `x-served-by` (default: the host name).
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

/// The largest page a visitor may ask for.
pub const MAX_PAGE_SIZE: usize = 500;

impl Settings {
    /// Checks what clap cannot; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        for url in &self.hardware_url {
            // The client speaks plain HTTP/1.1 to every address the host
            // resolves to (hardware sits on a private network); what it cannot
            // honour is refused here rather than silently dropped.
            let refuse = |why: &str| Err(format!("HARDWARE_URL (--hardware-url): {url} {why}"));
            if url.scheme() != "http" {
                return refuse(
                    "must be http://: the portal calls hardware in plain HTTP on the private \
                     network (put TLS in a sidecar or mesh if that network is not private)",
                );
            }
            if url.host_str().is_none() {
                return refuse("has no host");
            }
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return refuse("must be scheme, host and port only (no path, query or fragment)");
            }
            if !url.username().is_empty() || url.password().is_some() {
                return refuse("must not carry credentials");
            }
        }
        if self.hardware_url.is_empty() {
            return Err("HARDWARE_URL (--hardware-url) must name at least one URL".into());
        }
        ops::settings::require_positive(&[
            (
                "UPSTREAM_TIMEOUT (--upstream-timeout)",
                self.upstream_timeout,
            ),
            (
                "UPSTREAM_CONNECT_TIMEOUT (--upstream-connect-timeout)",
                self.upstream_connect_timeout,
            ),
            (
                "UPSTREAM_RESOLVE_INTERVAL (--upstream-resolve-interval)",
                self.upstream_resolve_interval,
            ),
            (
                "REFRESH_INTERVAL (--refresh-interval)",
                self.refresh_interval,
            ),
            ("STALE_AFTER (--stale-after)", self.stale_after),
            (
                "HEADER_READ_TIMEOUT (--header-read-timeout)",
                self.header_read_timeout,
            ),
            (
                "EVENT_STREAM_LIFETIME (--event-stream-lifetime)",
                self.event_stream_lifetime,
            ),
        ])?;
        if self.max_connections == 0 {
            return Err("MAX_CONNECTIONS (--max-connections) must be at least 1".into());
        }
        if self.max_event_streams == 0 {
            return Err("MAX_EVENT_STREAMS (--max-event-streams) must be at least 1 (streams are the page's live updates)".into());
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(format!(
                "PAGE_SIZE (--page-size) must be from 1 to {MAX_PAGE_SIZE}"
            ));
        }
        if self.admin_listen.addr() == Some(self.listen) && self.listen.port() != 0 {
            return Err(
                "PORTAL_ADMIN_LISTEN must differ from PORTAL_LISTEN: metrics are never public"
                    .into(),
            );
        }
        Ok(())
    }

    /// The name this instance answers with in `x-served-by`.
    pub fn instance(&self) -> String {
        ops::instance::name(self.instance_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["portal"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|cli| cli.settings)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn the_admin_listener_takes_an_address_or_a_name() {
        let addr: AdminListen = "127.0.0.1:9090".parse().expect("an address");
        assert_eq!(addr.addr(), Some("127.0.0.1:9090".parse().expect("addr")));
        let v6: AdminListen = "[::1]:9090".parse().expect("an IPv6 address");
        assert_eq!(v6.to_string(), "[::1]:9090");
        let scoped: AdminListen = "[fe80::1%2]:9090".parse().expect("a scoped address");
        assert_eq!(
            scoped.to_string(),
            "[fe80::1%2]:9090",
            "the scope id is kept"
        );
        for good in ["portal_admin:9090", "portal-admin.backend.:9090", "a1:9090"] {
            assert!(good.parse::<AdminListen>().is_ok(), "{good}");
        }
        let name: AdminListen = "portal-admin:9090".parse().expect("a name");
        assert_eq!(
            (name.addr(), name.to_string()),
            (None, "portal-admin:9090".into())
        );
        for bad in [
            "portal-admin",
            "portal admin:9090",
            ":9090",
            "host:99999",
            "-x:1",
            // Numbers a resolver reads as addresses (0: every interface).
            "0:9090",
            "0x0:9090",
            "10.1:9090",
        ] {
            assert!(bad.parse::<AdminListen>().is_err(), "{bad}");
        }
        let err = parse(&["--admin-listen", "no port"]).expect_err("refused");
        assert!(err.contains("IP:PORT or NAME:PORT"), "{err}");
        let same =
            parse(&["--listen", "0.0.0.0:5000", "--admin-listen", "0.0.0.0:5000"]).expect("parses");
        assert!(
            same.validate().is_err(),
            "metrics never on the public listener"
        );
    }

    #[tokio::test]
    async fn a_name_is_resolved_at_start() {
        let local: AdminListen = "localhost:9090".parse().expect("a name");
        let found = local.resolve().await.expect("localhost resolves");
        assert!(
            found
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 9090),
            "{found:?}"
        );
        let nowhere: AdminListen = "no-such-host.invalid:9090".parse().expect("a name");
        assert!(nowhere.resolve().await.is_err());
        let own = local.own().await.expect("localhost is this host's");
        assert!(own.ip().is_loopback() && own.port() == 9090, "{own}");
    }

    #[test]
    fn defaults_match_the_design() {
        let settings = parse(&[]).expect("defaults parse");
        assert_eq!(settings.listen.port(), 5000);
        assert_eq!(settings.hardware_url[0].as_str(), "http://hardware:5001/");
        assert!(settings.validate().is_ok());
        assert!(
            settings.trusted_proxies.0.is_empty(),
            "no proxy is trusted by default"
        );
    }

    #[test]
    fn trusted_proxies_are_a_list_of_blocks() {
        let settings =
            parse(&["--trusted-proxies", "10.0.0.0/8, fd00::/8,192.0.2.1"]).expect("parses");
        assert_eq!(settings.trusted_proxies.0.len(), 3);
    }

    #[test]
    fn several_hardware_urls_may_be_given() {
        let settings = parse(&["--hardware-url", "http://a:1,http://b:2"]).expect("parses");
        assert_eq!(settings.hardware_url.len(), 2);
    }

    #[test]
    fn bad_settings_name_themselves() {
        let err = parse(&["--hardware-url", "not a url"]).expect_err("invalid");
        assert!(err.contains("--hardware-url"), "{err}");
        let err = parse(&["--hardware-url", "ftp://x"])
            .expect("parses")
            .validate()
            .expect_err("invalid");
        assert!(err.contains("HARDWARE_URL"), "{err}");
        for what_the_client_cannot_do in [
            "https://hardware:5001",
            "http://hardware:5001/api",
            "http://hardware:5001/?x=1",
            "http://user:pw@hardware:5001",
            "http://a:1,https://b:2",
        ] {
            let err = parse(&["--hardware-url", what_the_client_cannot_do])
                .expect("parses")
                .validate()
                .expect_err(what_the_client_cannot_do);
            assert!(err.starts_with("HARDWARE_URL (--hardware-url)"), "{err}");
        }
        parse(&["--hardware-url", "http://a:1/,http://b:2"])
            .expect("parses")
            .validate()
            .expect("scheme, host and port are enough");
        let err = parse(&["--page-size", "0"])
            .expect("parses")
            .validate()
            .expect_err("invalid");
        assert!(err.contains("PAGE_SIZE"), "{err}");
        let err = parse(&["--trusted-proxies", "10.0.0.0/8,proxy"]).expect_err("invalid");
        assert!(err.contains("--trusted-proxies"), "{err}");
        let err = parse(&["--max-connections", "0"])
            .expect("parses")
            .validate()
            .expect_err("invalid");
        assert!(err.contains("MAX_CONNECTIONS"), "{err}");
        let err = parse(&["--tls-cert-file", "/x"]).expect_err("needs the key too");
        assert!(err.contains("tls-key-file"), "{err}");
    }
}

/// Where the admin listener binds: an address, or a host name and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminListen {
    /// An address as given (an IPv6 scope id included).
    Addr(SocketAddr),
    /// A name resolved at start, and a port.
    Name(String, u16),
}

impl AdminListen {
    /// The address, when given as one (not as a name).
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Addr(addr) => Some(*addr),
            Self::Name(..) => None,
        }
    }

    /// Every address it stands for: itself, or what the name resolves to now.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let (host, port) = match self {
            Self::Addr(addr) => return Ok(vec![*addr]),
            Self::Name(host, port) => (host, *port),
        };
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect();
        if found.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} resolves to no address"),
            ));
        }
        Ok(found)
    }

    /// The address the server binds: the first it stands for that this host
    /// has (a name shared by replicas resolves to each of them).
    pub async fn own(&self) -> std::io::Result<SocketAddr> {
        if let Self::Addr(addr) = self {
            // As given; binding it says whether it can be.
            return Ok(*addr);
        }
        self.resolve()
            .await?
            .into_iter()
            .find(|addr| std::net::TcpListener::bind((addr.ip(), 0)).is_ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::AddrNotAvailable,
                    format!("none of the addresses of {self} is this host's"),
                )
            })
    }
}

impl std::str::FromStr for AdminListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const FORM: &str =
            "expected IP:PORT or NAME:PORT, e.g. 127.0.0.1:9090 or portal-admin:9090";
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self::Addr(addr));
        }
        let (host, port) = text.rsplit_once(':').ok_or(FORM)?;
        let port = port.parse().map_err(|_| format!("bad port: {FORM}"))?;
        let name = host.strip_suffix('.').unwrap_or(host);
        // A name starts with a letter: the resolver would read "0", "0x0"
        // or "10.1" as an address (0 being every interface).
        let name_ok = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.len() <= 253
            && name
                .split('.')
                .all(|label| !label.is_empty() && label.len() <= 63 && !label.starts_with('-'))
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(format!("bad host name {host:?}: {FORM}"));
        }
        Ok(Self::Name(host.to_owned(), port))
    }
}

impl std::fmt::Display for AdminListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Addr(addr) => write!(f, "{addr}"),
            Self::Name(host, port) => write!(f, "{host}:{port}"),
        }
    }
}
