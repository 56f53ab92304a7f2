//! Per-client rate limiting on the public listener: one client cannot starve
//! the others. A token bucket per peer address (`RATE_LIMIT_PER_SECOND`
//! tokens a second, up to `RATE_LIMIT_BURST`); over the limit a visitor gets
//! a friendly 429 page with `Retry-After`. Health endpoints are exempt.
//!
//! The key is the TCP peer: behind a reverse proxy, limit there instead (or
//! set the rate to 0 to turn this off).

use super::PageError;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients remembered at most; idle ones are forgotten first.
const MAX_CLIENTS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Handle to the limiter; cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl RateLimiter {
    /// `None` when `per_second` is 0 (limiting off).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Arc::default(),
        })
    }

    /// Takes a token for `client`, or says how long until one is available.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let horizon = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, b| now.duration_since(b.updated) < horizon);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

/// Middleware: limits by peer address when the server provides it.
pub async fn enforce(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let exempt = path == "/healthz" || path == "/readyz";
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let (false, Some(ip)) = (exempt, peer)
        && let Err(wait) = limiter.check(ip, Instant::now())
    {
        let seconds = wait.as_secs().max(1);
        return PageError::TooManyRequests(seconds).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_for_refill() {
        let limiter = RateLimiter::new(2, 3).expect("on");
        let client: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(client, t0).is_ok());
        }
        let wait = limiter.check(client, t0).expect_err("limited");
        assert!(wait <= Duration::from_millis(500));
        assert!(
            limiter
                .check(client, t0 + Duration::from_millis(500))
                .is_ok(),
            "refilled"
        );
    }

    #[test]
    fn clients_do_not_share_a_bucket() {
        let limiter = RateLimiter::new(1, 1).expect("on");
        let t0 = Instant::now();
        assert!(limiter.check("192.0.2.1".parse().expect("ip"), t0).is_ok());
        assert!(limiter.check("192.0.2.1".parse().expect("ip"), t0).is_err());
        assert!(limiter.check("192.0.2.2".parse().expect("ip"), t0).is_ok());
    }

    #[test]
    fn zero_turns_limiting_off() {
        assert!(RateLimiter::new(0, 10).is_none());
    }
}
