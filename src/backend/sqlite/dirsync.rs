//! The WAL's directory entry: synced once per WAL file, not once per delivery.
//!
//! SQLite opens the WAL asking to create it, and so fsyncs the WAL's directory at the first
//! commit of every connection (`UNIXFILE_DIRSYNC`): a WAL that another program created, and
//! perhaps never synced, must not vanish from its directory on power loss with mail in it.
//! With one process per message that is a second fsync per delivery (0.08 ms of 1.1 on the
//! bench's disk). But once a commit has synced the directory, the entry stays durable for as
//! long as that file lives, so this module says so *on the file*: an extended attribute
//! naming its device and inode, set after such a commit. A later delivery that finds the WAL
//! so marked opens it without "create", and SQLite then has no directory to sync.
//!
//! The attribute lives and dies with the file: a WAL deleted (the last connection of a
//! program that checkpoints on close) and created again is a new file without it. A copy
//! that kept its attributes (`cp -a`) names another inode, and is not trusted. Where there is
//! no mark, or the filesystem has no user attributes, SQLite does what it always does.
//!
//! The switch is a VFS that is SQLite's default one with `xOpen` wrapped; everything else,
//! the files it opens included, is the default VFS's own.

use std::ffi::{CStr, CString, OsStr, c_int};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi;

/// Our VFS's name, for `Connection::open_with_flags_and_vfs`.
const NAME: &CStr = c"virt_mail";
/// The extended attribute: `device:inode` of the WAL file it was set on.
const ATTRIBUTE: &CStr = c"user.virt_mail.dirsynced";

/// SQLite's default VFS, which ours wraps.
static BASE: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// Our VFS's name once it is registered (once per process); `None` if SQLite had no
/// default VFS to wrap, and the connection then uses SQLite's default.
pub fn vfs() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    REGISTERED.get_or_init(register).then_some(NAME)
}

fn register() -> bool {
    // SAFETY: `sqlite3_vfs_find` initialises SQLite and returns a VFS that is never freed.
    // Ours is a copy of it, leaked (it must live as long as the process), whose `xOpen`
    // calls the original with the original as its VFS; every other method gets the same
    // `pAppData` as before.
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
        ffi::sqlite3_vfs_register(Box::leak(Box::new(ours)), 0) == ffi::SQLITE_OK
    }
}

/// `xOpen`: a WAL whose directory entry is known durable is opened without "create" (SQLite
/// then does not sync the directory); anything else as SQLite asked.
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
    let wal = flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null();
    // SAFETY: SQLite passes a NUL-terminated path for a WAL.
    if wal && durable(unsafe { CStr::from_ptr(name) }) {
        // SAFETY: the arguments are SQLite's own, for the VFS they were meant for.
        let rc = unsafe {
            base_open(
                base,
                name,
                file,
                flags & !ffi::SQLITE_OPEN_CREATE,
                out_flags,
            )
        };
        if rc == ffi::SQLITE_OK {
            return rc;
        }
        // Gone since we looked: open it as asked (a failed open leaves `file` unused).
    }
    // SAFETY: as above.
    unsafe { base_open(base, name, file, flags, out_flags) }
}

/// Whether the WAL at `wal` carries our mark, for this very file.
fn durable(wal: &CStr) -> bool {
    let Some(identity) = identity(wal) else {
        return false;
    };
    let mut value = [0u8; 64];
    let n = get_attribute(wal, &mut value);
    usize::try_from(n).is_ok_and(|n| value.get(..n) == Some(identity.as_bytes()))
}

/// After a commit of this connection that wrote the WAL: with `synchronous = FULL` it
/// synced the WAL, and with it the directory, unless `open` found the mark and left that
/// out. So a WAL without the mark gets it now. Best effort: without it, the next delivery
/// syncs the directory again.
pub fn remember(wal: &str) {
    let Ok(path) = CString::new(wal) else {
        return;
    };
    if durable(&path) {
        return;
    }
    let marked = identity(&path).map_or_else(
        || Err(std::io::Error::last_os_error()),
        |id| set_attribute(&path, id.as_bytes()),
    );
    match marked {
        Ok(()) => crate::debug!("sqlite: {wal}: directory synced with the first commit; marked"),
        Err(e) => crate::debug!(
            "sqlite: {wal}: not marked ({e}): its directory is synced again next time"
        ),
    }
}

/// For `--debug`: what a connection opening the WAL at `wal` would do about its directory.
pub fn describe(wal: &str) -> String {
    match CString::new(wal) {
        Ok(path) if durable(&path) => {
            format!("{wal}: directory entry known durable (marked): not synced again")
        }
        _ => format!("{wal}: directory synced with the first commit"),
    }
}

fn identity(path: &CStr) -> Option<String> {
    let meta = std::fs::metadata(Path::new(OsStr::from_bytes(path.to_bytes()))).ok()?;
    Some(format!("{}:{}", meta.dev(), meta.ino()))
}

#[cfg(target_os = "linux")]
fn get_attribute(path: &CStr, value: &mut [u8]) -> isize {
    // SAFETY: both strings are NUL-terminated; the kernel writes at most `value.len()` bytes.
    unsafe {
        libc::getxattr(
            path.as_ptr(),
            ATTRIBUTE.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    }
}

#[cfg(target_os = "linux")]
fn set_attribute(path: &CStr, value: &[u8]) -> std::io::Result<()> {
    // SAFETY: both strings are NUL-terminated; the kernel reads `value.len()` bytes.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            ATTRIBUTE.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere no mark is ever found or set: SQLite syncs the directory as it always does.
#[cfg(not(target_os = "linux"))]
fn get_attribute(_path: &CStr, _value: &mut [u8]) -> isize {
    -1
}

#[cfg(not(target_os = "linux"))]
fn set_attribute(_path: &CStr, _value: &[u8]) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}
