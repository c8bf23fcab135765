//! The WAL reused in place instead of truncated.
//!
//! The checkpoint that keeps the WAL short (`Sqlite::after_commit`) ends with SQLite
//! truncating the WAL to zero bytes, and the next delivery then appends its frames to a
//! file that grows again: every block allocated anew, the allocation journalled at the
//! commit's fsync. On the bench's disk 1 MiB written and synced costs 2.1 ms appended to a
//! truncated file against 0.9 ms written over the blocks of the last one.
//!
//! SQLite truncates a WAL to zero bytes only when nothing in it is needed any more: every
//! frame copied into the database and the database synced (a `TRUNCATE` checkpoint, or a
//! close in persistent-WAL mode). And a WAL whose header is not valid is, to SQLite, an
//! empty one: recovery reads no frame from it, and the next writer writes a new header
//! with new salts, synced before any frame (SQLite does so after every WAL restart, so that
//! old frames left behind can never be taken for new ones). So where SQLite would truncate,
//! we clear the header instead and leave the blocks for the next delivery to overwrite.
//! Should the cleared header not reach the disk, the frames it leaves valid hold pages the
//! database already has: recovery restores the same content, as after a crash just before
//! SQLite's own truncate.
//!
//! The file is kept only up to `KEEP` bytes: one unusually large message should not pin its
//! size. A longer one is truncated to zero bytes, as SQLite does, never cut to `KEEP`:
//! should the cleared header then not reach the disk before a power loss, a valid header
//! would stand before part of its frames, and recovery would put the old pages of that
//! part over the newer ones the checkpoint wrote (SQLite's `sqlite3WalClose` avoids the
//! same cut for the same reason).
//! Another program's SQLite truncates as it always does (`sqlite3 DB 'PRAGMA
//! wal_checkpoint(TRUNCATE)'` gives the space back).

use std::ffi::c_int;

use rusqlite::ffi;

/// The most of a WAL kept for reuse: more than any message of usual size takes.
pub const KEEP: i64 = 64 << 20;
/// The WAL header, which names the page size and the salts that frames must match.
const HEADER: usize = 32;

/// A WAL's `xTruncate`: to zero bytes, the header cleared and the file kept if it is at
/// most `KEEP` bytes; otherwise as `base` does it.
///
/// # Safety
/// `file` must be a WAL opened by the VFS whose methods `base` are.
pub unsafe fn truncate(
    base: &ffi::sqlite3_io_methods,
    file: *mut ffi::sqlite3_file,
    size: ffi::sqlite3_int64,
) -> c_int {
    let (Some(base_truncate), Some(file_size), Some(write)) =
        (base.xTruncate, base.xFileSize, base.xWrite)
    else {
        return ffi::SQLITE_IOERR_TRUNCATE;
    };
    let mut current: ffi::sqlite3_int64 = 0;
    // SAFETY (all calls below): `file` is open with `base`'s VFS; `current` and `zeros` are
    // valid for the sizes given.
    if size != 0
        || unsafe { file_size(file, &mut current) } != ffi::SQLITE_OK
        || current <= HEADER as i64
        || current > KEEP
    {
        return unsafe { base_truncate(file, size) };
    }
    let zeros = [0u8; HEADER];
    let rc = unsafe { write(file, zeros.as_ptr().cast(), HEADER as c_int, 0) };
    if rc == ffi::SQLITE_OK {
        crate::debug!("sqlite: WAL kept for reuse ({current} bytes), its header cleared");
    }
    rc
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::*;

    /// A file opened as a WAL by SQLite's default VFS, closed on drop.
    struct Wal {
        _name: CString,
        memory: Vec<u64>,
        methods: &'static ffi::sqlite3_io_methods,
    }

    impl Wal {
        fn open(path: &Path) -> Wal {
            // The unix VFS takes a new WAL's permissions from its database file.
            let db = path.to_str().unwrap().strip_suffix("-wal").unwrap();
            std::fs::write(db, "").unwrap();
            let name = CString::new(path.as_os_str().as_bytes()).unwrap();
            // SAFETY: the default VFS lives as long as the process; `memory` has room for its
            // file structure (8-byte aligned); `name` outlives the open file.
            unsafe {
                let vfs = ffi::sqlite3_vfs_find(std::ptr::null());
                let size = usize::try_from((*vfs).szOsFile).unwrap();
                let mut memory = vec![0u64; size.div_ceil(8)];
                let file = memory.as_mut_ptr().cast::<ffi::sqlite3_file>();
                let flags =
                    ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_WAL;
                let rc =
                    (*vfs).xOpen.unwrap()(vfs, name.as_ptr(), file, flags, std::ptr::null_mut());
                assert_eq!(rc, ffi::SQLITE_OK);
                let methods = &*(*file).pMethods;
                Wal {
                    _name: name,
                    memory,
                    methods,
                }
            }
        }

        fn file(&mut self) -> *mut ffi::sqlite3_file {
            self.memory.as_mut_ptr().cast()
        }

        fn truncate(&mut self, size: i64) -> c_int {
            let file = self.file();
            // SAFETY: `file` is open with these methods.
            unsafe { truncate(self.methods, file, size) }
        }

        fn write(&mut self, bytes: &[u8], offset: i64) {
            let file = self.file();
            let n = c_int::try_from(bytes.len()).unwrap();
            // SAFETY: as above; `bytes` is valid for `n` bytes.
            let rc =
                unsafe { self.methods.xWrite.unwrap()(file, bytes.as_ptr().cast(), n, offset) };
            assert_eq!(rc, ffi::SQLITE_OK);
        }
    }

    impl Drop for Wal {
        fn drop(&mut self) {
            let file = self.file();
            // SAFETY: open, and closed once.
            unsafe { self.methods.xClose.unwrap()(file) };
        }
    }

    #[test]
    fn truncating_to_zero_clears_the_header_and_keeps_the_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-wal");
        let mut wal = Wal::open(&path);
        wal.write(&[7u8; 10_000], 0);
        assert_eq!(wal.truncate(0), ffi::SQLITE_OK);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 10_000);
        assert_eq!(&bytes[..HEADER], &[0u8; HEADER]);
        assert!(bytes[HEADER..].iter().all(|&b| b == 7));
    }

    #[test]
    fn a_wal_past_keep_is_truncated_to_zero_never_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-wal");
        let mut wal = Wal::open(&path);
        wal.write(&[7u8; 4096], 0);
        // Exactly `KEEP` is kept whole.
        wal.write(&[7u8; 4096], KEEP - 4096);
        assert_eq!(wal.truncate(0), ffi::SQLITE_OK);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), KEEP as u64);
        // A sparse file past the limit, as one huge message would leave it: a valid header
        // before part of the frames would be a corrupt WAL after a crash, so none is kept.
        wal.write(&[7u8; 4096], 0);
        wal.write(&[7u8; 4096], KEEP);
        assert_eq!(wal.truncate(0), ffi::SQLITE_OK);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn other_sizes_and_tiny_files_are_truncated_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-wal");
        let mut wal = Wal::open(&path);
        wal.write(&[7u8; 10_000], 0);
        assert_eq!(wal.truncate(5_000), ffi::SQLITE_OK);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 5_000);
        assert_eq!(wal.truncate(20), ffi::SQLITE_OK);
        assert_eq!(wal.truncate(0), ffi::SQLITE_OK);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
