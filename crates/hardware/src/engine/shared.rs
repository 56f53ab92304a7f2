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
//!    "no lease and no value"), and releases its own lease.
//!
//! Every call has a short timeout. When Redis is down or slow the engine
//! falls back to probing on its own: requests never fail because of Redis.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::Mutex;
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
        Some(Self {
            level,
            checked_at,
            started_at,
        })
    }
}

/// Why a shared-cache call failed (the engine then works alone).
#[derive(Debug, thiserror::Error)]
#[error("shared cache: {0}")]
pub struct SharedError(pub String);

/// Operations the engine needs from a shared cache.
pub trait SharedCache: Send + Sync + 'static {
    fn load(&self, id: u64) -> BoxFuture<'_, Result<Option<SharedReading>, SharedError>>;
    /// Takes the probe lease of `id` for `hold`; false when another replica holds it.
    fn try_lease(&self, id: u64, hold: Duration) -> BoxFuture<'_, Result<bool, SharedError>>;
    /// Stores `reading`, kept for `keep`, and releases this replica's lease.
    fn store(
        &self,
        id: u64,
        reading: SharedReading,
        keep: Duration,
    ) -> BoxFuture<'_, Result<(), SharedError>>;
}

/// [`SharedCache`] on Redis.
pub struct RedisCache {
    client: redis::Client,
    connection: Mutex<Option<ConnectionManager>>,
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

impl RedisCache {
    /// Checks the URL; connects lazily, so a Redis that is down at start-up
    /// only means working alone until it is back.
    pub fn new(
        url: &str,
        prefix: &str,
        owner: &str,
        timeout: Duration,
    ) -> Result<Self, SharedError> {
        let client = redis::Client::open(url).map_err(|err| SharedError(err.to_string()))?;
        Ok(Self {
            client,
            connection: Mutex::new(None),
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

    async fn connection(&self) -> Result<ConnectionManager, SharedError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let connection = tokio::time::timeout(
            self.timeout * 2,
            self.client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| SharedError("connect timed out".into()))?
        .map_err(|err| SharedError(err.to_string()))?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, SharedError> {
        let mut connection = self.connection().await?;
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(SharedError(err.to_string())),
            Err(_) => Err(SharedError(format!("no answer within {:?}", self.timeout))),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SharedCache for RedisCache {
    fn load(&self, id: u64) -> BoxFuture<'_, Result<Option<SharedReading>, SharedError>> {
        Box::pin(async move {
            let text: Option<String> = self
                .query(redis::cmd("GET").arg(self.value_key(id)))
                .await?;
            Ok(text.as_deref().and_then(SharedReading::decode))
        })
    }

    fn try_lease(&self, id: u64, hold: Duration) -> BoxFuture<'_, Result<bool, SharedError>> {
        Box::pin(async move {
            let set: Option<String> = self
                .query(
                    redis::cmd("SET")
                        .arg(self.lease_key(id))
                        .arg(&self.owner)
                        .arg("NX")
                        .arg("PX")
                        .arg(millis(hold)),
                )
                .await?;
            Ok(set.is_some())
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
        assert_eq!(SharedReading::decode("garbage"), None);
    }
}
