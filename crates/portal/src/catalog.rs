//! The portal's copy of the inventory: the last good answer from hardware.
//!
//! A background loop fetches the whole list every `REFRESH_INTERVAL` with
//! `wait=0`, so pages are rendered from memory and never wait on the hardware
//! tier. When a fetch fails the previous data stays (last-known-good) and the
//! page says since when it is stale. Only a portal that has never fetched
//! anything fetches on a visitor's request, once for all concurrent visitors,
//! bounded by the upstream timeout.
//!
//! Each [`Data`] carries a version, and each item the version in which it last
//! changed, so the live-update stream can send just what changed.

use crate::upstream::{Upstream, UpstreamError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use wire::{Availability, Item};

/// One item as the portal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub item: Item,
    /// The [`Data::version`] in which this item's availability last changed.
    pub changed_in: u64,
}

/// One successful fetch.
#[derive(Debug)]
pub struct Data {
    pub entries: Vec<Entry>,
    pub fetched_at: DateTime<Utc>,
    pub version: u64,
    /// The hardware replica that answered.
    pub served_by: String,
}

impl Data {
    pub fn counts(&self) -> HashMap<Availability, usize> {
        let mut counts = HashMap::new();
        for entry in &self.entries {
            *counts.entry(entry.item.availability).or_default() += 1;
        }
        counts
    }
}

/// What the catalog knows right now.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub data: Option<Arc<Data>>,
    /// Set while fetches fail: when the first of the current run failed.
    pub failing_since: Option<DateTime<Utc>>,
}

impl View {
    /// Whether the data should be flagged as stale: fetches are failing, or
    /// the last success is older than `stale_after`.
    pub fn is_stale(&self, stale_after: Duration, now: DateTime<Utc>) -> bool {
        let too_old = self.data.as_ref().is_some_and(|data| {
            (now - data.fetched_at)
                .to_std()
                .is_ok_and(|age| age > stale_after)
        });
        self.failing_since.is_some() || too_old
    }
}

#[derive(Debug)]
struct Inner {
    upstream: Upstream,
    view: RwLock<View>,
    changes: watch::Sender<u64>,
    first_fetch: Mutex<()>,
}

/// Handle to the catalog; cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

/// The list request: everything, never waiting for values being computed.
const LIST_PATH: &str = "/hardware/?wait=0";

impl Catalog {
    pub fn new(upstream: Upstream) -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                upstream,
                view: RwLock::new(View::default()),
                changes,
                first_fetch: Mutex::new(()),
            }),
        }
    }

    pub fn view(&self) -> View {
        self.inner
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A receiver that sees the data version move (for live updates).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Fetches once and installs the result (or records the failure).
    pub async fn refresh(&self, request_id: &str) -> Result<(), UpstreamError> {
        let result = self
            .inner
            .upstream
            .get_json::<Vec<Item>>(LIST_PATH, request_id)
            .await;
        let mut view = self
            .inner
            .view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(answer) => {
                if let Some(since) = view.failing_since.take() {
                    tracing::info!(%since, "hardware answers again; data is fresh");
                }
                let previous = view.data.clone();
                let version = previous.as_ref().map_or(1, |d| d.version + 1);
                let entries = merge(previous.as_deref(), answer.body, version);
                view.data = Some(Arc::new(Data {
                    entries,
                    fetched_at: Utc::now(),
                    version,
                    served_by: answer.served_by,
                }));
                drop(view);
                self.inner.changes.send_replace(version);
                Ok(())
            }
            Err(err) => {
                if view.failing_since.is_none() {
                    tracing::warn!(error = %err, "cannot fetch from hardware; serving last-known-good data");
                    view.failing_since = Some(Utc::now());
                }
                let version = view.data.as_ref().map_or(0, |d| d.version);
                drop(view);
                // Wake live streams so they can show the stale banner.
                self.inner.changes.send_replace(version);
                Err(err)
            }
        }
    }

    /// For a visitor arriving before any data: one fetch for all of them.
    pub async fn ensure_loaded(&self, request_id: &str) {
        if self.view().data.is_some() {
            return;
        }
        let _only_one = self.inner.first_fetch.lock().await;
        if self.view().data.is_none() {
            let _ = self.refresh(request_id).await;
        }
    }

    /// Refreshes every `period` until `shutdown`.
    pub async fn run(self, period: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let catalog = &self;
        ops::periodic::every(period, shutdown, || async move {
            let id = format!("portal-refresh-{}", uuid::Uuid::new_v4());
            let _ = catalog.refresh(&id).await;
        })
        .await;
    }
}

/// Builds the new entries, keeping `changed_in` for items whose availability
/// is unchanged, so live streams send only real changes.
fn merge(previous: Option<&Data>, items: Vec<Item>, version: u64) -> Vec<Entry> {
    let before: HashMap<u64, &Entry> = previous
        .map(|data| data.entries.iter().map(|e| (e.item.id, e)).collect())
        .unwrap_or_default();
    items
        .into_iter()
        .map(|item| {
            let changed_in = match before.get(&item.id) {
                Some(old)
                    if old.item.availability == item.availability
                        && old.item.checked_at == item.checked_at =>
                {
                    old.changed_in
                }
                _ => version,
            };
            Entry { item, changed_in }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u64, level: Availability) -> Item {
        Item {
            id,
            provider: "P".into(),
            name: format!("n{id}"),
            availability: level,
            checked_at: None,
        }
    }

    #[test]
    fn merge_keeps_the_version_of_unchanged_items() {
        let first = Data {
            entries: merge(
                None,
                vec![item(1, Availability::Unknown), item(2, Availability::Low)],
                1,
            ),
            fetched_at: Utc::now(),
            version: 1,
            served_by: "a".into(),
        };
        let second = merge(
            Some(&first),
            vec![item(1, Availability::High), item(2, Availability::Low)],
            2,
        );
        assert_eq!(second[0].changed_in, 2, "changed");
        assert_eq!(second[1].changed_in, 1, "unchanged");
    }

    #[test]
    fn a_view_is_stale_when_failing_or_old() {
        let now = Utc::now();
        let data = Arc::new(Data {
            entries: Vec::new(),
            fetched_at: now - chrono::Duration::seconds(10),
            version: 1,
            served_by: "a".into(),
        });
        let old = View {
            data: Some(Arc::clone(&data)),
            failing_since: None,
        };
        assert!(old.is_stale(Duration::from_secs(5), now));
        assert!(!old.is_stale(Duration::from_secs(60), now));
        let failing = View {
            data: Some(data),
            failing_since: Some(now),
        };
        assert!(failing.is_stale(Duration::from_secs(60), now));
    }
}
