//! Our VFS: SQLite's default one with `xOpen` wrapped, for the WAL file alone. A WAL known
//! to have a durable directory entry is opened without "create" (`dirsync`), and the WAL's
//! methods are SQLite's own with `xTruncate` replaced (`wal_reuse`). Every other file, and
//! every other method, is the default VFS's own; the one system call replaced in its table
//! is the `ftruncate` that resets the WAL index (`shm_reset`).

use std::ffi::{CStr, c_int};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi;

use super::{dirsync, shm_reset, wal_reuse};

/// Our VFS's name, for `Connection::open_with_flags_and_vfs`.
const NAME: &CStr = c"virt_mail";

/// SQLite's default VFS, which ours wraps.
static BASE: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// The methods SQLite's VFS gave the first WAL it opened, and ours: a copy of them with
/// `xTruncate` replaced. Both live as long as the process.
struct WalMethods {
    base: *const ffi::sqlite3_io_methods,
    ours: *const ffi::sqlite3_io_methods,
}

// SAFETY: both pointers are to immutable tables that are never freed.
unsafe impl Send for WalMethods {}
unsafe impl Sync for WalMethods {}

static WAL_METHODS: OnceLock<WalMethods> = OnceLock::new();

/// Our VFS's name once it is registered (once per process); `None` if SQLite had no
/// default VFS to wrap, and the connection then uses SQLite's default.
pub fn name() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    REGISTERED.get_or_init(register).then_some(NAME)
}

fn register() -> bool {
    // SAFETY: `sqlite3_vfs_find` initialises SQLite and returns a VFS that is never freed.
    // Ours is a copy of it, leaked (it must live as long as the process), whose `xOpen`
    // calls the original with the original as its VFS; every other method gets the same
    // `pAppData` as before. The default VFS is SQLite's own, and `register` runs once per
    // process, as `shm_reset::install` asks.
    unsafe {
        let base = ffi::sqlite3_vfs_find(std::ptr::null());
        if base.is_null() || (*base).xOpen.is_none() {
            return false;
        }
        BASE.store(base, Ordering::Release);
        let mut ours = *base;
        ours.zName = NAME.as_ptr();
        ours.pNext = std::ptr::null_mut();
        ours.xOpen = Some(open);
        if !shm_reset::install(base) {
            crate::debug!(
                "sqlite: the VFS has no system call table: the WAL index is reset as usual"
            );
        }
        ffi::sqlite3_vfs_register(Box::leak(Box::new(ours)), 0) == ffi::SQLITE_OK
    }
}

/// Whether SQLite's unix VFS can allocate file space with `posix_fallocate` (built with
/// `HAVE_POSIX_FALLOCATE`, which .cargo/config.toml sets). Without it SQLite "allocates" a
/// growth chunk by writing one byte into every block of it, which costs more than it saves.
pub fn has_fallocate() -> bool {
    // SAFETY: `sqlite3_vfs_find` returns a VFS that is never freed (or null); the system call
    // is only looked up, by a NUL-terminated name.
    unsafe {
        let vfs = ffi::sqlite3_vfs_find(std::ptr::null());
        if vfs.is_null() {
            return false;
        }
        (*vfs)
            .xGetSystemCall
            .is_some_and(|get| get(vfs, c"fallocate".as_ptr()).is_some())
    }
}

/// `xOpen`: the file as SQLite asked, except that a WAL whose directory entry is known
/// durable is opened without "create" (SQLite then does not sync the directory), and that
/// a WAL gets our methods.
unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = BASE.load(Ordering::Acquire);
    // SAFETY: `base` was set, and found to have an `xOpen`, before this VFS was registered.
    let Some(base_open) = (unsafe { (*base).xOpen }) else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 || name.is_null() {
        // SAFETY: the arguments are SQLite's own, for the VFS they were meant for.
        return unsafe { base_open(base, name, file, flags, out_flags) };
    }
    let mut rc = ffi::SQLITE_CANTOPEN;
    // SAFETY: SQLite passes a NUL-terminated path for a WAL.
    if dirsync::durable(unsafe { CStr::from_ptr(name) }) {
        // SAFETY: as above.
        rc = unsafe {
            base_open(
                base,
                name,
                file,
                flags & !ffi::SQLITE_OPEN_CREATE,
                out_flags,
            )
        };
        // Gone since we looked: open it as asked (a failed open leaves `file` unused).
    }
    if rc != ffi::SQLITE_OK {
        // SAFETY: as above.
        rc = unsafe { base_open(base, name, file, flags, out_flags) };
    }
    if rc == ffi::SQLITE_OK {
        // SAFETY: the open succeeded, so `file` is SQLite's open file with its methods.
        unsafe { use_our_methods(file) };
    }
    rc
}

/// Gives the open WAL `file` our methods, if SQLite gave it the same methods as the first
/// WAL (always, with the default VFS); otherwise it keeps its own and is truncated as usual.
///
/// # Safety
/// `file` must be an open file of the default VFS.
unsafe fn use_our_methods(file: *mut ffi::sqlite3_file) {
    // SAFETY: an open file has its methods set.
    let base = unsafe { (*file).pMethods };
    if base.is_null() {
        return;
    }
    let methods = WAL_METHODS.get_or_init(|| {
        // SAFETY: `base` is SQLite's static method table; ours is a leaked copy of it.
        let mut ours = unsafe { *base };
        ours.xTruncate = Some(truncate);
        WalMethods {
            base,
            ours: Box::leak(Box::new(ours)),
        }
    });
    if std::ptr::eq(methods.base, base) {
        // SAFETY: `ours` differs from `base` only in `xTruncate`, which calls `base`'s.
        unsafe { (*file).pMethods = methods.ours };
    }
}

/// `xTruncate` of a WAL: see `wal_reuse::truncate`.
unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    let Some(methods) = WAL_METHODS.get() else {
        return ffi::SQLITE_IOERR_TRUNCATE;
    };
    // SAFETY: only files given `methods.ours` get here, and those were opened with `base`.
    unsafe { wal_reuse::truncate(&*methods.base, file, size) }
}

#[cfg(test)]
mod tests {
    /// .cargo/config.toml reaches the SQLite build: without `posix_fallocate` the database
    /// would not grow in allocated chunks.
    #[test]
    fn sqlite_is_built_with_fallocate() {
        assert!(super::has_fallocate());
    }
}
