//! A tiny HTTP/1.1 client for `<binary> healthcheck`.
//!
//! Runtime images have no shell and no curl, so container healthchecks run the
//! service binary itself in exec form. This speaks just enough HTTP to read a
//! status line, with a deadline, so a hung server counts as unhealthy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a healthcheck failed.
#[derive(Debug)]
pub enum HealthError {
    Io(std::io::Error),
    TimedOut(Duration),
    Status(String),
}

impl std::fmt::Display for HealthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(err) => write!(f, "cannot reach the service: {err}"),
            Self::TimedOut(limit) => write!(f, "no answer within {limit:?}"),
            Self::Status(line) => write!(f, "unhealthy answer: {line}"),
        }
    }
}

impl std::error::Error for HealthError {}

/// The address to dial for a listener bound to `listen`: a wildcard becomes loopback.
pub fn local_target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `<binary> healthcheck`: `GET /healthz` on the local listener bound to
/// `listen`, with a 3 s limit.
pub async fn local(listen: SocketAddr) -> Result<(), HealthError> {
    check(local_target(listen), "/healthz", Duration::from_secs(3)).await
}

/// `GET path` on `target`; Ok when the answer's status is 2xx within `timeout`.
pub async fn check(target: SocketAddr, path: &str, timeout: Duration) -> Result<(), HealthError> {
    match tokio::time::timeout(timeout, exchange(target, path)).await {
        Ok(result) => result,
        Err(_) => Err(HealthError::TimedOut(timeout)),
    }
}

async fn exchange(target: SocketAddr, path: &str) -> Result<(), HealthError> {
    let mut stream = TcpStream::connect(target).await.map_err(HealthError::Io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(HealthError::Io)?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    // Only the status line matters; stop reading once it is complete.
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(HealthError::Io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    let ok = status_line
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    if ok {
        Ok(())
    } else {
        Err(HealthError::Status(status_line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn one_shot_server(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_2xx_answer_is_healthy() {
        let addr = one_shot_server("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        assert!(
            check(addr, "/healthz", Duration::from_secs(2))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_5xx_answer_is_unhealthy() {
        let addr = one_shot_server("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let err = check(addr, "/healthz", Duration::from_secs(2)).await;
        assert!(matches!(err, Err(HealthError::Status(line)) if line.contains("503")));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let err = check(addr, "/healthz", Duration::from_millis(100)).await;
        assert!(matches!(err, Err(HealthError::TimedOut(_))));
        drop(listener);
    }

    #[test]
    fn wildcard_listeners_are_dialled_on_loopback() {
        let target = local_target("0.0.0.0:5001".parse().expect("addr"));
        assert_eq!(target, "127.0.0.1:5001".parse().expect("addr"));
    }
}
