//! Rendered dashboard pages, kept while what they show cannot have changed.
//!
//! A page depends on its (normalized) query, the catalog version, the stale
//! flag, and — through the "12 s ago" wording — the current second. Keyed on
//! all four, a cached page is exactly what a fresh render would produce, so
//! visitors never see anything older than a render would show them, and the
//! server renders each distinct view at most once per second.

use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Distinct views kept; beyond this the cache starts over (cheap and bounded).
const MAX_ENTRIES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    version: u64,
    second: i64,
    stale: bool,
}

#[derive(Debug, Default)]
struct Inner {
    pages: HashMap<String, (Stamp, Bytes)>,
}

/// Handle to the cache; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PageCache {
    inner: Arc<Mutex<Inner>>,
}

impl PageCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The page for `key` rendered at exactly this stamp, if any.
    pub fn get(&self, key: &str, version: u64, second: i64, stale: bool) -> Option<Bytes> {
        let stamp = Stamp {
            version,
            second,
            stale,
        };
        self.lock()
            .pages
            .get(key)
            .filter(|(cached, _)| *cached == stamp)
            .map(|(_, page)| page.clone())
    }

    pub fn put(&self, key: String, version: u64, second: i64, stale: bool, page: Bytes) {
        let mut inner = self.lock();
        if inner.pages.len() >= MAX_ENTRIES && !inner.pages.contains_key(&key) {
            inner.pages.clear();
        }
        inner.pages.insert(
            key,
            (
                Stamp {
                    version,
                    second,
                    stale,
                },
                page,
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_reused_only_for_the_same_stamp() {
        let cache = PageCache::default();
        cache.put("/".into(), 3, 100, false, Bytes::from_static(b"page"));
        assert!(cache.get("/", 3, 100, false).is_some());
        assert!(cache.get("/", 4, 100, false).is_none(), "new data");
        assert!(cache.get("/", 3, 101, false).is_none(), "ages moved on");
        assert!(cache.get("/", 3, 100, true).is_none(), "went stale");
        assert!(
            cache.get("/?page=2", 3, 100, false).is_none(),
            "another view"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = PageCache::default();
        for i in 0..(MAX_ENTRIES + 10) {
            cache.put(format!("/?q={i}"), 1, 1, false, Bytes::new());
        }
        assert!(cache.lock().pages.len() <= MAX_ENTRIES);
    }
}
