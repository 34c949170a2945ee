//! SQLite's memory through the program's global allocator.
//!
//! SQLite calls the C library's `malloc` by itself, and counts every allocation under a global
//! mutex (`SQLITE_DEFAULT_MEMSTATUS` is 1 in the bundled build). A profile of the store's writer
//! during ingest found 15% of its time there: the statement journals of the group commit's
//! savepoints grow and shrink with every transaction, and glibc returned the memory to the
//! kernel and took it back (page faults, pages cleared). [`use_global_allocator`] hands SQLite
//! the program's allocator instead (the `issho` binary's is mimalloc) and turns the counting
//! off.

use rusqlite::ffi;
use std::alloc::{Layout, alloc, dealloc, realloc};
use std::ffi::{c_int, c_void};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes in front of each block: its size (SQLite's `xSize` must answer it). 16 keeps the
/// block's alignment at 16, as `malloc`'s.
const HEADER: usize = 16;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Some(l) = usize::try_from(n).ok().and_then(layout) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `l` has a non-zero size (at least HEADER).
    let p = unsafe { alloc(l) };
    if p.is_null() {
        return p.cast();
    }
    // SAFETY: the block holds at least HEADER bytes, aligned for a usize.
    unsafe {
        p.cast::<usize>().write(l.size() - HEADER);
        p.add(HEADER).cast()
    }
}

/// The start and layout of the block that `p` (from [`x_malloc`]) is in.
///
/// # Safety
/// `p` comes from `x_malloc` or `x_realloc` and was not freed.
unsafe fn block(p: *mut c_void) -> (*mut u8, Layout) {
    // SAFETY: per the contract, HEADER bytes before `p` hold the size.
    unsafe {
        let start = p.cast::<u8>().sub(HEADER);
        let size = start.cast::<usize>().read();
        (
            start,
            Layout::from_size_align_unchecked(size + HEADER, HEADER),
        )
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what it allocated with x_malloc / x_realloc.
    unsafe {
        let (start, l) = block(p);
        dealloc(start, l);
    }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        // SAFETY: as malloc.
        return unsafe { x_malloc(n) };
    }
    let Some(new) = usize::try_from(n).ok().and_then(layout) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `p` is a live block of ours; the new size is non-zero and fits a Layout.
    unsafe {
        let (start, l) = block(p);
        let q = realloc(start, l, new.size());
        if q.is_null() {
            return q.cast();
        }
        q.cast::<usize>().write(new.size() - HEADER);
        q.add(HEADER).cast()
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: a live block of ours.
    let (_, l) = unsafe { block(p) };
    c_int::try_from(l.size() - HEADER).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    n.checked_add(7).map(|m| m & !7).unwrap_or(n)
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Make SQLite allocate through Rust's global allocator, without its memory statistics.
/// Must run before the process opens its first SQLite connection (SQLite accepts its
/// configuration only before it initializes); returns false when it came too late and SQLite
/// keeps the C library's allocator (still correct, only slower).
pub fn use_global_allocator() -> bool {
    static ONCE: Once = Once::new();
    static DONE: AtomicBool = AtomicBool::new(false);
    ONCE.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: sqlite3_config before sqlite3_initialize (it fails with SQLITE_MISUSE
        // otherwise, changing nothing); SQLite copies the methods.
        let ok = unsafe {
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const _) == ffi::SQLITE_OK
                && ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) == ffi::SQLITE_OK
        };
        DONE.store(ok, Ordering::Relaxed);
    });
    DONE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    /// Blocks keep their size and contents through SQLite's calls, and a database works on
    /// them (this test binary's global allocator is the system's).
    #[test]
    fn sqlite_runs_on_the_global_allocator() {
        // Other tests of this binary may have opened SQLite first: then the allocator is not
        // installed (and says so), and the database below runs on malloc.
        super::use_global_allocator();
        // SAFETY: the functions are used as SQLite would use them.
        unsafe {
            let p = super::x_malloc(100);
            assert!(!p.is_null());
            assert_eq!(super::x_size(p), 100);
            p.cast::<u8>().write_bytes(7, 100);
            let q = super::x_realloc(p, 5000);
            assert_eq!(super::x_size(q), 5000);
            assert_eq!(*q.cast::<u8>().add(99), 7);
            super::x_free(q);
            assert_eq!(super::x_roundup(13), 16);
            assert!(super::x_malloc(-1).is_null());
        }
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE u (x TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO u SELECT printf('%0500d', i) FROM n;")
            .unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM u", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2000);
    }
}
