//! glibc keeps memory a program freed: after a large transient buffer (a
//! 12 MB list body, the items parsed from it) the process's RSS stays at its
//! peak although little of it is live, and a container limit counts RSS. This
//! crate asks glibc how much it holds free and hands it back (`malloc_trim`),
//! which returns free pages anywhere in the heap, not only at its top.
//!
//! On other targets (musl, macOS) both functions do nothing.

/// Blocks of this size and more are mapped apart and unmapped when freed:
/// the list bodies, parsed lists and frames of a large inventory (megabytes)
/// are; a page or a filtered list (kilobytes, one per request) stays in the
/// heap, where a freed block is reused without a system call.
pub const LARGE_BLOCK: usize = 1024 * 1024;

/// Makes every block of [`LARGE_BLOCK`] bytes or more its own mapping, given
/// back to the system the moment it is freed. glibc does so by default only
/// until the first such block is freed: then it raises its threshold to that
/// block's size (up to 32 MiB), and from there on every 12 MB list body, and
/// every large `Vec` grown on the way, is carved out of the heap, where it
/// leaves free holes among live items that RSS keeps counting (measured at
/// 100,000 items: the portal at 56 MB with it, 28 MB without). Call it first
/// thing in `main`; a `glibc.malloc.mmap_threshold` set in `GLIBC_TUNABLES`
/// is left as the operator set it. Returns whether the threshold was set.
pub fn keep_large_blocks_apart() -> bool {
    let tuned = std::env::var("GLIBC_TUNABLES")
        .is_ok_and(|tunables| tunables.contains("glibc.malloc.mmap_threshold"));
    !tuned && imp::set_mmap_threshold(LARGE_BLOCK)
}

/// Bytes the allocator holds free (allocated from the system, not in use).
pub fn free_bytes() -> u64 {
    imp::free_bytes()
}

/// This process's resident memory (RSS) in bytes; 0 where unknown.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages.saturating_mul(imp::page_size()))
}

/// Returns free memory to the system; true when some was. The blocks stay
/// in the allocator's free lists (so [`free_bytes`] does not drop): only
/// their pages are released.
pub fn trim() -> bool {
    imp::trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod imp {
    pub fn free_bytes() -> u64 {
        // SAFETY: mallinfo2 takes no arguments, only reads the allocator's
        // statistics under its own locks and returns a plain struct by value.
        let info = unsafe { libc::mallinfo2() };
        u64::try_from(info.fordblks).unwrap_or(u64::MAX)
    }

    pub fn page_size() -> u64 {
        // SAFETY: sysconf only reads a system constant.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(size).unwrap_or(4096)
    }

    pub fn trim() -> bool {
        // SAFETY: malloc_trim(0) only releases memory the allocator holds
        // free, under its own locks; no pointer of ours is involved.
        unsafe { libc::malloc_trim(0) == 1 }
    }

    pub fn set_mmap_threshold(bytes: usize) -> bool {
        let Ok(bytes) = libc::c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: mallopt only sets an allocator parameter, under its own
        // lock; blocks already allocated are unaffected.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn free_bytes() -> u64 {
        0
    }

    pub fn page_size() -> u64 {
        4096
    }

    pub fn trim() -> bool {
        false
    }

    pub fn set_mmap_threshold(_bytes: usize) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::resident_bytes as resident;

    /// Both tests read the process's RSS: one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_large_block_is_handed_back_when_freed() {
        let _alone = ONE_AT_A_TIME.lock();
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            return;
        }
        assert!(super::keep_large_blocks_apart() || std::env::var_os("GLIBC_TUNABLES").is_some());
        // Freed once (which would raise glibc's own threshold), then again:
        // each time the block goes back to the system with no trim.
        for _ in 0..2 {
            let block = vec![3u8; 16 << 20];
            let with = resident();
            drop(block);
            let without = resident();
            assert!(
                with.saturating_sub(without) > 15 << 20,
                "RSS {with} -> {without}"
            );
        }
    }

    #[test]
    fn freed_blocks_between_live_ones_are_counted_free_and_handed_back() {
        let _alone = ONE_AT_A_TIME.lock();
        // Freed blocks with live ones among them, the shape that stays behind
        // after a parse: the heap cannot shrink from its top.
        let mut freed = Vec::new();
        let mut live = Vec::new();
        for i in 0..5_000u32 {
            freed.push(vec![1u8; 4_000]);
            if i % 8 == 0 {
                live.push(vec![2u8; 16]);
            }
        }
        drop(freed);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(super::free_bytes() > 15_000_000, "{}", super::free_bytes());
            let before = resident();
            assert!(super::trim(), "something was returned");
            let after = resident();
            assert!(
                before.saturating_sub(after) > 10_000_000,
                "RSS {before} -> {after}"
            );
        }
        assert!(live.iter().all(|block| block[0] == 2));
    }
}
