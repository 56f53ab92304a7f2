//! Per-client rate limiting on the public listener: one client cannot starve
//! the others. A token bucket per client (`RATE_LIMIT_PER_SECOND` tokens a
//! second, up to `RATE_LIMIT_BURST`); over the limit a visitor gets a friendly
//! 429 page with `Retry-After`. Health endpoints are exempt.
//!
//! The client is the [`ClientKey`] set by [`super::identify`]: the TCP peer,
//! or behind a proxy listed in `TRUSTED_PROXIES` the address it forwards;
//! IPv6 by /64.
//!
//! The state is bounded: at most [`MAX_CLIENTS`] buckets; once that many
//! clients were seen within a refill horizon, newcomers share one overflow
//! bucket until a sweep (at most once a second) forgets idle clients.

use super::PageError;
use crate::client::ClientKey;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients remembered at most.
pub const MAX_CLIENTS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
struct Buckets {
    clients: HashMap<ClientKey, Bucket>,
    /// Shared by clients that arrive while the map is full.
    overflow: Option<Bucket>,
    swept: Instant,
}

/// Handle to the limiter; cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    capacity: usize,
    buckets: Arc<Mutex<Buckets>>,
}

impl Bucket {
    fn take(&mut self, now: Instant, per_second: f64, burst: f64) -> Result<(), Duration> {
        let refill = now.saturating_duration_since(self.updated).as_secs_f64() * per_second;
        self.tokens = (self.tokens + refill).min(burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }
}

impl RateLimiter {
    /// `None` when `per_second` is 0 (limiting off).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Self::with_capacity(per_second, burst, MAX_CLIENTS)
    }

    fn with_capacity(per_second: u32, burst: u32, capacity: usize) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            capacity,
            buckets: Arc::new(Mutex::new(Buckets {
                clients: HashMap::new(),
                overflow: None,
                swept: Instant::now(),
            })),
        })
    }

    /// Takes a token for `client`, or says how long until one is available.
    pub fn check(&self, client: ClientKey, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let full = buckets.clients.len() >= self.capacity;
        if full && now.saturating_duration_since(buckets.swept) >= Duration::from_secs(1) {
            // A bucket idle for burst/rate seconds is full again: forgetting it changes nothing.
            let horizon = Duration::from_secs_f64(self.burst / self.per_second);
            buckets
                .clients
                .retain(|_, b| now.saturating_duration_since(b.updated) < horizon);
            buckets.swept = now;
        }
        let fresh = Bucket {
            tokens: self.burst,
            updated: now,
        };
        let bucket =
            if buckets.clients.len() < self.capacity || buckets.clients.contains_key(&client) {
                buckets.clients.entry(client).or_insert(fresh)
            } else {
                buckets.overflow.get_or_insert(fresh)
            };
        bucket.take(now, self.per_second, self.burst)
    }

    /// Clients remembered now.
    pub fn clients(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clients
            .len()
    }
}

/// Lets `request` through, or the 429 answer when its client (found by
/// [`super::identify`]) is over its rate; `/healthz` and `/readyz` always pass.
pub fn refusal(limiter: &RateLimiter, request: &Request) -> Option<Response> {
    let path = request.uri().path();
    let exempt = path == "/healthz" || path == "/readyz";
    let client = request.extensions().get::<ClientKey>().copied();
    if let (false, Some(client)) = (exempt, client)
        && let Err(wait) = limiter.check(client, Instant::now())
    {
        let seconds = wait.as_secs().max(1);
        return Some(PageError::TooManyRequests(seconds).into_response());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str) -> ClientKey {
        ClientKey::of(ip.parse().expect("ip"))
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_refill() {
        let limiter = RateLimiter::new(2, 3).expect("on");
        let client = key("192.0.2.1");
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
        assert!(limiter.check(key("192.0.2.1"), t0).is_ok());
        assert!(limiter.check(key("192.0.2.1"), t0).is_err());
        assert!(limiter.check(key("192.0.2.2"), t0).is_ok());
    }

    #[test]
    fn zero_turns_limiting_off() {
        assert!(RateLimiter::new(0, 10).is_none());
    }

    #[test]
    fn the_state_stays_bounded_and_newcomers_share_the_overflow() {
        let limiter = RateLimiter::with_capacity(1, 2, 4).expect("on");
        let t0 = Instant::now();
        for i in 0..4 {
            assert!(limiter.check(key(&format!("192.0.2.{i}")), t0).is_ok());
        }
        // Full: two newcomers share one bucket of 2 tokens.
        assert!(limiter.check(key("198.51.100.1"), t0).is_ok());
        assert!(limiter.check(key("198.51.100.2"), t0).is_ok());
        assert!(limiter.check(key("198.51.100.3"), t0).is_err());
        assert_eq!(limiter.clients(), 4);
        // Known clients keep their own buckets.
        assert!(limiter.check(key("192.0.2.0"), t0).is_ok());
        // Seconds later the idle ones are swept and a newcomer gets its own.
        let later = t0 + Duration::from_secs(5);
        assert!(limiter.check(key("203.0.113.9"), later).is_ok());
        assert!(limiter.clients() <= 4);
    }
}
