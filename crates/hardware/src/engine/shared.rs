//! The availability cache shared by all replicas (Redis).
//!
//! Without it every replica probes every item once per TTL; with it the tier
//! probes each item once per TTL in all. Before probing, a replica
//! 1. loads the shared value: if a probe *started* within the current TTL
//!    window, it adopts that value and does not probe;
//! 2. otherwise takes a short lease (`SET NX PX`) so that two replicas never
//!    probe the same item at once; the lease expires by itself if the prober
//!    dies; the others check back shortly and adopt the result;
//! 3. probes, stores the value (before releasing the lease, so nobody sees
//!    "no lease and no value"), and releases its own lease — also when the
//!    probe failed, so the item is not reported busy for nothing.
//!
//! # When Redis misbehaves
//! Requests never fail because of Redis; the engine probes alone instead.
//! - Every call has a timeout that holds on a silent network (the answer is
//!   awaited under `REDIS_TIMEOUT`, whatever the socket does).
//! - A failed or timed-out call marks the link down; while it is down, calls
//!   fail at once (no waiting per item) and one caller at a time tries to
//!   reconnect, outside any lock, with a backoff from 250 ms to 5 s. So with
//!   Redis unreachable from the start, every item is probed at once, alone,
//!   instead of one connection attempt per item in turn.
//! - Anybody who can write to Redis can write garbage: a value that does not
//!   decode, or that claims a probe started in the future (it would be adopted
//!   forever), is ignored and counted by the engine; a lease is always given
//!   an expiry no longer than the lease time, whoever set it.
//! - Redis requires a password (an ACL user limited to this deployment's key
//!   prefix in compose and Kubernetes): `REDIS_PASSWORD_FILE`.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use redis::IntoConnectionInfo;
use redis::aio::ConnectionManager;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use wire::Availability;

/// A value as stored for the whole tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedReading {
    pub level: Availability,
    pub checked_at: DateTime<Utc>,
    /// When the probe that produced it started: the TTL window is counted from here.
    pub started_at: DateTime<Utc>,
}

impl SharedReading {
    fn encode(&self) -> String {
        format!(
            "{}|{}|{}",
            self.level.as_str(),
            self.checked_at.timestamp_millis(),
            self.started_at.timestamp_millis()
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('|');
        let level = parts.next()?.parse().ok()?;
        let checked_at = DateTime::from_timestamp_millis(parts.next()?.parse().ok()?)?;
        let started_at = DateTime::from_timestamp_millis(parts.next()?.parse().ok()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            level,
            checked_at,
            started_at,
        })
    }
}

/// What a load found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// No value (never probed, or expired).
    Missing,
    /// A value that decodes; whether it is plausible is the engine's call.
    Value(SharedReading),
    /// Something that is not a value we write.
    Malformed,
}

/// Why a shared-cache call failed (the engine then works alone).
#[derive(Debug, thiserror::Error)]
#[error("shared cache: {0}")]
pub struct SharedError(pub String);

/// Operations the engine needs from a shared cache.
pub trait SharedCache: Send + Sync + 'static {
    fn load(&self, id: u64) -> BoxFuture<'_, Result<Loaded, SharedError>>;
    /// Takes the probe lease of `id` for `hold`; false when another replica
    /// holds it. A lease found without an expiry, or with a longer one, is
    /// given `hold`, so no lease outlives it.
    fn try_lease(&self, id: u64, hold: Duration) -> BoxFuture<'_, Result<bool, SharedError>>;
    /// Stores `reading`, kept for `keep`, and releases this replica's lease.
    fn store(
        &self,
        id: u64,
        reading: SharedReading,
        keep: Duration,
    ) -> BoxFuture<'_, Result<(), SharedError>>;
    /// Releases this replica's lease of `id` (after a failed probe).
    fn release(&self, id: u64) -> BoxFuture<'_, Result<(), SharedError>>;
}

/// The link to Redis: connected, or down until a time, or being reconnected
/// (since when: an attempt whose caller vanished counts as failed later).
enum Link {
    Up(ConnectionManager),
    Down {
        retry_at: Instant,
        backoff: Duration,
    },
    Connecting {
        since: Instant,
        backoff: Duration,
    },
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// [`SharedCache`] on Redis.
pub struct RedisCache {
    client: redis::Client,
    link: Arc<Mutex<Link>>,
    /// Bumped when a connection attempt ends: callers that found one under
    /// way wait for it (bounded) instead of each trying or failing at once.
    attempts: Arc<tokio::sync::watch::Sender<u64>>,
    /// When a call last got an answer (ms since `epoch`): a timeout while
    /// answers still flow is a burst, not a silent link.
    last_answer: std::sync::atomic::AtomicU64,
    epoch: Instant,
    prefix: String,
    /// Identifies this replica's leases, so it only ever releases its own.
    owner: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Deletes the lease only if this replica still holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Takes the lease if free; otherwise makes sure it expires within the hold.
const LEASE: &str = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end \
local left = redis.call('PTTL', KEYS[1]) \
if left < 0 or left > tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
return 0";

impl RedisCache {
    /// Checks the URL; connects lazily, so a Redis that is down at start-up
    /// only means working alone until it is back. `password` (from
    /// `REDIS_PASSWORD_FILE`) overrides one in the URL.
    pub fn new(
        url: &str,
        password: Option<&str>,
        prefix: &str,
        owner: &str,
        timeout: Duration,
    ) -> Result<Self, SharedError> {
        let mut info = url
            .into_connection_info()
            .map_err(|err| SharedError(err.to_string()))?;
        // No `CLIENT SETINFO` after connecting: the ACL user may not run
        // CLIENT (and Redis before 7.2 does not know the subcommand).
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|err| SharedError(err.to_string()))?;
        Ok(Self {
            client,
            link: Arc::new(Mutex::new(Link::Down {
                retry_at: Instant::now(),
                backoff: FIRST_BACKOFF,
            })),
            attempts: Arc::new(tokio::sync::watch::channel(0).0),
            last_answer: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
            prefix: prefix.to_owned(),
            owner: format!("{owner}-{}", std::process::id()),
            timeout,
        })
    }

    fn value_key(&self, id: u64) -> String {
        format!("{}:availability:{id}", self.prefix)
    }

    fn lease_key(&self, id: u64) -> String {
        format!("{}:lease:{id}", self.prefix)
    }

    /// The connection, if the link is up. While it is down, fails at once
    /// until the backoff has passed; then one connection attempt starts, in
    /// a task of its own (no lock held, not slowed by whoever asked), and
    /// every caller waits for it at most one call timeout.
    async fn connection(&self) -> Result<ConnectionManager, SharedError> {
        let mut ended = match self.turn() {
            Turn::Use(connection) => return Ok(connection),
            Turn::Fail => return Err(SharedError("unreachable; retrying later".into())),
            Turn::Wait(ended) => ended,
            Turn::Connect(backoff, ended) => {
                self.spawn_attempt(backoff);
                ended
            }
        };
        let _ = tokio::time::timeout(self.timeout, ended.changed()).await;
        match &*lock(&self.link) {
            Link::Up(connection) => Ok(connection.clone()),
            _ => Err(SharedError("unreachable; retrying later".into())),
        }
    }

    /// One connection attempt, within [`Self::connect_limit`].
    fn spawn_attempt(&self, backoff: Duration) {
        let (client, link, attempts) = (
            self.client.clone(),
            Arc::clone(&self.link),
            Arc::clone(&self.attempts),
        );
        let limit = self.connect_limit();
        tokio::spawn(async move {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(limit))
                // Calls are timed by `query` (a late answer in a burst must not
                // count as a broken link).
                .set_response_timeout(None)
                .set_number_of_retries(0);
            let connected =
                tokio::time::timeout(limit, client.get_connection_manager_with_config(config))
                    .await;
            {
                let mut link = lock(&link);
                *link = match connected {
                    Ok(Ok(connection)) => Link::Up(connection),
                    Ok(Err(err)) => {
                        tracing::debug!(error = %err, "cannot connect to Redis");
                        down(backoff)
                    }
                    Err(_) => down(backoff),
                };
            }
            attempts.send_modify(|n| *n += 1);
        });
    }

    /// How long one connection attempt may take: longer than a call (it is
    /// rare, and nobody waits for it longer than a call), so a busy moment
    /// does not keep the link down.
    fn connect_limit(&self) -> Duration {
        (self.timeout * 5).max(Duration::from_secs(1))
    }

    fn turn(&self) -> Turn {
        let mut link = lock(&self.link);
        // Subscribed under the lock: the attempt's end cannot be missed.
        match &*link {
            Link::Up(connection) => Turn::Use(connection.clone()),
            Link::Connecting { since, .. } if since.elapsed() < self.connect_limit() * 2 => {
                Turn::Wait(self.attempts.subscribe())
            }
            Link::Down { retry_at, .. } if Instant::now() < *retry_at => Turn::Fail,
            Link::Down { backoff, .. } | Link::Connecting { backoff, .. } => {
                let backoff = *backoff;
                *link = Link::Connecting {
                    since: Instant::now(),
                    backoff,
                };
                Turn::Connect(backoff, self.attempts.subscribe())
            }
        }
    }

    fn answered(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_answer
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether no call got an answer for a whole timeout: the link is silent.
    fn silent(&self) -> bool {
        let last =
            Duration::from_millis(self.last_answer.load(std::sync::atomic::Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) >= self.timeout
    }

    /// A call failed on a connection that was up: drop it (a silent network
    /// would make every later call wait its full timeout) and back off.
    fn trip(&self) {
        let mut link = lock(&self.link);
        if matches!(*link, Link::Up(_)) {
            *link = down(FIRST_BACKOFF);
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, SharedError> {
        let mut connection = self.connection().await?;
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut connection)).await {
            Ok(Ok(value)) => {
                self.answered();
                Ok(value)
            }
            // The server answered with an error: the link itself is fine.
            Ok(Err(err))
                if err.kind()
                    == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
            {
                self.answered();
                Err(SharedError(err.to_string()))
            }
            Ok(Err(err)) if !err.is_timeout() => {
                self.trip();
                Err(SharedError(err.to_string()))
            }
            Ok(Err(_)) | Err(_) => {
                // Late while other calls are answered: a burst; this call
                // fails (the engine probes alone), the link stays.
                if self.silent() {
                    self.trip();
                }
                Err(SharedError(format!("no answer within {:?}", self.timeout)))
            }
        }
    }
}

/// What a caller of [`RedisCache::connection`] does, decided under the lock.
enum Turn {
    Use(ConnectionManager),
    Fail,
    /// An attempt is under way: wait for its end.
    Wait(tokio::sync::watch::Receiver<u64>),
    /// Start an attempt (the link's backoff so far), then wait for its end.
    Connect(Duration, tokio::sync::watch::Receiver<u64>),
}

fn lock(link: &Mutex<Link>) -> MutexGuard<'_, Link> {
    link.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Down, retried after `backoff`; the next failure waits twice as long.
fn down(backoff: Duration) -> Link {
    Link::Down {
        retry_at: Instant::now() + backoff,
        backoff: (backoff * 2).min(MAX_BACKOFF),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SharedCache for RedisCache {
    fn load(&self, id: u64) -> BoxFuture<'_, Result<Loaded, SharedError>> {
        Box::pin(async move {
            // Bytes, not a string: a value that is not UTF-8 is garbage, not an error.
            let raw: Option<Vec<u8>> = self
                .query(redis::cmd("GET").arg(self.value_key(id)))
                .await?;
            Ok(match raw {
                None => Loaded::Missing,
                Some(raw) => std::str::from_utf8(&raw)
                    .ok()
                    .and_then(SharedReading::decode)
                    .map_or(Loaded::Malformed, Loaded::Value),
            })
        })
    }

    fn try_lease(&self, id: u64, hold: Duration) -> BoxFuture<'_, Result<bool, SharedError>> {
        Box::pin(async move {
            let taken: i64 = self
                .query(
                    redis::cmd("EVAL")
                        .arg(LEASE)
                        .arg(1)
                        .arg(self.lease_key(id))
                        .arg(&self.owner)
                        .arg(millis(hold)),
                )
                .await?;
            Ok(taken == 1)
        })
    }

    fn store(
        &self,
        id: u64,
        reading: SharedReading,
        keep: Duration,
    ) -> BoxFuture<'_, Result<(), SharedError>> {
        Box::pin(async move {
            let () = self
                .query(
                    redis::cmd("SET")
                        .arg(self.value_key(id))
                        .arg(reading.encode())
                        .arg("PX")
                        .arg(millis(keep)),
                )
                .await?;
            self.release(id).await
        })
    }

    fn release(&self, id: u64) -> BoxFuture<'_, Result<(), SharedError>> {
        Box::pin(async move {
            let _released: i64 = self
                .query(
                    redis::cmd("EVAL")
                        .arg(RELEASE)
                        .arg(1)
                        .arg(self.lease_key(id))
                        .arg(&self.owner),
                )
                .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_round_trips_through_its_encoding() {
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("ms");
        let reading = SharedReading {
            level: Availability::Medium,
            checked_at: now,
            started_at: now - chrono::Duration::seconds(5),
        };
        assert_eq!(SharedReading::decode(&reading.encode()), Some(reading));
        for garbage in ["garbage", "HIGH|1|2|3", "HIGH|x|2", "NOPE|1|2", ""] {
            assert_eq!(SharedReading::decode(garbage), None, "{garbage}");
        }
    }
}
