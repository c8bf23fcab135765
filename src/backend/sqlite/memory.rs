//! SQLite's allocations through Rust's global allocator (in the installed binary, the
//! process's small-block region, `crate::arena`), instead of the C library's `malloc`.
//!
//! SQLite makes about 200 allocations while it opens a store and reads its schema; musl's
//! `malloc` and `free` spent 45,000 instructions and 16 memory-mapping calls on them for a
//! 2 KiB delivery. SQLite wants the size of a block back (`xSize`), so each block carries it
//! in an 8-byte header; SQLite needs no more than 8-byte alignment.

use std::alloc::Layout;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

const HEADER: usize = 8;

/// Hands SQLite's allocations to Rust's allocator, once per process, before SQLite is first
/// initialised (after that SQLite refuses, and keeps its own: as correct, only slower).
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: SQLite copies the methods; they are plain functions that live forever.
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods) };
        if rc == ffi::SQLITE_OK {
            crate::debug!("sqlite: allocates through the process's allocator");
        } else {
            crate::debug!("sqlite: allocates with the C library's malloc (initialised before)");
        }
    });
}

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
    let Some((n, layout)) = usize::try_from(n).ok().and_then(|n| Some((n, layout(n)?))) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size (the header); the header is written before the
    // block is handed out.
    unsafe {
        let base = std::alloc::alloc(layout);
        if base.is_null() {
            return base.cast();
        }
        base.cast::<usize>().write(n);
        base.add(HEADER).cast()
    }
}

/// The block's start and its size, from a pointer `malloc` or `realloc` returned.
///
/// # Safety
/// `p` must be such a pointer, not yet freed.
unsafe fn header(p: *mut c_void) -> (*mut u8, usize) {
    // SAFETY: as the caller promises, the header is just before `p`.
    unsafe {
        let base = p.cast::<u8>().sub(HEADER);
        (base, base.cast::<usize>().read())
    }
}

unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what it was given, once; the layout is the one it was
    // allocated with (its size is in the header).
    unsafe {
        let (base, n) = header(p);
        if let Some(layout) = layout(n) {
            std::alloc::dealloc(base, layout);
        }
    }
}

unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        // SAFETY: as `malloc` (SQLite does not do this, but C's realloc allows it).
        return unsafe { malloc(n) };
    }
    let Some(new) = usize::try_from(n).ok().filter(|&n| layout(n).is_some()) else {
        return std::ptr::null_mut();
    };
    // SAFETY: SQLite passes a live block of ours (never null: it calls xMalloc then); the old
    // layout is the one it was allocated with, and the new size is valid.
    unsafe {
        let (base, old) = header(p);
        let Some(old_layout) = layout(old) else {
            return std::ptr::null_mut();
        };
        let base = std::alloc::realloc(base, old_layout, new + HEADER);
        if base.is_null() {
            return base.cast();
        }
        base.cast::<usize>().write(new);
        base.add(HEADER).cast()
    }
}

unsafe extern "C" fn size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: SQLite asks only about its live blocks.
    let (_, n) = unsafe { header(p) };
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn roundup(n: c_int) -> c_int {
    n.checked_add(7).map_or(n, |m| m & !7)
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}
