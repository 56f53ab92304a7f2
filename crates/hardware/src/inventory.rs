//! The inventory as this replica last read it from the database.
//!
//! Requests read the in-memory [`Snapshot`] and never touch the database, so
//! reads stay fast and keep working while the database is away. A background
//! loop polls a [`db::Fingerprint`] every `INVENTORY_REFRESH` and re-reads the
//! rows only when it changed; writes through this replica refresh at once, so
//! a client reads its own writes. Each new snapshot is handed to the engine,
//! which starts tracking added items and forgets deleted ones.

use crate::db::{self, Fingerprint, Record};
use crate::engine::{Engine, Target};
use sqlx::MySqlPool;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Mutex;

/// The rows, sorted by id, as of one read.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub records: Vec<Record>,
    fingerprint: Fingerprint,
}

impl Snapshot {
    pub fn get(&self, id: u64) -> Option<&Record> {
        self.records
            .binary_search_by_key(&id, |record| record.id)
            .ok()
            .and_then(|index| self.records.get(index))
    }
}

#[derive(Debug)]
struct Inner {
    pool: MySqlPool,
    engine: Engine,
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Serializes refreshes so two never race to install older data.
    refreshing: Mutex<()>,
}

/// Handle to the inventory; cheap to clone.
#[derive(Debug, Clone)]
pub struct Inventory {
    inner: Arc<Inner>,
}

impl Inventory {
    pub fn new(pool: MySqlPool, engine: Engine) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                engine,
                current: RwLock::new(None),
                refreshing: Mutex::new(()),
            }),
        }
    }

    /// The latest snapshot; `None` until the database was read once.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the rows if the table changed since the last read.
    pub async fn refresh(&self) -> sqlx::Result<()> {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        let fingerprint = db::fingerprint(&self.inner.pool).await?;
        if self
            .snapshot()
            .is_some_and(|current| current.fingerprint == fingerprint)
        {
            return Ok(());
        }
        let records = db::all(&self.inner.pool).await?;
        self.inner.engine.track(records.iter().map(|record| Target {
            id: record.id,
            provider: record.provider.clone(),
            name: record.name.clone(),
        }));
        let snapshot = Arc::new(Snapshot {
            records,
            fingerprint,
        });
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(snapshot);
        Ok(())
    }

    /// Polls for changes every `period` until `shutdown`.
    pub async fn run(self, period: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let failing = std::sync::atomic::AtomicBool::new(false);
        let failing = &failing;
        let inventory = &self;
        ops::periodic::every(period, shutdown, || async move {
            let result = inventory.refresh().await;
            let was_failing = failing.swap(result.is_err(), std::sync::atomic::Ordering::Relaxed);
            // Log the transitions, not every tick of an outage.
            match result {
                Ok(()) if was_failing => tracing::info!("inventory refresh works again"),
                Err(err) if !was_failing => {
                    tracing::warn!(error = %err, "cannot refresh the inventory; serving the last snapshot");
                }
                _ => {}
            }
        })
        .await;
    }
}
