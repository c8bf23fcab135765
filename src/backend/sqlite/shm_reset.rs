//! SQLite's reset of the WAL index (the `-shm` file), done over the file's own blocks.
//!
//! The first connection to open a store after all others have closed must not trust the
//! `-shm` file, which a crashed process may have left half-written: SQLite truncates it to 3
//! bytes ("an arbitrary small number, less than the -shm header size") and then grows it
//! again a page at a time as it maps it, so that every byte of the index reads as zero and
//! the index is rebuilt from the WAL. With one process per message that is every delivery
//! that runs alone: a truncate, then a one-byte write into each new 4 KiB page, each page a
//! block allocated anew. Writing zeros over the file as it stands gives SQLite the same
//! all-zero index without freeing and allocating those blocks (2 KiB deliveries,
//! interleaved, two series of 5 × 300: 1.010–1.014 → 0.965–0.972 ms).
//!
//! SQLite's unix VFS calls `ftruncate` through a table that `xSetSystemCall` may change; ours
//! replaces it for one call shape only: a truncate to 3 bytes of a file whose size is a whole
//! number of 32 KiB index regions. In the unix VFS that is the `-shm` reset and nothing else
//! (databases and journals are truncated to whole pages, or whole growth chunks, and
//! virt_mail sets no journal size limit). Any other call, and any failed write, goes to the
//! real `ftruncate`. The connection that resets the index holds its exclusive lock: no other
//! process has the file mapped.

use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::ffi;

/// The size SQLite truncates the `-shm` file to when it resets it.
const RESET: libc::off_t = 3;
/// The WAL index grows in regions of this size: a `-shm` file is a whole number of them.
const REGION: usize = 32 * 1024;

type Ftruncate = unsafe extern "C" fn(c_int, libc::off_t) -> c_int;

/// The VFS's own `ftruncate`, once ours replaces it (0: the C library's).
static BASE: AtomicUsize = AtomicUsize::new(0);

/// Makes `vfs` call `ftruncate` below instead of its own. `false` if the VFS has no system
/// call table (it then resets the index as it always does).
///
/// # Safety
/// `vfs` must be SQLite's default VFS, alive for the whole process; call this once.
pub unsafe fn install(vfs: *mut ffi::sqlite3_vfs) -> bool {
    // SAFETY: `vfs` is a registered VFS; the name is NUL-terminated; the pointer stored and
    // set are functions of the C type SQLite declares for `ftruncate`.
    unsafe {
        let (Some(get), Some(set)) = ((*vfs).xGetSystemCall, (*vfs).xSetSystemCall) else {
            return false;
        };
        let Some(base) = get(vfs, c"ftruncate".as_ptr()) else {
            return false;
        };
        BASE.store(base as usize, Ordering::Release);
        let ours: Ftruncate = ftruncate;
        let ours = std::mem::transmute::<Ftruncate, unsafe extern "C" fn()>(ours);
        set(vfs, c"ftruncate".as_ptr(), Some(ours)) == ffi::SQLITE_OK
    }
}

/// `ftruncate` as SQLite's unix VFS calls it: the `-shm` reset over the file's blocks, any
/// other call as the VFS would make it.
unsafe extern "C" fn ftruncate(fd: c_int, len: libc::off_t) -> c_int {
    if len == RESET && zero_index(fd) {
        return 0;
    }
    let base = BASE.load(Ordering::Acquire);
    let base: Ftruncate = if base == 0 {
        libc::ftruncate
    } else {
        // SAFETY: `install` stored the VFS's own `ftruncate`, of this type.
        unsafe { std::mem::transmute::<usize, Ftruncate>(base) }
    };
    // SAFETY: the caller's arguments, for the function it meant to call.
    unsafe { base(fd, len) }
}

/// Writes zeros over the whole of `fd` if it has the shape of a WAL index; whether it did.
fn zero_index(fd: c_int) -> bool {
    static ZEROS: [u8; REGION] = [0; REGION];
    // SAFETY: `stat` is plain data, filled in by `fstat`.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is the caller's open file; `stat` is valid for writing.
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return false;
    }
    let Ok(size) = usize::try_from(stat.st_size) else {
        return false;
    };
    if size == 0 || size % REGION != 0 {
        return false;
    }
    (0..size).step_by(REGION).all(|offset| {
        let Ok(offset) = libc::off_t::try_from(offset) else {
            return false;
        };
        // SAFETY: `ZEROS` is valid for `REGION` bytes.
        let written = unsafe { libc::pwrite(fd, ZEROS.as_ptr().cast(), REGION, offset) };
        usize::try_from(written) == Ok(REGION)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use super::*;

    fn file_of(bytes: &[u8]) -> std::fs::File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    fn contents(file: &std::fs::File) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).unwrap();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn an_index_reset_writes_zeros_over_the_file() {
        let file = file_of(&[0xa5; 2 * REGION]);
        // SAFETY: a file of ours.
        assert_eq!(unsafe { ftruncate(file.as_raw_fd(), RESET) }, 0);
        let bytes = contents(&file);
        assert_eq!(bytes.len(), 2 * REGION);
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn other_truncates_truncate() {
        // Not the shape of an index: truncated to 3 bytes as asked.
        let file = file_of(&[0xa5; 5000]);
        // SAFETY: a file of ours.
        assert_eq!(unsafe { ftruncate(file.as_raw_fd(), RESET) }, 0);
        assert_eq!(contents(&file), [0xa5; 3]);
        // Another size: truncated, whatever the file's shape.
        let file = file_of(&[0xa5; REGION]);
        // SAFETY: as above.
        assert_eq!(unsafe { ftruncate(file.as_raw_fd(), 4096) }, 0);
        assert_eq!(contents(&file), [0xa5; 4096]);
    }
}
