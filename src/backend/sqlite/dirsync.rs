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
//! The switch is in `vfs::open`, which asks `durable` before it opens a WAL.

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The extended attribute: `device:inode` of the WAL file it was set on.
const ATTRIBUTE: &CStr = c"user.virt_mail.dirsynced";

/// Whether the WAL at `wal` carries our mark, for this very file.
pub fn durable(wal: &CStr) -> bool {
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
///
/// SQLite ignores a failure to open or sync the directory, so the mark follows a sync of
/// our own that succeeded (once per WAL file: the next delivery finds the mark).
pub fn remember(wal: &str) {
    let Ok(path) = CString::new(wal) else {
        return;
    };
    if durable(&path) {
        return;
    }
    let directory = Path::new(wal)
        .parent()
        .filter(|d| !d.as_os_str().is_empty());
    let synced =
        std::fs::File::open(directory.unwrap_or(Path::new("."))).and_then(|d| d.sync_all());
    if let Err(e) = synced {
        crate::debug!("sqlite: {wal}: directory not synced ({e}): not marked");
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
