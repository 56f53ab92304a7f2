//! Plain HTTP/1.1 over std sockets: enough to check our own services on loopback.

use super::Result;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One GET over a fresh connection: status, body, time to first byte, total.
pub fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>, Duration, Duration)> {
    let reply = http_get_with(port, path, &[])?;
    Ok((reply.status, reply.body, reply.ttfb, reply.total))
}

/// What one GET brought back.
pub struct Reply {
    pub status: u16,
    /// The response head (status line and headers).
    pub head: String,
    pub body: Vec<u8>,
    /// Every byte received: head and body as sent.
    pub wire_bytes: usize,
    pub ttfb: Duration,
    pub total: Duration,
}

impl Reply {
    /// A response header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// One GET over a fresh connection with extra request headers (`("If-None-Match", tag)`).
pub fn http_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    http_request(port, "GET", path, headers, b"")
}

/// One request over a fresh connection: `method`, extra headers, a body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request += &format!("{name}: {value}\r\n");
    }
    if !body.is_empty() {
        request += &format!("Content-Length: {}\r\n", body.len());
    }
    request += "\r\n";
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).map_err(|e| e.to_string())?;
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).map_err(|e| e.to_string())?;
    let ttfb = started.elapsed();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    let total = started.elapsed();
    let mut raw = vec![first[0]];
    raw.extend(rest);
    let body_at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..body_at]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Reply {
        status,
        head,
        body: raw[body_at..].to_vec(),
        wire_bytes: raw.len(),
        ttfb,
        total,
    })
}

pub fn wait_for_200(port: u16, path: &str, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok((200, ..)) = http_get(port, path) {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!("127.0.0.1:{port}{path} not 200 within {limit:?}"))
}

/// Sum of a metric's samples whose line contains `filter`.
pub fn metric(port: u16, name: &str, filter: &str) -> f64 {
    http_get(port, "/metrics")
        .map(|(_, body, ..)| {
            String::from_utf8_lossy(&body)
                .lines()
                .filter(|l| l.starts_with(name) && l.contains(filter))
                .filter_map(|l| {
                    l.split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<f64>().ok())
                })
                .sum()
        })
        .unwrap_or(0.0)
}
