//! The public listener: what a production edge does before any handler runs.
//!
//! - A global cap (`MAX_CONNECTIONS`) and a per-client cap
//!   (`MAX_CONNECTIONS_PER_CLIENT`, keyed by [`ClientKey`]; a trusted proxy's
//!   connections count only globally) on open connections. Over a cap the
//!   connection is closed at once (plain HTTP gets a one-line 503 first).
//! - `HEADER_READ_TIMEOUT`: a request head (and, with TLS, the handshake) must
//!   arrive within it, and a kept-alive connection may sit idle no longer: the
//!   clock starts when the connection opens and whenever an answer has been
//!   sent, and stops when a head is complete. One timer per connection,
//!   re-armed lazily ([`HeadClock`]): hyper's own header timer is a boxed sleep
//!   registered and cancelled in the shared timer wheel on every request.
//! - A read buffer of [`MAX_BUF`] per connection: a head larger than that is
//!   refused, so a trickled head holds kilobytes, not hyper's default ~400 KB.
//! - On shutdown: stop accepting, let in-flight requests finish, and cut
//!   whatever is still open after `DRAIN_TIMEOUT`.

use crate::client::{ClientKey, Quota, QuotaMetrics, TrustedProxies};
use crate::web::Public;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use std::time::Instant;
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

/// The public listener, with `backlog` connections queued by the kernel
/// before they are accepted (tokio's `bind` asks for 128: a burst of new
/// connections fills that at once, and every SYN after it is dropped until
/// the client retransmits a second later).
pub fn listen(address: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Connections accepted in one go before the accept loop lets other tasks run.
const ACCEPT_BATCH: usize = 64;

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: text/plain\r\nretry-after: 5\r\ncontent-length: 33\r\n\r\n\
Too many connections; retry soon.";

/// Serves `router` on `listener` until `stop` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Public,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    trusted: TrustedProxies,
    metrics: QuotaMetrics,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let quota =
        Quota::new(limits.max_connections, limits.max_connections_per_client).counted(metrics);
    let mut http = hyper::server::conn::http1::Builder::new();
    // No header_read_timeout here: see HeadClock.
    http.max_buf_size(MAX_BUF).keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Cancelled when the drain deadline passes: every connection still open is cut.
    let cut = CancellationToken::new();
    // The first connection of each wake-up comes through tokio; the rest of
    // what the kernel queued is drained from a second handle of the same
    // socket without the reactor, so a refused connection costs accept, one
    // write and close (a tokio TcpStream registers and deregisters with epoll).
    // Draining to WouldBlock leaves tokio's readiness set: its next accept
    // finds the queue empty once, then waits.
    let std_listener = listener.into_std()?;
    let drain = std_listener.try_clone()?;
    let listener = TcpListener::from_std(std_listener)?;
    loop {
        let mut first = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted.and_then(|(tcp, peer)| Ok((tcp.into_std()?, peer))) {
                Ok(pair) => Some(pair),
                Err(err) => {
                    // Out of file descriptors (or a transient error): back off
                    // instead of spinning; open connections keep being served.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        for _ in 0..ACCEPT_BATCH {
            let (tcp, peer) = match first.take().map_or_else(|| drain.accept(), Ok) {
                Ok(pair) => pair,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break;
                }
            };
            let client = (!trusted.trusts(peer.ip())).then(|| ClientKey::of(peer.ip()));
            let Ok(pass) = quota.enter(client) else {
                if tls.is_none() {
                    // A drained socket is blocking (accept does not pass the
                    // listener's O_NONBLOCK on), but a fresh socket's empty
                    // send buffer takes these bytes at once: this never waits.
                    let _ = (&tcp).write(REFUSAL);
                }
                continue;
            };
            let tcp = match tcp
                .set_nonblocking(true)
                .and_then(|()| tcp.set_nodelay(true))
                .and_then(|()| tokio::net::TcpStream::from_std(tcp))
            {
                Ok(tcp) => tcp,
                Err(err) => {
                    tracing::debug!(error = %err, %peer, "accepted connection unusable");
                    continue;
                }
            };
            let connection = Connection {
                http: http.clone(),
                router: router.clone(),
                peer,
                watcher: graceful.watcher(),
                cut: cut.clone(),
                head_limit: limits.header_read_timeout,
                trusted: trusted.clone(),
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
        tokio::task::yield_now().await;
    }
    drop((listener, drain));
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
    router: Public,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
    cut: CancellationToken,
    head_limit: Duration,
    trusted: TrustedProxies,
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
            head_limit,
            trusted,
        } = self;
        let clock = Arc::new(HeadClock::new());
        let service = hyper::service::service_fn({
            let clock = clock.clone();
            move |mut request: hyper::Request<Incoming>| {
                clock.busy();
                // Who sent it, for the per-client bounds behind (see `web::identify`).
                let client = ClientKey::of(trusted.client_ip(peer.ip(), request.headers()));
                request.extensions_mut().insert(client);
                let answer = router.clone().oneshot(request.map(Body::new));
                let clock = clock.clone();
                async move {
                    let response = answer.await?;
                    Ok::<_, std::convert::Infallible>(response.map(|body| Sent { body, clock }))
                }
            }
        });
        let served = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::select! {
            result = served => {
                if let Err(err) = result {
                    // Resets, malformed heads: the client's problem, not ours.
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
            }
            () = clock.expired(head_limit) => {
                tracing::debug!(%peer, "no request head within HEADER_READ_TIMEOUT; closing");
            }
            () = cut.cancelled() => {}
        }
    }
}

/// When a connection began waiting for a request head (it opened, or its
/// last answer was sent), or that it is busy with a request. Set by the
/// connection's own task (the service and the answer's body), read by its
/// [`HeadClock::expired`]: no lock, no timer per request.
struct HeadClock {
    opened: Instant,
    /// Milliseconds after `opened` the wait began, or [`BUSY`].
    waiting_since: AtomicU64,
}

const BUSY: u64 = u64::MAX;

impl HeadClock {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            waiting_since: AtomicU64::new(0),
        }
    }

    /// A head is complete: the request is being served.
    fn busy(&self) {
        self.waiting_since.store(BUSY, Ordering::Relaxed);
    }

    /// The answer is sent: the connection waits for the next head.
    fn waiting(&self) {
        let since = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(BUSY - 1);
        self.waiting_since.store(since, Ordering::Relaxed);
    }

    fn waiting_since(&self) -> Option<Instant> {
        match self.waiting_since.load(Ordering::Relaxed) {
            BUSY => None,
            since => Some(self.opened + Duration::from_millis(since)),
        }
    }

    /// Resolves once the connection has waited `limit` for a head. One sleep,
    /// moved only when it fires: to the wait's own deadline, or `limit` on
    /// while a request is served.
    async fn expired(&self, limit: Duration) {
        let sleep = tokio::time::sleep(limit);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let now = Instant::now();
            let deadline = match self.waiting_since() {
                None => now + limit,
                Some(since) if now >= since + limit => return,
                Some(since) => since + limit,
            };
            sleep.as_mut().reset(deadline.into());
        }
    }
}

/// An answer's body; once hyper has sent it (and drops it) the connection
/// waits for its next head.
struct Sent {
    body: Body,
    clock: Arc<HeadClock>,
}

impl Drop for Sent {
    fn drop(&mut self) {
        self.clock.waiting();
    }
}

impl hyper::body::Body for Sent {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
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
