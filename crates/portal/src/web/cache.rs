//! Rendered dashboard pages, kept while what they show cannot have changed.
//!
//! A page depends on its normalized view (the query as [`super::view::Filters`]
//! writes it back, the page number clamped to the pages that can exist), the
//! data's version and, when the data is stale, the time it dates from. Nothing
//! else: ages ("12 s ago") are worded by the page's script from the absolute
//! times the page carries, and which processes served it travels in headers.
//! Together these are the [`Stamp`]; a cached page is exactly what a fresh
//! render would produce, byte for byte, in any portal of the same release
//! (which is what lets its entity tag be strong).
//!
//! Only pages of the newest stamp can ever be hit again, so a newer stamp
//! drops everything older, and the pages kept never exceed `PAGE_CACHE_KIB`
//! in bytes (a page that does not fit is served without being kept).

use super::encoding::Encoded;
use crate::client::ClientKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wire::Version;

/// What a page shows besides its view, and the fetch that told it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stamp {
    /// The data's version.
    pub version: Version,
    /// When the data is stale: the second of the last good fetch, which the
    /// banner names.
    pub stale_since: Option<i64>,
    /// The fetch this was seen at: orders stamps (a render of older data that
    /// finishes late does not replace newer pages), not part of what a page
    /// shows (a fetch that found the same data keeps every page).
    pub fetch: u64,
}

impl PartialEq for Stamp {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.stale_since == other.stale_since
    }
}

impl Eq for Stamp {}

impl Stamp {
    /// Whether pages of `self` may replace pages of `other`: seen at the same
    /// fetch or a later one (at the same fetch, the data went stale or came
    /// back in between).
    fn supersedes(&self, other: &Self) -> bool {
        self.fetch >= other.fetch
    }
}

#[derive(Debug, Default)]
struct Inner {
    stamp: Stamp,
    pages: HashMap<String, Arc<Encoded>>,
    bytes: usize,
    /// Renders under way, per client and page: that client's other requests
    /// for the page wait for it (woken all at once) instead of rendering it
    /// again or queueing one by one for the client's render turn.
    rendering: HashMap<(ClientKey, String), (Stamp, tokio::sync::watch::Receiver<()>)>,
}

/// What [`PageCache::lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// The page, rendered at this stamp.
    Hit(Arc<Encoded>),
    /// This client is rendering it already: wait (`changed()` returns when it
    /// is done or abandoned), then look again.
    Wait(tokio::sync::watch::Receiver<()>),
    /// Render it; others of this client wait until the claim is dropped.
    Render(Claim),
}

/// The right (and duty) to render a page for a client; dropping it, rendered
/// or not, wakes that client's waiting requests.
#[derive(Debug)]
pub struct Claim {
    cache: PageCache,
    client: ClientKey,
    key: String,
    stamp: Stamp,
    _done: tokio::sync::watch::Sender<()>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut inner = self.cache.lock();
        let entry = (self.client, std::mem::take(&mut self.key));
        if inner
            .rendering
            .get(&entry)
            .is_some_and(|(stamp, _)| *stamp == self.stamp)
        {
            inner.rendering.remove(&entry);
        }
    }
}

/// Handle to the cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct PageCache {
    budget: usize,
    inner: Arc<Mutex<Inner>>,
}

impl PageCache {
    /// A cache holding at most `budget` bytes of pages (keys included).
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The page for `key` at `stamp`, or whether `client` waits for its own
    /// render under way or renders it.
    pub fn lookup(&self, key: &str, stamp: Stamp, client: ClientKey) -> Lookup {
        let mut inner = self.lock();
        if inner.stamp == stamp
            && let Some(page) = inner.pages.get(key)
        {
            return Lookup::Hit(page.clone());
        }
        let entry = (client, key.to_owned());
        if let Some((claimed, done)) = inner.rendering.get(&entry)
            && *claimed == stamp
        {
            return Lookup::Wait(done.clone());
        }
        let (sender, receiver) = tokio::sync::watch::channel(());
        inner.rendering.insert(entry, (stamp, receiver));
        Lookup::Render(Claim {
            cache: self.clone(),
            client,
            key: key.to_owned(),
            stamp,
            _done: sender,
        })
    }

    /// The page for `key` rendered at exactly `stamp`, if any.
    pub fn get(&self, key: &str, stamp: Stamp) -> Option<Arc<Encoded>> {
        let inner = self.lock();
        (inner.stamp == stamp)
            .then(|| inner.pages.get(key).cloned())
            .flatten()
    }

    /// Keeps `page` when it is of the newest stamp and fits the budget.
    pub fn put(&self, key: String, stamp: Stamp, page: Arc<Encoded>) {
        let mut inner = self.lock();
        if inner.stamp != stamp {
            if !stamp.supersedes(&inner.stamp) {
                return;
            }
            inner.pages.clear();
            inner.bytes = 0;
            inner.stamp = stamp;
        }
        let size = key.len() + page.len();
        if inner.pages.contains_key(&key) || inner.bytes + size > self.budget {
            return;
        }
        inner.bytes += size;
        inner.pages.insert(key, page);
    }

    /// A kept page of `stamp` gained a compressed form of `added` bytes:
    /// counted against the budget, or the page is dropped when it no longer
    /// fits (the request that made the form still gets it).
    pub fn grew(&self, key: &str, stamp: Stamp, added: usize) {
        let mut inner = self.lock();
        if inner.stamp != stamp || !inner.pages.contains_key(key) {
            return;
        }
        if inner.bytes + added <= self.budget {
            inner.bytes += added;
        } else if let Some(page) = inner.pages.remove(key) {
            // What was counted for it: its length before this form.
            inner.bytes -= (key.len() + page.len() - added).min(inner.bytes);
        }
    }

    /// Bytes of pages kept now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// Turns to render a page that is not cached: at most one per core at once,
/// and one per client at a time, so a client asking for many distinct views
/// waits behind itself, not in front of everyone else.
#[derive(Debug, Clone)]
pub struct RenderTurns {
    global: Arc<tokio::sync::Semaphore>,
    clients: Arc<Mutex<HashMap<ClientKey, Arc<tokio::sync::Semaphore>>>>,
}

/// A client's place in line; forgets the client when nobody of it waits.
#[derive(Debug)]
struct ClientLine {
    clients: Arc<Mutex<HashMap<ClientKey, Arc<tokio::sync::Semaphore>>>>,
    client: ClientKey,
    line: Arc<tokio::sync::Semaphore>,
}

impl Drop for ClientLine {
    fn drop(&mut self) {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map's handle and this one: nobody else of this client waits.
        if Arc::strong_count(&self.line) <= 2 {
            clients.remove(&self.client);
        }
    }
}

/// The right to render now; dropping it gives the turn on.
#[derive(Debug)]
pub struct Turn {
    // Fields drop in this order: the permits before the line that holds them.
    _global: tokio::sync::OwnedSemaphorePermit,
    _own: tokio::sync::OwnedSemaphorePermit,
    _line: ClientLine,
}

impl RenderTurns {
    pub fn new(at_once: usize) -> Self {
        Self {
            global: Arc::new(tokio::sync::Semaphore::new(at_once.max(1))),
            clients: Arc::default(),
        }
    }

    /// Waits for `client`'s turn; `None` only if the turns were closed.
    pub async fn take(&self, client: ClientKey) -> Option<Turn> {
        let line = {
            let mut clients = self
                .clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                clients
                    .entry(client)
                    .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1))),
            )
        };
        let line = ClientLine {
            clients: Arc::clone(&self.clients),
            client,
            line,
        };
        let own = Arc::clone(&line.line).acquire_owned().await.ok()?;
        let global = Arc::clone(&self.global).acquire_owned().await.ok()?;
        Some(Turn {
            _global: global,
            _own: own,
            _line: line,
        })
    }

    /// Clients with a render under way or waiting.
    pub fn clients(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::encoding::Coding;
    use axum::body::Bytes;

    fn page(body: Vec<u8>) -> Arc<Encoded> {
        Arc::new(Encoded::new(Bytes::from(body)))
    }

    /// Data `version` seen at `fetch`, stale since `since` when given.
    fn stamp(fetch: u64, version: u64, since: Option<i64>) -> Stamp {
        Stamp {
            version: Version::from_sum(version),
            stale_since: since,
            fetch,
        }
    }

    #[test]
    fn a_page_is_reused_only_for_what_it_shows() {
        let cache = PageCache::new(1 << 20);
        cache.put("/".into(), stamp(3, 100, None), page(b"page".to_vec()));
        assert!(cache.get("/", stamp(3, 100, None)).is_some());
        assert!(
            cache.get("/", stamp(4, 100, None)).is_some(),
            "a later fetch found the same data"
        );
        assert!(cache.get("/", stamp(4, 101, None)).is_none(), "new data");
        assert!(
            cache.get("/", stamp(3, 100, Some(1))).is_none(),
            "went stale"
        );
        assert!(
            cache.get("/?page=2", stamp(3, 100, None)).is_none(),
            "another view"
        );
    }

    #[test]
    fn a_newer_stamp_drops_what_can_no_longer_be_hit() {
        let cache = PageCache::new(1 << 20);
        cache.put("/a".into(), stamp(1, 1, None), page(vec![0; 100]));
        cache.put("/b".into(), stamp(2, 2, None), page(vec![0; 100]));
        assert!(cache.get("/a", stamp(1, 1, None)).is_none());
        assert_eq!(cache.bytes(), 102);
        cache.put("/late".into(), stamp(1, 1, None), page(vec![0; 100]));
        assert!(
            cache.get("/late", stamp(1, 1, None)).is_none(),
            "an older render is not kept"
        );
        assert!(cache.get("/b", stamp(2, 2, None)).is_some());
    }

    #[test]
    fn the_cache_stays_within_its_budget_in_bytes() {
        let cache = PageCache::new(10_000);
        for i in 0..1000 {
            cache.put(format!("/?q={i}"), stamp(1, 1, None), page(vec![0; 500]));
        }
        assert!(cache.bytes() <= 10_000, "{}", cache.bytes());
        assert!(cache.bytes() > 9_000, "it is used: {}", cache.bytes());
    }

    #[test]
    fn compressed_forms_count_against_the_budget() {
        let body: Vec<u8> = (0..4000u32).flat_map(|i| i.to_le_bytes()).collect();
        let cache = PageCache::new(17_000);
        let kept = page(body);
        cache.put("/".into(), stamp(1, 1, None), Arc::clone(&kept));
        assert_eq!(cache.bytes(), 16_001);
        let (_, _, made) = kept.get(Coding::Gzip);
        assert!(made);
        cache.grew("/", stamp(1, 1, None), kept.len() - 16_000);
        assert!(
            cache.bytes() <= 17_000,
            "over the budget, the page is let go: {}",
            cache.bytes()
        );
        assert!(cache.get("/", stamp(1, 1, None)).is_none());
    }

    fn key(ip: &str) -> ClientKey {
        ClientKey::of(ip.parse().expect("ip"))
    }

    #[tokio::test]
    async fn a_client_renders_a_page_once_and_its_other_requests_wait_for_it() {
        let cache = PageCache::new(1 << 20);
        let now = stamp(1, 1, None);
        let Lookup::Render(claim) = cache.lookup("/", now, key("192.0.2.1")) else {
            panic!("the first renders");
        };
        let Lookup::Wait(mut waiting) = cache.lookup("/", now, key("192.0.2.1")) else {
            panic!("the same client waits");
        };
        assert!(
            matches!(cache.lookup("/", now, key("192.0.2.2")), Lookup::Render(_)),
            "another client is never held up by this one's render"
        );
        cache.put("/".into(), now, page(b"page".to_vec()));
        drop(claim);
        assert!(
            waiting.changed().await.is_err(),
            "woken when the render is done"
        );
        assert!(matches!(
            cache.lookup("/", now, key("192.0.2.1")),
            Lookup::Hit(_)
        ));
        assert!(cache.lock().rendering.is_empty(), "nothing left behind");
    }

    #[tokio::test]
    async fn a_client_waits_behind_itself_not_in_front_of_others() {
        let turns = RenderTurns::new(2);
        let first = turns.take(key("192.0.2.1")).await.expect("turn");
        // The same client's second render waits for its first...
        let again = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            turns.take(key("192.0.2.1")),
        )
        .await;
        assert!(again.is_err(), "one render per client at a time");
        // ...while another client goes ahead.
        let other = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            turns.take(key("192.0.2.2")),
        )
        .await
        .expect("another client is not held up")
        .expect("turn");
        drop((first, other));
        assert_eq!(turns.clients(), 0, "clients are forgotten when done");
    }
}
