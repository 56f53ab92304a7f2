//! Keeps RSS at what is live: a background loop that hands the allocator's
//! free memory back to the system when it has grown (see the `heap` crate).
//! Without it a portal or hardware at 100,000 items sits at the peak of its
//! last large transient buffer (measured: hardware 113 MB where 75 MB were
//! live, portal 76 MB where 60 MB were), and a container limit counts RSS.

use std::future::Future;
use std::time::Duration;

/// How often RSS is looked at (one read of `/proc/self/statm`).
const PERIOD: Duration = Duration::from_secs(5);
/// Free memory below this is left alone.
const AT_LEAST: u64 = 4 << 20;
/// How much RSS must have grown, or free memory changed, since the last
/// trim for another: freeing does not raise RSS, and reusing freed memory
/// raises RSS without changing much what is free.
const MOVED: u64 = 2 << 20;

/// What the trimmer saw right after its last trim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    resident: u64,
    free: u64,
}

/// Whether to trim, given what is seen now and right after the last trim.
fn worth_trimming(now: Seen, after_last: Seen) -> bool {
    now.free >= AT_LEAST
        && (now.resident >= after_last.resident.saturating_add(MOVED)
            || now.free.abs_diff(after_last.free) >= MOVED)
}

fn seen() -> Seen {
    Seen {
        resident: heap::resident_bytes(),
        free: heap::free_bytes(),
    }
}

/// Trims every `PERIOD` when RSS grew or free memory changed and enough of
/// it is free, until `shutdown`.
pub async fn trim_until(shutdown: impl Future<Output = ()>) {
    let mut after_last = Seen::default();
    crate::periodic::every(PERIOD, shutdown, || {
        let now = seen();
        if worth_trimming(now, after_last) {
            heap::trim();
            after_last = seen();
        } else {
            after_last.resident = after_last.resident.min(now.resident);
        }
        std::future::ready(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_when_rss_grew_or_free_memory_changed_and_memory_is_free() {
        const MB: u64 = 1 << 20;
        let seen = |resident: u64, free: u64| Seen {
            resident: resident * MB,
            free: free * MB,
        };
        assert!(worth_trimming(seen(100, 50), Seen::default()), "first time");
        assert!(
            !worth_trimming(seen(100, 1), Seen::default()),
            "too little free"
        );
        assert!(!worth_trimming(seen(61, 50), seen(60, 50)), "nothing moved");
        assert!(
            worth_trimming(seen(70, 50), seen(60, 50)),
            "RSS grew (reuse)"
        );
        assert!(worth_trimming(seen(60, 62), seen(60, 50)), "more was freed");
    }
}
