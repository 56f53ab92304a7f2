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
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use wire::{Availability, Changes, Item};

/// One item as the portal holds it. Its texts are shared (by every version
/// that has the item unchanged, and a provider's by all its items): applying
/// a change copies counts, not texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub item: Item,
}

pub use wire::Version;

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
    /// The wrapping sum of the entries' digests (`version` is made of it).
    sum: u64,
    /// Live-update frames of this version, shared by fetches that found the same data.
    frames: Arc<Frames>,
}

#[derive(Debug, Default)]
struct Frames {
    /// The change from the version before, as one SSE frame; none when it
    /// touched more than [`MAX_DELTA_ROWS`] items.
    delta: Option<(Version, Bytes)>,
    /// Every item, built the first time a client needs it.
    snapshot: OnceLock<Bytes>,
    /// What every page of this version shows around its rows, counted once.
    summary: OnceLock<Summary>,
}

/// What a version's pages show besides their rows: counted once per version
/// (a pass over every item), not once per render.
#[derive(Debug, Default)]
pub struct Summary {
    pub counts: HashMap<Availability, usize>,
    /// Every provider, in order, once (the texts the entries hold).
    pub providers: Vec<Arc<str>>,
    /// Items whose value was never computed.
    pub pending: usize,
}

impl Summary {
    fn of(entries: &[Entry]) -> Self {
        let mut counts = HashMap::new();
        let mut providers = std::collections::BTreeSet::new();
        for entry in entries {
            *counts.entry(entry.item.availability).or_default() += 1;
            if !providers.contains(&*entry.item.provider) {
                providers.insert(Arc::clone(&entry.item.provider));
            }
        }
        Self {
            pending: counts.get(&Availability::Unknown).copied().unwrap_or(0),
            counts,
            providers: providers.into_iter().collect(),
        }
    }
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

/// A change touching more items than this is not kept as a frame of its
/// own: a client one version behind then gets the snapshot, as a client
/// further behind does, and it is made only if a client asks. A cold start
/// fills every value within seconds, and each refresh of it touched
/// thousands of items: at 100,000 items the frames held 15 MB at rest.
pub const MAX_DELTA_ROWS: usize = 1_000;

/// The change frame from `before` to `version`, if it is small enough to keep.
fn delta(
    before: Version,
    version: Version,
    counts: &HashMap<Availability, usize>,
    rows: &[&Item],
) -> Option<(Version, Bytes)> {
    (rows.len() <= MAX_DELTA_ROWS)
        .then(|| (before, update_frame(version, counts, rows.iter().copied())))
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
    let mut frame = format!("id: {version}\nevent: update\ndata: ").into_bytes();
    let head = frame.len();
    // Serializing plain strings and numbers cannot fail; an empty object is a harmless fallback.
    if serde_json::to_writer(&mut frame, &update).is_err() {
        frame.truncate(head);
        frame.extend_from_slice(b"{}");
    }
    frame.extend_from_slice(b"\n\n");
    // Held as long as its version is current: not with the slack of its growth.
    frame.shrink_to_fit();
    Bytes::from(frame)
}

impl Data {
    /// Counts, providers and pending values of this version, computed by the
    /// first page that needs them and shared by every fetch of the version.
    pub fn summary(&self) -> &Summary {
        self.frames
            .summary
            .get_or_init(|| Summary::of(&self.entries))
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
                        &self.summary().counts,
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

/// What one refresh did, a label of `portal_catalog_syncs_total` (a fixed set).
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct SyncLabels {
    kind: &'static str,
}

#[derive(Debug)]
struct CatalogMetrics {
    syncs: Family<SyncLabels, Counter>,
    items: Counter,
}

/// Removed ids remembered, so that a replica that has not yet seen a removal
/// cannot bring the item back (ids are never reused).
const MAX_TOMBSTONES: usize = 65_536;

/// What this portal remembers of each replica for the change feed.
#[derive(Debug, Default)]
struct Feed {
    /// The `ETag` (a version) each replica last handed to this portal: what
    /// to ask it `since`. Only replicas the resolver still knows are kept.
    cursors: HashMap<SocketAddr, String>,
    /// Replicas without the change feed (an older release): asked for the
    /// list with their own last `ETag` instead.
    without: HashSet<SocketAddr>,
    tombstones: HashSet<u64>,
    tombstone_order: VecDeque<u64>,
}

impl Feed {
    fn bury(&mut self, id: u64) {
        if self.tombstones.insert(id) {
            self.tombstone_order.push_back(id);
            while self.tombstone_order.len() > MAX_TOMBSTONES {
                if let Some(old) = self.tombstone_order.pop_front() {
                    self.tombstones.remove(&old);
                }
            }
        }
    }
}

/// What a replica answered: its list (first contact, or it could not tell
/// what changed) or what changed.
#[derive(Debug)]
enum Reply {
    List(Vec<Item>),
    Changes(Changes),
}

impl<'de> serde::Deserialize<'de> for Reply {
    /// An array is a list, an object a change: decided by the first token and
    /// parsed in one pass (serde's `untagged` would first copy the whole
    /// document into a tree of its own, megabytes at 100,000 items).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = Reply;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of items or a change")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Reply, A::Error> {
                serde::Deserialize::deserialize(SeqAccessDeserializer::new(seq)).map(Reply::List)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Reply, A::Error> {
                serde::Deserialize::deserialize(MapAccessDeserializer::new(map)).map(Reply::Changes)
            }
        }
        deserializer.deserialize_any(Shape)
    }
}

#[derive(Debug)]
struct Inner {
    upstream: Upstream,
    feed: std::sync::Mutex<Feed>,
    metrics: CatalogMetrics,
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
/// The change feed, followed by a version.
const CHANGES_PATH: &str = "/hardware/changes?since=";

/// Whether a page can be answered: there is data, or fetching it failed.
fn settled(view: View) -> bool {
    view.data.is_some() || view.failing_since.is_some()
}

impl Catalog {
    pub fn new(upstream: Upstream, registry: &mut Registry) -> Self {
        let (changes, _) = watch::channel(Signal::default());
        let metrics = CatalogMetrics {
            syncs: Family::default(),
            items: Counter::default(),
        };
        registry.register(
            "catalog_syncs",
            "Refreshes by what crossed: unchanged (304), changes (the feed), list (the whole inventory); unknown: the replica did not know the version held (a list follows)",
            metrics.syncs.clone(),
        );
        registry.register(
            "catalog_items_received",
            "Items received from hardware (a list counts all of its items, a change its changed ones)",
            metrics.items.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                upstream,
                feed: std::sync::Mutex::new(Feed::default()),
                metrics,
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

    fn feed(&self) -> std::sync::MutexGuard<'_, Feed> {
        self.inner
            .feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fetches once and installs the result (or records the failure).
    ///
    /// The replica picked (round-robin, as every call) is asked what changed
    /// since the version it last handed to this portal; a replica met for
    /// the first time, or one that cannot tell (`404`), is asked for its
    /// list, conditionally on the version held (`304` when it holds the same
    /// data). Changes are applied item by item: a value replaces the held
    /// one unless it was measured earlier (replicas learn values at different
    /// moments), and a removed id stays removed.
    pub async fn refresh(&self, request_id: &str) -> Result<(), UpstreamError> {
        let held = self.view().data;
        let (cursors, without) = {
            let known: HashSet<SocketAddr> = self.inner.upstream.known().into_iter().collect();
            let mut feed = self.feed();
            feed.cursors.retain(|addr, _| known.contains(addr));
            feed.without.retain(|addr| known.contains(addr));
            (feed.cursors.clone(), feed.without.clone())
        };
        let own_tag = held.as_ref().map(|data| data.version.etag());
        let list = |addr: SocketAddr| -> (String, Option<String>) {
            let tag = if without.contains(&addr) {
                cursors.get(&addr).cloned()
            } else {
                own_tag.clone()
            };
            (LIST_PATH.to_owned(), tag)
        };
        let request = |addr: SocketAddr| match cursors.get(&addr).and_then(|t| Version::parse(t)) {
            Some(since) if held.is_some() && !without.contains(&addr) => {
                (format!("{CHANGES_PATH}{since}"), None)
            }
            _ => list(addr),
        };
        let upstream = &self.inner.upstream;
        let asked_list;
        let result = match upstream.get_json_for::<Reply>(&request, request_id).await {
            Err(UpstreamError::Status { addr, status }) if status.is_client_error() => {
                // 404: it does not know the version (a restart, or too far
                // behind); 400/405: an older release without the feed (it
                // reads `changes` as an item id). Either way its list, at once.
                let unknown = status == reqwest::StatusCode::NOT_FOUND;
                {
                    let mut feed = self.feed();
                    feed.cursors.remove(&addr);
                    if !unknown {
                        feed.without.insert(addr);
                    }
                }
                if unknown {
                    self.count("unknown", 0);
                }
                asked_list = true;
                let (path, tag) = list(addr);
                upstream
                    .get_json_from::<Reply>(addr, &path, tag.as_deref(), request_id)
                    .await
            }
            other => {
                // Whatever came back, what was asked of that replica decides
                // what a `304` means.
                asked_list = other
                    .as_ref()
                    .is_ok_and(|answer| request(answer.addr).0.starts_with(LIST_PATH));
                other
            }
        };
        let answer = match result {
            Ok(answer) => answer,
            Err(err) => {
                let mut view = self.write_view();
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
                return Err(err);
            }
        };
        let fetch = 1 + self
            .inner
            .fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The new data is made without holding the view's lock (at 100,000
        // items a merge or a list takes milliseconds pages need not wait);
        // it is installed only on the data it was made from.
        if let Some(since) = self.write_view().failing_since.take() {
            tracing::info!(%since, "hardware answers again; data is fresh");
        }
        let current = self.view().data;
        let next = match answer.body {
            None => {
                // 304: nothing changed at that replica since what it last
                // handed out (a change request), or it holds exactly this
                // portal's data (a list request): only the fetch is new.
                self.count("unchanged", 0);
                let Some(held) = current
                    .clone()
                    .filter(|c| held.as_ref().is_some_and(|h| h.version == c.version))
                else {
                    // Another refresh installed other data meanwhile: this
                    // answer says nothing about it.
                    return Ok(());
                };
                // A list asked with this portal's version: that replica holds
                // exactly this data, and now has a cursor.
                if asked_list && let Some(tag) = answer.etag.clone().or(own_tag) {
                    self.feed().cursors.insert(answer.addr, tag);
                }
                Data {
                    entries: Arc::clone(&held.entries),
                    fetched_at: Utc::now(),
                    version: held.version,
                    fetch,
                    served_by: answer.served_by,
                    sum: held.sum,
                    frames: Arc::clone(&held.frames),
                }
            }
            Some(Reply::List(mut items)) => {
                self.count("list", items.len());
                share_providers(&mut items, current.as_deref());
                let mut feed = self.feed();
                if let Some(tag) = answer.etag.clone() {
                    feed.cursors.insert(answer.addr, tag);
                }
                let mut entries: Vec<Entry> = items
                    .into_iter()
                    .filter(|item| !feed.tombstones.contains(&item.id))
                    .map(|item| Entry { item })
                    .collect();
                drop(feed);
                // The parse grew it by doubling; it is held until the next change.
                entries.shrink_to_fit();
                let sum = entries
                    .iter()
                    .fold(0u64, |sum, e| sum.wrapping_add(e.item.digest()));
                let version = Version::from_sum(sum);
                let frames = match current.as_deref() {
                    Some(before) if before.version == version => Arc::clone(&before.frames),
                    before => {
                        let summary = Summary::of(&entries);
                        Arc::new(Frames {
                            delta: before.and_then(|before| {
                                delta_since(before, &entries, &summary.counts, version)
                            }),
                            snapshot: OnceLock::new(),
                            summary: OnceLock::from(summary),
                        })
                    }
                };
                Data {
                    entries: Arc::new(entries),
                    fetched_at: Utc::now(),
                    version,
                    fetch,
                    served_by: answer.served_by,
                    sum,
                    frames,
                }
            }
            Some(Reply::Changes(mut changes)) => {
                self.count("changes", changes.changed.len());
                let Some(before) = current.clone() else {
                    return Ok(());
                };
                share_providers(&mut changes.changed, Some(&before));
                let mut feed = self.feed();
                feed.cursors.insert(
                    answer.addr,
                    Version::parse(&changes.version).map_or(changes.version.clone(), Version::etag),
                );
                for id in &changes.removed {
                    feed.bury(*id);
                }
                let merged = apply(&before.entries, changes, &feed.tombstones);
                drop(feed);
                let sum = before
                    .sum
                    .wrapping_sub(merged.dropped)
                    .wrapping_add(merged.added);
                let version = Version::from_sum(sum);
                let frames = if version == before.version {
                    Arc::clone(&before.frames)
                } else {
                    let summary = Summary::of(&merged.entries);
                    let touched: Vec<&Item> = merged.touched.iter().collect();
                    Arc::new(Frames {
                        delta: delta(before.version, version, &summary.counts, &touched),
                        snapshot: OnceLock::new(),
                        summary: OnceLock::from(summary),
                    })
                };
                Data {
                    entries: Arc::new(merged.entries),
                    fetched_at: Utc::now(),
                    version,
                    fetch,
                    served_by: answer.served_by,
                    sum,
                    frames,
                }
            }
        };
        // What pages show around their rows, counted here (a no-op when the
        // frames above did) rather than by the first page render.
        next.summary();
        let signal = Signal {
            version: next.version,
            failing: false,
        };
        let mut view = self.write_view();
        let base = view.data.as_ref().map(Arc::as_ptr);
        if base != current.as_ref().map(Arc::as_ptr) {
            // Another refresh installed data meanwhile (only the first
            // visitors' fetch runs beside the loop): keep that one, and meet
            // this replica anew next time (what it just sent was not applied).
            drop(view);
            self.feed().cursors.remove(&answer.addr);
            return Ok(());
        }
        view.data = Some(Arc::new(next));
        drop(view);
        self.signal(signal);
        Ok(())
    }

    fn write_view(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.inner
            .view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, kind: &'static str, items: usize) {
        self.inner
            .metrics
            .syncs
            .get_or_create(&SyncLabels { kind })
            .inc();
        self.inner.metrics.items.inc_by(items as u64);
    }

    /// For a visitor arriving before any data: one attempt at a time, shared
    /// by every visitor waiting, each waiting at most `limit`. Once an attempt
    /// has failed (and until one succeeds) it returns at once.
    pub async fn ensure_loaded(&self, request_id: &str, limit: Duration) {
        // The common case, first and cheapest: there is data.
        if settled(self.view()) {
            return;
        }
        // Boxed: the fetch's future is large, and inline it would make every
        // page request's future (allocated per request) as large.
        Box::pin(self.first_fetch(request_id, limit)).await;
    }

    async fn first_fetch(&self, request_id: &str, limit: Duration) {
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

/// The change frame for the items of `now` that are new or show another
/// value than in `before` (both in id order), if it is small enough to keep.
fn delta_since(
    before: &Data,
    now: &[Entry],
    counts: &HashMap<Availability, usize>,
    version: Version,
) -> Option<(Version, Bytes)> {
    let mut old = before.entries.iter().map(|e| &e.item).peekable();
    let mut changed = Vec::new();
    for item in now.iter().map(|e| &e.item) {
        while old.next_if(|old| old.id < item.id).is_some() {}
        let same = old.peek().is_some_and(|old| {
            old.id == item.id
                && old.availability == item.availability
                && old.checked_at == item.checked_at
        });
        if !same {
            changed.push(item);
            if changed.len() > MAX_DELTA_ROWS {
                return None;
            }
        }
    }
    delta(before.version, version, counts, &changed)
}

/// Makes `items` hold one copy of each provider's text: the one `data`'s
/// entries hold, else the first item's that names it (a list or a change
/// parses every item's texts anew).
fn share_providers(items: &mut [Item], data: Option<&Data>) {
    let mut known: HashSet<Arc<str>> = data
        .map(|data| data.summary().providers.iter().cloned().collect())
        .unwrap_or_default();
    for item in items {
        match known.get(&*item.provider) {
            Some(shared) => item.provider = Arc::clone(shared),
            None => {
                known.insert(Arc::clone(&item.provider));
            }
        }
    }
}

/// The held entries with a change applied.
struct Merged {
    entries: Vec<Entry>,
    /// Items whose shown values now differ (for the live-update frame).
    touched: Vec<Item>,
    /// Digests of the entries replaced or removed, and of those put in.
    dropped: u64,
    added: u64,
}

/// Applies `changes` to `held` (both in id order): a changed item replaces
/// the held one, except that a value measured earlier than the held one does
/// not replace it (the names still do); removed and buried ids go.
fn apply(held: &[Entry], changes: Changes, tombstones: &HashSet<u64>) -> Merged {
    let mut changed = changes.changed;
    changed.sort_by_key(|item| item.id);
    changed.dedup_by_key(|item| item.id);
    let removed: HashSet<u64> = changes.removed.into_iter().collect();
    let mut merged = Merged {
        entries: Vec::with_capacity(held.len() + changed.len()),
        touched: Vec::new(),
        dropped: 0,
        added: 0,
    };
    let mut incoming = changed
        .into_iter()
        .filter(|item| !tombstones.contains(&item.id))
        .peekable();
    let put = |merged: &mut Merged, item: Item, old: Option<&Entry>| {
        let item = match old {
            Some(old) => {
                let mut item = item;
                if item.checked_at < old.item.checked_at {
                    item.availability = old.item.availability;
                    item.checked_at = old.item.checked_at;
                }
                if item == old.item {
                    merged.entries.push(old.clone());
                    return;
                }
                merged.dropped = merged.dropped.wrapping_add(old.item.digest());
                item
            }
            None => item,
        };
        merged.added = merged.added.wrapping_add(item.digest());
        merged.touched.push(item.clone());
        merged.entries.push(Entry { item });
    };
    for entry in held {
        while let Some(new) = incoming.next_if(|new| new.id < entry.item.id) {
            put(&mut merged, new, None);
        }
        if removed.contains(&entry.item.id) || tombstones.contains(&entry.item.id) {
            merged.dropped = merged.dropped.wrapping_add(entry.item.digest());
            // Skip any change of the same id too.
            while incoming.next_if(|new| new.id == entry.item.id).is_some() {}
            continue;
        }
        match incoming.next_if(|new| new.id == entry.item.id) {
            Some(new) => put(&mut merged, new, Some(entry)),
            None => merged.entries.push(entry.clone()),
        }
    }
    for new in incoming {
        put(&mut merged, new, None);
    }
    // Room was made for every change to be new; held until the next change.
    merged.entries.shrink_to_fit();
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u64, level: Availability) -> Item {
        Item {
            id,
            provider: "P".into(),
            name: format!("n{id}").into(),
            availability: level,
            checked_at: None,
        }
    }

    fn entries(items: Vec<Item>) -> Vec<Entry> {
        items.into_iter().map(|item| Entry { item }).collect()
    }

    fn data(items: Vec<Item>, before: Option<&Data>) -> Data {
        let version = Version::of(&items);
        let entries = entries(items);
        Data {
            frames: Arc::new(Frames {
                delta: before.and_then(|b| {
                    let counts = Summary::of(&entries).counts;
                    delta_since(b, &entries, &counts, version)
                }),
                snapshot: OnceLock::new(),
                summary: OnceLock::new(),
            }),
            sum: entries
                .iter()
                .fold(0, |sum: u64, e| sum.wrapping_add(e.item.digest())),
            entries: Arc::new(entries),
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
        let reversed: Vec<Item> = a.iter().rev().cloned().collect();
        assert_eq!(
            Version::of(&a),
            Version::of(&reversed),
            "a set: order aside"
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
        assert_eq!(
            Version::parse(&Version::of(&a).etag()),
            Some(Version::of(&a))
        );
        assert_eq!(Version::parse("0"), None);
        assert_eq!(Version::parse("0000000000000000"), None);
        assert_eq!(Version::parse("not a version!!!"), None);
    }

    fn at(seconds: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0)
    }

    fn measured(id: u64, level: Availability, seconds: i64) -> Item {
        Item {
            checked_at: at(seconds),
            ..item(id, level)
        }
    }

    #[test]
    fn a_change_is_applied_item_by_item_and_its_sum_is_the_new_version() {
        let held = data(
            vec![
                measured(1, Availability::Low, 10),
                measured(3, Availability::Low, 10),
                measured(5, Availability::Low, 10),
                measured(7, Availability::Low, 10),
            ],
            None,
        );
        let mut renamed = measured(7, Availability::Low, 10);
        renamed.name = "renamed".into();
        let changes = Changes {
            since: "x".into(),
            version: "y".into(),
            changed: vec![
                measured(4, Availability::High, 20),  // new
                measured(3, Availability::High, 20),  // newer value
                measured(1, Availability::Medium, 5), // older value: kept
                measured(9, Availability::High, 20),  // buried: not back
                renamed,                              // a new name
            ],
            removed: vec![5],
        };
        let tombstones: HashSet<u64> = [5, 9].into_iter().collect();
        let merged = apply(&held.entries, changes, &tombstones);
        let got: Vec<(u64, Availability, &str)> = merged
            .entries
            .iter()
            .map(|e| (e.item.id, e.item.availability, &*e.item.name))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Availability::Low, "n1"),
                (3, Availability::High, "n3"),
                (4, Availability::High, "n4"),
                (7, Availability::Low, "renamed"),
            ]
        );
        let items: Vec<Item> = merged.entries.iter().map(|e| e.item.clone()).collect();
        let sum = held
            .sum
            .wrapping_sub(merged.dropped)
            .wrapping_add(merged.added);
        assert_eq!(
            Version::from_sum(sum),
            Version::of(&items),
            "kept incrementally"
        );
        let touched: Vec<u64> = merged.touched.iter().map(|i| i.id).collect();
        assert_eq!(touched, vec![3, 4, 7], "what live pages are sent");
        assert!(
            Arc::ptr_eq(&merged.entries[0].item.name, &held.entries[0].item.name),
            "an unchanged item is shared, not copied"
        );
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
        let again = second
            .frame_since(Version::from_sum(12345))
            .expect("a snapshot");
        assert!(
            std::ptr::eq(
                again.as_ptr(),
                second.frame_since(Version::NONE).expect("x").as_ptr()
            ),
            "the snapshot is built once and shared"
        );
    }

    #[test]
    fn a_change_of_many_items_is_sent_as_the_snapshot_not_kept_twice() {
        let n = MAX_DELTA_ROWS as u64 + 1;
        let first = data(
            (1..=n).map(|id| item(id, Availability::Unknown)).collect(),
            None,
        );
        let second = data(
            (1..=n).map(|id| item(id, Availability::High)).collect(),
            Some(&first),
        );
        assert!(second.frames.delta.is_none(), "no frame of the change held");
        let behind = second.frame_since(first.version).expect("a frame");
        let snapshot = second.frame_since(Version::NONE).expect("a snapshot");
        assert!(
            std::ptr::eq(behind.as_ptr(), snapshot.as_ptr()),
            "one version behind gets the shared snapshot"
        );
        // One fewer changed item is kept as a change.
        let mut fewer: Vec<Item> = (1..=n).map(|id| item(id, Availability::High)).collect();
        fewer[0].availability = Availability::Unknown;
        let third = data(fewer, Some(&first));
        let (from, frame) = third.frames.delta.as_ref().expect("a change frame");
        assert_eq!(*from, first.version);
        assert!(!String::from_utf8_lossy(frame).contains("\"id\":1,"));
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
