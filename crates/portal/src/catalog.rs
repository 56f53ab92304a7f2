//! The portal's copy of the inventory: the last good answer from hardware.
//!
//! A background loop fetches the whole list every `REFRESH_INTERVAL` with
//! `wait=0`, so pages are rendered from memory and never wait on the hardware
//! tier. When a fetch fails the previous data stays (last-known-good) and the
//! page says since when it is stale. Visitors of a portal that has never
//! fetched anything share one attempt: while one is under way the others wait
//! for its outcome (bounded), and once an attempt has failed they get the
//! friendly 503 at once until one succeeds.
//!
//! Each [`Data`] carries a [`Version`] derived from the data itself (a hash of
//! every item), so every portal replica, and a portal after a restart, give
//! the same data the same version. The live-update frames for a version are
//! built once and shared by every stream: the change from the previous
//! version, and (on demand) a full snapshot for clients further behind.

use crate::upstream::{Upstream, UpstreamError};
use axum::body::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use wire::{Availability, Item};

/// One item as the portal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub item: Item,
}

/// What a set of items is, as a number: equal data, equal version, on every
/// replica and across restarts. `Version::NONE` is "nothing seen".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Version(u64);

impl Version {
    pub const NONE: Version = Version(0);

    /// FNV-1a over every field of every item, in order (stable across Rust
    /// releases and processes, unlike `std`'s hasher).
    pub fn of(items: &[Item]) -> Self {
        let mut hash = wire::Fnv1a::default();
        let mut feed = |bytes: &[u8]| hash.feed(bytes);
        for item in items {
            feed(&item.id.to_le_bytes());
            feed(item.provider.as_bytes());
            feed(&[0xff]);
            feed(item.name.as_bytes());
            feed(&[0xff]);
            feed(item.availability.as_str().as_bytes());
            let checked = item
                .checked_at
                .map_or(i64::MIN, |at| at.timestamp_nanos_opt().unwrap_or(i64::MAX));
            feed(&checked.to_le_bytes());
        }
        // 0 means "nothing seen"; no data may have it.
        Self(hash.finish().max(1))
    }

    /// Parses what [`fmt::Display`] writes; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        (text.len() == 16)
            .then(|| u64::from_str_radix(text, 16).ok())
            .flatten()
            .map(Self)
    }
}

impl fmt::Display for Version {
    /// 16 hex digits: a string in HTML, JSON and SSE ids, where a JavaScript
    /// number would lose the low bits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One successful fetch.
#[derive(Debug)]
pub struct Data {
    /// Shared by the fetches that found the same version (a `304` costs no copy).
    pub entries: Arc<Vec<Entry>>,
    pub fetched_at: DateTime<Utc>,
    pub version: Version,
    /// Successful fetches so far in this process (pages are cached per fetch).
    pub fetch: u64,
    /// The hardware replica that answered.
    pub served_by: String,
    /// The hardware's `ETag` of this version: sent back as `If-None-Match`,
    /// so an unchanged inventory costs a `304` and no body.
    pub etag: Option<String>,
    /// Live-update frames of this version, shared by fetches that found the same data.
    frames: Arc<Frames>,
}

#[derive(Debug, Default)]
struct Frames {
    /// The change from the version before, as one SSE frame.
    delta: Option<(Version, Bytes)>,
    /// Every item, built the first time a client needs it.
    snapshot: OnceLock<Bytes>,
}

#[derive(Debug, Serialize)]
struct RowUpdate {
    id: u64,
    level: &'static str,
    /// What the badge says (the page's JS shows it as is).
    badge: &'static str,
    class: &'static str,
    checked: String,
}

#[derive(Debug, Serialize)]
struct Update {
    version: String,
    counts: BTreeMap<&'static str, usize>,
    rows: Vec<RowUpdate>,
}

/// The CSS class of a level's badge.
pub fn level_class(level: Availability) -> &'static str {
    match level {
        Availability::High => "high",
        Availability::Medium => "medium",
        Availability::Low => "low",
        Availability::Unknown => "unknown",
    }
}

/// The words on an item's badge, on the page and in live updates; a value
/// never computed is "PENDING", as in the counts ("UNKNOWN" stays the API's
/// word and the filter's value).
pub fn badge_text(level: Availability) -> &'static str {
    match level {
        Availability::Unknown => "PENDING",
        known => known.as_str(),
    }
}

/// RFC 3339 in UTC with seconds, or "" for never.
pub fn iso(at: Option<DateTime<Utc>>) -> String {
    at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// One SSE `update` frame: these rows, the counts, the version as its id.
fn update_frame<'a>(
    version: Version,
    counts: &HashMap<Availability, usize>,
    rows: impl Iterator<Item = &'a Item>,
) -> Bytes {
    let update = Update {
        version: version.to_string(),
        // Every level, zeros included, so a count that drops to 0 is updated too.
        counts: Availability::ALL
            .into_iter()
            .map(|level| (level.as_str(), counts.get(&level).copied().unwrap_or(0)))
            .collect(),
        rows: rows
            .map(|item| RowUpdate {
                id: item.id,
                level: item.availability.as_str(),
                badge: badge_text(item.availability),
                class: level_class(item.availability),
                checked: iso(item.checked_at),
            })
            .collect(),
    };
    // Serializing plain strings and numbers cannot fail; an empty object is a harmless fallback.
    let json = serde_json::to_string(&update).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("id: {version}\nevent: update\ndata: {json}\n\n"))
}

impl Data {
    pub fn counts(&self) -> HashMap<Availability, usize> {
        let mut counts = HashMap::new();
        for entry in self.entries.iter() {
            *counts.entry(entry.item.availability).or_default() += 1;
        }
        counts
    }

    /// The frame that brings a client at `seen` to this version: the shared
    /// change when it is exactly one version behind, the shared snapshot when
    /// it is further behind or unknown, nothing when it is current.
    pub fn frame_since(&self, seen: Version) -> Option<Bytes> {
        if seen == self.version {
            return None;
        }
        if let Some((from, frame)) = &self.frames.delta
            && *from == seen
        {
            return Some(frame.clone());
        }
        Some(
            self.frames
                .snapshot
                .get_or_init(|| {
                    update_frame(
                        self.version,
                        &self.counts(),
                        self.entries.iter().map(|e| &e.item),
                    )
                })
                .clone(),
        )
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

/// What live streams wait on: the data version and whether fetches fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signal {
    pub version: Version,
    pub failing: bool,
}

#[derive(Debug)]
struct Inner {
    upstream: Upstream,
    view: RwLock<View>,
    changes: watch::Sender<Signal>,
    /// Held by the one visitor-triggered first fetch under way.
    first_fetch: Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
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
        let (changes, _) = watch::channel(Signal::default());
        Self {
            inner: Arc::new(Inner {
                upstream,
                view: RwLock::new(View::default()),
                changes,
                first_fetch: Mutex::new(()),
                fetches: std::sync::atomic::AtomicU64::new(0),
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

    /// A receiver that sees the version or the failing flag change (for live
    /// updates); it does not wake when a fetch finds the same data.
    pub fn subscribe(&self) -> watch::Receiver<Signal> {
        self.inner.changes.subscribe()
    }

    fn signal(&self, signal: Signal) {
        self.inner.changes.send_if_modified(|current| {
            let changed = *current != signal;
            *current = signal;
            changed
        });
    }

    /// Fetches once and installs the result (or records the failure).
    pub async fn refresh(&self, request_id: &str) -> Result<(), UpstreamError> {
        let sent = self.view().data.and_then(|data| data.etag.clone());
        let result = self
            .inner
            .upstream
            .get_json::<Vec<Item>>(LIST_PATH, sent.as_deref(), request_id)
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
                let fetch = 1 + self
                    .inner
                    .fetches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(items) = answer.body else {
                    // 304: the version whose tag was sent is current; only the
                    // fetch is new. Had another refresh installed other data
                    // meanwhile, this answer says nothing about it: keep it.
                    if let Some(held) = view.data.clone().filter(|held| held.etag == sent) {
                        view.data = Some(Arc::new(Data {
                            entries: Arc::clone(&held.entries),
                            fetched_at: Utc::now(),
                            version: held.version,
                            fetch,
                            served_by: answer.served_by,
                            etag: held.etag.clone(),
                            frames: Arc::clone(&held.frames),
                        }));
                        drop(view);
                        self.signal(Signal {
                            version: held.version,
                            failing: false,
                        });
                    }
                    return Ok(());
                };
                let version = Version::of(&items);
                let previous = view.data.clone();
                let frames = match previous.as_deref() {
                    Some(before) if before.version == version => Arc::clone(&before.frames),
                    before => Arc::new(Frames {
                        delta: before
                            .map(|before| (before.version, delta_frame(before, &items, version))),
                        snapshot: OnceLock::new(),
                    }),
                };
                view.data = Some(Arc::new(Data {
                    entries: Arc::new(items.into_iter().map(|item| Entry { item }).collect()),
                    fetched_at: Utc::now(),
                    version,
                    fetch,
                    served_by: answer.served_by,
                    etag: answer.etag,
                    frames,
                }));
                drop(view);
                self.signal(Signal {
                    version,
                    failing: false,
                });
                Ok(())
            }
            Err(err) => {
                if view.failing_since.is_none() {
                    tracing::warn!(error = %err, "cannot fetch from hardware; serving last-known-good data");
                    view.failing_since = Some(Utc::now());
                }
                let version = view.data.as_ref().map_or(Version::NONE, |d| d.version);
                drop(view);
                // Wake live streams so they can show the stale banner.
                self.signal(Signal {
                    version,
                    failing: true,
                });
                Err(err)
            }
        }
    }

    /// For a visitor arriving before any data: one attempt at a time, shared
    /// by every visitor waiting, each waiting at most `limit`. Once an attempt
    /// has failed (and until one succeeds) it returns at once.
    pub async fn ensure_loaded(&self, request_id: &str, limit: Duration) {
        let settled = |view: View| view.data.is_some() || view.failing_since.is_some();
        // The common case, first and cheapest: there is data.
        if settled(self.view()) {
            return;
        }
        let mut changes = self.subscribe();
        if settled(self.view()) {
            return;
        }
        let attempt = async {
            match self.inner.first_fetch.try_lock() {
                // Nobody is fetching: this visitor does, for everyone.
                Ok(_only_one) => {
                    if !settled(self.view()) {
                        let _ = self.refresh(request_id).await;
                    }
                }
                // Someone is: wait for the outcome of that attempt.
                Err(_) => {
                    let _ = changes.changed().await;
                }
            }
        };
        let _ = tokio::time::timeout(limit, attempt).await;
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

/// The frame with the items of `now` that are new or differ from `before`.
fn delta_frame(before: &Data, now: &[Item], version: Version) -> Bytes {
    let old: HashMap<u64, &Item> = before
        .entries
        .iter()
        .map(|e| (e.item.id, &e.item))
        .collect();
    let mut counts = HashMap::new();
    for item in now {
        *counts.entry(item.availability).or_default() += 1;
    }
    let changed = now.iter().filter(|item| {
        old.get(&item.id).is_none_or(|old| {
            old.availability != item.availability || old.checked_at != item.checked_at
        })
    });
    update_frame(version, &counts, changed)
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

    fn data(items: Vec<Item>, before: Option<&Data>) -> Data {
        let version = Version::of(&items);
        Data {
            frames: Arc::new(Frames {
                delta: before.map(|b| (b.version, delta_frame(b, &items, version))),
                snapshot: OnceLock::new(),
            }),
            entries: Arc::new(items.into_iter().map(|item| Entry { item }).collect()),
            etag: None,
            fetched_at: Utc::now(),
            version,
            fetch: 1,
            served_by: "a".into(),
        }
    }

    #[test]
    fn the_version_is_the_data() {
        let a = vec![item(1, Availability::Unknown), item(2, Availability::Low)];
        assert_eq!(
            Version::of(&a),
            Version::of(&a.clone()),
            "same data, same version"
        );
        let mut b = a.clone();
        b[0].availability = Availability::High;
        assert_ne!(Version::of(&a), Version::of(&b));
        let mut c = a.clone();
        c[1].name = "other".into();
        assert_ne!(Version::of(&a), Version::of(&c));
        assert_ne!(Version::of(&[]), Version::NONE);
        let shown = Version::of(&a).to_string();
        assert_eq!(shown.len(), 16);
        assert_eq!(Version::parse(&shown), Some(Version::of(&a)));
        assert_eq!(Version::parse("0"), None);
        assert_eq!(Version::parse("not a version!!!"), None);
    }

    #[test]
    fn one_version_behind_gets_the_change_others_the_snapshot() {
        let first = data(
            vec![item(1, Availability::Unknown), item(2, Availability::Low)],
            None,
        );
        let second = data(
            vec![item(1, Availability::High), item(2, Availability::Low)],
            Some(&first),
        );
        assert!(second.frame_since(second.version).is_none(), "current");
        let delta = second.frame_since(first.version).expect("a change");
        let delta = String::from_utf8_lossy(&delta);
        assert!(delta.contains("\"id\":1"), "{delta}");
        assert!(
            !delta.contains("\"id\":2"),
            "unchanged rows are not sent: {delta}"
        );
        assert!(delta.starts_with(&format!("id: {}\n", second.version)));
        let snapshot = second.frame_since(Version::NONE).expect("a snapshot");
        let snapshot = String::from_utf8_lossy(&snapshot);
        assert!(snapshot.contains("\"id\":1") && snapshot.contains("\"id\":2"));
        let again = second.frame_since(Version(12345)).expect("a snapshot");
        assert!(
            std::ptr::eq(
                again.as_ptr(),
                second.frame_since(Version::NONE).expect("x").as_ptr()
            ),
            "the snapshot is built once and shared"
        );
    }

    #[test]
    fn a_view_is_stale_when_failing_or_old() {
        let now = Utc::now();
        let mut old = data(Vec::new(), None);
        old.fetched_at = now - chrono::Duration::seconds(10);
        let data = Arc::new(old);
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
