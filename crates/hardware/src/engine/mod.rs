//! The availability engine: keeps the slow probe off the request path.
//!
//! # How it works
//! The engine holds one [`Slot`] per tracked item: the last [`Reading`] and when
//! the probe that produced it started. A single scheduler task ([`Engine::run`])
//! is the only place probes start, which gives the guarantees below without any
//! per-request coordination:
//!
//! - **singleflight**: a slot is either queued or in flight, never both, so
//!   however many requests ask, an item has at most one probe running;
//! - **bounded concurrency**: at most `concurrency` probes run at once, all
//!   polled by the scheduler task itself (no task per row per request);
//! - **once per TTL**: an item's next probe starts `ttl` after its previous one
//!   started, so a value is replaced about `probe time` before it turns stale
//!   and each item costs one probe per TTL;
//! - **stale-while-revalidate**: requests read whatever value is cached, never
//!   waiting; a failed or slow probe keeps the old value;
//! - **warm-up**: newly tracked items are due at once;
//! - **inventory changes**: [`Engine::track`] adds and removes slots.
//!
//! Requests that *want* to wait for never-computed values (the list endpoint's
//! `wait`) use [`Engine::wait_for`], which sleeps on a change counter.

pub mod probe;
pub mod shared;
#[cfg(any(test, feature = "test-util"))]
mod test_probes;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use wire::{Availability, Item, Version};

pub use probe::{Probe, ProbeError, SimulatedProbe, Target};
pub use shared::{Loaded, RedisCache, SharedCache, SharedReading};
#[cfg(any(test, feature = "test-util"))]
pub use test_probes::{CountingProbe, FailingProbe, Gate, GatedProbe};

/// A computed availability value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub level: Availability,
    pub checked_at: DateTime<Utc>,
}

/// Engine tuning, from the service settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// How long a value is fresh: each item is probed once per `ttl`.
    pub ttl: Duration,
    /// A probe taking longer counts as failed.
    pub probe_timeout: Duration,
    /// Most probes in flight at once.
    pub concurrency: usize,
}

impl EngineSettings {
    /// After a failed probe, retry sooner than a full TTL but not in a hot loop.
    fn retry_after(&self) -> Duration {
        (self.ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// When another replica holds an item's lease, look again this soon.
    fn busy_retry(&self) -> Duration {
        (self.ttl / 20).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// How long a lease is held: a prober that dies loses it after this.
    fn lease(&self) -> Duration {
        self.probe_timeout + Duration::from_secs(1)
    }

    /// Whether a value read from the shared cache could have been written by
    /// a replica: a probe that started in the future (beyond the clock skew
    /// tolerated between replicas) would be adopted forever, a measurement
    /// before its probe began or later than the probe's time limit after it
    /// is no probe's, and UNKNOWN is never stored.
    fn plausible(&self, reading: &SharedReading, now: DateTime<Utc>) -> Result<(), &'static str> {
        let skew = chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
        let longest = chrono::Duration::from_std(self.probe_timeout).unwrap_or_default();
        if reading.started_at > now + skew || reading.checked_at > now + skew {
            Err("from the future")
        } else if reading.checked_at < reading.started_at
            || reading.checked_at > reading.started_at + longest + skew
        {
            Err("inconsistent timestamps")
        } else if reading.level == Availability::Unknown {
            Err("no level")
        } else {
            Ok(())
        }
    }
}

/// How far replicas' clocks may disagree (NTP keeps them far closer).
const CLOCK_SKEW: Duration = Duration::from_secs(2);

/// How one scheduled check of an item ended.
#[derive(Debug)]
enum Outcome {
    /// This replica ran the probe (the level and when it was measured).
    Probed(Result<(Availability, DateTime<Utc>), ProbeError>),
    /// Another replica probed within this TTL window; its value is taken over.
    Adopted(SharedReading),
    /// Another replica is probing right now.
    Busy,
}

#[derive(Debug)]
struct Slot {
    /// Its texts are the inventory snapshot's own (shared, not copied).
    target: Target,
    reading: Option<Reading>,
    /// When this slot is due, while queued; `None` while its probe is in flight.
    due: Option<Instant>,
    /// The change (`State::seq`) that last altered what this item shows.
    changed: u64,
}

impl Slot {
    /// What this item adds to the version (see [`wire::Version`]).
    fn digest(&self) -> u64 {
        wire::digest(
            self.target.id,
            &self.target.provider,
            &self.target.name,
            self.reading.map_or(Availability::Unknown, |r| r.level),
            self.reading.map(|r| r.checked_at),
        )
    }

    fn item(&self) -> Item {
        item(&self.target, self.reading)
    }
}

/// An item as listed: its target's fields and its value, if any.
pub fn item(target: &Target, reading: Option<Reading>) -> Item {
    Item {
        id: target.id,
        provider: target.provider.clone(),
        name: target.name.clone(),
        availability: reading.map_or(Availability::Unknown, |r| r.level),
        checked_at: reading.map(|r| r.checked_at),
    }
}

/// Removals remembered for the change feed; a client further behind gets the
/// whole list instead.
const MAX_REMOVED: usize = 65_536;
/// Versions remembered for the change feed (16 bytes each).
const MAX_MARKS: usize = 4_096;

#[derive(Debug, Default)]
struct State {
    /// In id order (a lookup is a binary search; lists and changes come out
    /// sorted): about 80 bytes an item, where a hash map took twice that.
    slots: Vec<Slot>,
    /// Queued slots by due time. Every queued slot has exactly one entry here,
    /// `(slot.due, id)`; removed slots leave none.
    queue: BTreeSet<(Instant, u64)>,
    /// Tracked slots that never got a value: when 0, nobody has to wait and
    /// `wait_for` answers without looking at every id.
    never_computed: usize,
    /// Numbers every change of what the items show (one per `track` that
    /// altered something, one per value that landed and differs).
    seq: u64,
    /// The wrapping sum of every slot's digest: the data's [`Version`].
    sum: u64,
    /// `(seq, id)` of removed items, oldest first, at most `MAX_REMOVED`.
    removed: VecDeque<(u64, u64)>,
    /// Removals at or before this change were forgotten.
    forgotten: u64,
    /// Versions this replica handed out, with the change they were current
    /// at, oldest first, at most `MAX_MARKS`: the `since` it can answer.
    marks: VecDeque<(Version, u64)>,
}

/// What [`Engine::changes_since`] found.
#[derive(Debug)]
pub enum Since {
    /// `since` is the current version: nothing changed.
    Current,
    /// What changed: items as they are now (id order), removed ids (ascending).
    Changed {
        version: Version,
        changed: Vec<Item>,
        removed: Vec<u64>,
    },
    /// This replica never handed out `since`, or forgot what came after it.
    Unknown,
}

impl State {
    fn slot(&self, id: u64) -> Option<&Slot> {
        self.slots
            .binary_search_by_key(&id, |slot| slot.target.id)
            .ok()
            .and_then(|index| self.slots.get(index))
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        self.slots
            .binary_search_by_key(&id, |slot| slot.target.id)
            .ok()
            .and_then(|index| self.slots.get_mut(index))
    }

    /// Forgets a slot that is no longer tracked, as part of change `seq`.
    fn drop_slot(&mut self, slot: &Slot, seq: u64) {
        if let Some(due) = slot.due {
            self.queue.remove(&(due, slot.target.id));
        }
        self.sum = self.sum.wrapping_sub(slot.digest());
        self.removed.push_back((seq, slot.target.id));
    }

    fn enqueue(&mut self, id: u64, due: Instant) {
        if let Some(slot) = self.slot_mut(id) {
            if let Some(previous) = slot.due.replace(due) {
                self.queue.remove(&(previous, id));
            }
            self.queue.insert((due, id));
        }
    }

    /// Takes up to `limit` due slots out of the queue, marking them in flight.
    fn take_due(&mut self, now: Instant, limit: usize) -> Vec<Target> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some(&(due, id)) = self.queue.first() else {
                break;
            };
            if due > now {
                break;
            }
            self.queue.pop_first();
            if let Some(slot) = self.slot_mut(id) {
                slot.due = None;
                taken.push(slot.target.clone());
            }
        }
        taken
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.first().map(|&(due, _)| due)
    }

    fn version(&self) -> Version {
        Version::from_sum(self.sum)
    }

    /// The current version, remembered as handed out at the current change.
    fn mark(&mut self) -> Version {
        let version = self.version();
        let seq = self.seq;
        if self.marks.back() != Some(&(version, seq)) {
            self.marks.retain(|&(v, _)| v != version);
            self.marks.push_back((version, seq));
            while self.marks.len() > MAX_MARKS {
                self.marks.pop_front();
            }
        }
        version
    }

    fn forget_removed_beyond_bound(&mut self) {
        while self.removed.len() > MAX_REMOVED {
            if let Some((seq, _)) = self.removed.pop_front() {
                self.forgotten = seq;
            }
        }
    }
}

/// The one label of the outcome counters (a fixed set of values).
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone)]
struct EngineMetrics {
    probes: Family<OutcomeLabels, Counter>,
    shared: Family<OutcomeLabels, Counter>,
    in_flight: Gauge,
    tracked: Gauge,
}

impl EngineMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            probes: Family::default(),
            shared: Family::default(),
            in_flight: Gauge::default(),
            tracked: Gauge::default(),
        };
        registry.register(
            "availability_probes",
            "Availability probes finished, by outcome",
            metrics.probes.clone(),
        );
        registry.register(
            "availability_shared",
            "Shared-cache decisions: adopted (another replica probed), busy (it is probing), unavailable (worked alone), rejected (a value no replica could have written: ignored), store_failed (the probe's value kept here only)",
            metrics.shared.clone(),
        );
        registry.register(
            "availability_probes_in_flight",
            "Availability probes running now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "availability_items_tracked",
            "Items whose availability the engine keeps fresh",
            metrics.tracked.clone(),
        );
        metrics
    }

    fn finished(&self, outcome: &'static str) {
        self.probes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    fn shared(&self, outcome: &'static str) {
        self.shared.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

struct Inner {
    probe: Arc<dyn Probe>,
    shared: Option<Arc<dyn SharedCache>>,
    /// Whether the shared cache failed last time (to log transitions only).
    shared_down: std::sync::atomic::AtomicBool,
    /// Whether a rejected shared value was logged already (the rest are counted).
    rejected_seen: std::sync::atomic::AtomicBool,
    settings: EngineSettings,
    state: Mutex<State>,
    /// Bumped whenever a value lands; `wait_for` sleeps on it.
    landed: watch::Sender<u64>,
    /// Wakes the scheduler when new items are tracked.
    wake: Notify,
    metrics: EngineMetrics,
}

/// Handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Creates an engine; nothing is probed until [`Engine::run`] is polled.
    pub fn new(probe: Arc<dyn Probe>, settings: EngineSettings, registry: &mut Registry) -> Self {
        Self::with_shared_cache(probe, None, settings, registry)
    }

    /// An engine that coordinates with other replicas through `shared`.
    pub fn with_shared_cache(
        probe: Arc<dyn Probe>,
        shared: Option<Arc<dyn SharedCache>>,
        settings: EngineSettings,
        registry: &mut Registry,
    ) -> Self {
        let (landed, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                probe,
                shared,
                shared_down: std::sync::atomic::AtomicBool::new(false),
                rejected_seen: std::sync::atomic::AtomicBool::new(false),
                settings,
                state: Mutex::new(State::default()),
                landed,
                wake: Notify::new(),
                metrics: EngineMetrics::register(registry),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps inconsistent in a
        // way readers care about (each mutation is a single insert/remove), so a
        // poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes `targets` the set of tracked items: new ones are queued for an
    /// immediate probe, vanished ones are dropped, renamed ones keep their value.
    pub fn track(&self, targets: impl IntoIterator<Item = Target>) {
        let now = Instant::now();
        let mut targets: Vec<Target> = targets.into_iter().collect();
        targets.sort_by_key(|target| target.id);
        targets.dedup_by_key(|target| target.id);
        let mut added = false;
        {
            let mut state = self.state();
            // Every alteration of this call is one change.
            let seq = state.seq + 1;
            let mut altered = false;
            let mut old = std::mem::take(&mut state.slots).into_iter().peekable();
            let mut kept = Vec::with_capacity(targets.len());
            for target in targets {
                // Slots before this id were not in `targets`: they go.
                while let Some(gone) = old.next_if(|slot| slot.target.id < target.id) {
                    state.drop_slot(&gone, seq);
                    altered = true;
                }
                match old.next_if(|slot| slot.target.id == target.id) {
                    Some(mut slot) => {
                        if slot.target == target {
                            // Same texts: hold the new snapshot's, not a second copy.
                            slot.target = target;
                        } else {
                            state.sum = state.sum.wrapping_sub(slot.digest());
                            slot.target = target;
                            slot.changed = seq;
                            state.sum = state.sum.wrapping_add(slot.digest());
                            altered = true;
                        }
                        kept.push(slot);
                    }
                    None => {
                        added = true;
                        altered = true;
                        let slot = Slot {
                            target,
                            reading: None,
                            due: Some(now),
                            changed: seq,
                        };
                        state.sum = state.sum.wrapping_add(slot.digest());
                        state.queue.insert((now, slot.target.id));
                        kept.push(slot);
                    }
                }
            }
            for gone in old {
                state.drop_slot(&gone, seq);
                altered = true;
            }
            state.forget_removed_beyond_bound();
            if altered {
                state.seq = seq;
            }
            state.never_computed = kept.iter().filter(|slot| slot.reading.is_none()).count();
            state.slots = kept;
            self.inner
                .metrics
                .tracked
                .set(gauge_value(state.slots.len()));
        }
        if added {
            self.inner.wake.notify_one();
        }
    }

    /// The cached value of `id`, if one was ever computed.
    pub fn reading(&self, id: u64) -> Option<Reading> {
        self.state().slot(id).and_then(|slot| slot.reading)
    }

    /// The cached values of `ids`, in order, under one lock.
    pub fn readings(&self, ids: impl IntoIterator<Item = u64>) -> Vec<Option<Reading>> {
        let state = self.state();
        ids.into_iter()
            .map(|id| state.slot(id).and_then(|slot| slot.reading))
            .collect()
    }

    /// The number of the last change of what the items show: equal numbers,
    /// equal items (for caches of this replica's renderings).
    pub fn change(&self) -> u64 {
        self.state().seq
    }

    /// Every tracked item in id order, with the version they make and the
    /// change they were current at (remembered, so `since` it can be answered).
    pub fn everything(&self) -> (Version, u64, Vec<Item>) {
        let mut state = self.state();
        let version = state.mark();
        // Items share the slots' texts: this copies counts, not strings.
        let items = state.slots.iter().map(Slot::item).collect();
        (version, state.seq, items)
    }

    /// What changed since this replica handed out `since`.
    pub fn changes_since(&self, since: Version) -> Since {
        let mut state = self.state();
        if since == state.version() {
            state.mark();
            return Since::Current;
        }
        let Some(&(_, from)) = state.marks.iter().rev().find(|(v, _)| *v == since) else {
            return Since::Unknown;
        };
        if from < state.forgotten {
            return Since::Unknown;
        }
        let version = state.mark();
        let changed: Vec<Item> = state
            .slots
            .iter()
            .filter(|slot| slot.changed > from)
            .map(Slot::item)
            .collect();
        let mut removed: Vec<u64> = state
            .removed
            .iter()
            .rev()
            .take_while(|&&(seq, _)| seq > from)
            .map(|&(_, id)| id)
            .filter(|&id| state.slot(id).is_none())
            .collect();
        drop(state);
        removed.sort_unstable();
        removed.dedup();
        Since::Changed {
            version,
            changed,
            removed,
        }
    }

    /// Whether some tracked item has never had a value.
    pub fn has_never_computed(&self) -> bool {
        self.state().never_computed > 0
    }

    /// A counter that changes whenever any value lands (for caches built on readings).
    pub fn version(&self) -> u64 {
        *self.inner.landed.borrow()
    }

    /// Waits until every tracked id in `ids` has a value, or `limit` passes.
    /// Untracked ids are not waited for (they would never get a value).
    pub async fn wait_for(&self, ids: &[u64], limit: Duration) {
        if limit.is_zero() {
            return;
        }
        let deadline = Instant::now() + limit;
        let mut landed = self.inner.landed.subscribe();
        loop {
            let missing = {
                let state = self.state();
                state.never_computed > 0
                    && ids
                        .iter()
                        .any(|id| state.slot(*id).is_some_and(|slot| slot.reading.is_none()))
            };
            if !missing {
                return;
            }
            match tokio::time::timeout_at(deadline, landed.changed()).await {
                Ok(Ok(())) => {}
                // Deadline passed, or the engine is gone: answer with what there is.
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// The scheduler: starts due probes, records their results, until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let settings = self.inner.settings;
        let mut in_flight = FuturesUnordered::new();
        tokio::pin!(shutdown);
        loop {
            let capacity = settings.concurrency.saturating_sub(in_flight.len());
            let (started, next_due) = {
                let mut state = self.state();
                let started = state.take_due(Instant::now(), capacity);
                (started, state.next_due())
            };
            for target in started {
                in_flight.push(self.probe_once(target));
            }
            self.inner
                .metrics
                .in_flight
                .set(gauge_value(in_flight.len()));
            // Sleep until the next due slot, but only if there is room to start it.
            let wake_at = next_due
                .filter(|_| in_flight.len() < settings.concurrency)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                () = &mut shutdown => return,
                Some((target, started, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.record(&target, started, outcome);
                }
                () = tokio::time::sleep_until(wake_at) => {}
                () = self.inner.wake.notified() => {}
            }
        }
    }

    fn probe_once(
        &self,
        target: Target,
    ) -> impl std::future::Future<Output = (Target, Instant, Outcome)> + use<> {
        let engine = self.clone();
        async move {
            let started = Instant::now();
            let outcome = engine.check(&target).await;
            (target, started, outcome)
        }
    }

    /// One scheduled check: through the shared cache when there is one.
    async fn check(&self, target: &Target) -> Outcome {
        let Some(shared) = self.inner.shared.clone() else {
            return Outcome::Probed(self.probe(target).await);
        };
        let settings = self.inner.settings;
        let started_at = Utc::now();
        let coordinated = async {
            let loaded = shared.load(target.id).await?;
            if let Some(reading) = self.fresh(target.id, loaded, started_at, true) {
                return Ok(Some(Outcome::Adopted(reading)));
            }
            if !shared.try_lease(target.id, settings.lease()).await? {
                return Ok(Some(Outcome::Busy));
            }
            // Another replica may have stored its value and released the
            // lease between our load and our lease: look once more, or the
            // item would be probed twice in one window.
            let loaded = shared.load(target.id).await?;
            if let Some(reading) = self.fresh(target.id, loaded, started_at, false) {
                shared.release(target.id).await?;
                return Ok(Some(Outcome::Adopted(reading)));
            }
            Ok::<_, shared::SharedError>(None)
        };
        let leased = match coordinated.await {
            Ok(Some(outcome)) => {
                self.shared_up();
                return outcome;
            }
            Ok(None) => {
                self.shared_up();
                true
            }
            Err(err) => {
                self.shared_down(&err);
                false
            }
        };
        let result = self.probe(target).await;
        if leased {
            // Share a good value; after a failure free the lease at once, so the
            // item is not reported busy to anybody for the rest of the hold.
            let shared_result = match result {
                Ok((level, checked_at)) => {
                    let reading = SharedReading {
                        level,
                        checked_at,
                        started_at,
                    };
                    shared.store(target.id, reading, settings.ttl * 3).await
                }
                Err(_) => shared.release(target.id).await,
            };
            if let Err(err) = shared_result {
                // The probe's value is good: keep it here; only sharing failed.
                if result.is_ok() {
                    self.inner.metrics.shared("store_failed");
                }
                self.shared_down(&err);
            }
        }
        Outcome::Probed(result)
    }

    /// The loaded value if it is plausible and was probed within the TTL
    /// window; an implausible one is rejected (counted once per check).
    fn fresh(
        &self,
        id: u64,
        loaded: Loaded,
        now: DateTime<Utc>,
        count: bool,
    ) -> Option<SharedReading> {
        let settings = self.inner.settings;
        let reading = match loaded {
            Loaded::Missing => return None,
            Loaded::Malformed => {
                if count {
                    self.rejected(id, "malformed");
                }
                return None;
            }
            Loaded::Value(reading) => reading,
        };
        if let Err(why) = settings.plausible(&reading, now) {
            if count {
                self.rejected(id, why);
            }
            return None;
        }
        let age = (now - reading.started_at).to_std().unwrap_or_default();
        (age < settings.ttl).then_some(reading)
    }

    /// A value in the shared cache that no replica could have written.
    fn rejected(&self, id: u64, why: &'static str) {
        self.inner.metrics.shared("rejected");
        if !self
            .inner
            .rejected_seen
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                id,
                why,
                "ignoring a shared availability value no replica wrote (counted in hardware_availability_shared_total{{outcome=\"rejected\"}}; only the first is logged)"
            );
        }
    }

    fn shared_up(&self) {
        if self
            .inner
            .shared_down
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!("shared availability cache reachable again");
        }
    }

    fn shared_down(&self, err: &shared::SharedError) {
        self.inner.metrics.shared("unavailable");
        if !self
            .inner
            .shared_down
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(error = %err, "shared availability cache unavailable; probing locally");
        }
    }

    /// Runs the probe with its time limit; the time of measurement is kept to
    /// the millisecond, as it travels through the shared cache.
    async fn probe(&self, target: &Target) -> Result<(Availability, DateTime<Utc>), ProbeError> {
        let limit = self.inner.settings.probe_timeout;
        let level = match tokio::time::timeout(limit, self.inner.probe.check(target)).await {
            Ok(result) => result?,
            Err(_) => return Err(ProbeError(format!("no answer within {limit:?}"))),
        };
        let now = Utc::now();
        let checked_at = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        Ok((level, checked_at))
    }

    fn record(&self, target: &Target, started: Instant, outcome: Outcome) {
        let settings = self.inner.settings;
        let landed = {
            let mut state = self.state();
            let Some(slot) = state.slot_mut(target.id) else {
                // Deleted while its probe ran.
                return;
            };
            let first_value = slot.reading.is_none();
            let before = (slot.reading, slot.digest());
            let (landed, next) = match outcome {
                Outcome::Probed(Ok((level, checked_at))) => {
                    slot.reading = Some(Reading { level, checked_at });
                    self.inner.metrics.finished("ok");
                    (true, started + settings.ttl)
                }
                Outcome::Probed(Err(err)) => {
                    tracing::warn!(id = target.id, error = %err, "availability probe failed; keeping the last value");
                    self.inner.metrics.finished("error");
                    (false, Instant::now() + settings.retry_after())
                }
                Outcome::Adopted(reading) => {
                    slot.reading = Some(Reading {
                        level: reading.level,
                        checked_at: reading.checked_at,
                    });
                    self.inner.metrics.shared("adopted");
                    // Next check one TTL after the *other* replica's probe started.
                    let age = (Utc::now() - reading.started_at)
                        .to_std()
                        .unwrap_or_default();
                    let their_start = Instant::now().checked_sub(age).unwrap_or(started);
                    (true, their_start + settings.ttl)
                }
                Outcome::Busy => {
                    self.inner.metrics.shared("busy");
                    (false, Instant::now() + settings.busy_retry())
                }
            };
            if landed && first_value {
                state.never_computed -= 1;
            }
            if let Some(slot) = state.slot(target.id)
                && slot.reading != before.0
            {
                let digest = slot.digest();
                let seq = state.seq + 1;
                state.seq = seq;
                state.sum = state.sum.wrapping_sub(before.1).wrapping_add(digest);
                if let Some(slot) = state.slot_mut(target.id) {
                    slot.changed = seq;
                }
            }
            state.enqueue(target.id, next);
            landed
        };
        if landed {
            self.inner.landed.send_modify(|version| *version += 1);
        }
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
