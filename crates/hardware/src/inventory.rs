//! The inventory as this replica last read it from the database.
//!
//! Requests read the in-memory [`Snapshot`] and never touch the database, so
//! reads stay fast and keep working while the database is away. A background
//! loop polls a [`db::Fingerprint`] every `INVENTORY_REFRESH` and re-reads the
//! rows only when it changed; writes through this replica refresh at once, so
//! a client reads its own writes. Each new snapshot is handed to the engine,
//! which starts tracking added items and forgets deleted ones.
//!
//! No lock is held while the database is asked: refreshes run side by side,
//! each bounded in time (see [`crate::db::Database`]), and only the install
//! of a result is serialized. Each refresh takes a ticket before it reads; a
//! result is installed only if no refresh with a later ticket was installed
//! already, so an older read never replaces a newer one, and a write's own
//! refresh (ticket taken after its commit) is never undone by a slower,
//! earlier poll. A silent database therefore delays nobody but the refresh
//! that is talking to it.

use crate::db::{Database, Fingerprint, Record};
use crate::engine::{Engine, Target};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

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
    db: Database,
    engine: Engine,
    current: RwLock<Option<Arc<Snapshot>>>,
    /// The last ticket handed to a refresh.
    tickets: AtomicU64,
    /// The ticket of the installed snapshot; held only while installing (no I/O).
    installed: Mutex<u64>,
}

/// Handle to the inventory; cheap to clone.
#[derive(Debug, Clone)]
pub struct Inventory {
    inner: Arc<Inner>,
}

impl Inventory {
    pub fn new(db: Database, engine: Engine) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                engine,
                current: RwLock::new(None),
                tickets: AtomicU64::new(0),
                installed: Mutex::new(0),
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

    /// Re-reads the rows if the table changed since the last read. Returns
    /// once this replica serves data at least as new as the database was when
    /// the call began (or with the error that prevented it).
    pub async fn refresh(&self) -> sqlx::Result<()> {
        let ticket = self.inner.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let fingerprint = self.inner.db.fingerprint().await?;
        if self
            .snapshot()
            .is_some_and(|current| current.fingerprint == fingerprint)
        {
            return Ok(());
        }
        let records = self.inner.db.all().await?;
        let mut installed = self
            .inner
            .installed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *installed > ticket {
            // A refresh that began later has installed newer data already.
            return Ok(());
        }
        *installed = ticket;
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
