//! Plain HTTP/1.1 over std sockets: enough to check our own services on loopback.

use super::Result;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One GET over a fresh connection: status, body, time to first byte, total.
pub fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>, Duration, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).map_err(|e| e.to_string())?;
    let ttfb = started.elapsed();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    let total = started.elapsed();
    let mut raw = vec![first[0]];
    raw.extend(rest);
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body_at = text.find("\r\n\r\n").map_or(raw.len(), |i| i + 4);
    Ok((status, raw[body_at.min(raw.len())..].to_vec(), ttfb, total))
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
