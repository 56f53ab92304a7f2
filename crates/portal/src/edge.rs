//! The public listener: what a production edge does before any handler runs.
//!
//! - A global cap (`MAX_CONNECTIONS`) and a per-client cap
//!   (`MAX_CONNECTIONS_PER_CLIENT`, keyed by [`ClientKey`]; a trusted proxy's
//!   connections count only globally) on open connections. Over a cap the
//!   connection is closed at once (plain HTTP gets a one-line 503 first).
//! - `HEADER_READ_TIMEOUT`: a request head (and, with TLS, the handshake) must
//!   arrive within it, and a kept-alive connection may sit idle no longer
//!   (hyper restarts the timer whenever the connection waits for a new head).
//! - A read buffer of [`MAX_BUF`] per connection: a head larger than that is
//!   refused, so a trickled head holds kilobytes, not hyper's default ~400 KB.
//! - On shutdown: stop accepting, let in-flight requests finish, and cut
//!   whatever is still open after `DRAIN_TIMEOUT`.

use crate::client::{ClientKey, Quota, QuotaMetrics, TrustedProxies};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Largest read buffer of one connection: [`ops::http::MAX_HEADER_BYTES`] of
/// headers plus a request line fit; hyper's default is ~400 KB.
pub const MAX_BUF: usize = 20 * 1024;

/// The bounds of the public listener.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub header_read_timeout: Duration,
    pub drain_timeout: Duration,
}

/// The listener's metrics: `connections_open`, `connections_refused_total`.
pub fn register_metrics(registry: &mut Registry) -> QuotaMetrics {
    QuotaMetrics::register(
        registry,
        "connections",
        "Connections on the public listener",
        "full (MAX_CONNECTIONS) or client_full (MAX_CONNECTIONS_PER_CLIENT)",
    )
}

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: text/plain\r\nretry-after: 5\r\ncontent-length: 33\r\n\r\n\
Too many connections; retry soon.";

/// Serves `router` on `listener` until `stop` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    trusted: TrustedProxies,
    metrics: QuotaMetrics,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let quota =
        Quota::new(limits.max_connections, limits.max_connections_per_client).counted(metrics);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Cancelled when the drain deadline passes: every connection still open is cut.
    let cut = CancellationToken::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors (or a transient error): back off
                    // instead of spinning; open connections keep being served.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let client = (!trusted.trusts(peer.ip())).then(|| ClientKey::of(peer.ip()));
        let pass = match quota.enter(client) {
            Ok(pass) => pass,
            Err(_) => {
                if tls.is_none() {
                    // Best effort, never waits: the socket buffer takes it or not.
                    let _ = tcp.try_write(REFUSAL);
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            http: http.clone(),
            router: router.clone(),
            peer,
            watcher: graceful.watcher(),
            cut: cut.clone(),
        };
        let tls = tls.clone();
        let handshake_limit = limits.header_read_timeout;
        tokio::spawn(async move {
            let _pass = pass;
            match tls {
                None => connection.run(tcp).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_limit, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection.run(stream).await,
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, %peer, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let open = quota.held();
    if open > 0 {
        tracing::info!(
            open,
            deadline = ?limits.drain_timeout,
            "draining open connections"
        );
    }
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = quota.held(),
            "drain deadline passed; cutting the connections still open"
        );
        cut.cancel();
    }
    Ok(())
}

/// One accepted connection, ready to serve.
struct Connection {
    http: hyper::server::conn::http1::Builder,
    router: Router,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
    cut: CancellationToken,
}

impl Connection {
    async fn run<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            http,
            router,
            peer,
            watcher,
            cut,
        } = self;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(Body::new))
        });
        let served = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::select! {
            result = served => {
                if let Err(err) = result {
                    // Timeouts, resets, malformed heads: the client's problem, not ours.
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
            }
            () = cut.cancelled() => {}
        }
    }
}

/// Loads the certificate chain and key for HTTPS; errors name the setting.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("TLS_CERT_FILE: cannot read {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("TLS_CERT_FILE: {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "TLS_KEY_FILE: cannot read a private key from {}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS: no protocol version available")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS_CERT_FILE/TLS_KEY_FILE: the key does not fit the certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
